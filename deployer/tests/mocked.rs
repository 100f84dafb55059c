//! The deployer against the SDK's test doubles, for what moto does not model: the change-set
//! diff with modifications and replacements, following stack events through a rollback, the
//! verify step (service steady, targets healthy, pipeline state), release, rollout with the
//! circuit breaker rolling back, rollback, and the no-change and stuck-stack paths. The
//! responses carry the shapes of the AWS API references' examples.

mod support;

use aws_sdk_cloudformation::{
    operation::{
        create_change_set::CreateChangeSetOutput, delete_change_set::DeleteChangeSetOutput,
        describe_change_set::DescribeChangeSetOutput,
        describe_stack_events::DescribeStackEventsOutput, describe_stacks::DescribeStacksOutput,
        get_template::GetTemplateOutput,
    },
    types::{
        Change, ChangeAction, ChangeSetStatus, ChangeSetType, Replacement, RequiresRecreation,
        ResourceAttribute, ResourceChange as SdkResourceChange, ResourceChangeDetail,
        ResourceTargetDefinition,
    },
    Client as CloudFormation,
};
use aws_sdk_cloudwatchlogs::{
    operation::{
        describe_log_streams::DescribeLogStreamsOutput, get_log_events::GetLogEventsOutput,
    },
    types::{LogStream, OutputLogEvent},
    Client as Logs,
};
use aws_sdk_codepipeline::{
    operation::list_pipeline_executions::ListPipelineExecutionsOutput,
    operation::{
        get_pipeline_execution::GetPipelineExecutionOutput,
        get_pipeline_state::GetPipelineStateOutput,
        start_pipeline_execution::StartPipelineExecutionOutput,
    },
    types::{
        ArtifactRevision, PipelineExecution, PipelineExecutionStatus, PipelineExecutionSummary,
    },
    Client as CodePipeline,
};
use aws_sdk_codestarconnections::{
    operation::get_connection::GetConnectionOutput,
    types::{Connection, ConnectionStatus},
    Client as Connections,
};
use aws_sdk_ecs::{
    operation::{
        describe_services::DescribeServicesOutput,
        describe_task_definition::DescribeTaskDefinitionOutput,
        describe_tasks::DescribeTasksOutput, list_task_definitions::ListTaskDefinitionsOutput,
        list_tasks::ListTasksOutput, register_task_definition::RegisterTaskDefinitionOutput,
        update_service::UpdateServiceOutput,
    },
    types::{Container, ContainerDefinition, Task, TaskDefinition},
    Client as Ecs,
};
use aws_sdk_elasticloadbalancingv2::{
    operation::describe_target_health::DescribeTargetHealthOutput, Client as Elb,
};
use aws_sdk_iam::{
    operation::{
        create_service_linked_role::CreateServiceLinkedRoleOutput, get_role::GetRoleOutput,
    },
    Client as Iam,
};
use aws_sdk_secretsmanager::{
    operation::describe_secret::DescribeSecretOutput, Client as SecretsManager,
};
use aws_smithy_mocks::{mock, Rule};
use deployer::{
    cloudformation::{self, EventFollower, Operation},
    commands::{Deployer, UpOptions},
    console::Console,
    error::DeployError,
    pace::Pace,
    plan::PlanAction,
    stacks::{self, Layer},
};
use support::{balancer::LoadBalancer, config, deployer, doubles::*};

const REPOSITORY: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/oponn-dev";
const TARGET_GROUP: &str =
    "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/oponn-dev/6d0ecf831eec9f09";
const CONNECTION: &str = "arn:aws:codestar-connections:eu-west-1:123456789012:connection/39e4c34d-e13a-4e94-a886-ea67651bf042";

fn pace() -> Pace {
    Pace::immediate(std::time::Duration::from_secs(10))
}

/// DescribeStacks for the pipeline and service stacks, with the outputs the commands read.
fn stacks_with_outputs() -> Rule {
    // Nothing listens there: only `verify` reads the service's URL, and its tests give one.
    stacks_with_outputs_at("http://127.0.0.1:9")
}

/// [`stacks_with_outputs`], the service's `Url` output being `url` (a [`LoadBalancer`]).
fn stacks_with_outputs_at(url: &str) -> Rule {
    let url = url.to_owned();
    mock!(CloudFormation::describe_stacks).then_compute_output(move |request| {
        let name = request.stack_name().unwrap_or_default().to_owned();
        let outputs: &[(&str, &str)] = match name.as_str() {
            "oponn-dev-pipeline" => &[
                ("RepositoryUri", REPOSITORY),
                ("ConnectionArn", CONNECTION),
                ("PipelineName", "oponn-dev"),
            ],
            "oponn-dev-service" => &[
                ("TargetGroupArn", TARGET_GROUP),
                ("ServiceName", "oponn-dev"),
                ("Url", url.as_str()),
            ],
            _ => &[],
        };
        DescribeStacksOutput::builder()
            .stacks(stack(&name, "UPDATE_COMPLETE", &[], outputs))
            .build()
    })
}

fn connection(status: ConnectionStatus) -> Rule {
    mock!(Connections::get_connection).then_compute_output(move |_| {
        GetConnectionOutput::builder()
            .connection(
                Connection::builder()
                    .connection_name("oponn-dev-github")
                    .connection_arn(CONNECTION)
                    .connection_status(status.clone())
                    .build(),
            )
            .build()
    })
}

// ---- plan: change sets -------------------------------------------------------------------

#[tokio::test]
async fn a_change_set_with_a_replacement_is_shown_as_a_diff_and_deleted_afterwards() {
    let config = config();
    let spec = stacks::spec(&config, Layer::Service, &format!("{REPOSITORY}:new")).expect("spec");
    let mut deployed: Vec<(String, String)> = spec.parameters.clone().into_iter().collect();
    for (key, value) in &mut deployed {
        if key == "ImageUri" {
            *value = format!("{REPOSITORY}:old");
        }
    }
    let body = spec.template.body.clone();
    let describe = mock!(CloudFormation::describe_stacks).then_output(move || {
        let pairs: Vec<(&str, &str)> = deployed
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        DescribeStacksOutput::builder()
            .stacks(stack("oponn-dev-service", "UPDATE_COMPLETE", &pairs, &[]))
            .build()
    });
    let template = mock!(CloudFormation::get_template).then_output(move || {
        GetTemplateOutput::builder()
            .template_body(body.clone())
            .build()
    });
    let create = mock!(CloudFormation::create_change_set).then_output(|| {
        CreateChangeSetOutput::builder()
            .id("arn:aws:cloudformation:eu-west-1:123456789012:changeSet/deployer-plan/1")
            .build()
    });
    let changes = mock!(CloudFormation::describe_change_set)
        .sequence()
        .output(|| {
            DescribeChangeSetOutput::builder()
                .status(ChangeSetStatus::CreateInProgress)
                .build()
        })
        .output(|| {
            DescribeChangeSetOutput::builder()
                .status(ChangeSetStatus::CreateComplete)
                .changes(modify(
                    "TaskDefinition",
                    "AWS::ECS::TaskDefinition",
                    Replacement::True,
                    "ContainerDefinitions",
                    RequiresRecreation::Always,
                    "ImageUri",
                ))
                .changes(modify(
                    "Service",
                    "AWS::ECS::Service",
                    Replacement::False,
                    "TaskDefinition",
                    RequiresRecreation::Never,
                    "TaskDefinition",
                ))
                .build()
        })
        .build();
    let delete = mock!(CloudFormation::delete_change_set)
        .then_output(|| DeleteChangeSetOutput::builder().build());
    let rules = Rules {
        cloudformation: vec![&describe, &template, &create, &changes, &delete],
        ..Rules::default()
    };
    let deployer = deployer(config, rules.aws());

    let plan = deployer.plan_stack(&spec).await.expect("plan");

    let PlanAction::Update {
        parameters,
        resources,
        template_changes,
    } = &plan.action
    else {
        panic!("an update: {plan}");
    };
    assert_eq!(parameters.len(), 1);
    assert_eq!(parameters[0].name, "ImageUri");
    assert!(template_changes.is_empty());
    assert_eq!(resources.len(), 2);
    assert!(plan.replaces_something());
    let text = plan.to_string();
    let task_line = text
        .lines()
        .find(|line| line.contains("~ TaskDefinition"))
        .expect(&text);
    assert!(
        task_line.contains("Modify") && task_line.contains("REPLACED"),
        "{text}"
    );
    let service_line = text
        .lines()
        .find(|line| line.contains("~ Service "))
        .expect(&text);
    assert!(!service_line.contains("REPLACED"), "{text}");
    assert!(
        text.contains("Properties.ContainerDefinitions (recreation: Always) <- ImageUri"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "parameter ImageUri: {REPOSITORY}:old -> {REPOSITORY}:new"
        )),
        "{text}"
    );
    assert_eq!(
        changes.num_calls(),
        2,
        "polled until the change set was complete"
    );
    assert_eq!(delete.num_calls(), 1, "the plan's change set is deleted");
}

fn modify(
    id: &str,
    kind: &str,
    replacement: Replacement,
    property: &str,
    recreation: RequiresRecreation,
    cause: &str,
) -> Change {
    Change::builder()
        .r#type("Resource".into())
        .resource_change(
            SdkResourceChange::builder()
                .action(ChangeAction::Modify)
                .logical_resource_id(id)
                .physical_resource_id(format!("{id}-physical"))
                .resource_type(kind)
                .replacement(replacement)
                .details(
                    ResourceChangeDetail::builder()
                        .target(
                            ResourceTargetDefinition::builder()
                                .attribute(ResourceAttribute::Properties)
                                .name(property)
                                .requires_recreation(recreation)
                                .build(),
                        )
                        .causing_entity(cause)
                        .build(),
                )
                .build(),
        )
        .build()
}

#[tokio::test]
async fn an_update_without_changes_is_no_change_and_leaves_no_change_set() {
    let config = config();
    let spec = stacks::spec(&config, Layer::Network, "").expect("spec");
    let parameters: Vec<(String, String)> = spec.parameters.clone().into_iter().collect();
    let body = spec.template.body.clone();
    let describe = mock!(CloudFormation::describe_stacks).then_output(move || {
        let pairs: Vec<(&str, &str)> = parameters
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        DescribeStacksOutput::builder()
            .stacks(stack("oponn-dev-network", "UPDATE_COMPLETE", &pairs, &[]))
            .build()
    });
    let template = mock!(CloudFormation::get_template).then_output(move || {
        GetTemplateOutput::builder()
            .template_body(body.clone())
            .build()
    });
    let create = mock!(CloudFormation::create_change_set)
        .then_output(|| CreateChangeSetOutput::builder().id("cs-1").build());
    let failed = mock!(CloudFormation::describe_change_set).then_output(|| {
        DescribeChangeSetOutput::builder()
            .status(ChangeSetStatus::Failed)
            .status_reason("The submitted information didn't contain changes. Submit different information to create a change set.")
            .build()
    });
    let delete = mock!(CloudFormation::delete_change_set)
        .then_output(|| DeleteChangeSetOutput::builder().build());
    let rules = Rules {
        cloudformation: vec![&describe, &template, &create, &failed, &delete],
        ..Rules::default()
    };
    let deployer = deployer(config, rules.aws());

    let plan = deployer.plan_stack(&spec).await.expect("plan");

    assert_eq!(plan.action, PlanAction::NoChange);
    assert_eq!(plan.to_string().trim(), "= oponn-dev-network: no change");
    assert_eq!(delete.num_calls(), 1);
}

// ---- following stack events ---------------------------------------------------------------

/// DescribeStackEvents answering each page in turn, the last one from then on.
fn events_rule(pages: Vec<Vec<aws_sdk_cloudformation::types::StackEvent>>) -> Rule {
    let mut sequence = mock!(CloudFormation::describe_stack_events).sequence();
    for page in pages {
        sequence = sequence.output(move || {
            DescribeStackEventsOutput::builder()
                .set_stack_events(Some(page.clone()))
                .build()
        });
    }
    sequence.repeatedly().build()
}

fn statuses_rule(name: &'static str, statuses: &[&'static str]) -> Rule {
    let mut sequence = mock!(CloudFormation::describe_stacks).sequence();
    for status in statuses.iter().copied() {
        sequence = sequence.output(move || {
            DescribeStacksOutput::builder()
                .stacks(stack(name, status, &[], &[]))
                .build()
        });
    }
    sequence.repeatedly().build()
}

/// Newest first, as DescribeStackEvents returns them.
fn newest_first(
    mut events: Vec<aws_sdk_cloudformation::types::StackEvent>,
) -> Vec<aws_sdk_cloudformation::types::StackEvent> {
    events.reverse();
    events
}

#[tokio::test]
async fn a_failed_create_reports_its_first_failure_after_cloudformation_rolls_it_back() {
    let name = "oponn-dev-service";
    let all = vec![
        event(name, 1, name, "AWS::CloudFormation::Stack", "CREATE_IN_PROGRESS", Some("User Initiated")),
        event(name, 2, "LogGroup", "AWS::Logs::LogGroup", "CREATE_COMPLETE", None),
        event(name, 3, "TaskDefinition", "AWS::ECS::TaskDefinition", "CREATE_FAILED",
            Some("Resource handler returned message: \"Invalid request provided: Create TaskDefinition: Container.image should not be null or empty.\"")),
        event(name, 4, "TargetGroup", "AWS::ElasticLoadBalancingV2::TargetGroup", "CREATE_FAILED", Some("Resource creation cancelled")),
        event(name, 5, name, "AWS::CloudFormation::Stack", "ROLLBACK_IN_PROGRESS",
            Some("The following resource(s) failed to create: [TaskDefinition, TargetGroup]. Rollback requested by user.")),
        event(name, 6, "LogGroup", "AWS::Logs::LogGroup", "DELETE_COMPLETE", None),
        event(name, 7, name, "AWS::CloudFormation::Stack", "ROLLBACK_COMPLETE", None),
    ];
    let events = events_rule(vec![
        vec![],
        newest_first(all[..2].to_vec()),
        newest_first(all[..5].to_vec()),
        newest_first(all.clone()),
    ]);
    let statuses = statuses_rule(
        name,
        &[
            "CREATE_IN_PROGRESS",
            "ROLLBACK_IN_PROGRESS",
            "ROLLBACK_COMPLETE",
        ],
    );
    let rules = Rules {
        cloudformation: vec![&events, &statuses],
        ..Rules::default()
    };
    let aws = rules.aws();
    let console = Console::capture();

    let mut follower = EventFollower::start(&aws.cloudformation, name, 12).await;
    let error = cloudformation::follow(
        &aws.cloudformation,
        &mut follower,
        name,
        Operation::Create,
        &console,
        pace(),
    )
    .await
    .expect_err("the create failed");

    let DeployError::StackFailed { status, reason, .. } = &error else {
        panic!("{error}")
    };
    assert_eq!(status, "ROLLBACK_COMPLETE");
    assert!(
        reason.starts_with("TaskDefinition (AWS::ECS::TaskDefinition) CREATE_FAILED"),
        "{reason}"
    );
    assert!(
        reason.contains("Container.image should not be null"),
        "{reason}"
    );
    let text = console.text();
    assert_eq!(text.lines().count(), all.len(), "each event once:\n{text}");
    let first = text.find("CREATE_IN_PROGRESS").expect(&text);
    let failed = text.find("CREATE_FAILED").expect(&text);
    let rolled_back = text.find("ROLLBACK_COMPLETE").expect(&text);
    assert!(
        first < failed && failed < rolled_back,
        "oldest first:\n{text}"
    );
}

#[tokio::test]
async fn an_update_streams_each_event_once_with_progress_until_it_completes() {
    let name = "oponn-dev-cluster";
    let old = event(
        name,
        0,
        name,
        "AWS::CloudFormation::Stack",
        "CREATE_COMPLETE",
        None,
    );
    let all = [
        event(
            name,
            1,
            name,
            "AWS::CloudFormation::Stack",
            "UPDATE_IN_PROGRESS",
            Some("User Initiated"),
        ),
        event(
            name,
            2,
            "LaunchTemplate",
            "AWS::EC2::LaunchTemplate",
            "UPDATE_IN_PROGRESS",
            None,
        ),
        event(
            name,
            3,
            "LaunchTemplate",
            "AWS::EC2::LaunchTemplate",
            "UPDATE_COMPLETE",
            None,
        ),
        event(
            name,
            4,
            "AutoScalingGroup",
            "AWS::AutoScaling::AutoScalingGroup",
            "UPDATE_COMPLETE",
            None,
        ),
        event(
            name,
            5,
            name,
            "AWS::CloudFormation::Stack",
            "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
            None,
        ),
        event(
            name,
            6,
            name,
            "AWS::CloudFormation::Stack",
            "UPDATE_COMPLETE",
            None,
        ),
    ];
    let with_old = |count: usize| {
        let mut page = all[..count].to_vec();
        page.insert(0, old.clone());
        newest_first(page)
    };
    let events = events_rule(vec![
        vec![old.clone()],
        with_old(2),
        with_old(4),
        with_old(6),
    ]);
    let statuses = statuses_rule(
        name,
        &[
            "UPDATE_IN_PROGRESS",
            "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
            "UPDATE_COMPLETE",
        ],
    );
    let rules = Rules {
        cloudformation: vec![&events, &statuses],
        ..Rules::default()
    };
    let aws = rules.aws();
    let console = Console::capture();

    let mut follower = EventFollower::start(&aws.cloudformation, name, 8).await;
    cloudformation::follow(
        &aws.cloudformation,
        &mut follower,
        name,
        Operation::Update,
        &console,
        pace(),
    )
    .await
    .expect("the update completes");

    let text = console.text();
    assert_eq!(
        text.lines().count(),
        6,
        "each new event once, none from before:\n{text}"
    );
    assert!(!text.contains("CREATE_COMPLETE"), "{text}");
    assert!(
        text.contains("[2/8] AutoScalingGroup"),
        "progress counts completed resources:\n{text}"
    );
}

/// (stage, status, failed action and its message)
type StageFixture = (
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
);

// ---- verify, rollout, rollback ------------------------------------------------------------

fn services(sequence: Vec<aws_sdk_ecs::types::Service>) -> Rule {
    let mut rule = mock!(Ecs::describe_services).sequence();
    for service in sequence {
        rule = rule.output(move || {
            DescribeServicesOutput::builder()
                .services(service.clone())
                .build()
        });
    }
    rule.repeatedly().build()
}

fn target_health(sequence: Vec<Vec<&'static str>>) -> Rule {
    let mut rule = mock!(Elb::describe_target_health).sequence();
    for states in sequence {
        rule = rule.output(move || {
            DescribeTargetHealthOutput::builder()
                .set_target_health_descriptions(Some(targets(&states)))
                .build()
        });
    }
    rule.repeatedly().build()
}

fn pipeline_state(
    execution: &'static str,
    stages: Vec<StageFixture>,
) -> impl Fn() -> GetPipelineStateOutput + Send + Sync + 'static {
    move || {
        GetPipelineStateOutput::builder()
            .pipeline_name("oponn-dev")
            .set_stage_states(Some(
                stages
                    .iter()
                    .map(|(name, status, error)| stage(name, execution, status, *error))
                    .collect(),
            ))
            .build()
    }
}

/// Revision 8 half rolled out, revision 7 still serving.
fn rolling_out_8_over_7() -> aws_sdk_ecs::types::Service {
    service(
        &[
            DeploymentFixture {
                status: "PRIMARY",
                revision: 8,
                running: 1,
                rollout: "IN_PROGRESS",
                reason: None,
            },
            DeploymentFixture {
                status: "ACTIVE",
                revision: 7,
                running: 1,
                rollout: "COMPLETED",
                reason: None,
            },
        ],
        &[],
    )
}

#[tokio::test]
async fn verify_waits_until_the_service_is_steady_and_every_target_healthy() {
    let balancer = LoadBalancer::answering(vec![(200, READY)]).await;

    let (deployer, verified, health) = verify_through(
        &balancer,
        vec![rolling_out_8_over_7(), steady(8)],
        vec![vec!["healthy", "initial"], vec!["healthy", "healthy"]],
    )
    .await;

    verified.expect("verified");

    let text = deployer.console.text();
    assert!(
        text.contains("PRIMARY oponn-dev:8 1/2 running, IN_PROGRESS; ACTIVE oponn-dev:7"),
        "{text}"
    );
    assert!(
        text.contains("steady; 1/2 targets healthy; i-0abc1:32769 initial"),
        "{text}"
    );
    assert!(
        text.contains("steady, 2/2 running, targets healthy"),
        "{text}"
    );
    assert!(
        text.contains("pipeline oponn-dev: Deploy Succeeded"),
        "{text}"
    );
    assert_eq!(health.num_calls(), 2);
    assert!(
        text.contains("readyz: ready (MongoDB ok, Redis ok)"),
        "{text}"
    );
    assert_eq!(
        balancer.paths(),
        ["/readyz"],
        "read through the load balancer"
    );
}

const READY: &str = r#"{"status":"ready","mongodb":"ok","redis":"ok"}"#;
const MONGODB_DOWN: &str = r#"{"status":"unavailable","mongodb":"down","redis":"ok"}"#;
const REDIS_DOWN: &str = r#"{"status":"degraded","mongodb":"ok","redis":"down"}"#;

/// `verify` of a service going through `states` and its targets through `targets`, its `Url`
/// being `balancer`'s; the target health rule, to count its calls.
async fn verify_through(
    balancer: &LoadBalancer,
    states: Vec<aws_sdk_ecs::types::Service>,
    targets: Vec<Vec<&'static str>>,
) -> (Deployer, Result<(), DeployError>, Rule) {
    let describe = stacks_with_outputs_at(&balancer.url);
    let service_states = services(states);
    let health = target_health(targets);
    let approved = connection(ConnectionStatus::Available);
    let state = mock!(CodePipeline::get_pipeline_state).then_output(pipeline_state(
        "e-1",
        vec![
            ("Source", "Succeeded", None),
            ("Build", "Succeeded", None),
            ("Deploy", "Succeeded", None),
        ],
    ));
    let rules = Rules {
        cloudformation: vec![&describe],
        ecs: vec![&service_states],
        elb: vec![&health],
        pipelines: vec![&state],
        connections: vec![&approved],
        ..Rules::default()
    };
    let deployer = deployer(config(), rules.aws());
    let verified = deployer.verify().await;
    (deployer, verified, health)
}

/// [`verify_through`] a service already steady with healthy targets.
async fn verify_steady_through(balancer: &LoadBalancer) -> (Deployer, Result<(), DeployError>) {
    let (deployer, verified, _) =
        verify_through(balancer, vec![steady(8)], vec![vec!["healthy", "healthy"]]).await;
    (deployer, verified)
}

#[tokio::test]
async fn verify_fails_naming_mongodb_when_readyz_through_the_load_balancer_says_it_is_down() {
    let balancer = LoadBalancer::answering(vec![(503, MONGODB_DOWN)]).await;

    let (deployer, verified) = verify_steady_through(&balancer).await;

    let error = verified.expect_err("the data path is broken");
    assert!(matches!(error, DeployError::DataPath { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("MongoDB down"), "{message}");
    assert!(
        message.contains("NatPublicIp"),
        "says where to look: {message}"
    );
    assert!(!message.contains("Redis down"), "{message}");
    let text = deployer.console.text();
    assert_eq!(
        text.matches("readyz: MongoDB down").count(),
        1,
        "printed once, however often read: {text}"
    );
    assert_eq!(balancer.requests(), 6, "retried before failing");
}

#[tokio::test]
async fn verify_retries_readyz_while_a_new_task_reaches_redis() {
    let balancer = LoadBalancer::answering(vec![(503, REDIS_DOWN), (200, READY)]).await;

    let (deployer, verified) = verify_steady_through(&balancer).await;

    verified.expect("ready on the second reading");
    let text = deployer.console.text();
    assert!(text.contains("readyz: Redis down"), "{text}");
    assert!(text.contains("readyz: ready"), "{text}");
    assert_eq!(balancer.requests(), 2);
}

#[tokio::test]
async fn an_image_without_the_public_readyz_is_a_warning_not_a_failure() {
    let balancer = LoadBalancer::answering(vec![(404, r#"{"errors":[]}"#)]).await;

    let (deployer, verified) = verify_steady_through(&balancer).await;

    verified.expect("an older image is not a broken data path");
    let text = deployer.console.text();
    assert!(text.contains("WARNING"), "{text}");
    assert!(text.contains("predates the public /readyz"), "{text}");
    assert_eq!(balancer.requests(), 1);
}

fn rollout_rules() -> (Rule, Rule, Rule, Rule) {
    let describe_definition = mock!(Ecs::describe_task_definition).then_compute_output(|request| {
        let arn = request.task_definition().unwrap_or_default().to_owned();
        DescribeTaskDefinitionOutput::builder()
            .task_definition(
                TaskDefinition::builder()
                    .task_definition_arn(&arn)
                    .family("oponn-dev")
                    .network_mode(aws_sdk_ecs::types::NetworkMode::Bridge)
                    .execution_role_arn(
                        "arn:aws:iam::123456789012:role/oponn-dev/TaskExecutionRole",
                    )
                    .container_definitions(
                        ContainerDefinition::builder()
                            .name("oponn")
                            .image(format!("{REPOSITORY}:old"))
                            .memory(512)
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    let register = mock!(Ecs::register_task_definition)
        .match_requests(|request| {
            request
                .container_definitions()
                .first()
                .and_then(|c| c.image())
                == Some(&format!("{REPOSITORY}:abc123"))
                && request.execution_role_arn().is_some()
                && request.family() == Some("oponn-dev")
        })
        .then_output(|| {
            RegisterTaskDefinitionOutput::builder()
                .task_definition(
                    TaskDefinition::builder()
                        .task_definition_arn(task_definition(8))
                        .build(),
                )
                .build()
        });
    let update = mock!(Ecs::update_service).then_output(|| UpdateServiceOutput::builder().build());
    let describe = stacks_with_outputs();
    (describe_definition, register, update, describe)
}

#[tokio::test]
async fn rollout_fails_loudly_when_the_circuit_breaker_rolls_the_deployment_back() {
    let (describe_definition, register, update, describe) = rollout_rules();
    let service_states = services(vec![
        steady(7),
        service(
            &[
                DeploymentFixture { status: "PRIMARY", revision: 8, running: 0, rollout: "IN_PROGRESS", reason: None },
                DeploymentFixture { status: "ACTIVE", revision: 7, running: 2, rollout: "COMPLETED", reason: None },
            ],
            &[],
        ),
        service(
            &[
                DeploymentFixture { status: "PRIMARY", revision: 7, running: 2, rollout: "IN_PROGRESS", reason: None },
                DeploymentFixture {
                    status: "ACTIVE",
                    revision: 8,
                    running: 0,
                    rollout: "FAILED",
                    reason: Some("ECS deployment circuit breaker: tasks failed to start."),
                },
            ],
            &[
                "(service oponn-dev) rolling back to deployment ecs-svc/07.",
                "(service oponn-dev) deployment ecs-svc/18 deployment failed: tasks failed to start.",
            ],
        ),
    ]);
    let (list, describe_tasks) = stopped_task_rules();
    let (streams, events) = log_rules();
    let rules = Rules {
        cloudformation: vec![&describe],
        ecs: vec![
            &service_states,
            &describe_definition,
            &register,
            &update,
            &list,
            &describe_tasks,
        ],
        logs: vec![&streams, &events],
        ..Rules::default()
    };
    let deployer = deployer(config(), rules.aws());

    let error = deployer.rollout("abc123").await.expect_err("rolled back");

    let DeployError::RolledBack {
        task_definition,
        running,
        reason,
        ..
    } = &error
    else {
        panic!("{error}")
    };
    assert_eq!(task_definition, "oponn-dev:8");
    assert_eq!(running, "oponn-dev:7");
    assert!(reason.contains("circuit breaker"), "{reason}");
    let message = error.to_string();
    assert!(message.starts_with("DEPLOYMENT ROLLED BACK"), "{message}");
    assert!(
        message.contains("rolling back to deployment"),
        "the service's events are shown: {message}"
    );
    assert_eq!(
        register.num_calls(),
        1,
        "the new revision carries the image"
    );
    assert_eq!(update.num_calls(), 1);
}

#[tokio::test]
async fn rollout_succeeds_once_the_new_revision_is_steady_and_healthy() {
    let (describe_definition, register, update, describe) = rollout_rules();
    let service_states = services(vec![steady(7), rolling_out_8_over_7(), steady(8)]);
    let health = target_health(vec![vec!["healthy", "healthy"]]);
    let rules = Rules {
        cloudformation: vec![&describe],
        ecs: vec![&service_states, &describe_definition, &register, &update],
        elb: vec![&health],
        ..Rules::default()
    };
    let deployer = deployer(config(), rules.aws());

    let registered = deployer.rollout("abc123").await.expect("rolled out");

    assert_eq!(registered, task_definition(8));
    let text = deployer.console.text();
    assert!(
        text.contains(&format!("rollout: {REPOSITORY}:abc123 as oponn-dev:8")),
        "{text}"
    );
    assert!(text.contains("steady on oponn-dev:8"), "{text}");
    assert!(text.contains("targets healthy"), "{text}");
}

#[tokio::test]
async fn rollback_returns_the_service_to_the_previous_revision() {
    let describe = stacks_with_outputs();
    let service_states = services(vec![steady(8), steady(7)]);
    let list = mock!(Ecs::list_task_definitions).then_output(|| {
        ListTaskDefinitionsOutput::builder()
            .task_definition_arns(task_definition(8))
            .task_definition_arns(task_definition(7))
            .task_definition_arns(task_definition(6))
            .build()
    });
    let update = mock!(Ecs::update_service)
        .match_requests(|request| request.task_definition() == Some(&task_definition(7)))
        .then_output(|| UpdateServiceOutput::builder().build());
    let health = target_health(vec![vec!["healthy", "healthy"]]);
    let rules = Rules {
        cloudformation: vec![&describe],
        ecs: vec![&service_states, &list, &update],
        elb: vec![&health],
        ..Rules::default()
    };
    let deployer = deployer(config(), rules.aws());

    let target = deployer.rollback(None).await.expect("rolled back");

    assert_eq!(target, task_definition(7));
    assert_eq!(update.num_calls(), 1);
    assert!(deployer
        .console
        .text()
        .contains("rollback: oponn-dev:8 -> oponn-dev:7"));
}

// ---- release ------------------------------------------------------------------------------

fn executions(statuses: Vec<PipelineExecutionStatus>) -> Rule {
    let mut rule = mock!(CodePipeline::get_pipeline_execution).sequence();
    for status in statuses {
        rule = rule.output(move || {
            GetPipelineExecutionOutput::builder()
                .pipeline_execution(
                    PipelineExecution::builder()
                        .pipeline_execution_id("e-42")
                        .status(status.clone())
                        .build(),
                )
                .build()
        });
    }
    rule.repeatedly().build()
}

#[tokio::test]
async fn release_starts_the_pipeline_and_follows_every_stage_to_success() {
    let describe = stacks_with_outputs();
    let approved = connection(ConnectionStatus::Available);
    let start = mock!(CodePipeline::start_pipeline_execution).then_output(|| {
        StartPipelineExecutionOutput::builder()
            .pipeline_execution_id("e-42")
            .build()
    });
    let state = mock!(CodePipeline::get_pipeline_state)
        .sequence()
        .output(pipeline_state("e-42", vec![("Source", "InProgress", None)]))
        .output(pipeline_state(
            "e-42",
            vec![("Source", "Succeeded", None), ("Build", "InProgress", None)],
        ))
        .output(pipeline_state(
            "e-42",
            vec![
                ("Source", "Succeeded", None),
                ("Build", "Succeeded", None),
                ("Deploy", "Succeeded", None),
            ],
        ))
        .repeatedly()
        .build();
    let execution = executions(vec![
        PipelineExecutionStatus::InProgress,
        PipelineExecutionStatus::InProgress,
        PipelineExecutionStatus::Succeeded,
    ]);
    let rules = Rules {
        cloudformation: vec![&describe],
        pipelines: vec![&start, &state, &execution],
        connections: vec![&approved],
        ..Rules::default()
    };
    let deployer = deployer(config(), rules.aws());

    let id = deployer.release().await.expect("released");

    assert_eq!(id, "e-42");
    let text = deployer.console.text();
    for line in [
        "Source InProgress",
        "Source Succeeded",
        "Build InProgress",
        "Build Succeeded",
        "Deploy Succeeded",
        "release: e-42 succeeded",
    ] {
        assert_eq!(text.matches(line).count(), 1, "{line} once:\n{text}");
    }
}

#[tokio::test]
async fn a_failed_release_names_the_stage_and_the_action_error() {
    let describe = stacks_with_outputs();
    let approved = connection(ConnectionStatus::Available);
    let start = mock!(CodePipeline::start_pipeline_execution).then_output(|| {
        StartPipelineExecutionOutput::builder()
            .pipeline_execution_id("e-42")
            .build()
    });
    let state = mock!(CodePipeline::get_pipeline_state).then_output(pipeline_state(
        "e-42",
        vec![
            ("Source", "Succeeded", None),
            (
                "Build",
                "Failed",
                Some((
                    "TestBuildPush",
                    "Error while executing command: make test. Reason: exit status 2",
                )),
            ),
        ],
    ));
    let execution = executions(vec![PipelineExecutionStatus::Failed]);
    let rules = Rules {
        cloudformation: vec![&describe],
        pipelines: vec![&start, &state, &execution],
        connections: vec![&approved],
        ..Rules::default()
    };
    let deployer = deployer(config(), rules.aws());

    let error = deployer.release().await.expect_err("the build failed");

    let DeployError::PipelineFailed { status, detail, .. } = &error else {
        panic!("{error}")
    };
    assert_eq!(status, "Failed");
    assert!(
        detail.contains("Build/TestBuildPush: Error while executing command: make test"),
        "{detail}"
    );
}

#[tokio::test]
async fn release_refuses_while_the_github_connection_awaits_approval() {
    let describe = stacks_with_outputs();
    let pending = connection(ConnectionStatus::Pending);
    let start = mock!(CodePipeline::start_pipeline_execution).then_output(|| {
        StartPipelineExecutionOutput::builder()
            .pipeline_execution_id("e-1")
            .build()
    });
    let rules = Rules {
        cloudformation: vec![&describe],
        pipelines: vec![&start],
        connections: vec![&pending],
        ..Rules::default()
    };
    let deployer = deployer(config(), rules.aws());

    let error = deployer.release().await.expect_err("not approved");

    assert!(
        matches!(error, DeployError::ConnectionNotApproved { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("PENDING"), "{message}");
    assert!(message.contains("oponn-dev-github"), "{message}");
    assert!(
        message.contains(
            "https://eu-west-1.console.aws.amazon.com/codesuite/settings/123456789012/eu-west-1/connections/39e4c34d-e13a-4e94-a886-ea67651bf042"
        ),
        "the connection's own console page:\n{message}"
    );
    assert!(
        message.contains("Then run `deployer release`."),
        "{message}"
    );
    assert_eq!(start.num_calls(), 0);
}

#[tokio::test]
async fn a_new_accounts_first_image_is_the_commit_the_pipelines_first_build_pushed() {
    let runs = mock!(CodePipeline::list_pipeline_executions).then_output(|| {
        ListPipelineExecutionsOutput::builder()
            .pipeline_execution_summaries(
                PipelineExecutionSummary::builder()
                    .pipeline_execution_id("e-1")
                    .status(PipelineExecutionStatus::InProgress)
                    .build(),
            )
            .build()
    });
    let state = mock!(CodePipeline::get_pipeline_state)
        .sequence()
        .output(pipeline_state(
            "e-1",
            vec![("Source", "Succeeded", None), ("Build", "InProgress", None)],
        ))
        .output(pipeline_state(
            "e-1",
            vec![
                ("Source", "Succeeded", None),
                ("Build", "Succeeded", None),
                ("Deploy", "InProgress", None),
            ],
        ))
        .repeatedly()
        .build();
    let execution = mock!(CodePipeline::get_pipeline_execution).then_output(|| {
        GetPipelineExecutionOutput::builder()
            .pipeline_execution(
                PipelineExecution::builder()
                    .pipeline_execution_id("e-1")
                    .status(PipelineExecutionStatus::InProgress)
                    .artifact_revisions(
                        ArtifactRevision::builder()
                            .name("Source")
                            .revision_id("4f1d0c9e2b7a4c3d8e9f0a1b2c3d4e5f6a7b8c9d")
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    let rules = Rules {
        pipelines: vec![&runs, &state, &execution],
        ..Rules::default()
    };
    let aws = rules.aws();
    let console = Console::capture();

    let commit = deployer::pipeline::first_build(&aws, "oponn-dev", &console, pace())
        .await
        .expect("built");

    assert_eq!(commit, "4f1d0c9e2b7a4c3d8e9f0a1b2c3d4e5f6a7b8c9d");
    let text = console.text();
    assert!(text.contains("Build Succeeded"), "{text}");
    // It returns while Deploy still runs (that first deploy fails: the service comes after).
    assert!(text.contains("Deploy InProgress"), "{text}");
    assert_eq!(
        state.num_calls(),
        2,
        "polled until Build succeeded, not longer"
    );
}

/// DescribeStacks on a new account after the first `up`: the pipeline stack with its outputs,
/// no service stack yet.
fn pipeline_stack_only() -> Rule {
    mock!(CloudFormation::describe_stacks).then_compute_output(|request| {
        let name = request.stack_name().unwrap_or_default().to_owned();
        let builder = DescribeStacksOutput::builder();
        match name.as_str() {
            "oponn-dev-pipeline" => builder
                .stacks(stack(
                    &name,
                    "CREATE_COMPLETE",
                    &[],
                    &[
                        ("RepositoryUri", REPOSITORY),
                        ("ConnectionArn", CONNECTION),
                        ("PipelineName", "oponn-dev"),
                    ],
                ))
                .build(),
            _ => builder.build(),
        }
    })
}

fn new_account() -> deployer::config::DeployConfig {
    let mut config = config();
    config.service.image = None;
    config
}

#[tokio::test]
async fn after_approval_up_starts_a_new_run_when_the_first_failed_at_source_and_follows_it() {
    let describe = pipeline_stack_only();
    let approved = connection(ConnectionStatus::Available);
    let runs = mock!(CodePipeline::list_pipeline_executions).then_output(|| {
        ListPipelineExecutionsOutput::builder()
            .pipeline_execution_summaries(
                PipelineExecutionSummary::builder()
                    .pipeline_execution_id("e-1")
                    .status(PipelineExecutionStatus::Failed)
                    .build(),
            )
            .build()
    });
    let start = mock!(CodePipeline::start_pipeline_execution).then_output(|| {
        StartPipelineExecutionOutput::builder()
            .pipeline_execution_id("e-2")
            .build()
    });
    // The run at creation failed at Source (the connection was pending then); then the new run.
    let state = mock!(CodePipeline::get_pipeline_state)
        .sequence()
        .output(pipeline_state(
            "e-1",
            vec![(
                "Source",
                "Failed",
                Some((
                    "GitHub",
                    "Connection arn:aws:codestar-connections:eu-west-1:123456789012:connection/39e4c34d-e13a-4e94-a886-ea67651bf042 is not available",
                )),
            )],
        ))
        .output(pipeline_state("e-2", vec![("Source", "InProgress", None)]))
        .output(pipeline_state(
            "e-2",
            vec![("Source", "Succeeded", None), ("Build", "InProgress", None)],
        ))
        .output(pipeline_state(
            "e-2",
            vec![
                ("Source", "Succeeded", None),
                ("Build", "Succeeded", None),
                ("Deploy", "InProgress", None),
            ],
        ))
        .repeatedly()
        .build();
    let execution = mock!(CodePipeline::get_pipeline_execution).then_compute_output(|request| {
        assert_eq!(
            request.pipeline_execution_id(),
            Some("e-2"),
            "only the new run is followed"
        );
        GetPipelineExecutionOutput::builder()
            .pipeline_execution(
                PipelineExecution::builder()
                    .pipeline_execution_id("e-2")
                    .status(PipelineExecutionStatus::InProgress)
                    .artifact_revisions(
                        ArtifactRevision::builder()
                            .name("Source")
                            .revision_id("4f1d0c9e2b7a4c3d8e9f0a1b2c3d4e5f6a7b8c9d")
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    let rules = Rules {
        cloudformation: vec![&describe],
        pipelines: vec![&runs, &start, &state, &execution],
        connections: vec![&approved],
        ..Rules::default()
    };
    let deployer = deployer(new_account(), rules.aws());

    let image = deployer.image_for_service().await.expect("the first build");

    assert_eq!(
        image,
        format!("{REPOSITORY}:4f1d0c9e2b7a4c3d8e9f0a1b2c3d4e5f6a7b8c9d")
    );
    assert_eq!(start.num_calls(), 1, "one new run");
    let text = deployer.console.text();
    assert!(
        text.contains("the latest run e-1 ended Failed at Source (GitHub: Connection"),
        "says why it starts a run:\n{text}"
    );
    assert!(text.contains("started e-2"), "{text}");
    assert!(text.contains("run e-2 to build the first image"), "{text}");
    assert!(text.contains("Build Succeeded"), "{text}");
}

#[tokio::test]
async fn up_on_a_new_account_stops_at_a_pending_connection_and_says_to_rerun_up() {
    let describe = pipeline_stack_only();
    let pending = connection(ConnectionStatus::Pending);
    let start = mock!(CodePipeline::start_pipeline_execution).then_output(|| {
        StartPipelineExecutionOutput::builder()
            .pipeline_execution_id("e-2")
            .build()
    });
    let rules = Rules {
        cloudformation: vec![&describe],
        pipelines: vec![&start],
        connections: vec![&pending],
        ..Rules::default()
    };
    let deployer = deployer(new_account(), rules.aws());

    let error = deployer
        .image_for_service()
        .await
        .expect_err("not approved");

    let message = error.to_string();
    assert!(
        message.contains("connections/39e4c34d-e13a-4e94-a886-ea67651bf042"),
        "{message}"
    );
    assert!(
        message.contains("Then run `deployer up` again: it starts a new pipeline run"),
        "{message}"
    );
    assert_eq!(start.num_calls(), 0, "no run starts before the approval");
}

// ---- diagnosis ------------------------------------------------------------------------------

fn rolled_back_states() -> Rule {
    services(vec![
        steady(7),
        service(
            &[
                DeploymentFixture {
                    status: "PRIMARY",
                    revision: 7,
                    running: 2,
                    rollout: "IN_PROGRESS",
                    reason: None,
                },
                DeploymentFixture {
                    status: "ACTIVE",
                    revision: 8,
                    running: 0,
                    rollout: "FAILED",
                    reason: Some("ECS deployment circuit breaker: tasks failed to start."),
                },
            ],
            &[],
        ),
    ])
}

/// ListTasks (desiredStatus STOPPED) and DescribeTasks: one task whose container exited 1, as
/// the ECS API reference's DescribeTasks example shapes it.
fn stopped_task_rules() -> (Rule, Rule) {
    const TASK: &str = "arn:aws:ecs:eu-west-1:123456789012:task/oponn-dev/1dc5c17a422548a9";
    let list = mock!(Ecs::list_tasks)
        .match_requests(|request| {
            request.desired_status() == Some(&aws_sdk_ecs::types::DesiredStatus::Stopped)
                && request.service_name() == Some("oponn-dev")
        })
        .then_output(|| ListTasksOutput::builder().task_arns(TASK).build());
    let describe = mock!(Ecs::describe_tasks).then_output(|| {
        DescribeTasksOutput::builder()
            .tasks(
                Task::builder()
                    .task_arn(TASK)
                    .task_definition_arn(task_definition(8))
                    .last_status("STOPPED")
                    .stopped_reason("Essential container in task exited")
                    .containers(
                        Container::builder()
                            .name("oponn")
                            .exit_code(1)
                            .reason("")
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    (list, describe)
}

fn log_rules() -> (Rule, Rule) {
    let streams = mock!(Logs::describe_log_streams)
        .match_requests(|request| request.log_group_name() == Some("/ecs/oponn-dev"))
        .then_output(|| {
            DescribeLogStreamsOutput::builder()
                .log_streams(
                    LogStream::builder()
                        .log_stream_name("oponn/oponn/1dc5c17a422548a9")
                        .build(),
                )
                .build()
        });
    let events = mock!(Logs::get_log_events).then_output(|| {
        GetLogEventsOutput::builder()
            .events(
                OutputLogEvent::builder()
                    .timestamp(1_764_000_001_000)
                    .message(r#"{"level":"INFO","message":"starting"}"#)
                    .build(),
            )
            .events(
                OutputLogEvent::builder()
                    .timestamp(1_764_000_002_000)
                    .message(r#"{"level":"ERROR","message":"configuration: MONGODB_URI: invalid scheme"}"#)
                    .build(),
            )
            .build()
    });
    (streams, events)
}

#[tokio::test]
async fn a_rolled_back_rollout_prints_the_stopped_tasks_reasons_exit_codes_and_last_log_lines() {
    let (describe_definition, register, update, describe) = rollout_rules();
    let service_states = rolled_back_states();
    let (list, describe_tasks) = stopped_task_rules();
    let (streams, events) = log_rules();
    let rules = Rules {
        cloudformation: vec![&describe],
        ecs: vec![
            &service_states,
            &describe_definition,
            &register,
            &update,
            &list,
            &describe_tasks,
        ],
        logs: vec![&streams, &events],
        ..Rules::default()
    };
    let deployer = deployer(config(), rules.aws());

    let error = deployer.rollout("abc123").await.expect_err("rolled back");

    assert!(matches!(error, DeployError::RolledBack { .. }), "{error}");
    let text = deployer.console.text();
    assert!(
        text.contains(
            "task 1dc5c17a422548a9 (oponn-dev:8): Essential container in task exited\n      container oponn: exit code 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("last lines of log group /ecs/oponn-dev:"),
        "{text}"
    );
    let starting = text.find("starting").expect(&text);
    let invalid = text
        .find("[1dc5c17a422548a9] {\"level\":\"ERROR\",\"message\":\"configuration: MONGODB_URI: invalid scheme\"}")
        .expect(&text);
    assert!(starting < invalid, "oldest first:\n{text}");
    assert_eq!(list.num_calls(), 1);
}

#[tokio::test]
async fn a_diagnosis_that_cannot_read_the_logs_says_so_and_still_lists_the_tasks() {
    let (describe_definition, register, update, describe) = rollout_rules();
    let service_states = rolled_back_states();
    let (list, describe_tasks) = stopped_task_rules();
    let denied = mock!(Logs::describe_log_streams).then_error(|| {
        aws_sdk_cloudwatchlogs::operation::describe_log_streams::DescribeLogStreamsError::generic(
            aws_smithy_types::error::ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("not authorized to perform: logs:DescribeLogStreams")
                .build(),
        )
    });
    let rules = Rules {
        cloudformation: vec![&describe],
        ecs: vec![
            &service_states,
            &describe_definition,
            &register,
            &update,
            &list,
            &describe_tasks,
        ],
        logs: vec![&denied],
        ..Rules::default()
    };
    let deployer = deployer(config(), rules.aws());

    let error = deployer.rollout("abc123").await.expect_err("rolled back");

    assert!(
        matches!(error, DeployError::RolledBack { .. }),
        "the failure itself: {error}"
    );
    let text = deployer.console.text();
    assert!(text.contains("exit code 1"), "{text}");
    assert!(
        text.contains(
            "log group /ecs/oponn-dev unavailable: AWS DescribeLogStreams: AccessDeniedException"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn logs_prints_the_last_lines_of_the_services_log_group() {
    let (streams, events) = log_rules();
    let rules = Rules {
        logs: vec![&streams, &events],
        ..Rules::default()
    };
    let deployer = deployer(config(), rules.aws());

    deployer.logs(1).await.expect("logs");

    let text = deployer.console.text();
    assert_eq!(
        text.trim(),
        "[1dc5c17a422548a9] {\"level\":\"ERROR\",\"message\":\"configuration: MONGODB_URI: invalid scheme\"}",
        "the last line only"
    );
}

// ---- ROLLBACK_COMPLETE: delete and create again --------------------------------------------

fn rolled_back_network_then_gone() -> Rule {
    mock!(CloudFormation::describe_stacks)
        .sequence()
        .output(|| {
            DescribeStacksOutput::builder()
                .stacks(stack("oponn-dev-network", "ROLLBACK_COMPLETE", &[], &[]))
                .build()
        })
        .output(|| {
            DescribeStacksOutput::builder()
                .stacks(stack("oponn-dev-network", "DELETE_COMPLETE", &[], &[]))
                .build()
        })
        .repeatedly()
        .build()
}

fn preflight_passes() -> (Rule, Rule) {
    let role = mock!(Iam::get_role).then_output(|| GetRoleOutput::builder().build());
    let secret = mock!(SecretsManager::describe_secret).then_compute_output(|request| {
        DescribeSecretOutput::builder()
            .arn(request.secret_id().unwrap_or_default())
            .build()
    });
    (role, secret)
}

#[tokio::test]
async fn up_and_plan_refuse_plain_http_outside_dev_before_any_aws_call() {
    // No rule: any AWS call would fail with another error.
    let rules = Rules::default();
    let mut config = config();
    config.stage = deployer::config::DeployConfig::parse(
        std::path::Path::new("deploy.toml"),
        &include_str!("../../deploy.example.toml").replace("stage = \"dev\"", "stage = \"prod\""),
    )
    .expect("a prod config")
    .stage;
    let deployer = deployer(config, rules.aws());

    for error in [
        deployer
            .up(UpOptions::default())
            .await
            .expect_err("plain HTTP"),
        deployer.plan().await.expect_err("plain HTTP"),
    ] {
        assert!(
            matches!(
                error,
                DeployError::Config(deployer::config::ConfigError::PlainHttp { .. })
            ),
            "{error}"
        );
        assert!(error.to_string().contains("allow_http = true"), "{error}");
    }
    assert!(
        !deployer.console.text().contains("preflight"),
        "nothing ran"
    );
}

// ---- creates through change sets -----------------------------------------------------------

/// CloudFormation on a new account, as far as `up` sees it: every stack absent until a CREATE
/// change set makes it `REVIEW_IN_PROGRESS`, `CREATE_COMPLETE` once that is executed.
#[derive(Default)]
struct NewAccount {
    statuses: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
    /// `(stack, change set id, type)` of every change set created.
    change_sets: std::sync::Mutex<Vec<(String, String, String)>>,
    executed: std::sync::Mutex<Vec<String>>,
    deleted_stacks: std::sync::Mutex<Vec<String>>,
}

impl NewAccount {
    fn set(&self, stack: &str, status: &str) {
        self.statuses
            .lock()
            .expect("lock")
            .insert(stack.to_owned(), status.to_owned());
    }

    fn rules(account: &std::sync::Arc<Self>) -> Vec<Rule> {
        let seen = account.clone();
        let describe = mock!(CloudFormation::describe_stacks).then_compute_output(move |request| {
            // By name, or by the id `stack_id` makes.
            let name = request.stack_name().unwrap_or_default();
            let name = name.split('/').nth(1).unwrap_or(name).to_owned();
            let status = seen
                .statuses
                .lock()
                .expect("lock")
                .get(&name)
                .cloned()
                .unwrap_or_else(|| "DELETE_COMPLETE".into());
            DescribeStacksOutput::builder()
                .stacks(stack(&name, &status, &[], &[]))
                .build()
        });
        let seen = account.clone();
        let create = mock!(CloudFormation::create_change_set).then_compute_output(move |request| {
            let stack = request.stack_name().unwrap_or_default().to_owned();
            let id = format!(
                "arn:aws:cloudformation:eu-west-1:123456789012:changeSet/{}/{stack}",
                request.change_set_name().unwrap_or_default()
            );
            let kind = request
                .change_set_type()
                .map(|kind| kind.as_str().to_owned())
                .unwrap_or_default();
            seen.set(&stack, "REVIEW_IN_PROGRESS");
            seen.change_sets
                .lock()
                .expect("lock")
                .push((stack, id.clone(), kind));
            CreateChangeSetOutput::builder().id(id).build()
        });
        let changes = mock!(CloudFormation::describe_change_set).then_compute_output(|request| {
            let builder =
                DescribeChangeSetOutput::builder().status(ChangeSetStatus::CreateComplete);
            match request.stack_name() {
                Some("oponn-dev-network") => builder.changes(add("Vpc", "AWS::EC2::VPC")).build(),
                _ => builder.build(),
            }
        });
        let seen = account.clone();
        let execute = mock!(CloudFormation::execute_change_set).then_compute_output(move |request| {
            seen.executed
                .lock()
                .expect("lock")
                .push(request.change_set_name().unwrap_or_default().to_owned());
            seen.set(request.stack_name().unwrap_or_default(), "CREATE_COMPLETE");
            aws_sdk_cloudformation::operation::execute_change_set::ExecuteChangeSetOutput::builder()
                .build()
        });
        let seen = account.clone();
        let delete_stack =
            mock!(CloudFormation::delete_stack).then_compute_output(move |request| {
                let id = request.stack_name().unwrap_or_default();
                let name = id.split('/').nth(1).unwrap_or(id).to_owned();
                seen.set(&name, "DELETE_COMPLETE");
                seen.deleted_stacks.lock().expect("lock").push(name);
                aws_sdk_cloudformation::operation::delete_stack::DeleteStackOutput::builder()
                    .build()
            });
        let delete_change_set = mock!(CloudFormation::delete_change_set)
            .then_output(|| DeleteChangeSetOutput::builder().build());
        vec![
            describe,
            create,
            changes,
            execute,
            delete_stack,
            delete_change_set,
            events_rule(vec![vec![]]),
        ]
    }
}

fn add(id: &str, kind: &str) -> Change {
    Change::builder()
        .r#type("Resource".into())
        .resource_change(
            SdkResourceChange::builder()
                .action(ChangeAction::Add)
                .logical_resource_id(id)
                .resource_type(kind)
                .build(),
        )
        .build()
}

/// `up` on a [`NewAccount`] (preflight passing), answering its questions so; the account,
/// its rules (to count calls) and the deployer (to read its console).
async fn up_on_a_new_account(
    answers: &[bool],
) -> (
    std::sync::Arc<NewAccount>,
    Vec<Rule>,
    Deployer,
    Result<Vec<deployer::plan::StackPlan>, DeployError>,
) {
    let account = std::sync::Arc::new(NewAccount::default());
    let cloudformation = NewAccount::rules(&account);
    let (role, secret) = preflight_passes();
    let rules = Rules {
        cloudformation: cloudformation.iter().collect(),
        iam: vec![&role],
        secrets: vec![&secret],
        ..Rules::default()
    };
    let mut deployer = deployer(config(), rules.aws());
    deployer.console = Console::capture_answering(answers);
    let applied = deployer
        .up(UpOptions {
            skip_verify: true,
            yes: false,
        })
        .await;
    (account, cloudformation, deployer, applied)
}

#[tokio::test]
async fn up_creates_each_new_stack_by_executing_the_create_change_set_it_showed() {
    let (account, _, deployer, applied) = up_on_a_new_account(&[true; 4]).await;

    applied.expect("up");
    let change_sets = account.change_sets.lock().expect("lock").clone();
    let stacks: Vec<String> = change_sets
        .iter()
        .map(|(stack, ..)| stack.clone())
        .collect();
    let every_stack: Vec<String> = stacks::layers(&config())
        .into_iter()
        .map(|layer| stacks::stack_name(&config(), layer))
        .collect();
    assert_eq!(stacks, every_stack, "in apply order");
    assert!(
        change_sets.iter().all(|(_, _, kind)| kind == "CREATE"),
        "{change_sets:?}"
    );
    let shown: Vec<String> = change_sets.iter().map(|(_, id, _)| id.clone()).collect();
    assert_eq!(
        *account.executed.lock().expect("lock"),
        shown,
        "each stack created by exactly the change set shown for it"
    );
    let text = deployer.console.text();
    let plan = text
        .find("+ oponn-dev-network: create (1 resources)\n    + Vpc")
        .expect(&text);
    let asked = text
        .find("Create stack oponn-dev-network with this change set? [y/N]")
        .expect(&text);
    assert!(
        plan < asked,
        "the change set's rows shown, then asked:\n{text}"
    );
    assert!(
        text.contains("oponn-dev-service: Create complete"),
        "{text}"
    );
}

#[tokio::test]
async fn a_create_not_confirmed_leaves_neither_the_change_set_nor_an_empty_stack() {
    let (account, cloudformation, _, applied) = up_on_a_new_account(&[]).await;

    let error = applied.expect_err("no yes");

    assert!(matches!(error, DeployError::NotConfirmed(_)), "{error}");
    assert!(account.executed.lock().expect("lock").is_empty());
    assert_eq!(
        *account.deleted_stacks.lock().expect("lock"),
        ["oponn-dev-network"],
        "the REVIEW_IN_PROGRESS stack the change set made is deleted"
    );
    // delete_change_set is the sixth rule.
    assert_eq!(
        cloudformation[5].num_calls(),
        1,
        "the change set shown is deleted"
    );
}

#[tokio::test]
async fn up_deletes_a_stack_left_rolled_back_after_a_yes_and_creates_it_again() {
    let describe = rolled_back_network_then_gone();
    let delete = mock!(CloudFormation::delete_stack).then_output(|| {
        aws_sdk_cloudformation::operation::delete_stack::DeleteStackOutput::builder().build()
    });
    let events = events_rule(vec![vec![]]);
    let create = mock!(CloudFormation::create_change_set).then_compute_output(|request| {
        assert_eq!(request.change_set_type(), Some(&ChangeSetType::Create));
        CreateChangeSetOutput::builder()
            .id("arn:aws:cloudformation:eu-west-1:123456789012:changeSet/deployer-up/1")
            .build()
    });
    let changes = mock!(CloudFormation::describe_change_set).then_output(|| {
        DescribeChangeSetOutput::builder()
            .status(ChangeSetStatus::CreateComplete)
            .build()
    });
    let execute = mock!(CloudFormation::execute_change_set).then_output(|| {
        aws_sdk_cloudformation::operation::execute_change_set::ExecuteChangeSetOutput::builder()
            .build()
    });
    let (role, secret) = preflight_passes();
    let rules = Rules {
        cloudformation: vec![&describe, &delete, &events, &create, &changes, &execute],
        iam: vec![&role],
        secrets: vec![&secret],
        ..Rules::default()
    };
    let mut deployer = deployer(config(), rules.aws());
    // Yes to the deletion, then yes to the creation.
    deployer.console = Console::capture_answering(&[true, true]);

    // Stops at the create: this double reports the new stack DELETE_COMPLETE forever.
    let _ = deployer
        .up(UpOptions {
            skip_verify: true,
            yes: false,
        })
        .await;

    let text = deployer.console.text();
    assert!(
        text.contains("stack oponn-dev-network is ROLLBACK_COMPLETE: its creation failed"),
        "{text}"
    );
    assert!(
        text.contains("Delete it and create it again? [y/N]\n> y"),
        "{text}"
    );
    assert!(text.contains("oponn-dev-network: deleted"), "{text}");
    assert_eq!(delete.num_calls(), 1);
    assert_eq!(create.num_calls(), 1, "created again:\n{text}");
    assert_eq!(
        execute.num_calls(),
        1,
        "through the change set shown:\n{text}"
    );
}

#[tokio::test]
async fn up_leaves_a_rolled_back_stack_alone_without_a_yes_and_says_how_to_recreate_it() {
    let describe = rolled_back_network_then_gone();
    let delete = mock!(CloudFormation::delete_stack).then_output(|| {
        aws_sdk_cloudformation::operation::delete_stack::DeleteStackOutput::builder().build()
    });
    let (role, secret) = preflight_passes();
    let rules = Rules {
        cloudformation: vec![&describe, &delete],
        iam: vec![&role],
        secrets: vec![&secret],
        ..Rules::default()
    };
    let deployer = deployer(config(), rules.aws());

    let error = deployer
        .up(UpOptions {
            skip_verify: true,
            yes: false,
        })
        .await
        .expect_err("not confirmed");

    assert!(matches!(error, DeployError::StackStuck { .. }), "{error}");
    assert!(error.to_string().contains("`--yes` in CI"), "{error}");
    assert_eq!(delete.num_calls(), 0);
}

// ---- preflight ------------------------------------------------------------------------------

fn no_such_role() -> Rule {
    mock!(Iam::get_role).then_error(|| {
        aws_sdk_iam::operation::get_role::GetRoleError::NoSuchEntityException(
            aws_sdk_iam::types::error::NoSuchEntityException::builder()
                .message("The role with name AWSServiceRoleForECS cannot be found.")
                .meta(
                    aws_smithy_types::error::ErrorMetadata::builder()
                        .code("NoSuchEntity")
                        .message("The role with name AWSServiceRoleForECS cannot be found.")
                        .build(),
                )
                .build(),
        )
    })
}

#[tokio::test]
async fn preflight_creates_the_missing_ecs_service_linked_role() {
    let role = no_such_role();
    let create = mock!(Iam::create_service_linked_role)
        .match_requests(|request| request.aws_service_name() == Some("ecs.amazonaws.com"))
        .then_output(|| CreateServiceLinkedRoleOutput::builder().build());
    let (_, secret) = preflight_passes();
    let rules = Rules {
        iam: vec![&role, &create],
        secrets: vec![&secret],
        ..Rules::default()
    };
    let aws = rules.aws();
    let console = Console::capture();

    deployer::preflight::check(&aws, &config(), &console)
        .await
        .expect("preflight passes");

    assert_eq!(create.num_calls(), 1);
    assert!(
        console
            .text()
            .contains("ECS service-linked role AWSServiceRoleForECS: was missing, created"),
        "{}",
        console.text()
    );
}

#[tokio::test]
async fn preflight_names_a_partial_secret_arn_a_missing_secret_and_a_foreign_certificate_before_any_change(
) {
    let role = mock!(Iam::get_role).then_output(|| GetRoleOutput::builder().build());
    // Secrets Manager answers with the full ARN: the example's are full already; the one
    // named by its partial ARN below gets its suffix.
    let secret = mock!(SecretsManager::describe_secret).then_compute_output(|request| {
        let id = request.secret_id().unwrap_or_default();
        let full = match id.ends_with("/mongodb-uri") {
            true => format!("{id}-AbCdEf"),
            false => id.to_owned(),
        };
        DescribeSecretOutput::builder().arn(full).build()
    });
    let missing = mock!(SecretsManager::describe_secret)
        .match_requests(|request| request.secret_id().is_some_and(|id| id.contains("/api-tokens")))
        .then_error(|| {
            aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretError::ResourceNotFoundException(
                aws_sdk_secretsmanager::types::error::ResourceNotFoundException::builder()
                    .message("Secrets Manager can't find the specified secret.")
                    .meta(
                        aws_smithy_types::error::ErrorMetadata::builder()
                            .code("ResourceNotFoundException")
                            .build(),
                    )
                    .build(),
            )
        });
    let rules = Rules {
        iam: vec![&role],
        secrets: vec![&missing, &secret],
        ..Rules::default()
    };
    let mut config = config();
    config.secrets.mongodb_uri =
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:oponn/dev/mongodb-uri".into();
    config.service.certificate_arn =
        Some("arn:aws:acm:us-east-1:123456789012:certificate/0f3e2c1a".into());
    let deployer = deployer(config, rules.aws());

    let error = deployer
        .up(UpOptions {
            skip_verify: true,
            yes: true,
        })
        .await
        .expect_err("preflight fails");

    let DeployError::Preflight(failures) = &error else {
        panic!("{error}")
    };
    assert_eq!(failures.len(), 3, "{error}");
    let message = error.to_string();
    assert!(
        message.starts_with("preflight failed, nothing was changed:"),
        "{message}"
    );
    assert!(
        message.contains(
            "secrets.mongodb_uri: arn:aws:secretsmanager:eu-west-1:123456789012:secret:oponn/dev/mongodb-uri is a partial ARN; use the secret's full ARN arn:aws:secretsmanager:eu-west-1:123456789012:secret:oponn/dev/mongodb-uri-AbCdEf"
        ),
        "{message}"
    );
    assert!(
        message.contains("secrets.api_tokens: no such secret in eu-west-1"),
        "{message}"
    );
    assert!(
        !message.contains("secrets.redis_url"),
        "the example's full ARN passes: {message}"
    );
    assert!(
        message.contains("service.certificate_arn is in us-east-1, the load balancer in eu-west-1"),
        "{message}"
    );
}

// ---- safe applies: the change set shown is the one executed ---------------------------------

/// What `up` did with change sets: (stack, change set id) created, executed, deleted.
#[derive(Default)]
struct ChangeSets {
    created: std::sync::Mutex<Vec<(String, String)>>,
    service_desired_count: std::sync::Mutex<Option<String>>,
}

fn change_set_rules(seen: std::sync::Arc<ChangeSets>) -> Vec<Rule> {
    let created = seen.clone();
    let create = mock!(CloudFormation::create_change_set).then_compute_output(move |request| {
        let stack = request.stack_name().unwrap_or_default().to_owned();
        let id = format!(
            "arn:aws:cloudformation:eu-west-1:123456789012:changeSet/{}/{stack}",
            request.change_set_name().unwrap_or_default()
        );
        if stack == "oponn-dev-service" {
            *created.service_desired_count.lock().expect("lock") = request
                .parameters()
                .iter()
                .find(|parameter| parameter.parameter_key() == Some("DesiredCount"))
                .and_then(|parameter| parameter.parameter_value())
                .map(str::to_owned);
        }
        created
            .created
            .lock()
            .expect("lock")
            .push((stack, id.clone()));
        CreateChangeSetOutput::builder().id(id).build()
    });
    // Only the service's change set holds a change (its task definition is replaced).
    let describe = mock!(CloudFormation::describe_change_set).then_compute_output(|request| {
        if request.stack_name() == Some("oponn-dev-service") {
            DescribeChangeSetOutput::builder()
                .status(ChangeSetStatus::CreateComplete)
                .changes(modify(
                    "TaskDefinition",
                    "AWS::ECS::TaskDefinition",
                    Replacement::True,
                    "ContainerDefinitions",
                    RequiresRecreation::Always,
                    "ImageUri",
                ))
                .build()
        } else {
            DescribeChangeSetOutput::builder()
                .status(ChangeSetStatus::Failed)
                .status_reason("The submitted information didn't contain changes. Submit different information to create a change set.")
                .build()
        }
    });
    let template =
        mock!(CloudFormation::get_template).then_output(|| GetTemplateOutput::builder().build());
    vec![create, describe, template]
}

fn running_service() -> (Rule, Rule) {
    let services = services(vec![steady(7)]);
    let definition = mock!(Ecs::describe_task_definition).then_output(|| {
        DescribeTaskDefinitionOutput::builder()
            .task_definition(
                TaskDefinition::builder()
                    .task_definition_arn(task_definition(7))
                    .container_definitions(
                        ContainerDefinition::builder()
                            .name("oponn")
                            .image(format!("{REPOSITORY}:running"))
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    (services, definition)
}

#[tokio::test]
async fn up_executes_the_change_set_it_showed_after_a_yes_and_keeps_the_desired_count() {
    let seen = std::sync::Arc::new(ChangeSets::default());
    let describe = stacks_with_outputs();
    let change_sets = change_set_rules(seen.clone());
    let executed_ids = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let executed_log = executed_ids.clone();
    let execute = mock!(CloudFormation::execute_change_set).then_compute_output(move |request| {
        executed_log
            .lock()
            .expect("lock")
            .push(request.change_set_name().unwrap_or_default().to_owned());
        aws_sdk_cloudformation::operation::execute_change_set::ExecuteChangeSetOutput::builder()
            .build()
    });
    let update = mock!(CloudFormation::update_stack).then_output(|| {
        aws_sdk_cloudformation::operation::update_stack::UpdateStackOutput::builder().build()
    });
    let delete = mock!(CloudFormation::delete_change_set)
        .then_output(|| DeleteChangeSetOutput::builder().build());
    let events = events_rule(vec![vec![]]);
    let (services, definition) = running_service();
    let (role, secret) = preflight_passes();
    let mut cloudformation: Vec<&Rule> = vec![&describe, &execute, &update, &delete, &events];
    cloudformation.extend(change_sets.iter());
    let rules = Rules {
        cloudformation,
        ecs: vec![&services, &definition],
        iam: vec![&role],
        secrets: vec![&secret],
        ..Rules::default()
    };
    let mut config = config();
    config.service.desired_tasks = 3;
    let mut deployer = deployer(config, rules.aws());
    deployer.console = Console::capture_answering(&[true]);

    deployer
        .up(UpOptions {
            skip_verify: true,
            yes: false,
        })
        .await
        .expect("up");

    let created = seen.created.lock().expect("lock").clone();
    let service_change_set = created
        .iter()
        .find(|(stack, _)| stack == "oponn-dev-service")
        .map(|(_, id)| id.clone())
        .expect("a change set for the service");
    assert_eq!(
        *executed_ids.lock().expect("lock"),
        vec![service_change_set],
        "exactly the change set that was shown"
    );
    assert_eq!(update.num_calls(), 0, "no fresh UpdateStack");
    assert_eq!(
        delete.num_calls(),
        3,
        "the three empty change sets are deleted"
    );
    assert_eq!(
        seen.service_desired_count.lock().expect("lock").as_deref(),
        Some("2"),
        "the service's current desired count, not deploy.toml's 3"
    );
    let text = deployer.console.text();
    let shown = text.find("~ TaskDefinition").expect(&text);
    let asked = text
        .find("Apply this change set to stack oponn-dev-service? [y/N]")
        .expect(&text);
    assert!(shown < asked, "shown, then asked:\n{text}");
    assert!(
        text.contains("keeping its current desired count 2"),
        "{text}"
    );
}

#[tokio::test]
async fn up_without_a_yes_executes_nothing_and_deletes_the_change_set_it_showed() {
    let seen = std::sync::Arc::new(ChangeSets::default());
    let describe = stacks_with_outputs();
    let change_sets = change_set_rules(seen.clone());
    let execute = mock!(CloudFormation::execute_change_set).then_output(|| {
        aws_sdk_cloudformation::operation::execute_change_set::ExecuteChangeSetOutput::builder()
            .build()
    });
    let deleted_ids = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let deleted_log = deleted_ids.clone();
    let delete = mock!(CloudFormation::delete_change_set).then_compute_output(move |request| {
        deleted_log
            .lock()
            .expect("lock")
            .push(request.change_set_name().unwrap_or_default().to_owned());
        DeleteChangeSetOutput::builder().build()
    });
    let (services, definition) = running_service();
    let (role, secret) = preflight_passes();
    let mut cloudformation: Vec<&Rule> = vec![&describe, &execute, &delete];
    cloudformation.extend(change_sets.iter());
    let rules = Rules {
        cloudformation,
        ecs: vec![&services, &definition],
        iam: vec![&role],
        secrets: vec![&secret],
        ..Rules::default()
    };
    let deployer = deployer(config(), rules.aws());

    let error = deployer
        .up(UpOptions {
            skip_verify: true,
            yes: false,
        })
        .await
        .expect_err("not confirmed");

    assert!(matches!(error, DeployError::NotConfirmed(_)), "{error}");
    assert_eq!(execute.num_calls(), 0);
    let service_change_set = seen
        .created
        .lock()
        .expect("lock")
        .iter()
        .find(|(stack, _)| stack == "oponn-dev-service")
        .map(|(_, id)| id.clone())
        .expect("shown");
    assert!(
        deleted_ids
            .lock()
            .expect("lock")
            .contains(&service_change_set),
        "the change set shown is deleted, not left behind"
    );
}

// ---- down: what a kept stack keeps ----------------------------------------------------------

#[tokio::test]
async fn down_with_write_behind_keeps_the_cache_and_the_stacks_it_imports_from() {
    // Deployed: network, cluster, pipeline and cache; the service is already gone. No
    // DeleteStack rule: any delete fails the test.
    let describe = mock!(CloudFormation::describe_stacks).then_compute_output(|request| {
        let name = request.stack_name().unwrap_or_default().to_owned();
        let builder = DescribeStacksOutput::builder();
        match name.as_str() {
            "oponn-dev-service" | "oponn-dev-queue" => builder.build(),
            _ => builder
                .stacks(stack(&name, "CREATE_COMPLETE", &[], &[]))
                .build(),
        }
    });
    let rules = Rules {
        cloudformation: vec![&describe],
        ..Rules::default()
    };
    let mut config = config();
    config.service.write_mode = deployer::config::WriteMode::Behind;
    config.cache.managed = true;
    config.secrets.redis_url = None;
    let deployer = deployer(config, rules.aws());

    deployer
        .down(false)
        .await
        .expect("down keeps everything left");

    let text = deployer.console.text();
    for line in [
        "= oponn-dev-service: not deployed",
        "= oponn-dev-cache: kept (it holds acknowledged writes MongoDB may not have yet;",
        "= oponn-dev-pipeline: kept (it holds the images;",
        "= oponn-dev-cluster: kept (oponn-dev-cache, kept, imports from it)",
        "= oponn-dev-network: kept (oponn-dev-cache, kept, imports from it)",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
}
