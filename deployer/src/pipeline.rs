//! CodePipeline and its GitHub connection: is the connection approved, what the pipeline's
//! stages are doing, and `release` (start a run and follow it to the end).

use aws_sdk_codepipeline::types::PipelineExecutionStatus;
use aws_smithy_types::date_time::Format;

use crate::{aws::Aws, console::Console, error::DeployError, pace::Pace};

/// Fails with the approval steps unless the connection is `AVAILABLE`. A connection that
/// CloudFormation creates starts `PENDING`, and stays so until someone approves it in the
/// console: no pipeline run can fetch the source before that.
pub async fn require_connection(aws: &Aws, arn: &str) -> Result<(), DeployError> {
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
        region: aws.region.clone(),
    })
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
    follow(aws, pipeline, &execution, None, console, pace).await?;
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

/// The commit the latest run builds, once its Build stage has pushed the image: what the
/// service's first deployment runs (`up` on a new account).
pub async fn first_build(
    aws: &Aws,
    pipeline: &str,
    console: &Console,
    pace: Pace,
) -> Result<String, DeployError> {
    let runs = recent_runs(aws, pipeline, 1).await?;
    let run = runs.first().ok_or_else(|| {
        DeployError::NotFound(format!(
            "a run of pipeline {pipeline} (start one: `deployer release`)"
        ))
    })?;
    console.line(format!(
        "  waiting for pipeline {pipeline} run {} to build the first image",
        run.id
    ));
    follow(aws, pipeline, &run.id, Some("Build"), console, pace).await?;
    let response = aws
        .pipelines
        .get_pipeline_execution()
        .pipeline_name(pipeline)
        .pipeline_execution_id(&run.id)
        .send()
        .await
        .map_err(DeployError::aws("GetPipelineExecution"))?;
    response
        .pipeline_execution()
        .and_then(|execution| execution.artifact_revisions().first())
        .and_then(|revision| revision.revision_id())
        .map(str::to_owned)
        .ok_or_else(|| DeployError::NotFound(format!("the source revision of run {}", run.id)))
}
