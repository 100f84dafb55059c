//! The deployer against a real moto server: the SDK calls and the create / update / delete
//! flow over HTTP. Each test has its own server, so they run in parallel.
//!
//! moto's CloudFormation really creates the VPC, subnets, security groups, IAM roles, launch
//! template, Auto Scaling group, ECS cluster, task definition and service, load balancer,
//! target group, listener, log groups, ECR repository and S3 bucket; it skips capacity
//! providers, the GitHub connection, CodeBuild and CodePipeline, runs no tasks, and has no
//! rollback. What it cannot show is covered in `mocked.rs`.

mod support;

use deployer::{
    cloudformation,
    commands::UpOptions,
    error::DeployError,
    plan::{ParameterChange, PlanAction},
    stacks::{self, Layer},
};
use support::{behind_on_sqs, config, deployer, moto::Moto};

const SKIP_VERIFY: UpOptions = UpOptions {
    skip_verify: true,
    yes: true,
};

#[tokio::test]
async fn plan_on_an_empty_account_creates_every_stack_and_leaves_nothing_behind() {
    let moto = Moto::start();
    let deployer = deployer(moto.with_secrets(config()).await, moto.aws().await);

    let plans = deployer.plan().await.expect("plan");

    let stacks: Vec<&str> = plans.iter().map(|plan| plan.stack.as_str()).collect();
    assert_eq!(
        stacks,
        [
            "oponn-dev-network",
            "oponn-dev-cluster",
            "oponn-dev-pipeline",
            "oponn-dev-service"
        ]
    );
    for plan in &plans {
        let PlanAction::Create { resources } = &plan.action else {
            panic!("{} is not a create: {plan}", plan.stack);
        };
        assert!(!resources.is_empty());
    }
    let text = deployer.console.text();
    assert!(text.contains("+ oponn-dev-service: create"), "{text}");
    assert!(text.contains("AWS::ECS::Service"), "{text}");
    for layer in Layer::ALL {
        let name = stacks::stack_name(&deployer.config, layer);
        let found = cloudformation::describe(&deployer.aws.cloudformation, &name)
            .await
            .expect("describe");
        assert!(found.is_none(), "plan created {name}");
    }
}

#[tokio::test]
async fn up_creates_the_stacks_in_order_and_a_second_plan_shows_no_change() {
    let moto = Moto::start();
    let deployer = deployer(moto.with_secrets(config()).await, moto.aws().await);

    deployer.up(SKIP_VERIFY).await.expect("up");

    for layer in stacks::layers(&deployer.config) {
        let name = stacks::stack_name(&deployer.config, layer);
        let stack = cloudformation::describe(&deployer.aws.cloudformation, &name)
            .await
            .expect("describe")
            .unwrap_or_else(|| panic!("{name} exists"));
        assert_eq!(stack.status, "CREATE_COMPLETE", "{name}");
    }
    let text = deployer.console.text();
    let order: Vec<usize> = ["network", "cluster", "pipeline", "service"]
        .iter()
        .map(|layer| {
            text.find(&format!("oponn-dev-{layer}: Create complete"))
                .expect(layer)
        })
        .collect();
    assert!(order.windows(2).all(|pair| pair[0] < pair[1]), "{text}");

    // The plain service APIs see what CloudFormation made.
    let services = deployer
        .aws
        .ecs
        .describe_services()
        .cluster("oponn-dev")
        .services("oponn-dev")
        .send()
        .await
        .expect("DescribeServices");
    assert_eq!(services.services()[0].desired_count(), 2);
    let groups = deployer
        .aws
        .elb
        .describe_target_groups()
        .send()
        .await
        .expect("DescribeTargetGroups");
    assert_eq!(
        groups.target_groups()[0].health_check_path(),
        Some("/healthz")
    );
    // Write-through, the default: the image's own command, and no queue.
    let described = deployer
        .aws
        .ecs
        .describe_task_definition()
        .task_definition("oponn-dev")
        .send()
        .await
        .expect("DescribeTaskDefinition");
    let container = &described
        .task_definition()
        .expect("a task definition")
        .container_definitions()[0];
    assert!(container.command().is_empty(), "{:?}", container.command());
    let names: Vec<&str> = container
        .environment()
        .iter()
        .filter_map(|pair| pair.name())
        .collect();
    assert!(names.contains(&"OPONN_WRITE_MODE"), "{names:?}");
    assert!(
        !names
            .iter()
            .any(|name| name.contains("QUEUE") || name.contains("SQS")),
        "{names:?}"
    );

    let again = deployer.plan().await.expect("plan again");
    assert!(
        again.iter().all(|plan| plan.action == PlanAction::NoChange),
        "{again:?}"
    );
    assert!(deployer
        .console
        .text()
        .contains("plan: 0 of 4 stacks change"));
}

#[tokio::test]
async fn a_parameter_change_plans_exactly_that_change_and_up_applies_it() {
    let moto = Moto::start();
    deployer(moto.with_secrets(config()).await, moto.aws().await)
        .up(SKIP_VERIFY)
        .await
        .expect("first up");

    let mut changed = moto.with_secrets(config()).await;
    changed.service.max_tasks = 6;
    // deploy.toml's desired count applies at creation only: an update keeps the service's
    // (autoscaling moves it), so this is no change.
    changed.service.desired_tasks = 3;
    let deployer = deployer(changed, moto.aws().await);
    let plans = deployer.plan().await.expect("plan");

    let changes: Vec<_> = plans.iter().filter(|plan| plan.is_change()).collect();
    assert_eq!(changes.len(), 1, "{plans:?}");
    assert_eq!(changes[0].stack, "oponn-dev-service");
    let PlanAction::Update {
        parameters,
        template_changes,
        ..
    } = &changes[0].action
    else {
        panic!("an update: {}", changes[0]);
    };
    assert_eq!(
        parameters,
        &[ParameterChange {
            name: "MaxTasks".into(),
            from: Some("4".into()),
            to: "6".into()
        }]
    );
    assert!(template_changes.is_empty(), "{template_changes:?}");
    let text = deployer.console.text();
    assert!(text.contains("parameter MaxTasks: 4 -> 6"), "{text}");
    assert!(
        text.contains("keeping its current desired count 2 (autoscaling's), not deploy.toml's 3"),
        "{text}"
    );

    deployer.up(SKIP_VERIFY).await.expect("up");
    let services = deployer
        .aws
        .ecs
        .describe_services()
        .cluster("oponn-dev")
        .services("oponn-dev")
        .send()
        .await
        .expect("DescribeServices");
    assert_eq!(services.services()[0].desired_count(), 2, "kept");
    let stack = cloudformation::describe(&deployer.aws.cloudformation, "oponn-dev-service")
        .await
        .expect("describe")
        .expect("exists");
    assert_eq!(stack.status, "UPDATE_COMPLETE");
    assert_eq!(stack.parameters["MaxTasks"], "6");
}

#[tokio::test]
async fn nat_puts_a_gateway_with_an_exported_elastic_ip_in_front_of_the_instances() {
    let moto = Moto::start();
    let mut with_nat = moto.with_secrets(config()).await;
    with_nat.network.nat = true;
    let nat = deployer(with_nat, moto.aws().await);

    nat.up(SKIP_VERIFY).await.expect("up with nat");

    let network = cloudformation::describe(&nat.aws.cloudformation, "oponn-dev-network")
        .await
        .expect("describe")
        .expect("exists");
    let address = &network.outputs["NatPublicIp"];
    assert_eq!(
        address.split('.').count(),
        4,
        "an IPv4 address: {address:?}"
    );
    let cluster = cloudformation::describe(&nat.aws.cloudformation, "oponn-dev-cluster")
        .await
        .expect("describe")
        .expect("exists");
    assert_eq!(cluster.parameters["Nat"], "true");
    let plans = nat.plan().await.expect("plan");
    assert!(plans.iter().all(|plan| !plan.is_change()), "{plans:?}");

    // And without: no gateway, no address.
    let moto = Moto::start();
    let plain = deployer(moto.with_secrets(config()).await, moto.aws().await);
    plain.up(SKIP_VERIFY).await.expect("up without nat");
    let network = cloudformation::describe(&plain.aws.cloudformation, "oponn-dev-network")
        .await
        .expect("describe")
        .expect("exists");
    assert!(!network.outputs.contains_key("NatPublicIp"), "{network:?}");
}

#[tokio::test]
async fn a_template_change_is_named_by_logical_id() {
    let moto = Moto::start();
    deployer(moto.with_secrets(config()).await, moto.aws().await)
        .up(SKIP_VERIFY)
        .await
        .expect("first up");

    let changed_dir =
        std::env::temp_dir().join(format!("deployer-templates-{}", std::process::id()));
    copy_templates(&changed_dir, |name, text| match name {
        "service.yaml" => text.replace("RetentionInDays: 30", "RetentionInDays: 14"),
        _ => text,
    });
    let mut changed = moto.with_secrets(config()).await;
    changed.templates = changed_dir.clone();
    let deployer = deployer(changed, moto.aws().await);
    let plans = deployer.plan().await.expect("plan");
    let _ = std::fs::remove_dir_all(&changed_dir);

    let service = plans
        .iter()
        .find(|plan| plan.stack == "oponn-dev-service")
        .expect("service plan");
    let PlanAction::Update {
        template_changes,
        parameters,
        ..
    } = &service.action
    else {
        panic!("an update: {service}");
    };
    assert_eq!(template_changes, &["~ LogGroup"]);
    assert!(parameters.is_empty());
}

#[tokio::test]
async fn status_shows_stacks_and_service_and_says_what_it_cannot_read() {
    let moto = Moto::start();
    let deployer = deployer(moto.with_secrets(config()).await, moto.aws().await);
    deployer.up(SKIP_VERIFY).await.expect("up");

    deployer.status().await.expect("status");

    let text = deployer.console.text();
    assert!(
        text.contains("oponn-dev-network            CREATE_COMPLETE"),
        "{text}"
    );
    assert!(
        text.contains("oponn-dev-service            CREATE_COMPLETE"),
        "{text}"
    );
    assert!(text.contains("deployment PRIMARY oponn-dev:1"), "{text}");
    assert!(
        text.contains("targets:\n  (no registered targets)"),
        "{text}"
    );
    // moto has no pipelines: the section says so and status still succeeds.
    assert!(
        text.contains("pipeline oponn-dev:\n  error: AWS ListPipelineExecutions"),
        "{text}"
    );
}

#[tokio::test]
async fn down_deletes_in_reverse_order_and_keeps_the_pipeline_stack_unless_told() {
    let moto = Moto::start();
    let deployer = deployer(moto.with_secrets(config()).await, moto.aws().await);
    deployer.up(SKIP_VERIFY).await.expect("up");

    let result = deployer.down(false).await;

    let text = deployer.console.text();
    let service = text.find("- oponn-dev-service: delete").expect(&text);
    let cluster = text.find("- oponn-dev-cluster: delete").expect(&text);
    let network = text.find("- oponn-dev-network: delete").expect(&text);
    assert!(service < cluster && cluster < network, "{text}");
    assert!(text.contains("= oponn-dev-pipeline: kept"), "{text}");
    let describe = |name: &'static str| {
        let client = deployer.aws.cloudformation.clone();
        async move {
            cloudformation::describe(&client, name)
                .await
                .expect("describe")
        }
    };
    assert!(describe("oponn-dev-service").await.is_none());
    assert!(describe("oponn-dev-cluster").await.is_none());
    assert!(
        describe("oponn-dev-pipeline").await.is_some(),
        "the images are kept"
    );
    // moto deletes the VPC before detaching its internet gateway, and refuses; AWS orders
    // the deletion by dependency. What matters here: the failure names the stack and cause.
    match result {
        Ok(()) => {}
        Err(DeployError::StackFailed { stack, reason, .. }) => {
            assert_eq!(stack, "oponn-dev-network");
            assert!(reason.contains("DependencyViolation"), "{reason}");
        }
        Err(other) => panic!("unexpected: {other}"),
    }

    deployer.down(true).await.expect("down --delete-data");
    assert!(describe("oponn-dev-pipeline").await.is_none());
}

#[tokio::test]
async fn write_behind_on_sqs_applies_the_queue_stack_before_the_service_and_down_keeps_it() {
    let moto = Moto::start();
    let deployer = deployer(moto.with_secrets(behind_on_sqs()).await, moto.aws().await);

    let plans = deployer.plan().await.expect("plan");
    let stacks: Vec<&str> = plans.iter().map(|plan| plan.stack.as_str()).collect();
    assert_eq!(
        stacks,
        [
            "oponn-dev-network",
            "oponn-dev-cluster",
            "oponn-dev-pipeline",
            "oponn-dev-queue",
            "oponn-dev-service"
        ]
    );
    deployer.up(SKIP_VERIFY).await.expect("up");
    let text = deployer.console.text();
    let queue = text.find("oponn-dev-queue: Create complete").expect(&text);
    let service = text
        .find("oponn-dev-service: Create complete")
        .expect(&text);
    assert!(queue < service, "{text}");

    // The task runs the worker, with the queue stack's URLs and a role for them.
    let outputs = cloudformation::describe(&deployer.aws.cloudformation, "oponn-dev-queue")
        .await
        .expect("describe")
        .expect("the queue stack")
        .outputs;
    let described = deployer
        .aws
        .ecs
        .describe_task_definition()
        .task_definition("oponn-dev")
        .send()
        .await
        .expect("DescribeTaskDefinition");
    let task = described.task_definition().expect("a task definition");
    let container = &task.container_definitions()[0];
    assert_eq!(container.command(), ["serve", "--with-worker"]);
    let environment = |name: &str| {
        container
            .environment()
            .iter()
            .find(|pair| pair.name() == Some(name))
            .and_then(|pair| pair.value())
            .unwrap_or_else(|| panic!("{name} in {:?}", container.environment()))
            .to_owned()
    };
    assert_eq!(environment("OPONN_WRITE_MODE"), "behind");
    assert_eq!(environment("OPONN_QUEUE"), "sqs");
    assert_eq!(environment("OPONN_SQS_QUEUE_URL"), outputs["QueueUrl"]);
    assert_eq!(
        environment("OPONN_SQS_DEAD_LETTER_URL"),
        outputs["DeadLetterQueueUrl"]
    );
    // moto registers a task definition from CloudFormation without its roles (the template
    // test pins TaskRoleArn), so the role is looked for among the stack's resources.
    let resources = deployer
        .aws
        .cloudformation
        .list_stack_resources()
        .stack_name("oponn-dev-service")
        .send()
        .await
        .expect("ListStackResources");
    let role = resources
        .stack_resource_summaries()
        .iter()
        .find(|resource| resource.logical_resource_id() == Some("TaskRole"))
        .expect("the task role, with the queue");
    assert_eq!(role.resource_type(), Some("AWS::IAM::Role"));
    // The URLs are FIFO queues SQS answers on.
    let sqs = moto.sqs().await;
    for url in [&outputs["QueueUrl"], &outputs["DeadLetterQueueUrl"]] {
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::FifoQueue)
            .send()
            .await
            .expect("GetQueueAttributes");
        let fifo = attributes
            .attributes()
            .and_then(|attributes| {
                attributes.get(&aws_sdk_sqs::types::QueueAttributeName::FifoQueue)
            })
            .map(String::as_str);
        assert_eq!(fifo, Some("true"), "{url}");
    }

    let again = deployer.plan().await.expect("plan again");
    assert!(
        again.iter().all(|plan| plan.action == PlanAction::NoChange),
        "{again:?}"
    );

    // Back to write-through: the service lets go of the queue, which is left alone, and said.
    let through = support::deployer(moto.with_secrets(config()).await, moto.aws().await);
    let plans = through.plan().await.expect("plan without the queue");
    let service = plans
        .iter()
        .find(|plan| plan.stack == "oponn-dev-service")
        .expect("the service's plan");
    let PlanAction::Update { parameters, .. } = &service.action else {
        panic!("an update: {service}");
    };
    assert!(
        parameters.contains(&ParameterChange {
            name: "QueueStack".into(),
            from: Some("oponn-dev-queue".into()),
            to: String::new(),
        }),
        "{parameters:?}"
    );
    assert!(!plans.iter().any(|plan| plan.stack == "oponn-dev-queue"));
    let text = through.console.text();
    assert!(
        text.contains("! oponn-dev-queue: deployed but not in deploy.toml, left alone; it holds acknowledged writes"),
        "{text}"
    );

    // down keeps it, whatever deploy.toml says now, unless told.
    let _ = through.down(false).await;
    let text = through.console.text();
    assert!(
        text.contains("= oponn-dev-queue: kept (it holds acknowledged writes"),
        "{text}"
    );
    let queue_stack = cloudformation::describe(&deployer.aws.cloudformation, "oponn-dev-queue")
        .await
        .expect("describe");
    assert!(queue_stack.is_some(), "the queue is kept");
    let service_stack = cloudformation::describe(&deployer.aws.cloudformation, "oponn-dev-service")
        .await
        .expect("describe");
    assert!(service_stack.is_none(), "{text}");
    // (The network's deletion fails under moto: see the test of down above.)
    let _ = through.down(true).await;
    let queue_stack = cloudformation::describe(&deployer.aws.cloudformation, "oponn-dev-queue")
        .await
        .expect("describe");
    assert!(queue_stack.is_none(), "down --delete-data deletes it");
}

#[tokio::test]
async fn a_create_that_fails_stops_up_at_that_stack_with_the_cause() {
    let moto = Moto::start();
    let broken_dir = std::env::temp_dir().join(format!("deployer-broken-{}", std::process::id()));
    copy_templates(&broken_dir, |name, text| match name {
        // A subnet outside the VPC's range: refused when the subnet is created.
        "network.yaml" => text.replace("Default: 10.40.16.0/20", "Default: 10.99.16.0/20"),
        _ => text,
    });
    let mut broken = moto.with_secrets(config()).await;
    broken.templates = broken_dir.clone();
    let deployer = deployer(broken, moto.aws().await);

    let error = deployer
        .up(SKIP_VERIFY)
        .await
        .expect_err("the network cannot be created");
    let _ = std::fs::remove_dir_all(&broken_dir);

    let message = error.to_string();
    // moto fails the create synchronously, in ExecuteChangeSet (see support/moto_server.py);
    // AWS would end the stack ROLLBACK_COMPLETE and `follow` would report the first failure.
    assert!(message.contains("ExecuteChangeSet"), "{message}");
    assert!(
        message.to_lowercase().contains("cidr") || message.contains("Subnet"),
        "{message}"
    );
    // Nothing after the failed stack was attempted.
    let cluster = cloudformation::describe(&deployer.aws.cloudformation, "oponn-dev-cluster")
        .await
        .expect("describe");
    assert!(cluster.is_none());
}

#[tokio::test]
async fn the_binary_refuses_to_start_without_credentials_and_says_how_to_fix_it() {
    let moto = Moto::start();
    let home = std::env::temp_dir().join(format!("deployer-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).expect("a home");
    let config_path = home.join("deploy.toml");
    std::fs::write(&config_path, include_str!("../../deploy.example.toml")).expect("write config");

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_deployer"))
        .args([
            "--config",
            config_path.to_str().unwrap(),
            "--endpoint-url",
            &moto.endpoint,
            "status",
        ])
        .env_clear()
        .env("HOME", &home)
        .env("AWS_CONFIG_FILE", home.join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("none"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("the deployer runs");
    let _ = std::fs::remove_dir_all(&home);

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no AWS credentials"), "{stderr}");
    assert!(stderr.contains("AWS_ACCESS_KEY_ID"), "{stderr}");
}

fn copy_templates(to: &std::path::Path, edit: impl Fn(&str, String) -> String) {
    std::fs::create_dir_all(to).expect("a template directory");
    for layer in Layer::ALL {
        let name = format!("{}.yaml", layer.name());
        let text =
            std::fs::read_to_string(support::templates().join(&name)).expect("read template");
        std::fs::write(to.join(&name), edit(&name, text)).expect("write template");
    }
}
