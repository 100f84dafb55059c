//! The commands: `plan`, `up`, `verify`, `status`, `logs`, `release`, `rollout`, `rollback`, `down`.
//! Each composes the pure planning (`stacks`, `plan`) with the AWS modules; none provisions
//! anything itself.

use aws_sdk_cloudformation::types::ChangeSetType;

use crate::{
    aws::Aws,
    cloudformation::{self, DeployedStack, EventFollower, Operation, REVIEW_IN_PROGRESS},
    config::DeployConfig,
    console::Console,
    diagnose,
    error::DeployError,
    pace::Pace,
    pipeline,
    plan::StackPlan,
    preflight, readiness,
    service::{self, short},
    stacks::{self, Layer, Names, StackSpec, IMAGE_FROM_FIRST_BUILD},
};

/// After approving the connection during `up`: the run at creation has failed at Source, and
/// `up` starts a new one.
const UP_AGAIN: &str = "run `deployer up` again: it starts a new pipeline run (the one started \
                        when the pipeline was created failed at Source) and waits for its build";
const RELEASE: &str = "run `deployer release`";

pub struct Deployer {
    pub config: DeployConfig,
    pub aws: Aws,
    pub console: Console,
    pub pace: Pace,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct UpOptions {
    /// Skip the check through ECS, ELBv2 and CodePipeline once the stacks are applied.
    pub skip_verify: bool,
    /// Answer yes to every question (CI): recreating a stack left `ROLLBACK_COMPLETE`.
    pub yes: bool,
}

impl Deployer {
    fn names(&self) -> Names {
        Names::of(&self.config)
    }

    async fn deployed(&self, layer: Layer) -> Result<Option<DeployedStack>, DeployError> {
        cloudformation::describe(
            &self.aws.cloudformation,
            &stacks::stack_name(&self.config, layer),
        )
        .await
    }

    async fn output(&self, layer: Layer, key: &str) -> Result<String, DeployError> {
        let stack = self.deployed(layer).await?.ok_or_else(|| {
            DeployError::NotFound(format!(
                "stack {} (run `deployer up` first)",
                stacks::stack_name(&self.config, layer)
            ))
        })?;
        stack
            .outputs
            .get(key)
            .filter(|value| !value.is_empty())
            .cloned()
            .ok_or_else(|| DeployError::NotFound(format!("output {key} of stack {}", stack.name)))
    }

    /// The service's image: the one it runs now (so `up` never undoes a release), else the
    /// config's first image, else none yet.
    async fn current_image(&self) -> Result<Option<String>, DeployError> {
        let names = self.names();
        if self.deployed(Layer::Service).await?.is_some() {
            if let Some(state) =
                service::describe(&self.aws, &names.cluster, &names.service).await?
            {
                let running = state
                    .primary()
                    .map(|p| p.task_definition.clone())
                    .unwrap_or(state.task_definition);
                if let Some(image) = service::image_of(&self.aws, &running).await? {
                    return Ok(Some(image));
                }
            }
        }
        Ok(self.config.service.image.clone())
    }

    /// The plan of one stack against what is deployed.
    pub async fn plan_stack(&self, spec: &StackSpec) -> Result<StackPlan, DeployError> {
        let client = &self.aws.cloudformation;
        let deployed = cloudformation::describe(client, &spec.name).await?;
        let Some(deployed) = deployed.filter(|stack| stack.status != REVIEW_IN_PROGRESS) else {
            return Ok(StackPlan::create(spec));
        };
        cloudformation::check_updatable(&deployed)?;
        let template = cloudformation::deployed_template(client, &spec.name).await?;
        let changes = cloudformation::change_set(client, spec, self.pace).await?;
        Ok(StackPlan::update(
            spec,
            &deployed.parameters,
            template.as_ref(),
            changes,
        ))
    }

    /// `plan`: every stack's diff, in apply order. Creates nothing (change sets are deleted).
    pub async fn plan(&self) -> Result<Vec<StackPlan>, DeployError> {
        self.config.require_https_outside_dev()?;
        let image = self
            .current_image()
            .await?
            .unwrap_or_else(|| IMAGE_FROM_FIRST_BUILD.into());
        let mut plans = Vec::new();
        for mut spec in stacks::specs(&self.config, &image)? {
            if spec.layer == Layer::Service {
                self.keep_desired_count(&mut spec).await?;
            }
            let plan = self.plan_stack(&spec).await?;
            self.console.line(plan.to_string().trim_end());
            plans.push(plan);
        }
        self.report_unconfigured().await?;
        let changes = plans.iter().filter(|plan| plan.is_change()).count();
        self.console
            .line(format!("plan: {changes} of {} stacks change", plans.len()));
        Ok(plans)
    }

    /// Says which deployed stacks `deploy.toml` no longer has (a queue stack after
    /// `queue = "sqs"` was dropped): `plan` and `up` leave them alone, and `down` treats them
    /// like the others. One holding data may hold what the person still needs: a queue
    /// nothing reads any more still holds the writes no worker persisted.
    async fn report_unconfigured(&self) -> Result<(), DeployError> {
        for layer in Layer::ALL {
            if layer.is_configured(&self.config) {
                continue;
            }
            if let Some(stack) = self.deployed(layer).await? {
                let data = layer
                    .data(&self.config)
                    .map(|data| format!("; it holds {data}"))
                    .unwrap_or_default();
                self.console.line(format!(
                    "! {}: deployed but not in deploy.toml, left alone{data}",
                    stack.name
                ));
            }
        }
        Ok(())
    }

    /// `up`: each stack in order, created or updated, its events streamed, then (unless told
    /// not to) the service verified. A failure stops at that stack; CloudFormation has rolled
    /// it back.
    pub async fn up(&self, options: UpOptions) -> Result<Vec<StackPlan>, DeployError> {
        self.config.require_https_outside_dev()?;
        preflight::check(&self.aws, &self.config, &self.console).await?;
        let mut plans = Vec::new();
        for layer in stacks::layers(&self.config) {
            self.recreate_if_rolled_back(layer, options.yes).await?;
            let image = match layer {
                Layer::Service => self.image_for_service().await?,
                _ => String::new(),
            };
            let mut spec = stacks::spec(&self.config, layer, &image)?;
            if layer == Layer::Service {
                self.keep_desired_count(&mut spec).await?;
            }
            let plan = self.apply_confirmed(&spec, options.yes).await;
            let failed = matches!(
                plan,
                Err(DeployError::StackFailed { .. } | DeployError::Timeout { .. })
            );
            if failed && layer == Layer::Service {
                // CloudFormation's reason is "the service did not stabilize"; the tasks say why.
                self.diagnose().await;
            }
            plans.push(plan?);
        }
        self.report_unconfigured().await?;
        if !options.skip_verify {
            self.verify().await?;
        }
        self.console.line("up: done");
        Ok(plans)
    }

    /// The image the service stack is applied with: the running one, the config's, or (on a
    /// new account) the pipeline's first build.
    pub async fn image_for_service(&self) -> Result<String, DeployError> {
        if let Some(image) = self.current_image().await? {
            return Ok(image);
        }
        // A new account: the service's first image is the pipeline's first build, which
        // CodePipeline starts when the pipeline is created, once the connection is approved.
        self.console
            .line("no image yet: the service waits for the pipeline's first build");
        let connection = self.output(Layer::Pipeline, "ConnectionArn").await?;
        pipeline::require_connection(&self.aws, &connection, UP_AGAIN).await?;
        let names = self.names();
        let commit =
            pipeline::first_build(&self.aws, &names.pipeline, &self.console, self.pace).await?;
        let repository = self.output(Layer::Pipeline, "RepositoryUri").await?;
        Ok(format!("{repository}:{commit}"))
    }

    /// Shows what applying `spec` changes and, after a yes (asked, or `--yes`), executes the
    /// change set that was shown, by its id: a `CREATE` change set for a new stack (or one left
    /// `REVIEW_IN_PROGRESS` by a create never executed, which holds nothing), an `UPDATE` one
    /// for a deployed stack, so nothing that changed in between is applied unseen.
    /// Replacements of resources that hold data are called out before the question. A change
    /// set not executed is deleted, and for a create the empty stack CloudFormation made for it.
    async fn apply_confirmed(&self, spec: &StackSpec, yes: bool) -> Result<StackPlan, DeployError> {
        let client = &self.aws.cloudformation;
        let deployed = cloudformation::describe(client, &spec.name)
            .await?
            .filter(|stack| stack.status != REVIEW_IN_PROGRESS);
        let kind = match &deployed {
            Some(deployed) => {
                cloudformation::check_updatable(deployed)?;
                ChangeSetType::Update
            }
            None => ChangeSetType::Create,
        };
        let pending = cloudformation::prepare_change_set(
            client,
            spec,
            "deployer-up",
            kind.clone(),
            self.pace,
        )
        .await;
        let pending = match pending {
            Ok(pending) => pending,
            Err(error) => {
                // An update's failed change set is deleted already; a create's leaves its stack.
                if kind == ChangeSetType::Create {
                    cloudformation::delete_unreviewed_stack(client, &spec.name).await;
                }
                return Err(error);
            }
        };
        let plan = match &deployed {
            Some(deployed) => StackPlan::update(
                spec,
                &deployed.parameters,
                cloudformation::deployed_template(client, &spec.name)
                    .await?
                    .as_ref(),
                pending.changes.clone(),
            ),
            None => StackPlan::create_from_change_set(spec, pending.changes.as_deref()),
        };
        self.console.line(plan.to_string().trim_end());
        // No change set changes (CloudFormation failed it as empty): nothing to execute, even
        // when a parameter the stack ignores differs.
        if pending.changes.is_none() || !plan.is_change() {
            cloudformation::discard_change_set(client, &spec.name, &pending.id, &kind).await;
            if plan.is_change() {
                self.console.line(format!("= {}: no change", spec.name));
            }
            return Ok(plan);
        }
        for replaced in plan.stateful_replacements() {
            self.console.line(format!(
                "! {}: REPLACES {replaced}, which holds data: the new one starts empty",
                spec.name
            ));
        }
        let (question, operation) = match kind {
            ChangeSetType::Create => (
                format!("Create stack {} with this change set?", spec.name),
                Operation::Create,
            ),
            _ => (
                format!("Apply this change set to stack {}?", spec.name),
                Operation::Update,
            ),
        };
        if let Err(error) = self.confirm(&question, yes).await {
            cloudformation::discard_change_set(client, &spec.name, &pending.id, &kind).await;
            return Err(error);
        }
        self.execute_shown(spec, &pending.id, operation).await?;
        Ok(plan)
    }

    /// Executes the change set `id` that was shown and follows the stack's events to the end.
    async fn execute_shown(
        &self,
        spec: &StackSpec,
        id: &str,
        operation: Operation,
    ) -> Result<(), DeployError> {
        let client = &self.aws.cloudformation;
        let total = spec.template.resources().len();
        let mut follower = EventFollower::start(client, &spec.name, total).await;
        cloudformation::execute_change_set(client, &spec.name, id).await?;
        cloudformation::follow(
            client,
            &mut follower,
            &spec.name,
            operation,
            &self.console,
            self.pace,
        )
        .await?;
        self.console
            .line(format!("{}: {operation:?} complete", spec.name));
        Ok(())
    }

    async fn confirm(&self, question: &str, yes: bool) -> Result<(), DeployError> {
        match yes || self.console.confirm(question).await {
            true => Ok(()),
            false => Err(DeployError::NotConfirmed(question.to_owned())),
        }
    }

    /// An update passes the service's current desired count, not deploy.toml's: autoscaling
    /// moves it between min and max, and re-applying the stack must not reset it.
    async fn keep_desired_count(&self, spec: &mut StackSpec) -> Result<(), DeployError> {
        let names = self.names();
        if self.deployed(Layer::Service).await?.is_none() {
            return Ok(());
        }
        if let Some(state) = service::describe(&self.aws, &names.cluster, &names.service).await? {
            let current = state.desired.to_string();
            if spec.parameters.get("DesiredCount") != Some(&current) {
                self.console.line(format!(
                    "  service {}: keeping its current desired count {current} (autoscaling's), \
                     not deploy.toml's {}",
                    names.service,
                    spec.parameters
                        .get("DesiredCount")
                        .cloned()
                        .unwrap_or_default()
                ));
            }
            spec.parameters.insert("DesiredCount".into(), current);
        }
        Ok(())
    }

    /// A stack whose creation failed is left `ROLLBACK_COMPLETE`: empty, and impossible to
    /// update. After a yes (asked, or `--yes`), it is deleted so that `up` creates it again.
    async fn recreate_if_rolled_back(&self, layer: Layer, yes: bool) -> Result<(), DeployError> {
        let Some(stack) = self.deployed(layer).await? else {
            return Ok(());
        };
        if stack.status != "ROLLBACK_COMPLETE" {
            return Ok(());
        }
        let question = format!(
            "stack {} is ROLLBACK_COMPLETE: its creation failed{} and it holds no resources. \
             Delete it and create it again?",
            stack.name,
            stack
                .reason
                .as_ref()
                .map(|reason| format!(" ({reason})"))
                .unwrap_or_default()
        );
        if !yes && !self.console.confirm(&question).await {
            return Err(cloudformation::check_updatable(&stack)
                .err()
                .unwrap_or(DeployError::NotConfirmed(question)));
        }
        self.delete_stack(layer, &stack).await
    }

    /// Deletes one deployed stack and follows its events to the end.
    async fn delete_stack(&self, layer: Layer, stack: &DeployedStack) -> Result<(), DeployError> {
        let name = &stack.name;
        self.console.line(format!("- {name}: delete"));
        let client = &self.aws.cloudformation;
        let spec_resources = stacks::spec(&self.config, layer, IMAGE_FROM_FIRST_BUILD)
            .map(|spec| spec.template.resources().len())
            .unwrap_or(0);
        let mut follower = EventFollower::start(client, &stack.id, spec_resources).await;
        client
            .delete_stack()
            .stack_name(&stack.id)
            .send()
            .await
            .map_err(|error| DeployError::StackFailed {
                stack: name.clone(),
                status: "DELETE_FAILED".into(),
                reason: crate::error::describe_sdk_error(&error),
            })?;
        cloudformation::follow(
            client,
            &mut follower,
            &stack.id,
            Operation::Delete,
            &self.console,
            self.pace,
        )
        .await?;
        self.console.line(format!("{name}: deleted"));
        Ok(())
    }

    /// The service's stopped tasks and its log tail, printed (see [`diagnose`]).
    pub async fn diagnose(&self) {
        let names = self.names();
        diagnose::report(
            &self.aws,
            &names.cluster,
            &names.service,
            &names.log_group,
            &self.console,
        )
        .await;
    }

    /// `logs`: the last lines of the service's log group.
    pub async fn logs(&self, lines: i32) -> Result<(), DeployError> {
        let names = self.names();
        let tail = diagnose::log_tail(&self.aws, &names.log_group, lines).await?;
        if tail.is_empty() {
            self.console
                .line(format!("log group {}: no events", names.log_group));
        }
        for line in tail {
            self.console.line(line);
        }
        Ok(())
    }

    /// The service steady and its targets healthy (ECS, ELBv2), its data path ready (the
    /// public `/readyz` through the load balancer, [`readiness`]), and the pipeline's state.
    pub async fn verify(&self) -> Result<(), DeployError> {
        let names = self.names();
        self.console.line("verify:");
        let target_group = self.output(Layer::Service, "TargetGroupArn").await?;
        let healthy = service::wait_until_healthy(
            &self.aws,
            &names.cluster,
            &names.service,
            Some(&target_group),
            &self.console,
            self.pace,
        )
        .await;
        self.diagnose_failure(&healthy).await;
        healthy?;
        let url = self.output(Layer::Service, "Url").await?;
        readiness::check(&url, &self.console, self.pace).await?;
        let connection = self.output(Layer::Pipeline, "ConnectionArn").await?;
        if let Err(error) = pipeline::require_connection(&self.aws, &connection, RELEASE).await {
            // The service is up; only releases wait for the approval.
            self.console.line(format!("  WARNING: {error}"));
        }
        for stage in pipeline::stages(&self.aws, &names.pipeline).await? {
            self.console.line(format!(
                "  pipeline {}: {} {}",
                names.pipeline, stage.name, stage.status
            ));
            for error in stage.errors {
                self.console.line(format!("    {error}"));
            }
        }
        Ok(())
    }

    /// `status`: one screen. Each section reports its own failure and the rest still prints.
    pub async fn status(&self) -> Result<(), DeployError> {
        let names = self.names();
        let console = &self.console;
        console.line("stacks:");
        for layer in Layer::ALL {
            let name = stacks::stack_name(&self.config, layer);
            match self.deployed(layer).await {
                Ok(Some(stack)) => console.line(format!(
                    "  {name:<28} {:<24} {}",
                    stack.status,
                    stack.updated.unwrap_or_default()
                )),
                Ok(None) => console.line(format!("  {name:<28} (none)")),
                Err(error) => console.line(format!("  {name:<28} error: {error}")),
            }
        }
        console.line(format!("service {}:", names.service));
        let state = service::describe(&self.aws, &names.cluster, &names.service).await;
        match &state {
            Ok(Some(state)) => {
                console.line(format!(
                    "  {} {}/{} running, task definition {}",
                    state.status,
                    state.running,
                    state.desired,
                    short(&state.task_definition)
                ));
                for deployment in &state.deployments {
                    console.line(format!(
                        "  deployment {} {} {}/{} running, rollout {}{}",
                        deployment.status,
                        short(&deployment.task_definition),
                        deployment.running,
                        deployment.desired,
                        deployment.rollout.as_deref().unwrap_or("-"),
                        deployment
                            .rollout_reason
                            .as_ref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    ));
                }
            }
            Ok(None) => console.line("  (none)"),
            Err(error) => console.line(format!("  error: {error}")),
        }
        console.line("targets:");
        match self.output(Layer::Service, "TargetGroupArn").await {
            Ok(arn) => match service::targets(&self.aws, &arn).await {
                Ok(targets) if targets.is_empty() => console.line("  (no registered targets)"),
                Ok(targets) => {
                    for target in targets {
                        console.line(format!(
                            "  {}:{} {}{}",
                            target.id,
                            target.port.unwrap_or_default(),
                            target.state,
                            target.reason.map(|r| format!(" ({r})")).unwrap_or_default()
                        ));
                    }
                }
                Err(error) => console.line(format!("  error: {error}")),
            },
            Err(error) => console.line(format!("  {error}")),
        }
        console.line(format!("pipeline {}:", names.pipeline));
        match pipeline::recent_runs(&self.aws, &names.pipeline, 5).await {
            Ok(runs) if runs.is_empty() => console.line("  (no runs)"),
            Ok(runs) => {
                for run in runs {
                    console.line(format!(
                        "  {} {:<11} {} {}",
                        run.started, run.status, run.id, run.revision
                    ));
                }
            }
            Err(error) => console.line(format!("  error: {error}")),
        }
        Ok(())
    }

    /// `release`: start the pipeline (after checking the connection) and follow it.
    pub async fn release(&self) -> Result<String, DeployError> {
        let connection = self.output(Layer::Pipeline, "ConnectionArn").await?;
        pipeline::require_connection(&self.aws, &connection, RELEASE).await?;
        let names = self.names();
        let execution =
            pipeline::release(&self.aws, &names.pipeline, &self.console, self.pace).await?;
        self.console.line(format!("release: {execution} succeeded"));
        Ok(execution)
    }

    /// `rollout --image <tag or image>`: a new task definition revision with that image,
    /// deployed through ECS, waited for, failing loudly if the circuit breaker rolled it back.
    pub async fn rollout(&self, image: &str) -> Result<String, DeployError> {
        let image = match image.contains('/') {
            true => image.to_owned(),
            false => format!(
                "{}:{image}",
                self.output(Layer::Pipeline, "RepositoryUri").await?
            ),
        };
        let names = self.names();
        let state = self.running_service().await?;
        let current = state
            .primary()
            .map(|p| p.task_definition.clone())
            .unwrap_or(state.task_definition);
        let registered = service::register_with_image(&self.aws, &current, &image).await?;
        self.console
            .line(format!("rollout: {image} as {}", short(&registered)));
        self.deploy(&names, &registered).await?;
        Ok(registered)
    }

    /// `rollback [--to <revision>]`: the service back to the previous task definition revision
    /// (or the one named), through the same deployment and checks as `rollout`.
    pub async fn rollback(&self, to: Option<&str>) -> Result<String, DeployError> {
        let names = self.names();
        let state = self.running_service().await?;
        let current = state
            .primary()
            .map(|p| p.task_definition.clone())
            .unwrap_or(state.task_definition);
        let target = match to {
            Some(revision) if revision.contains(':') => revision.to_owned(),
            Some(revision) => format!(
                "{}:{revision}",
                short(&current).split(':').next().unwrap_or_default()
            ),
            None => service::previous_revision(&self.aws, &current).await?,
        };
        self.console.line(format!(
            "rollback: {} -> {}",
            short(&current),
            short(&target)
        ));
        self.deploy(&names, &target).await?;
        Ok(target)
    }

    async fn running_service(&self) -> Result<service::ServiceState, DeployError> {
        let names = self.names();
        service::describe(&self.aws, &names.cluster, &names.service)
            .await?
            .ok_or_else(|| {
                DeployError::NotFound(format!(
                    "service {} (run `deployer up` first)",
                    names.service
                ))
            })
    }

    async fn deploy(&self, names: &Names, task_definition: &str) -> Result<(), DeployError> {
        let deployed = service::deploy(
            &self.aws,
            &names.cluster,
            &names.service,
            task_definition,
            &self.console,
            self.pace,
        )
        .await;
        self.diagnose_failure(&deployed).await;
        deployed?;
        let target_group = self.output(Layer::Service, "TargetGroupArn").await?;
        let healthy = service::wait_until_healthy(
            &self.aws,
            &names.cluster,
            &names.service,
            Some(&target_group),
            &self.console,
            self.pace,
        )
        .await;
        self.diagnose_failure(&healthy).await;
        healthy?;
        Ok(())
    }

    /// A rollback by the circuit breaker, or tasks that never became healthy in time: print
    /// why the tasks stopped and what they logged, before the error itself.
    async fn diagnose_failure<T>(&self, outcome: &Result<T, DeployError>) {
        if let Err(DeployError::RolledBack { .. } | DeployError::Timeout { .. }) = outcome {
            self.diagnose().await;
        }
    }

    /// `down`: the stacks in reverse order, every layer's whether `deploy.toml` still has it
    /// or not. The stacks holding data stay unless `delete_data`: the pipeline's (images,
    /// artifacts; the artifact bucket stays even then, DeletionPolicy: Retain) and the
    /// queue's (acknowledged writes MongoDB may not have yet), the cache's with write-behind
    /// (the same); and so the stacks a kept one imports from, whose exports CloudFormation
    /// would not delete.
    pub async fn down(&self, delete_data: bool) -> Result<(), DeployError> {
        let mut kept: Vec<Layer> = Vec::new();
        for layer in Layer::ALL.into_iter().rev() {
            let name = stacks::stack_name(&self.config, layer);
            let Some(stack) = self.deployed(layer).await? else {
                self.console.line(format!("= {name}: not deployed"));
                continue;
            };
            if let (Some(data), false) = (layer.data(&self.config), delete_data) {
                self.console.line(format!(
                    "= {name}: kept (it holds {data}; `deployer down --delete-data` deletes it)"
                ));
                kept.push(layer);
                continue;
            }
            if let Some(importer) = kept
                .iter()
                .find(|kept| kept.imports_from().contains(&layer))
            {
                let importer = stacks::stack_name(&self.config, *importer);
                self.console.line(format!(
                    "= {name}: kept ({importer}, kept, imports from it)"
                ));
                kept.push(layer);
                continue;
            }
            if stack.status.ends_with("_IN_PROGRESS") {
                return Err(DeployError::StackStuck {
                    stack: name,
                    status: stack.status,
                    hint:
                        "another operation is running on it; wait for it to end (`deployer status`)",
                });
            }
            self.delete_stack(layer, &stack).await?;
        }
        self.console.line("down: done");
        Ok(())
    }
}
