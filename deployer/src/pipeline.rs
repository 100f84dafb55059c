//! CodePipeline and its GitHub connection: is the connection approved, what the pipeline's
//! stages are doing, and `release` (start a run and follow it to the end).
//!
//! The first image of a new account comes from the pipeline. CodePipeline starts a run when the
//! pipeline is created, while the connection CloudFormation made is still `PENDING`, so that run
//! fails at Source. [`first_build`] therefore follows the latest run only when it can still
//! build (in progress, succeeded, or its Build stage succeeded); otherwise it starts a new one.

use aws_sdk_codepipeline::types::PipelineExecutionStatus;
use aws_smithy_types::date_time::Format;

use crate::{aws::Aws, console::Console, error::DeployError, pace::Pace};

/// Fails with the approval steps unless the connection is `AVAILABLE`. A connection that
/// CloudFormation creates starts `PENDING`, and stays so until someone approves it in the
/// console: no pipeline run can fetch the source before that. `then` is the command to run
/// after approving, in the caller's context (`deployer up`, `deployer release`).
pub async fn require_connection(
    aws: &Aws,
    arn: &str,
    then: &'static str,
) -> Result<(), DeployError> {
    let response = aws
        .connections
        .get_connection()
        .connection_arn(arn)
        .send()
        .await
        .map_err(DeployError::aws("GetConnection"))?;
    let connection = response
        .connection()
        .ok_or_else(|| DeployError::NotFound(format!("connection {arn}")))?;
    let status = connection
        .connection_status()
        .map(|status| status.as_str().to_owned())
        .unwrap_or_default();
    if status == "AVAILABLE" {
        return Ok(());
    }
    Err(DeployError::ConnectionNotApproved {
        arn: arn.to_owned(),
        name: connection.connection_name().unwrap_or_default().to_owned(),
        status,
        console_url: connection_console_url(arn, &aws.region),
        then,
    })
}

/// The console page of one connection, where *Update pending connection* is:
/// `arn:aws:codestar-connections:{region}:{account}:connection/{id}` ->
/// `https://{region}.console.aws.amazon.com/codesuite/settings/{account}/{region}/connections/{id}`.
/// An ARN of another shape gets the list of connections of the region.
pub fn connection_console_url(arn: &str, region: &str) -> String {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, _, arn_region, account, resource] if !arn_region.is_empty() => {
            match resource.strip_prefix("connection/") {
                Some(id) if !id.is_empty() => format!(
                    "https://{arn_region}.console.aws.amazon.com/codesuite/settings/{account}/{arn_region}/connections/{id}?region={arn_region}"
                ),
                _ => connections_console_url(region),
            }
        }
        _ => connections_console_url(region),
    }
}

/// The Developer Tools console's list of connections (the address AWS documents).
pub fn connections_console_url(region: &str) -> String {
    format!("https://console.aws.amazon.com/codesuite/settings/connections?region={region}")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub name: String,
    pub status: String,
    pub execution: String,
    /// Failed actions: `Build: tests failed (see the logs)`.
    pub errors: Vec<String>,
}

pub async fn stages(aws: &Aws, pipeline: &str) -> Result<Vec<Stage>, DeployError> {
    let response = aws
        .pipelines
        .get_pipeline_state()
        .name(pipeline)
        .send()
        .await
        .map_err(DeployError::aws("GetPipelineState"))?;
    Ok(response
        .stage_states()
        .iter()
        .map(|stage| Stage {
            name: stage.stage_name().unwrap_or_default().to_owned(),
            status: stage
                .latest_execution()
                .map(|execution| execution.status().as_str().to_owned())
                .unwrap_or_else(|| "never run".into()),
            execution: stage
                .latest_execution()
                .map(|execution| execution.pipeline_execution_id().to_owned())
                .unwrap_or_default(),
            errors: stage
                .action_states()
                .iter()
                .filter_map(|action| {
                    let execution = action.latest_execution()?;
                    let message = execution.error_details()?.message()?;
                    Some(format!(
                        "{}: {message}",
                        action.action_name().unwrap_or("?")
                    ))
                })
                .collect(),
        })
        .collect())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: String,
    pub status: String,
    pub started: String,
    pub revision: String,
}

pub async fn recent_runs(aws: &Aws, pipeline: &str, count: i32) -> Result<Vec<Run>, DeployError> {
    let response = aws
        .pipelines
        .list_pipeline_executions()
        .pipeline_name(pipeline)
        .max_results(count)
        .send()
        .await
        .map_err(DeployError::aws("ListPipelineExecutions"))?;
    Ok(response
        .pipeline_execution_summaries()
        .iter()
        .map(|run| Run {
            id: run.pipeline_execution_id().unwrap_or_default().to_owned(),
            status: run
                .status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            started: run
                .start_time()
                .and_then(|time| time.fmt(Format::DateTime).ok())
                .unwrap_or_default(),
            revision: run
                .source_revisions()
                .first()
                .map(|revision| {
                    let id = revision.revision_id().unwrap_or_default();
                    let summary = revision.revision_summary().unwrap_or_default();
                    format!(
                        "{} {}",
                        &id[..id.len().min(12)],
                        summary.lines().next().unwrap_or_default()
                    )
                })
                .unwrap_or_default(),
        })
        .collect())
}

/// Starts a run of the pipeline and follows it to the end.
pub async fn release(
    aws: &Aws,
    pipeline: &str,
    console: &Console,
    pace: Pace,
) -> Result<String, DeployError> {
    let execution = start(aws, pipeline, console).await?;
    follow(aws, pipeline, &execution, None, console, pace).await?;
    Ok(execution)
}

/// Starts a run of the pipeline (StartPipelineExecution) and returns its id.
pub async fn start(aws: &Aws, pipeline: &str, console: &Console) -> Result<String, DeployError> {
    let started = aws
        .pipelines
        .start_pipeline_execution()
        .name(pipeline)
        .send()
        .await
        .map_err(DeployError::aws("StartPipelineExecution"))?;
    let execution = started
        .pipeline_execution_id()
        .ok_or_else(|| DeployError::NotFound("the started execution's id".into()))?
        .to_owned();
    console.line(format!("  pipeline {pipeline}: started {execution}"));
    Ok(execution)
}

/// Follows one execution until it ends (`until_stage`: only until that stage succeeds),
/// printing each stage's transitions; an execution that fails names the failed action.
pub async fn follow(
    aws: &Aws,
    pipeline: &str,
    execution: &str,
    until_stage: Option<&str>,
    console: &Console,
    pace: Pace,
) -> Result<(), DeployError> {
    let deadline = pace.deadline();
    let mut printed: Vec<(String, String)> = Vec::new();
    loop {
        let stages = stages(aws, pipeline).await?;
        for stage in stages.iter().filter(|stage| stage.execution == execution) {
            let seen = (stage.name.clone(), stage.status.clone());
            if !printed.contains(&seen) {
                console.line(format!(
                    "  pipeline {pipeline}: {} {}",
                    stage.name, stage.status
                ));
                printed.push(seen);
            }
        }
        if let Some(wanted) = until_stage {
            let done = stages.iter().any(|stage| {
                stage.name == wanted && stage.execution == execution && stage.status == "Succeeded"
            });
            if done {
                return Ok(());
            }
        }
        let response = aws
            .pipelines
            .get_pipeline_execution()
            .pipeline_name(pipeline)
            .pipeline_execution_id(execution)
            .send()
            .await
            .map_err(DeployError::aws("GetPipelineExecution"))?;
        let status = response
            .pipeline_execution()
            .and_then(|run| run.status())
            .cloned()
            .unwrap_or(PipelineExecutionStatus::InProgress);
        match status {
            PipelineExecutionStatus::Succeeded => return Ok(()),
            PipelineExecutionStatus::InProgress | PipelineExecutionStatus::Stopping => {}
            other => {
                let detail = stages
                    .iter()
                    .filter(|stage| stage.execution == execution)
                    .flat_map(|stage| {
                        stage
                            .errors
                            .iter()
                            .map(move |error| format!("{}/{error}", stage.name))
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                let summary = response
                    .pipeline_execution()
                    .and_then(|run| run.status_summary())
                    .unwrap_or_default();
                return Err(DeployError::PipelineFailed {
                    pipeline: pipeline.to_owned(),
                    execution: execution.to_owned(),
                    status: other.as_str().to_owned(),
                    detail: if detail.is_empty() {
                        summary.to_owned()
                    } else {
                        detail
                    },
                });
            }
        }
        deadline
            .tick(|| format!("pipeline {pipeline} execution {execution}"))
            .await?;
    }
}

/// Which run the service's first image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstRun {
    /// This run has built the image, or may still: wait for its Build stage.
    Follow(String),
    /// No run can build it any more (none, or the latest ended before its Build succeeded:
    /// the run at creation fails at Source while the connection is pending). Why, for the log.
    Start(String),
}

/// Picks the run to wait for. `stages` is the pipeline's state (each stage's latest
/// execution), read only when the latest run has ended without succeeding.
pub fn first_run(latest: Option<&Run>, stages: &[Stage]) -> FirstRun {
    let Some(run) = latest else {
        return FirstRun::Start("no run yet".into());
    };
    if matches!(run.status.as_str(), "InProgress" | "Succeeded") {
        return FirstRun::Follow(run.id.clone());
    }
    let built = stages.iter().any(|stage| {
        stage.name == "Build" && stage.execution == run.id && stage.status == "Succeeded"
    });
    if built {
        return FirstRun::Follow(run.id.clone());
    }
    let failed_at = stages
        .iter()
        .find(|stage| stage.execution == run.id && stage.status != "Succeeded")
        .map(|stage| {
            let errors = match stage.errors.is_empty() {
                true => String::new(),
                false => format!(" ({})", stage.errors.join("; ")),
            };
            format!(" at {}{errors}", stage.name)
        })
        .unwrap_or_default();
    FirstRun::Start(format!(
        "the latest run {} ended {}{failed_at} before building an image",
        run.id, run.status
    ))
}

/// The commit the run of [`first_run`] builds, once its Build stage has pushed the image: what
/// the service's first deployment runs (`up` on a new account). Starts that run when needed.
pub async fn first_build(
    aws: &Aws,
    pipeline: &str,
    console: &Console,
    pace: Pace,
) -> Result<String, DeployError> {
    let latest = recent_runs(aws, pipeline, 1).await?.into_iter().next();
    let ended = latest
        .as_ref()
        .is_some_and(|run| !matches!(run.status.as_str(), "InProgress" | "Succeeded"));
    let state = match ended {
        true => stages(aws, pipeline).await?,
        false => Vec::new(),
    };
    let run = match first_run(latest.as_ref(), &state) {
        FirstRun::Follow(id) => {
            console.line(format!(
                "  waiting for pipeline {pipeline} run {id} to build the first image"
            ));
            id
        }
        FirstRun::Start(why) => {
            console.line(format!("  pipeline {pipeline}: {why}; starting a new run"));
            let id = start(aws, pipeline, console).await?;
            console.line(format!(
                "  waiting for pipeline {pipeline} run {id} to build the first image"
            ));
            id
        }
    };
    follow(aws, pipeline, &run, Some("Build"), console, pace).await?;
    let response = aws
        .pipelines
        .get_pipeline_execution()
        .pipeline_name(pipeline)
        .pipeline_execution_id(&run)
        .send()
        .await
        .map_err(DeployError::aws("GetPipelineExecution"))?;
    response
        .pipeline_execution()
        .and_then(|execution| execution.artifact_revisions().first())
        .and_then(|revision| revision.revision_id())
        .map(str::to_owned)
        .ok_or_else(|| DeployError::NotFound(format!("the source revision of run {run}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(status: &str) -> Run {
        Run {
            id: "e-1".into(),
            status: status.into(),
            started: String::new(),
            revision: String::new(),
        }
    }

    fn stage(name: &str, status: &str) -> Stage {
        Stage {
            name: name.into(),
            status: status.into(),
            execution: "e-1".into(),
            errors: vec![],
        }
    }

    #[test]
    fn a_running_or_succeeded_run_is_followed() {
        for status in ["InProgress", "Succeeded"] {
            assert_eq!(
                first_run(Some(&run(status)), &[]),
                FirstRun::Follow("e-1".into())
            );
        }
    }

    #[test]
    fn a_run_that_failed_after_building_is_followed_for_its_image() {
        let state = [
            stage("Source", "Succeeded"),
            stage("Build", "Succeeded"),
            stage("Deploy", "Failed"),
        ];
        assert_eq!(
            first_run(Some(&run("Failed")), &state),
            FirstRun::Follow("e-1".into())
        );
    }

    #[test]
    fn a_run_that_failed_at_source_or_none_at_all_starts_a_new_one() {
        let mut source = stage("Source", "Failed");
        source.errors = vec!["GitHub: connection is not available".into()];
        let FirstRun::Start(why) = first_run(Some(&run("Failed")), &[source]) else {
            panic!("a new run");
        };
        assert!(why.contains("e-1 ended Failed at Source"), "{why}");
        assert!(why.contains("connection is not available"), "{why}");
        assert!(matches!(first_run(None, &[]), FirstRun::Start(_)));
        assert!(matches!(
            first_run(Some(&run("Stopped")), &[stage("Source", "Succeeded")]),
            FirstRun::Start(_)
        ));
    }

    #[test]
    fn the_console_url_opens_the_connection_itself() {
        assert_eq!(
            connection_console_url(
                "arn:aws:codestar-connections:eu-west-1:123456789012:connection/39e4c34d",
                "eu-west-1"
            ),
            "https://eu-west-1.console.aws.amazon.com/codesuite/settings/123456789012/eu-west-1/connections/39e4c34d?region=eu-west-1"
        );
        assert_eq!(
            connection_console_url("not-an-arn", "us-east-1"),
            "https://console.aws.amazon.com/codesuite/settings/connections?region=us-east-1"
        );
    }
}
