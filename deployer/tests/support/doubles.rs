//! The SDK's own test doubles (`aws-smithy-mocks`) and response fixtures shaped like the AWS
//! API references' examples, for what moto does not model: change-set details, stack events
//! and rollbacks, running tasks, target health, pipelines, connections.

use aws_sdk_cloudformation::types::{Output, Parameter, Stack, StackEvent, StackStatus};
use aws_sdk_codepipeline::types::{
    ActionExecution, ActionExecutionStatus, ActionState, ErrorDetails, StageExecution,
    StageExecutionStatus, StageState,
};
use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState, Service};
use aws_sdk_elasticloadbalancingv2::types::{
    TargetDescription, TargetHealth, TargetHealthDescription, TargetHealthStateEnum,
};
use aws_smithy_mocks::{mock_client, Rule, RuleMode};
use aws_smithy_types::DateTime;
use deployer::aws::Aws;

#[derive(Default)]
pub struct Rules<'a> {
    pub cloudformation: Vec<&'a Rule>,
    pub ecs: Vec<&'a Rule>,
    pub elb: Vec<&'a Rule>,
    pub pipelines: Vec<&'a Rule>,
    pub connections: Vec<&'a Rule>,
    pub logs: Vec<&'a Rule>,
    pub iam: Vec<&'a Rule>,
    pub secrets: Vec<&'a Rule>,
}

impl Rules<'_> {
    pub fn aws(&self) -> Aws {
        Aws {
            region: "eu-west-1".into(),
            cloudformation: mock_client!(
                aws_sdk_cloudformation,
                RuleMode::MatchAny,
                &self.cloudformation
            ),
            ecs: mock_client!(aws_sdk_ecs, RuleMode::MatchAny, &self.ecs),
            elb: mock_client!(
                aws_sdk_elasticloadbalancingv2,
                RuleMode::MatchAny,
                &self.elb
            ),
            pipelines: mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, &self.pipelines),
            connections: mock_client!(
                aws_sdk_codestarconnections,
                RuleMode::MatchAny,
                &self.connections
            ),
            logs: mock_client!(aws_sdk_cloudwatchlogs, RuleMode::MatchAny, &self.logs),
            iam: mock_client!(aws_sdk_iam, RuleMode::MatchAny, &self.iam),
            secrets: mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, &self.secrets),
        }
    }
}

pub const ACCOUNT: &str = "123456789012";

pub fn stack_id(name: &str) -> String {
    format!("arn:aws:cloudformation:eu-west-1:{ACCOUNT}:stack/{name}/4b1c1e90-0000-11ef-9a33-0a1b2c3d4e5f")
}

pub fn stack(
    name: &str,
    status: &str,
    parameters: &[(&str, &str)],
    outputs: &[(&str, &str)],
) -> Stack {
    Stack::builder()
        .stack_name(name)
        .stack_id(stack_id(name))
        .stack_status(StackStatus::from(status))
        .creation_time(DateTime::from_secs(1_764_000_000))
        .set_parameters(Some(
            parameters
                .iter()
                .map(|(key, value)| {
                    Parameter::builder()
                        .parameter_key(*key)
                        .parameter_value(*value)
                        .build()
                })
                .collect(),
        ))
        .set_outputs(Some(
            outputs
                .iter()
                .map(|(key, value)| {
                    Output::builder()
                        .output_key(*key)
                        .output_value(*value)
                        .build()
                })
                .collect(),
        ))
        .build()
}

/// A stack event; `seconds` orders them.
pub fn event(
    stack: &str,
    number: u32,
    logical_id: &str,
    kind: &str,
    status: &str,
    reason: Option<&str>,
) -> StackEvent {
    StackEvent::builder()
        .stack_id(stack_id(stack))
        .stack_name(stack)
        .event_id(format!("{logical_id}-{status}-{number}"))
        .logical_resource_id(logical_id)
        .resource_type(kind)
        .resource_status(status.into())
        .set_resource_status_reason(reason.map(str::to_owned))
        .timestamp(DateTime::from_secs(1_764_000_000 + i64::from(number)))
        .build()
}

pub const TASK_FAMILY: &str = "arn:aws:ecs:eu-west-1:123456789012:task-definition/oponn-dev";

pub fn task_definition(revision: u32) -> String {
    format!("{TASK_FAMILY}:{revision}")
}

pub struct DeploymentFixture {
    pub status: &'static str,
    pub revision: u32,
    pub running: i32,
    pub rollout: &'static str,
    pub reason: Option<&'static str>,
}

pub fn service(deployments: &[DeploymentFixture], events: &[&str]) -> Service {
    let primary = deployments
        .iter()
        .find(|d| d.status == "PRIMARY")
        .expect("a primary deployment");
    Service::builder()
        .service_name("oponn-dev")
        .service_arn(format!(
            "arn:aws:ecs:eu-west-1:{ACCOUNT}:service/oponn-dev/oponn-dev"
        ))
        .status("ACTIVE")
        .desired_count(2)
        .running_count(deployments.iter().map(|d| d.running).sum())
        .task_definition(task_definition(primary.revision))
        .set_deployments(Some(
            deployments
                .iter()
                .enumerate()
                .map(|(index, d)| {
                    Deployment::builder()
                        .id(format!("ecs-svc/{index}{}", d.revision))
                        .status(d.status)
                        .task_definition(task_definition(d.revision))
                        .desired_count(if d.status == "PRIMARY" { 2 } else { 0 })
                        .running_count(d.running)
                        .failed_tasks(if d.rollout == "FAILED" { 3 } else { 0 })
                        .rollout_state(DeploymentRolloutState::from(d.rollout))
                        .set_rollout_state_reason(d.reason.map(str::to_owned))
                        .build()
                })
                .collect(),
        ))
        .set_events(Some(
            events
                .iter()
                .map(|message| {
                    aws_sdk_ecs::types::ServiceEvent::builder()
                        .message(*message)
                        .build()
                })
                .collect(),
        ))
        .build()
}

pub fn steady(revision: u32) -> Service {
    service(
        &[DeploymentFixture {
            status: "PRIMARY",
            revision,
            running: 2,
            rollout: "COMPLETED",
            reason: None,
        }],
        &["(service oponn-dev) has reached a steady state."],
    )
}

pub fn targets(states: &[&str]) -> Vec<TargetHealthDescription> {
    states
        .iter()
        .enumerate()
        .map(|(index, state)| {
            TargetHealthDescription::builder()
                .target(
                    TargetDescription::builder()
                        .id(format!("i-0abc{index}"))
                        .port(32768 + index as i32)
                        .build(),
                )
                .target_health(
                    TargetHealth::builder()
                        .state(TargetHealthStateEnum::from(*state))
                        .set_description(
                            (*state != "healthy")
                                .then(|| "Target registration is in progress".to_owned()),
                        )
                        .build(),
                )
                .build()
        })
        .collect()
}

/// A stage of the pipeline as GetPipelineState shows it, optionally with a failed action.
pub fn stage(name: &str, execution: &str, status: &str, error: Option<(&str, &str)>) -> StageState {
    let mut builder = StageState::builder().stage_name(name).latest_execution(
        StageExecution::builder()
            .pipeline_execution_id(execution)
            .status(StageExecutionStatus::from(status))
            .build()
            .expect("id and status are set"),
    );
    if let Some((action, message)) = error {
        builder = builder.action_states(
            ActionState::builder()
                .action_name(action)
                .latest_execution(
                    ActionExecution::builder()
                        .status(ActionExecutionStatus::Failed)
                        .error_details(
                            ErrorDetails::builder()
                                .code("JobFailed")
                                .message(message)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        );
    }
    builder.build()
}
