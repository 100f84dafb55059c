//! Why the service's tasks do not stay up: its recently stopped tasks (ECS `ListTasks` with
//! `desiredStatus` STOPPED, then `DescribeTasks`: each task's stopped reason and each
//! container's exit code and reason) and the last lines of its log group (CloudWatch Logs: the
//! newest streams, then their last events). `up`, `rollout` and `rollback` print this when the
//! circuit breaker rolls a deployment back or the wait times out; `deployer logs` prints the
//! tail alone.
//!
//! ECS shows stopped tasks for a short time only (at least an hour, says its guide), so this runs
//! as soon as the failure is seen.
//! A diagnosis that fails itself is reported in its place, never instead of the failure.

use aws_sdk_cloudwatchlogs::types::OrderBy;
use aws_sdk_ecs::types::DesiredStatus;

use crate::{aws::Aws, console::Console, error::DeployError, service::short};

/// How many stopped tasks to describe (DescribeTasks takes up to 100).
const STOPPED_TASKS: i32 = 5;
/// How many of the newest log streams to read the tail of (one per task).
const LOG_STREAMS: i32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoppedTask {
    pub id: String,
    pub task_definition: String,
    pub stopped_reason: String,
    pub containers: Vec<StoppedContainer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoppedContainer {
    pub name: String,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
}

impl std::fmt::Display for StoppedTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "task {} ({}): {}",
            self.id,
            short(&self.task_definition),
            self.stopped_reason
        )?;
        for container in &self.containers {
            let exit = container
                .exit_code
                .map(|code| format!("exit code {code}"))
                .unwrap_or_else(|| "no exit code".into());
            let reason = container
                .reason
                .as_ref()
                .map(|reason| format!(", {reason}"))
                .unwrap_or_default();
            write!(f, "\n      container {}: {exit}{reason}", container.name)?;
        }
        Ok(())
    }
}

/// The service's most recently stopped tasks, newest first as ECS lists them.
pub async fn stopped_tasks(
    aws: &Aws,
    cluster: &str,
    service: &str,
) -> Result<Vec<StoppedTask>, DeployError> {
    let listed = aws
        .ecs
        .list_tasks()
        .cluster(cluster)
        .service_name(service)
        .desired_status(DesiredStatus::Stopped)
        .max_results(STOPPED_TASKS)
        .send()
        .await
        .map_err(DeployError::aws("ListTasks"))?;
    if listed.task_arns().is_empty() {
        return Ok(Vec::new());
    }
    let described = aws
        .ecs
        .describe_tasks()
        .cluster(cluster)
        .set_tasks(Some(listed.task_arns().to_vec()))
        .send()
        .await
        .map_err(DeployError::aws("DescribeTasks"))?;
    Ok(described
        .tasks()
        .iter()
        .map(|task| StoppedTask {
            id: task
                .task_arn()
                .and_then(|arn| arn.rsplit('/').next())
                .unwrap_or_default()
                .to_owned(),
            task_definition: task.task_definition_arn().unwrap_or_default().to_owned(),
            stopped_reason: task
                .stopped_reason()
                .unwrap_or("(no stopped reason)")
                .to_owned(),
            containers: task
                .containers()
                .iter()
                .map(|container| StoppedContainer {
                    name: container.name().unwrap_or_default().to_owned(),
                    exit_code: container.exit_code(),
                    reason: container.reason().map(str::to_owned),
                })
                .collect(),
        })
        .collect())
}

/// The last `lines` events of the log group, across its newest streams, oldest first.
pub async fn log_tail(aws: &Aws, group: &str, lines: i32) -> Result<Vec<String>, DeployError> {
    let streams = aws
        .logs
        .describe_log_streams()
        .log_group_name(group)
        .order_by(OrderBy::LastEventTime)
        .descending(true)
        .limit(LOG_STREAMS)
        .send()
        .await
        .map_err(DeployError::aws("DescribeLogStreams"))?;
    let mut events: Vec<(i64, String)> = Vec::new();
    for stream in streams.log_streams() {
        let Some(name) = stream.log_stream_name() else {
            continue;
        };
        let response = aws
            .logs
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(name)
            .start_from_head(false)
            .limit(lines)
            .send()
            .await
            .map_err(DeployError::aws("GetLogEvents"))?;
        let task = name.rsplit('/').next().unwrap_or(name);
        events.extend(response.events().iter().map(|event| {
            (
                event.timestamp().unwrap_or_default(),
                format!(
                    "[{task}] {}",
                    event.message().unwrap_or_default().trim_end()
                ),
            )
        }));
    }
    events.sort_by_key(|(timestamp, _)| *timestamp);
    let skip = events
        .len()
        .saturating_sub(usize::try_from(lines).unwrap_or(0));
    Ok(events
        .into_iter()
        .skip(skip)
        .map(|(_, line)| line)
        .collect())
}

/// Prints the stopped tasks and the log tail; what cannot be read is said in its place.
pub async fn report(aws: &Aws, cluster: &str, service: &str, log_group: &str, console: &Console) {
    console.line(format!("diagnosis of service {service}:"));
    match stopped_tasks(aws, cluster, service).await {
        Ok(tasks) if tasks.is_empty() => {
            console.line("  no stopped tasks (ECS keeps them about an hour)")
        }
        Ok(tasks) => {
            console.line("  stopped tasks, newest first:");
            for task in tasks {
                console.line(format!("    {task}"));
            }
        }
        Err(error) => console.line(format!("  stopped tasks unavailable: {error}")),
    }
    match log_tail(aws, log_group, 20).await {
        Ok(lines) if lines.is_empty() => console.line(format!("  log group {log_group}: empty")),
        Ok(lines) => {
            console.line(format!("  last lines of log group {log_group}:"));
            for line in lines {
                console.line(format!("    {line}"));
            }
        }
        Err(error) => console.line(format!("  log group {log_group} unavailable: {error}")),
    }
}
