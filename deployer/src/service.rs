//! The ECS service and its load balancer targets: is it steady and healthy, and image
//! rollouts and rollbacks through the ECS API (a new task definition revision, then
//! `UpdateService`), watched until ECS finishes or the deployment circuit breaker rolls back.
//!
//! The circuit breaker (service.yaml: `DeploymentCircuitBreaker`, `Rollback: true`) marks the
//! failed deployment `FAILED` and starts a deployment of the previous task definition; ECS
//! still calls the update a success. [`wait_for_deployment`] recognises both signs (the
//! failed rollout state, or our task definition no longer being the primary one) and turns
//! them into [`DeployError::RolledBack`].

use aws_sdk_ecs::types::{DeploymentRolloutState, SortOrder, TaskDefinitionStatus};

use crate::{aws::Aws, console::Console, error::DeployError, pace::Pace};

/// The container the pipeline's `imagedefinitions.json` and `rollout` address.
pub const CONTAINER: &str = "oponn";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceState {
    pub name: String,
    pub status: String,
    pub desired: i32,
    pub running: i32,
    pub task_definition: String,
    pub deployments: Vec<Deployment>,
    /// The latest service events, newest first.
    pub events: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub id: String,
    /// `PRIMARY` (the one being rolled out or running) or `ACTIVE` (being drained).
    pub status: String,
    pub task_definition: String,
    pub desired: i32,
    pub running: i32,
    pub failed_tasks: i32,
    /// `IN_PROGRESS`, `COMPLETED` or `FAILED`.
    pub rollout: Option<String>,
    pub rollout_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Steady,
    InProgress(String),
}

impl ServiceState {
    pub fn primary(&self) -> Option<&Deployment> {
        self.deployments
            .iter()
            .find(|deployment| deployment.status == "PRIMARY")
    }

    /// Steady: one deployment, completed (or without a rollout state, on schedulers that do
    /// not report one), every desired task running.
    pub fn progress(&self) -> Progress {
        let summary = self
            .deployments
            .iter()
            .map(|d| {
                format!(
                    "{} {} {}/{} running{}",
                    d.status,
                    short(&d.task_definition),
                    d.running,
                    d.desired,
                    d.rollout
                        .as_ref()
                        .map(|r| format!(", {r}"))
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        match self.deployments.as_slice() {
            [only]
                if only.status == "PRIMARY"
                    && matches!(only.rollout.as_deref(), None | Some("COMPLETED"))
                    && only.running == only.desired
                    && self.running == self.desired =>
            {
                Progress::Steady
            }
            _ => Progress::InProgress(summary),
        }
    }
}

/// `arn:...:task-definition/oponn-dev:7` -> `oponn-dev:7`.
pub fn short(task_definition: &str) -> &str {
    task_definition
        .rsplit('/')
        .next()
        .unwrap_or(task_definition)
}

pub async fn describe(
    aws: &Aws,
    cluster: &str,
    service: &str,
) -> Result<Option<ServiceState>, DeployError> {
    let response = aws
        .ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        // No cluster yet: no service either.
        Err(error) if format!("{error:?}").contains("ClusterNotFound") => return Ok(None),
        Err(error) => return Err(DeployError::aws("DescribeServices")(error)),
    };
    let Some(found) = response.services().first() else {
        return Ok(None);
    };
    if found.status() == Some("INACTIVE") {
        return Ok(None);
    }
    Ok(Some(ServiceState {
        name: found.service_name().unwrap_or(service).to_owned(),
        status: found.status().unwrap_or_default().to_owned(),
        desired: found.desired_count(),
        running: found.running_count(),
        task_definition: found.task_definition().unwrap_or_default().to_owned(),
        deployments: found
            .deployments()
            .iter()
            .map(|deployment| Deployment {
                id: deployment.id().unwrap_or_default().to_owned(),
                status: deployment.status().unwrap_or_default().to_owned(),
                task_definition: deployment.task_definition().unwrap_or_default().to_owned(),
                desired: deployment.desired_count(),
                running: deployment.running_count(),
                failed_tasks: deployment.failed_tasks(),
                rollout: deployment
                    .rollout_state()
                    .map(|state| state.as_str().to_owned()),
                rollout_reason: deployment.rollout_state_reason().map(str::to_owned),
            })
            .collect(),
        events: found
            .events()
            .iter()
            .take(5)
            .filter_map(|event| event.message().map(str::to_owned))
            .collect(),
    }))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: String,
    pub port: Option<i32>,
    pub state: String,
    pub reason: Option<String>,
}

pub async fn targets(aws: &Aws, target_group_arn: &str) -> Result<Vec<Target>, DeployError> {
    let response = aws
        .elb
        .describe_target_health()
        .target_group_arn(target_group_arn)
        .send()
        .await
        .map_err(DeployError::aws("DescribeTargetHealth"))?;
    Ok(response
        .target_health_descriptions()
        .iter()
        .map(|description| Target {
            id: description
                .target()
                .and_then(|target| target.id())
                .unwrap_or_default()
                .to_owned(),
            port: description.target().and_then(|target| target.port()),
            state: description
                .target_health()
                .and_then(|health| health.state())
                .map(|state| state.as_str().to_owned())
                .unwrap_or_default(),
            reason: description
                .target_health()
                .and_then(|health| health.description().or(health.reason().map(|r| r.as_str())))
                .map(str::to_owned),
        })
        .collect())
}

/// Every registered target healthy, and at least `wanted` of them.
pub fn targets_ready(targets: &[Target], wanted: i32) -> Result<(), String> {
    let healthy = targets
        .iter()
        .filter(|target| target.state == "healthy")
        .count();
    let others: Vec<String> = targets
        .iter()
        .filter(|target| target.state != "healthy")
        .map(|target| {
            format!(
                "{}:{} {}{}",
                target.id,
                target.port.unwrap_or_default(),
                target.state,
                target
                    .reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )
        })
        .collect();
    if healthy >= usize::try_from(wanted).unwrap_or(0) && others.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{healthy}/{wanted} targets healthy; {}",
            others.join(", ")
        ))
    }
}

/// Waits until the service is steady and, when it sits behind a target group, every target is
/// healthy. A failed rollout (circuit breaker) ends the wait with [`DeployError::RolledBack`].
pub async fn wait_until_healthy(
    aws: &Aws,
    cluster: &str,
    service: &str,
    target_group_arn: Option<&str>,
    console: &Console,
    pace: Pace,
) -> Result<ServiceState, DeployError> {
    let deadline = pace.deadline();
    let mut last = String::new();
    loop {
        let state = describe(aws, cluster, service).await?.ok_or_else(|| {
            DeployError::NotFound(format!("service {service} in cluster {cluster}"))
        })?;
        if let Some(failed) = state
            .deployments
            .iter()
            .find(|d| d.rollout.as_deref() == Some("FAILED"))
        {
            return Err(rolled_back(&state, failed));
        }
        let line = match state.progress() {
            Progress::InProgress(summary) => format!("  service {service}: {summary}"),
            Progress::Steady => match target_group_arn {
                None => return Ok(state),
                Some(arn) => match targets_ready(&targets(aws, arn).await?, state.desired) {
                    Ok(()) => {
                        console.line(format!(
                            "  service {service}: steady, {}/{} running, targets healthy",
                            state.running, state.desired
                        ));
                        return Ok(state);
                    }
                    Err(detail) => format!("  service {service}: steady; {detail}"),
                },
            },
        };
        if line != last {
            console.line(&line);
            last = line;
        }
        deadline
            .tick(|| format!("service {service} to become steady and healthy ({last})"))
            .await?;
    }
}

fn rolled_back(state: &ServiceState, failed: &Deployment) -> DeployError {
    let running = state
        .primary()
        .map(|primary| short(&primary.task_definition).to_owned())
        .unwrap_or_else(|| "(unknown)".into());
    DeployError::RolledBack {
        service: state.name.clone(),
        task_definition: short(&failed.task_definition).to_owned(),
        running,
        reason: failed.rollout_reason.clone().unwrap_or_else(|| {
            format!(
                "{} tasks failed to start or pass health checks",
                failed.failed_tasks
            )
        }),
        events: state
            .events
            .iter()
            .take(3)
            .map(|event| format!("\n  event: {event}"))
            .collect(),
    }
}

/// Registers a copy of the service's current task definition with `image` in [`CONTAINER`]
/// and returns the new revision's ARN.
pub async fn register_with_image(
    aws: &Aws,
    current: &str,
    image: &str,
) -> Result<String, DeployError> {
    let described = aws
        .ecs
        .describe_task_definition()
        .task_definition(current)
        .send()
        .await
        .map_err(DeployError::aws("DescribeTaskDefinition"))?;
    let definition = described
        .task_definition()
        .ok_or_else(|| DeployError::NotFound(format!("task definition {current}")))?;
    let mut containers = definition.container_definitions().to_vec();
    let container = containers
        .iter_mut()
        .find(|container| container.name.as_deref() == Some(CONTAINER))
        .ok_or_else(|| DeployError::NotFound(format!("container {CONTAINER} in {current}")))?;
    container.image = Some(image.to_owned());
    let registered = aws
        .ecs
        .register_task_definition()
        .family(definition.family().unwrap_or_default())
        .set_container_definitions(Some(containers))
        .set_network_mode(definition.network_mode().cloned())
        .set_task_role_arn(definition.task_role_arn().map(str::to_owned))
        .set_execution_role_arn(definition.execution_role_arn().map(str::to_owned))
        .set_requires_compatibilities(Some(definition.requires_compatibilities().to_vec()))
        .set_cpu(definition.cpu().map(str::to_owned))
        .set_memory(definition.memory().map(str::to_owned))
        .set_volumes(Some(definition.volumes().to_vec()))
        .set_placement_constraints(Some(definition.placement_constraints().to_vec()))
        .set_runtime_platform(definition.runtime_platform().cloned())
        .send()
        .await
        .map_err(DeployError::aws("RegisterTaskDefinition"))?;
    registered
        .task_definition()
        .and_then(|definition| definition.task_definition_arn())
        .map(str::to_owned)
        .ok_or_else(|| DeployError::NotFound("the registered task definition's ARN".into()))
}

/// The image of [`CONTAINER`] in a task definition.
pub async fn image_of(aws: &Aws, task_definition: &str) -> Result<Option<String>, DeployError> {
    let described = aws
        .ecs
        .describe_task_definition()
        .task_definition(task_definition)
        .send()
        .await
        .map_err(DeployError::aws("DescribeTaskDefinition"))?;
    Ok(described.task_definition().and_then(|definition| {
        definition
            .container_definitions()
            .iter()
            .find(|container| container.name() == Some(CONTAINER))
            .and_then(|container| container.image())
            .map(str::to_owned)
    }))
}

/// The revision before `current` in its family (ACTIVE ones only): what `rollback` returns to.
pub async fn previous_revision(aws: &Aws, current: &str) -> Result<String, DeployError> {
    let family = short(current)
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let listed = aws
        .ecs
        .list_task_definitions()
        .family_prefix(&family)
        .status(TaskDefinitionStatus::Active)
        .sort(SortOrder::Desc)
        .send()
        .await
        .map_err(DeployError::aws("ListTaskDefinitions"))?;
    let arns = listed.task_definition_arns();
    let position = arns
        .iter()
        .position(|arn| short(arn) == short(current))
        .ok_or_else(|| DeployError::NotFound(format!("{current} among the ACTIVE revisions")))?;
    arns.get(position + 1).cloned().ok_or_else(|| {
        DeployError::NotFound(format!("a revision of {family} before {}", short(current)))
    })
}

/// Points the service at `task_definition` and waits for ECS to finish: steady on it, or
/// rolled back by the circuit breaker (an error, loudly).
pub async fn deploy(
    aws: &Aws,
    cluster: &str,
    service: &str,
    task_definition: &str,
    console: &Console,
    pace: Pace,
) -> Result<ServiceState, DeployError> {
    aws.ecs
        .update_service()
        .cluster(cluster)
        .service(service)
        .task_definition(task_definition)
        .send()
        .await
        .map_err(DeployError::aws("UpdateService"))?;
    console.line(format!(
        "  service {service}: deploying {}",
        short(task_definition)
    ));
    wait_for_deployment(aws, cluster, service, task_definition, console, pace).await
}

pub async fn wait_for_deployment(
    aws: &Aws,
    cluster: &str,
    service: &str,
    task_definition: &str,
    console: &Console,
    pace: Pace,
) -> Result<ServiceState, DeployError> {
    let deadline = pace.deadline();
    let mut last = String::new();
    loop {
        let state = describe(aws, cluster, service).await?.ok_or_else(|| {
            DeployError::NotFound(format!("service {service} in cluster {cluster}"))
        })?;
        let ours = state
            .deployments
            .iter()
            .find(|deployment| short(&deployment.task_definition) == short(task_definition));
        match ours {
            Some(deployment)
                if deployment.rollout.as_deref()
                    == Some(DeploymentRolloutState::Failed.as_str()) =>
            {
                return Err(rolled_back(&state, deployment));
            }
            // Our deployment is gone and another one is primary: ECS rolled it back (or someone
            // deployed over it). ECS lists a new deployment as soon as UpdateService returns.
            None => {
                let gone = Deployment {
                    id: String::new(),
                    status: "FAILED".into(),
                    task_definition: task_definition.to_owned(),
                    desired: 0,
                    running: 0,
                    failed_tasks: 0,
                    rollout: Some("FAILED".into()),
                    rollout_reason: Some(
                        "the deployment was replaced (a circuit breaker rollback, or another deployment started)".into(),
                    ),
                };
                return Err(rolled_back(&state, &gone));
            }
            Some(_) => {}
        }
        match state.progress() {
            Progress::Steady => {
                console.line(format!(
                    "  service {service}: steady on {}, {}/{} running",
                    short(task_definition),
                    state.running,
                    state.desired
                ));
                return Ok(state);
            }
            Progress::InProgress(summary) => {
                if summary != last {
                    console.line(format!("  service {service}: {summary}"));
                    last = summary;
                }
            }
        }
        deadline
            .tick(|| format!("the deployment of {} to {service}", short(task_definition)))
            .await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(status: &str, rollout: Option<&str>, running: i32) -> Deployment {
        Deployment {
            id: "ecs-svc/1".into(),
            status: status.into(),
            task_definition: "arn:aws:ecs:eu-west-1:1:task-definition/oponn-dev:7".into(),
            desired: 2,
            running,
            failed_tasks: 0,
            rollout: rollout.map(Into::into),
            rollout_reason: None,
        }
    }

    fn state(deployments: Vec<Deployment>, running: i32) -> ServiceState {
        ServiceState {
            name: "oponn-dev".into(),
            status: "ACTIVE".into(),
            desired: 2,
            running,
            task_definition: "oponn-dev:7".into(),
            deployments,
            events: vec![],
        }
    }

    #[test]
    fn one_completed_deployment_with_every_task_running_is_steady() {
        let steady = state(vec![deployment("PRIMARY", Some("COMPLETED"), 2)], 2);
        assert_eq!(steady.progress(), Progress::Steady);
    }

    #[test]
    fn a_deployment_still_draining_the_old_one_is_not_steady() {
        let rolling = state(
            vec![
                deployment("PRIMARY", Some("IN_PROGRESS"), 1),
                deployment("ACTIVE", None, 1),
            ],
            2,
        );
        assert!(
            matches!(rolling.progress(), Progress::InProgress(summary) if summary.contains("ACTIVE"))
        );
    }

    #[test]
    fn targets_are_ready_when_all_are_healthy_and_enough() {
        let target = |state: &str| Target {
            id: "i-1".into(),
            port: Some(32768),
            state: state.into(),
            reason: None,
        };
        assert!(targets_ready(&[target("healthy"), target("healthy")], 2).is_ok());
        assert!(targets_ready(&[target("healthy")], 2).is_err());
        let error = targets_ready(
            &[target("healthy"), target("healthy"), target("unhealthy")],
            2,
        )
        .expect_err("one unhealthy");
        assert!(error.contains("unhealthy"), "{error}");
        assert!(targets_ready(&[], 0).is_ok());
    }
}
