//! The properties of the templates that matter, asserted on the parsed YAML. moto ignores most
//! of these (load balancers on services, deployment configuration, capacity providers, roles on
//! task definitions), and cfn-lint checks shapes, not intent, so they are pinned here.

use std::path::PathBuf;

use deployer::template::Template;
use serde_json::{json, Value};

fn load(name: &str) -> Template {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../infra-templates")
        .join(name);
    Template::load(&path).expect("the template parses")
}

fn all() -> Vec<Template> {
    [
        "network.yaml",
        "cluster.yaml",
        "service.yaml",
        "pipeline.yaml",
        "queue.yaml",
        "cache.yaml",
    ]
    .into_iter()
    .map(load)
    .collect()
}

fn only<'a>(template: &'a Template, resource_type: &'a str) -> (&'a str, &'a Value) {
    let mut found = template.resources_of_type(resource_type);
    let first = found
        .next()
        .unwrap_or_else(|| panic!("no {resource_type} in {:?}", template.path));
    assert!(found.next().is_none(), "more than one {resource_type}");
    first
}

fn as_list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    }
}

/// Every environment a container can get: its `Environment` list, or both lists of an
/// `Fn::If` between two (service.yaml's, with the queue stack and without).
fn environments(container: &Value) -> Vec<Vec<Value>> {
    let environment = &container["Environment"];
    match environment.get("Fn::If") {
        Some(branches) => vec![as_list(&branches[1]), as_list(&branches[2])],
        None => vec![as_list(environment)],
    }
}

fn variable<'a>(environment: &'a [Value], name: &str) -> Option<&'a Value> {
    environment
        .iter()
        .find(|variable| variable["Name"] == name)
        .map(|variable| &variable["Value"])
}

#[test]
fn the_runtime_gets_as_many_worker_threads_as_the_deployer_computes() {
    let service = load("service.yaml");
    let (_, task) = only(&service, "AWS::ECS::TaskDefinition");
    let container = &task["Properties"]["ContainerDefinitions"][0];
    for environment in environments(container) {
        assert_eq!(
            variable(&environment, "TOKIO_WORKER_THREADS"),
            Some(&json!({ "Ref": "WorkerThreads" })),
            "without it tokio starts a worker per core of the host, not of the task"
        );
    }
    assert_eq!(
        service.document["Parameters"]["WorkerThreads"]["AllowedPattern"], "^[1-9][0-9]{0,2}$",
        "a whole number of threads, at least one"
    );
}

#[test]
fn the_target_group_health_checks_healthz_on_the_traffic_port() {
    let service = load("service.yaml");
    let (_, group) = only(&service, "AWS::ElasticLoadBalancingV2::TargetGroup");
    let properties = &group["Properties"];
    assert_eq!(properties["HealthCheckPath"], "/healthz");
    assert_eq!(properties["HealthCheckPort"], "traffic-port");
    assert_eq!(properties["Matcher"]["HttpCode"], "200");
    assert_eq!(properties["Port"], 8080);
}

#[test]
fn every_listener_forwards_to_the_target_group_or_redirects_to_https() {
    let service = load("service.yaml");
    let (group_id, _) = only(&service, "AWS::ElasticLoadBalancingV2::TargetGroup");
    let listeners: Vec<_> = service
        .resources_of_type("AWS::ElasticLoadBalancingV2::Listener")
        .collect();
    assert_eq!(listeners.len(), 2, "an HTTP and an optional HTTPS listener");
    let forward = json!([{"Type": "forward", "TargetGroupArn": {"Ref": group_id}}]);
    for (id, listener) in listeners {
        let actions = &listener["Properties"]["DefaultActions"];
        let branches = match actions.get("Fn::If") {
            Some(branches) => vec![branches[1].clone(), branches[2].clone()],
            None => vec![actions.clone()],
        };
        assert!(
            branches.contains(&forward),
            "{id} never forwards to {group_id}: {actions}"
        );
        for branch in branches.iter().filter(|branch| **branch != forward) {
            assert_eq!(branch[0]["Type"], "redirect", "{id}: {branch}");
            assert_eq!(branch[0]["RedirectConfig"]["Protocol"], "HTTPS");
        }
    }
}

#[test]
fn the_service_sits_behind_the_target_group_on_the_containers_port() {
    let service = load("service.yaml");
    let (group_id, _) = only(&service, "AWS::ElasticLoadBalancingV2::TargetGroup");
    let (_, ecs_service) = only(&service, "AWS::ECS::Service");
    let (_, task) = only(&service, "AWS::ECS::TaskDefinition");
    let container = &task["Properties"]["ContainerDefinitions"][0];
    let binding = &ecs_service["Properties"]["LoadBalancers"][0];
    assert_eq!(binding["TargetGroupArn"], json!({"Ref": group_id}));
    assert_eq!(binding["ContainerName"], container["Name"]);
    assert_eq!(
        binding["ContainerPort"],
        container["PortMappings"][0]["ContainerPort"]
    );
    // Bridge mode with dynamic host ports: the instances' security group opens the ephemeral
    // range to the load balancer only.
    assert_eq!(task["Properties"]["NetworkMode"], "bridge");
    assert_eq!(container["PortMappings"][0]["HostPort"], 0);
    let (_, ingress) = only(&service, "AWS::EC2::SecurityGroupIngress");
    assert_eq!(
        ingress["Properties"]["SourceSecurityGroupId"],
        json!({"Ref": "LoadBalancerSecurityGroup"})
    );
    assert_eq!(ingress["Properties"]["FromPort"], 32768);
}

#[test]
fn the_container_listens_on_all_interfaces_of_its_port() {
    let service = load("service.yaml");
    let (_, task) = only(&service, "AWS::ECS::TaskDefinition");
    let container = &task["Properties"]["ContainerDefinitions"][0];
    for environment in environments(container) {
        assert_eq!(
            variable(&environment, "OPONN_LISTEN"),
            Some(&json!("0.0.0.0:8080"))
        );
    }
}

#[test]
fn the_service_rolls_back_when_the_deployment_circuit_breaker_trips() {
    let service = load("service.yaml");
    let (_, ecs_service) = only(&service, "AWS::ECS::Service");
    let deployment = &ecs_service["Properties"]["DeploymentConfiguration"];
    assert_eq!(
        deployment["DeploymentCircuitBreaker"],
        json!({"Enable": true, "Rollback": true})
    );
    assert_eq!(deployment["MinimumHealthyPercent"], 100);
}

#[test]
fn secrets_reach_the_container_through_secrets_never_environment() {
    let service = load("service.yaml");
    let (_, task) = only(&service, "AWS::ECS::TaskDefinition");
    let container = &task["Properties"]["ContainerDefinitions"][0];
    let secrets: Vec<(String, Value)> = as_list(&container["Secrets"])
        .into_iter()
        .map(|secret| {
            (
                secret["Name"].as_str().unwrap().to_owned(),
                secret["ValueFrom"].clone(),
            )
        })
        .collect();
    // REDIS_URL: the managed cache's secret (cache.yaml) or the one deploy.toml names.
    let redis_url = json!({"Fn::If": [
        "ManagedCache",
        {"Fn::ImportValue": {"Fn::Sub": "${CacheStack}-RedisUrlSecretArn"}},
        {"Ref": "RedisUrlSecretArn"}
    ]});
    let expected = [
        (
            "MONGODB_URI",
            "MongoDbUriSecretArn",
            json!({"Ref": "MongoDbUriSecretArn"}),
        ),
        ("REDIS_URL", "RedisUrlSecretArn", redis_url),
        (
            "OPONN_API_TOKENS",
            "ApiTokensSecretArn",
            json!({"Ref": "ApiTokensSecretArn"}),
        ),
    ];
    for (name, parameter, value_from) in &expected {
        assert!(
            secrets.contains(&((*name).to_owned(), value_from.clone())),
            "{name} comes from {parameter}: {secrets:?}"
        );
        for environment in environments(container) {
            assert!(
                variable(&environment, name).is_none(),
                "{name} is in Environment"
            );
        }
        // The secret parameters hold ARNs only (or, for REDIS_URL with a managed cache,
        // nothing), and the pattern refuses anything else.
        let pattern = &service.document["Parameters"][parameter]["AllowedPattern"];
        assert!(
            ["^arn:", "^(arn:"]
                .iter()
                .any(|start| pattern.as_str().unwrap().starts_with(start)),
            "{parameter}"
        );
    }
    // The execution role may read exactly these secrets.
    let role = service.resource("TaskExecutionRole").unwrap();
    assert_eq!(
        task["Properties"]["ExecutionRoleArn"],
        json!({"Fn::GetAtt": ["TaskExecutionRole", "Arn"]})
    );
    let statement = &role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0];
    let resources: Vec<Value> = expected
        .iter()
        .map(|(_, _, value_from)| value_from.clone())
        .collect();
    assert_eq!(statement["Resource"], Value::Array(resources));
}

#[test]
fn the_capacity_provider_scales_the_group_and_is_the_clusters_default() {
    let cluster = load("cluster.yaml");
    let (provider_id, provider) = only(&cluster, "AWS::ECS::CapacityProvider");
    let (group_id, _) = only(&cluster, "AWS::AutoScaling::AutoScalingGroup");
    let (cluster_id, _) = only(&cluster, "AWS::ECS::Cluster");
    let scaling = &provider["Properties"]["AutoScalingGroupProvider"];
    assert_eq!(scaling["AutoScalingGroupArn"], json!({"Ref": group_id}));
    assert_eq!(scaling["ManagedScaling"]["Status"], "ENABLED");

    let (_, association) = only(&cluster, "AWS::ECS::ClusterCapacityProviderAssociations");
    let properties = &association["Properties"];
    assert_eq!(properties["Cluster"], json!({"Ref": cluster_id}));
    assert_eq!(
        properties["CapacityProviders"],
        json!([{"Ref": provider_id}])
    );
    assert_eq!(
        properties["DefaultCapacityProviderStrategy"][0]["CapacityProvider"],
        json!({"Ref": provider_id})
    );
    // The service runs on it: no launch type or strategy of its own, so the cluster's default
    // strategy places its tasks.
    let service = load("service.yaml");
    let (_, ecs_service) = only(&service, "AWS::ECS::Service");
    assert!(ecs_service["Properties"].get("LaunchType").is_none());
    assert!(ecs_service["Properties"]
        .get("CapacityProviderStrategy")
        .is_none());
}

#[test]
fn instances_boot_the_ecs_optimised_ami_from_its_public_ssm_parameter() {
    let cluster = load("cluster.yaml");
    let (_, launch) = only(&cluster, "AWS::EC2::LaunchTemplate");
    let data = &launch["Properties"]["LaunchTemplateData"];
    assert_eq!(data["ImageId"], json!({"Ref": "AmiId"}));
    let ami = &cluster.document["Parameters"]["AmiId"];
    assert_eq!(
        ami["Type"],
        "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    );
    assert!(ami["Default"]
        .as_str()
        .unwrap()
        .starts_with("/aws/service/ecs/optimized-ami/"));
    assert_eq!(data["MetadataOptions"]["HttpTokens"], "required");
    assert_eq!(data["BlockDeviceMappings"][0]["Ebs"]["Encrypted"], true);
}

#[test]
fn the_network_spans_two_availability_zones() {
    let network = load("network.yaml");
    let zones: Vec<Value> = network
        .resources_of_type("AWS::EC2::Subnet")
        .map(|(_, subnet)| subnet["Properties"]["AvailabilityZone"]["Fn::Select"][0].clone())
        .collect();
    assert_eq!(zones.len(), 4);
    assert!(zones.contains(&json!(0)) && zones.contains(&json!(1)));
}

#[test]
fn the_pipeline_builds_and_deploys_every_push_to_main() {
    let pipeline = load("pipeline.yaml");
    let (_, resource) = only(&pipeline, "AWS::CodePipeline::Pipeline");
    let properties = &resource["Properties"];
    assert_eq!(pipeline.parameters()["Branch"].as_deref(), Some("main"));

    let stages: Vec<&str> = properties["Stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|stage| stage["Name"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["Source", "Build", "Deploy"]);

    let source = &properties["Stages"][0]["Actions"][0];
    assert_eq!(
        source["ActionTypeId"]["Provider"],
        "CodeStarSourceConnection"
    );
    assert_eq!(
        source["Configuration"]["BranchName"],
        json!({"Ref": "Branch"})
    );
    assert_eq!(source["Configuration"]["DetectChanges"], true);
    assert_eq!(
        source["Configuration"]["ConnectionArn"],
        json!({"Ref": "GitHubConnection"})
    );
    let trigger = &properties["Triggers"][0]["GitConfiguration"];
    assert_eq!(trigger["SourceActionName"], source["Name"]);
    assert_eq!(
        trigger["Push"][0]["Branches"]["Includes"],
        json!([{"Ref": "Branch"}])
    );

    let build = &properties["Stages"][1]["Actions"][0];
    assert_eq!(build["ActionTypeId"]["Provider"], "CodeBuild");
    let deploy = &properties["Stages"][2]["Actions"][0];
    assert_eq!(deploy["ActionTypeId"]["Provider"], "ECS");
    assert_eq!(deploy["Configuration"]["FileName"], "imagedefinitions.json");
    assert_eq!(deploy["InputArtifacts"], build["OutputArtifacts"]);
}

#[test]
fn the_build_pushes_to_the_stacks_repository_as_the_tasks_container() {
    let pipeline = load("pipeline.yaml");
    let (repository_id, repository) = only(&pipeline, "AWS::ECR::Repository");
    assert!(repository["Properties"]["RepositoryName"].is_object());
    assert!(repository["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"].is_object());
    let (_, project) = only(&pipeline, "AWS::CodeBuild::Project");
    let environment = &project["Properties"]["Environment"];
    assert_eq!(environment["PrivilegedMode"], true, "docker needs it");
    let variables = as_list(&environment["EnvironmentVariables"]);
    assert!(variables.contains(&json!({"Name": "REPOSITORY_URI", "Value": {"Fn::GetAtt": [repository_id, "RepositoryUri"]}})));
    let service = load("service.yaml");
    let (_, task) = only(&service, "AWS::ECS::TaskDefinition");
    let container_name = &task["Properties"]["ContainerDefinitions"][0]["Name"];
    assert!(variables.contains(&json!({"Name": "CONTAINER_NAME", "Value": container_name})));
}

#[test]
fn the_pipeline_may_pass_only_the_services_roles_to_ecs() {
    let pipeline = load("pipeline.yaml");
    let service = load("service.yaml");
    for role in ["TaskExecutionRole", "TaskRole"] {
        let path = &service.resource(role).unwrap()["Properties"]["Path"];
        assert_eq!(path, &json!({"Fn::Sub": "/${App}-${Stage}/"}), "{role}");
    }
    let statements = &pipeline.resource("PipelineRole").unwrap()["Properties"]["Policies"][0]
        ["PolicyDocument"]["Statement"];
    let pass_role = statements
        .as_array()
        .unwrap()
        .iter()
        .find(|statement| statement["Action"] == "iam:PassRole")
        .expect("a PassRole statement");
    assert_eq!(
        pass_role["Resource"],
        json!({"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${App}-${Stage}/*"})
    );
    assert_eq!(
        pass_role["Condition"]["StringEquals"]["iam:PassedToService"],
        "ecs-tasks.amazonaws.com"
    );
}

#[test]
fn the_write_behind_queue_is_fifo_encrypted_and_redrives_past_the_workers_own_limit() {
    let queue = load("queue.yaml");
    let queues: Vec<(&str, &Value)> = queue.resources_of_type("AWS::SQS::Queue").collect();
    assert_eq!(queues.len(), 2, "the queue and its dead letters");
    for (id, resource) in &queues {
        let properties = &resource["Properties"];
        assert_eq!(properties["FifoQueue"], json!(true), "{id}");
        assert_eq!(properties["SqsManagedSseEnabled"], json!(true), "{id}");
    }
    let (_, changes) = queues
        .iter()
        .find(|(id, _)| *id == "Queue")
        .expect("the queue of changes");
    let redrive = &changes["Properties"]["RedrivePolicy"];
    assert_eq!(
        redrive["deadLetterTargetArn"]["Fn::GetAtt"],
        json!(["DeadLetterQueue", "Arn"])
    );
    // The worker dead-letters after OPONN_WORKER_MAX_DELIVERIES (5) and removes the change
    // from the queued set; SQS moving it first would leave the barrier waiting.
    assert!(redrive["maxReceiveCount"].as_u64().expect("a count") > 5);

    let (_, policy) = only(&queue, "AWS::IAM::ManagedPolicy");
    let statements = as_list(&policy["Properties"]["PolicyDocument"]["Statement"]);
    assert_eq!(statements.len(), 1);
    let mut actions: Vec<Value> = as_list(&statements[0]["Action"]);
    actions.sort_by_key(|action| action.to_string());
    assert_eq!(
        actions,
        [
            "sqs:ChangeMessageVisibility",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            "sqs:ReceiveMessage",
            "sqs:SendMessage"
        ]
        .map(|action| json!(action))
    );
    assert_eq!(as_list(&statements[0]["Resource"]).len(), 2);
}

/// The snake_case names of the methods called on the SQS client in `app/src/queue/sqs.rs`
/// (`self.client` then, across any whitespace, `.send_message()`), in order of appearance.
fn sqs_client_calls() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../app/src/queue/sqs.rs");
    let source = std::fs::read_to_string(&path).expect("the app's SQS queue");
    let mut calls = Vec::new();
    for (at, _) in source.match_indices("self.client") {
        let rest = source[at + "self.client".len()..].trim_start();
        let Some(rest) = rest.strip_prefix('.') else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if rest[name.len()..].starts_with("()") && !calls.contains(&name) {
            calls.push(name);
        }
    }
    calls
}

/// The IAM action an SQS operation needs: `change_message_visibility_batch` ->
/// `sqs:ChangeMessageVisibility` (a batch call is authorised by its single form's action;
/// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-api-permissions-reference.html).
fn iam_action(call: &str) -> String {
    let single = call.strip_suffix("_batch").unwrap_or(call);
    let pascal: String = single
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    format!("sqs:{pascal}")
}

#[test]
fn the_queue_policy_allows_every_sqs_call_the_app_makes() {
    assert_eq!(
        iam_action("change_message_visibility_batch"),
        "sqs:ChangeMessageVisibility"
    );
    assert_eq!(iam_action("get_queue_attributes"), "sqs:GetQueueAttributes");
    let calls = sqs_client_calls();
    // The scan must see the calls the worker is known to make, or it proves nothing.
    for known in [
        "send_message",
        "receive_message",
        "change_message_visibility_batch",
        "delete_message_batch",
        "delete_message",
        "get_queue_attributes",
    ] {
        assert!(
            calls.iter().any(|call| call == known),
            "{known} not found in app/src/queue/sqs.rs: {calls:?}"
        );
    }
    let queue = load("queue.yaml");
    let (_, policy) = only(&queue, "AWS::IAM::ManagedPolicy");
    let allowed: Vec<Value> = as_list(&policy["Properties"]["PolicyDocument"]["Statement"])
        .iter()
        .filter(|statement| statement["Effect"] == "Allow")
        .flat_map(|statement| as_list(&statement["Action"]))
        .collect();
    for call in &calls {
        let action = iam_action(call);
        assert!(
            allowed.contains(&json!(action)),
            "app/src/queue/sqs.rs calls .{call}(), which needs {action}; QueueAccessPolicy allows {allowed:?}"
        );
    }
}

#[test]
fn only_with_the_queue_stack_does_the_task_get_a_role_for_it_and_its_urls() {
    let service = load("service.yaml");
    assert_eq!(service.parameters()["QueueStack"].as_deref(), Some(""));
    let condition = &service.document["Conditions"]["QueueOnSqs"];
    assert_eq!(
        condition,
        &json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "QueueStack"}, ""]}]})
    );
    let import =
        |export: &str| json!({"Fn::ImportValue": {"Fn::Sub": format!("${{QueueStack}}-{export}")}});

    // The task role exists only with the queue, and may do exactly what the queue's policy
    // allows.
    let role = service.resource("TaskRole").expect("a task role");
    assert_eq!(role["Condition"], "QueueOnSqs");
    assert_eq!(
        role["Properties"]["ManagedPolicyArns"],
        json!([import("QueueAccessPolicyArn")])
    );
    assert!(role["Properties"].get("Policies").is_none());
    assert_eq!(
        role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"],
        "ecs-tasks.amazonaws.com"
    );
    let (_, task) = only(&service, "AWS::ECS::TaskDefinition");
    assert_eq!(
        task["Properties"]["TaskRoleArn"],
        json!({"Fn::If": ["QueueOnSqs", {"Fn::GetAtt": ["TaskRole", "Arn"]}, {"Ref": "AWS::NoValue"}]})
    );
    // Nothing else imports from the queue stack, so without it nothing needs it.
    let mut imports = Vec::new();
    collect_imports(&service.document["Resources"], &mut imports);
    let from_queue = imports
        .iter()
        .filter(|name| name.starts_with("${QueueStack}"))
        .count();
    assert_eq!(from_queue, 3, "the policy and the two URLs: {imports:?}");

    // The container's environment: the same list either way, plus the queue's three
    // variables with it.
    let container = &task["Properties"]["ContainerDefinitions"][0];
    let branches = &container["Environment"]["Fn::If"];
    assert_eq!(branches[0], "QueueOnSqs");
    let (with_queue, without) = (as_list(&branches[1]), as_list(&branches[2]));
    assert_eq!(with_queue[..without.len()], without[..]);
    assert_eq!(
        with_queue[without.len()..],
        [
            json!({"Name": "OPONN_QUEUE", "Value": "sqs"}),
            json!({"Name": "OPONN_SQS_QUEUE_URL", "Value": import("QueueUrl")}),
            json!({"Name": "OPONN_SQS_DEAD_LETTER_URL", "Value": import("DeadLetterQueueUrl")}),
        ]
    );
    for environment in [&with_queue, &without] {
        assert_eq!(
            variable(environment, "OPONN_WRITE_MODE"),
            Some(&json!({"Ref": "WriteMode"}))
        );
    }
}

#[test]
fn write_behind_runs_the_worker_in_every_task() {
    let service = load("service.yaml");
    let write_mode = &service.document["Parameters"]["WriteMode"];
    assert_eq!(write_mode["Default"], "through");
    assert_eq!(write_mode["AllowedValues"], json!(["through", "behind"]));
    assert_eq!(
        service.document["Conditions"]["WritesBehind"],
        json!({"Fn::Equals": [{"Ref": "WriteMode"}, "behind"]})
    );
    let (_, task) = only(&service, "AWS::ECS::TaskDefinition");
    let container = &task["Properties"]["ContainerDefinitions"][0];
    assert_eq!(
        container["Command"],
        json!({"Fn::If": ["WritesBehind", ["serve", "--with-worker"], {"Ref": "AWS::NoValue"}]})
    );
    // The command replaces the image's CMD after its ENTRYPOINT: `oponn serve`, and the
    // flag is the app's.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("the Dockerfile");
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/oponn\"]"));
    assert!(dockerfile.contains("CMD [\"serve\"]"));
    let cli = std::fs::read_to_string(root.join("app/src/cli.rs")).expect("the app's CLI");
    assert!(
        cli.contains("with_worker: bool"),
        "oponn serve --with-worker"
    );
}

/// Every IAM statement in every template: (template, resource, statement).
fn allow_statements() -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for template in all() {
        for (id, resource) in template.resources() {
            let properties = &resource["Properties"];
            let mut documents: Vec<&Value> = properties["Policies"]
                .as_array()
                .map(|policies| {
                    policies
                        .iter()
                        .map(|policy| &policy["PolicyDocument"])
                        .collect()
                })
                .unwrap_or_default();
            if resource["Type"] == "AWS::IAM::Policy"
                || resource["Type"] == "AWS::IAM::ManagedPolicy"
            {
                documents.push(&properties["PolicyDocument"]);
            }
            for document in documents {
                for statement in as_list(&document["Statement"]) {
                    if statement["Effect"] == "Allow" {
                        found.push((template.path.display().to_string(), id.clone(), statement));
                    }
                }
            }
        }
    }
    found
}

#[test]
fn no_iam_statement_allows_a_wildcard_action_on_every_resource() {
    let statements = allow_statements();
    assert!(
        statements.len() >= 10,
        "found the statements: {}",
        statements.len()
    );
    for (path, id, statement) in statements {
        let actions = as_list(&statement["Action"]);
        let resources = as_list(&statement["Resource"]);
        assert!(!actions.contains(&json!("*")), "{path} {id}: Action *");
        if resources.contains(&json!("*")) {
            for action in actions {
                let action = action.as_str().unwrap_or_default();
                assert!(!action.contains('*'), "{path} {id}: {action} on *");
            }
        }
    }
}

#[test]
fn every_import_names_an_export_of_the_stack_it_imports_from() {
    let exports_of = |template: &Template| -> Vec<String> {
        template.document["Outputs"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|output| output["Export"]["Name"]["Fn::Sub"].as_str())
            .map(|name| name.trim_start_matches("${AWS::StackName}-").to_owned())
            .collect()
    };
    let network = exports_of(&load("network.yaml"));
    let cluster = exports_of(&load("cluster.yaml"));
    let queue = exports_of(&load("queue.yaml"));
    let cache = exports_of(&load("cache.yaml"));
    let mut imports = Vec::new();
    for template in all() {
        collect_imports(&template.document["Resources"], &mut imports);
    }
    assert!(imports.len() >= 9, "{imports:?}");
    for import in imports {
        let (stack, name) = import.split_once("}-").expect("${Stack}-Name");
        let exports = match stack {
            "${NetworkStack" => &network,
            "${ClusterStack" => &cluster,
            "${QueueStack" => &queue,
            "${CacheStack" => &cache,
            other => panic!("an import from an unknown stack: {other}"),
        };
        assert!(
            exports.contains(&name.to_owned()),
            "{import} is not exported"
        );
    }
}

fn collect_imports(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            if let Some(Value::Object(import)) = object.get("Fn::ImportValue") {
                if let Some(Value::String(name)) = import.get("Fn::Sub") {
                    found.push(name.clone());
                }
            }
            object
                .values()
                .for_each(|child| collect_imports(child, found));
        }
        Value::Array(items) => items.iter().for_each(|child| collect_imports(child, found)),
        _ => {}
    }
}

#[test]
fn data_bearing_resources_survive_their_stack() {
    let pipeline = load("pipeline.yaml");
    let (_, bucket) = only(&pipeline, "AWS::S3::Bucket");
    assert_eq!(bucket["DeletionPolicy"], "Retain");
    let block = &bucket["Properties"]["PublicAccessBlockConfiguration"];
    for setting in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(block[setting], true, "{setting}");
    }
}

#[test]
fn ecs_replaces_a_task_whose_probe_fails_and_gives_it_time_to_drain() {
    let service = load("service.yaml");
    let (_, task) = only(&service, "AWS::ECS::TaskDefinition");
    let container = &task["Properties"]["ContainerDefinitions"][0];
    assert_eq!(
        container["HealthCheck"]["Command"],
        json!(["CMD", "/usr/local/bin/oponn", "probe"])
    );
    assert!(container["StopTimeout"].as_u64().unwrap_or(0) >= 20);
}

#[test]
fn log_groups_expire_their_logs() {
    let groups: Vec<(String, Value)> = all()
        .iter()
        .flat_map(|template| {
            template
                .resources_of_type("AWS::Logs::LogGroup")
                .map(|(id, group)| (id.to_owned(), group.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(groups.len(), 2, "the service's and the build's");
    for (id, group) in groups {
        assert!(group["Properties"]["RetentionInDays"].is_u64(), "{id}");
    }
}

#[test]
fn the_dockerfile_is_multi_stage_non_root_probed_and_signal_safe() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../Dockerfile");
    let text = std::fs::read_to_string(path).expect("the Dockerfile");
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect();
    assert!(
        lines
            .iter()
            .filter(|line| line.starts_with("FROM "))
            .count()
            >= 2,
        "build and runtime stages"
    );
    let user = lines
        .iter()
        .rev()
        .find(|line| line.starts_with("USER "))
        .expect("a USER");
    assert!(!user.contains("root") && !user.ends_with(" 0"), "{user}");
    assert!(lines.iter().any(|line| line.starts_with("HEALTHCHECK")));
    assert!(text.contains("CMD [\"/usr/local/bin/oponn\", \"probe\"]"));
    let entrypoint = lines
        .iter()
        .find(|line| line.starts_with("ENTRYPOINT"))
        .expect("an entrypoint");
    assert!(
        entrypoint.contains('['),
        "exec form, so SIGTERM reaches oponn: {entrypoint}"
    );
    // The dependency layer is built from the manifests alone, before the sources are copied.
    let manifests = text
        .find("COPY Cargo.toml Cargo.lock")
        .expect("manifests copied");
    let sources = text.find("COPY app app").expect("sources copied");
    assert!(manifests < sources);
}

#[test]
fn the_cache_is_one_shard_with_a_replica_in_a_second_az_that_takes_over() {
    let cache = load("cache.yaml");
    let (_, group) = only(&cache, "AWS::ElastiCache::ReplicationGroup");
    let properties = &group["Properties"];
    // Cluster mode disabled: the app's scripts and MGETs touch several keys in one call.
    assert_eq!(properties["NumCacheClusters"], 2, "a primary and a replica");
    for cluster_mode in [
        "NumNodeGroups",
        "ReplicasPerNodeGroup",
        "NodeGroupConfiguration",
    ] {
        assert!(properties.get(cluster_mode).is_none(), "{cluster_mode}");
    }
    assert!(properties.get("ClusterMode").is_none());
    assert_eq!(properties["AutomaticFailoverEnabled"], true);
    assert_eq!(properties["MultiAZEnabled"], true);
    assert_eq!(properties["Port"], 6379);
}

#[test]
fn the_cache_speaks_only_tls_is_encrypted_and_asks_for_a_generated_token() {
    let cache = load("cache.yaml");
    let (_, group) = only(&cache, "AWS::ElastiCache::ReplicationGroup");
    let properties = &group["Properties"];
    assert_eq!(properties["TransitEncryptionEnabled"], true);
    // Absent on create means TLS only; "preferred" would also take plain text.
    assert!(properties.get("TransitEncryptionMode").is_none());
    assert_eq!(properties["AtRestEncryptionEnabled"], true);
    assert_eq!(
        properties["AuthToken"],
        json!({"Fn::Sub": "{{resolve:secretsmanager:${AuthToken}}}"}),
        "the token is only ever a dynamic reference"
    );
    let token = &cache.resource("AuthToken").unwrap()["Properties"];
    let generated = &token["GenerateSecretString"];
    // Letters and digits only: no escaping in a URL, none of ElastiCache's refused characters.
    assert_eq!(generated["ExcludePunctuation"], true);
    assert_eq!(generated["IncludeSpace"], false);
    let length = generated["PasswordLength"].as_u64().unwrap();
    assert!((16..=128).contains(&length), "ElastiCache takes 16 to 128");
    assert!(token.get("SecretString").is_none());
}

#[test]
fn the_cache_lives_in_the_private_subnets_reachable_only_from_the_instances() {
    let cache = load("cache.yaml");
    let (_, subnets) = only(&cache, "AWS::ElastiCache::SubnetGroup");
    assert_eq!(
        subnets["Properties"]["SubnetIds"]["Fn::Split"][1],
        json!({"Fn::ImportValue": {"Fn::Sub": "${NetworkStack}-PrivateSubnets"}})
    );
    let (group_id, group) = only(&cache, "AWS::EC2::SecurityGroup");
    let ingress = as_list(&group["Properties"]["SecurityGroupIngress"]);
    assert_eq!(ingress.len(), 1, "{ingress:?}");
    let rule = &ingress[0];
    assert_eq!(rule["IpProtocol"], "tcp");
    assert_eq!(
        (&rule["FromPort"], &rule["ToPort"]),
        (&json!(6379), &json!(6379))
    );
    assert_eq!(
        rule["SourceSecurityGroupId"],
        json!({"Fn::ImportValue": {"Fn::Sub": "${ClusterStack}-InstanceSecurityGroupId"}})
    );
    assert!(rule.get("CidrIp").is_none() && rule.get("CidrIpv6").is_none());
    let (_, replication) = only(&cache, "AWS::ElastiCache::ReplicationGroup");
    assert_eq!(
        replication["Properties"]["SecurityGroupIds"],
        json!([{"Ref": group_id}])
    );
    // And the private subnets are in two AZs.
    let network = load("network.yaml");
    for (subnet, zone) in [("PrivateSubnetA", 0), ("PrivateSubnetB", 1)] {
        let properties = &network.resource(subnet).unwrap()["Properties"];
        assert_eq!(
            properties["AvailabilityZone"],
            json!({"Fn::Select": [zone, {"Fn::GetAZs": ""}]})
        );
        assert!(properties.get("MapPublicIpOnLaunch").is_none());
    }
}

#[test]
fn the_caches_url_secret_is_rediss_with_the_token_and_the_primary_endpoint() {
    let cache = load("cache.yaml");
    let url = &cache.resource("RedisUrl").unwrap()["Properties"]["SecretString"]["Fn::Sub"];
    let url = url.as_str().expect("a Fn::Sub string");
    assert_eq!(
        url,
        "rediss://:{{resolve:secretsmanager:${AuthToken}}}@${ReplicationGroup.PrimaryEndPoint.Address}:${ReplicationGroup.PrimaryEndPoint.Port}"
    );
    // The app reads REDIS_URL and speaks TLS for rediss:// (app/src/config.rs).
    let app_config = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../app/src/config.rs"),
    )
    .expect("the app's config");
    assert!(app_config.contains("vars.secret(\"REDIS_URL\")"));
    assert!(app_config.contains("rediss://"));
    // No fixed names: a deleted secret keeps its name through its recovery window, and a
    // cache stack made again after `down` would collide with it.
    for (id, secret) in cache.resources_of_type("AWS::SecretsManager::Secret") {
        assert!(
            secret["Properties"].get("Name").is_none(),
            "{id} has a Name"
        );
    }
    let output = &cache.document["Outputs"]["RedisUrlSecretArn"];
    assert_eq!(output["Value"], json!({"Ref": "RedisUrl"}));
    // The service's execution role may read it when the cache is managed.
    let service = load("service.yaml");
    let role = service.resource("TaskExecutionRole").unwrap();
    let resources =
        &role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]["Resource"];
    assert!(as_list(resources).contains(&json!({"Fn::If": [
        "ManagedCache",
        {"Fn::ImportValue": {"Fn::Sub": "${CacheStack}-RedisUrlSecretArn"}},
        {"Ref": "RedisUrlSecretArn"}
    ]})));
}

#[test]
fn nat_is_one_gateway_with_an_exported_elastic_ip_and_the_private_subnets_route_through_it() {
    let network = load("network.yaml");
    let condition = json!({"Fn::Equals": [{"Ref": "Nat"}, "true"]});
    assert_eq!(network.document["Conditions"]["UseNat"], condition);
    let (address_id, address) = only(&network, "AWS::EC2::EIP");
    let (gateway_id, gateway) = only(&network, "AWS::EC2::NatGateway");
    for resource in [address, gateway] {
        assert_eq!(resource["Condition"], "UseNat");
    }
    assert_eq!(address["Properties"]["Domain"], "vpc");
    let properties = &gateway["Properties"];
    assert_eq!(
        properties["AllocationId"],
        json!({"Fn::GetAtt": [address_id, "AllocationId"]})
    );
    // A public NAT gateway sits in a public subnet.
    assert_eq!(properties["SubnetId"], json!({"Ref": "PublicSubnetA"}));
    let route = network.resource("PrivateDefaultRoute").expect("a route");
    assert_eq!(route["Condition"], "UseNat");
    assert_eq!(
        route["Properties"]["RouteTableId"],
        json!({"Ref": "PrivateRouteTable"})
    );
    assert_eq!(
        route["Properties"]["NatGatewayId"],
        json!({"Ref": gateway_id})
    );
    assert_eq!(route["Properties"]["DestinationCidrBlock"], "0.0.0.0/0");
    let output = &network.document["Outputs"]["NatPublicIp"];
    assert_eq!(output["Condition"], "UseNat");
    assert_eq!(output["Value"], json!({"Ref": address_id}));
    assert_eq!(
        output["Export"]["Name"],
        json!({"Fn::Sub": "${AWS::StackName}-NatPublicIp"})
    );
}

#[test]
fn with_nat_the_instances_run_in_the_private_subnets() {
    let cluster = load("cluster.yaml");
    assert_eq!(
        cluster.document["Conditions"]["InPrivateSubnets"],
        json!({"Fn::Equals": [{"Ref": "Nat"}, "true"]})
    );
    let (_, group) = only(&cluster, "AWS::AutoScaling::AutoScalingGroup");
    let choice = &group["Properties"]["VPCZoneIdentifier"]["Fn::If"];
    assert_eq!(choice[0], "InPrivateSubnets");
    let subnets = |branch: &Value| branch["Fn::Split"][1]["Fn::ImportValue"]["Fn::Sub"].clone();
    assert_eq!(subnets(&choice[1]), "${NetworkStack}-PrivateSubnets");
    assert_eq!(subnets(&choice[2]), "${NetworkStack}-PublicSubnets");
    // The launch template never asks for a public address: the subnet decides.
    let (_, template) = only(&cluster, "AWS::EC2::LaunchTemplate");
    assert!(template["Properties"]["LaunchTemplateData"]
        .get("NetworkInterfaces")
        .is_none());
}

#[test]
fn containers_cannot_reach_the_instance_role_and_are_told_their_region() {
    let cluster = load("cluster.yaml");
    let (_, template) = only(&cluster, "AWS::EC2::LaunchTemplate");
    let metadata = &template["Properties"]["LaunchTemplateData"]["MetadataOptions"];
    assert_eq!(metadata["HttpTokens"], "required");
    assert_eq!(metadata["HttpPutResponseHopLimit"], 1);
    // So the SDK in a task finds its region in the environment, not from IMDS; its
    // credentials come from the task role (only the SQS queue needs any).
    let service = load("service.yaml");
    let (_, task) = only(&service, "AWS::ECS::TaskDefinition");
    let container = &task["Properties"]["ContainerDefinitions"][0];
    for environment in environments(container) {
        assert_eq!(
            variable(&environment, "AWS_REGION"),
            Some(&json!({"Ref": "AWS::Region"}))
        );
    }
}

#[test]
fn the_service_alarms_on_5xx_unhealthy_targets_cpu_and_memory_to_one_topic() {
    let service = load("service.yaml");
    let (topic_id, _) = only(&service, "AWS::SNS::Topic");
    let alarms: Vec<(&str, &Value)> = service
        .resources_of_type("AWS::CloudWatch::Alarm")
        .collect();
    let metric = |name: &str| -> &Value {
        alarms
            .iter()
            .map(|(_, alarm)| &alarm["Properties"])
            .find(|properties| properties["MetricName"] == name)
            .unwrap_or_else(|| panic!("no alarm on {name}"))
    };
    for (name, namespace) in [
        ("HTTPCode_ELB_5XX_Count", "AWS/ApplicationELB"),
        ("HTTPCode_Target_5XX_Count", "AWS/ApplicationELB"),
        ("UnHealthyHostCount", "AWS/ApplicationELB"),
        ("CPUUtilization", "AWS/ECS"),
        ("MemoryUtilization", "AWS/ECS"),
    ] {
        let properties = metric(name);
        assert_eq!(properties["Namespace"], namespace, "{name}");
        assert_eq!(
            properties["AlarmActions"],
            json!([{"Ref": topic_id}]),
            "{name}"
        );
        assert_eq!(
            properties["OKActions"],
            json!([{"Ref": topic_id}]),
            "{name}"
        );
        assert_eq!(properties["TreatMissingData"], "notBreaching", "{name}");
    }
    assert_eq!(alarms.len(), 5);
    // The dimensions name this deployment's load balancer, target group and service.
    let dimension = |properties: &Value, name: &str| -> Value {
        as_list(&properties["Dimensions"])
            .into_iter()
            .find(|dimension| dimension["Name"] == name)
            .map(|dimension| dimension["Value"].clone())
            .unwrap_or_else(|| panic!("no {name} dimension"))
    };
    let load_balancer = json!({"Fn::GetAtt": ["LoadBalancer", "LoadBalancerFullName"]});
    assert_eq!(
        dimension(metric("HTTPCode_ELB_5XX_Count"), "LoadBalancer"),
        load_balancer
    );
    assert_eq!(
        dimension(metric("UnHealthyHostCount"), "TargetGroup"),
        json!({"Fn::GetAtt": ["TargetGroup", "TargetGroupFullName"]})
    );
    for name in ["CPUUtilization", "MemoryUtilization"] {
        assert_eq!(
            dimension(metric(name), "ServiceName"),
            json!({"Fn::GetAtt": ["Service", "Name"]})
        );
        assert_eq!(
            dimension(metric(name), "ClusterName"),
            json!({"Fn::ImportValue": {"Fn::Sub": "${ClusterStack}-ClusterName"}})
        );
    }
    // An email subscription only when an address is given.
    let (_, subscription) = only(&service, "AWS::SNS::Subscription");
    assert_eq!(subscription["Condition"], "HasAlarmEmail");
    assert_eq!(subscription["Properties"]["Protocol"], "email");
    assert_eq!(
        subscription["Properties"]["TopicArn"],
        json!({"Ref": topic_id})
    );
    assert_eq!(service.document["Parameters"]["AlarmEmail"]["Default"], "");
}

#[test]
fn with_a_hosted_zone_the_service_requests_a_dns_validated_certificate_and_aliases_its_domain() {
    let service = load("service.yaml");
    let (certificate_id, certificate) = only(&service, "AWS::CertificateManager::Certificate");
    assert_eq!(certificate["Condition"], "RequestsCertificate");
    let properties = &certificate["Properties"];
    assert_eq!(properties["DomainName"], json!({"Ref": "Domain"}));
    assert_eq!(properties["ValidationMethod"], "DNS");
    assert_eq!(
        properties["DomainValidationOptions"],
        json!([{"DomainName": {"Ref": "Domain"}, "HostedZoneId": {"Ref": "HostedZoneId"}}])
    );

    let (_, record) = only(&service, "AWS::Route53::RecordSet");
    assert_eq!(record["Condition"], "HasHostedZone");
    let record = &record["Properties"];
    assert_eq!(record["Type"], "A");
    assert_eq!(record["Name"], json!({"Ref": "Domain"}));
    assert_eq!(
        record["AliasTarget"]["DNSName"],
        json!({"Fn::GetAtt": ["LoadBalancer", "DNSName"]})
    );
    assert_eq!(
        record["AliasTarget"]["HostedZoneId"],
        json!({"Fn::GetAtt": ["LoadBalancer", "CanonicalHostedZoneID"]})
    );

    // The HTTPS listener serves the requested certificate, or the one given.
    let https = service.resources()["HttpsListener"].clone();
    assert_eq!(https["Condition"], "ServesHttps");
    assert_eq!(
        https["Properties"]["Certificates"],
        json!([{"CertificateArn": {"Fn::If": [
            "RequestsCertificate", {"Ref": certificate_id}, {"Ref": "CertificateArn"}
        ]}}])
    );
    // The URL `verify` reads is the domain's when there is one.
    let url = &service.document["Outputs"]["Url"]["Value"]["Fn::If"];
    assert_eq!(url[0], "HasDomain");
    assert_eq!(url[1], json!({"Fn::Sub": "https://${Domain}"}));
    assert_eq!(url[2]["Fn::If"][0], "ServesHttps");
    for parameter in ["Domain", "HostedZoneId", "CertificateArn"] {
        assert_eq!(
            service.document["Parameters"][parameter]["Default"], "",
            "{parameter}: plain HTTP unless configured"
        );
    }
}

#[test]
fn a_failed_pipeline_run_notifies_the_pipelines_topic() {
    let pipeline = load("pipeline.yaml");
    let (topic_id, _) = only(&pipeline, "AWS::SNS::Topic");
    let (rule_id, rule) = only(&pipeline, "AWS::Events::Rule");
    let properties = &rule["Properties"];
    assert_eq!(properties["State"], "ENABLED");
    assert_eq!(
        properties["EventPattern"],
        json!({
            "source": ["aws.codepipeline"],
            "detail-type": ["CodePipeline Pipeline Execution State Change"],
            "detail": {"pipeline": [{"Ref": "Pipeline"}], "state": ["FAILED"]}
        })
    );
    assert_eq!(
        properties["Targets"],
        json!([{"Id": "pipeline-topic", "Arn": {"Ref": topic_id}}])
    );

    // EventBridge may publish to the topic, for this rule only.
    let (_, policy) = only(&pipeline, "AWS::SNS::TopicPolicy");
    assert_eq!(policy["Properties"]["Topics"], json!([{"Ref": topic_id}]));
    let statement = &as_list(&policy["Properties"]["PolicyDocument"]["Statement"])[0];
    assert_eq!(statement["Effect"], "Allow");
    assert_eq!(
        statement["Principal"],
        json!({"Service": "events.amazonaws.com"})
    );
    assert_eq!(statement["Action"], "sns:Publish");
    assert_eq!(statement["Resource"], json!({"Ref": topic_id}));
    assert_eq!(
        statement["Condition"]["ArnEquals"]["aws:SourceArn"],
        json!({"Fn::GetAtt": [rule_id, "Arn"]})
    );

    // Mailed only when deploy.toml's [alarms] email is given.
    let (_, subscription) = only(&pipeline, "AWS::SNS::Subscription");
    assert_eq!(subscription["Condition"], "HasAlarmEmail");
    assert_eq!(subscription["Properties"]["Protocol"], "email");
    assert_eq!(pipeline.document["Parameters"]["AlarmEmail"]["Default"], "");
}
