//! The CloudFormation calls: read a stack, compute a change set (every create and update goes
//! through one: what was shown is what is executed), delete, and follow a stack operation's events until it ends. CloudFormation does the provisioning
//! (ordering, rollback); this module only drives and watches it.

use std::collections::{BTreeMap, HashSet};

use aws_sdk_cloudformation::{
    types::{Capability, ChangeSetStatus, ChangeSetType, Parameter, StackEvent},
    Client,
};
use aws_smithy_types::date_time::Format;

use crate::{
    console::Console, error::DeployError, pace::Pace, plan::ResourceChange, stacks::StackSpec,
    template::Template,
};

/// A stack as CloudFormation reports it.
#[derive(Debug, Clone)]
pub struct DeployedStack {
    pub name: String,
    pub id: String,
    pub status: String,
    pub reason: Option<String>,
    pub parameters: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, String>,
    pub updated: Option<String>,
}

/// `None` when the stack does not exist (or has been deleted).
pub async fn describe(client: &Client, name: &str) -> Result<Option<DeployedStack>, DeployError> {
    let response = match client.describe_stacks().stack_name(name).send().await {
        Ok(response) => response,
        Err(error) if message_of(&error).contains("does not exist") => return Ok(None),
        Err(error) => return Err(DeployError::aws("DescribeStacks")(error)),
    };
    let Some(stack) = response.stacks().first() else {
        return Ok(None);
    };
    let status = stack
        .stack_status()
        .map(|status| status.as_str().to_owned())
        .unwrap_or_default();
    if status == "DELETE_COMPLETE" {
        return Ok(None);
    }
    let pairs = |items: Vec<(Option<&str>, Option<&str>)>| {
        items
            .into_iter()
            .filter_map(|(key, value)| {
                Some((key?.to_owned(), value.unwrap_or_default().to_owned()))
            })
            .collect::<BTreeMap<_, _>>()
    };
    Ok(Some(DeployedStack {
        name: stack.stack_name().unwrap_or(name).to_owned(),
        id: stack.stack_id().unwrap_or(name).to_owned(),
        status,
        reason: stack.stack_status_reason().map(str::to_owned),
        parameters: pairs(
            stack
                .parameters()
                .iter()
                .map(|parameter| (parameter.parameter_key(), parameter.parameter_value()))
                .collect(),
        ),
        outputs: pairs(
            stack
                .outputs()
                .iter()
                .map(|output| (output.output_key(), output.output_value()))
                .collect(),
        ),
        updated: stack
            .last_updated_time()
            .or(stack.creation_time())
            .and_then(|time| time.fmt(Format::DateTime).ok()),
    }))
}

/// The service's error message (moto and AWS both say "Stack with id X does not exist").
fn message_of<E>(error: &E) -> String
where
    E: std::error::Error + aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    crate::error::describe_sdk_error(error)
}

/// What a stack's status allows: `Ok` when it can be updated; a clear error when it cannot.
pub fn check_updatable(stack: &DeployedStack) -> Result<(), DeployError> {
    let stuck = |hint: &'static str| {
        Err(DeployError::StackStuck {
            stack: stack.name.clone(),
            status: stack.status.clone(),
            hint,
        })
    };
    match stack.status.as_str() {
        "CREATE_COMPLETE"
        | "UPDATE_COMPLETE"
        | "UPDATE_ROLLBACK_COMPLETE"
        | "IMPORT_COMPLETE"
        | "IMPORT_ROLLBACK_COMPLETE" => Ok(()),
        "ROLLBACK_COMPLETE" => stuck(
            "its creation failed and was rolled back, so it holds no resources and cannot be \
             updated; `deployer up` deletes and recreates it once you say yes (`--yes` in CI)",
        ),
        "UPDATE_ROLLBACK_FAILED" => stuck(
            "an update failed and so did its rollback; fix the resource named in the stack's \
             events, then `aws cloudformation continue-update-rollback --stack-name <stack>`",
        ),
        "ROLLBACK_FAILED" | "CREATE_FAILED" | "DELETE_FAILED" => stuck(
            "a failed operation left resources behind; read the stack's events, remove what \
             blocks the deletion, and run `deployer down` again",
        ),
        REVIEW_IN_PROGRESS => stuck(
            "it was created for a change set that was never executed and holds nothing; \
             `deployer up` creates it through a new change set",
        ),
        status if status.ends_with("_IN_PROGRESS") => {
            stuck("another operation is running on it; wait for it to end (`deployer status`)")
        }
        _ => stuck("an unexpected status; read the stack's events in the console"),
    }
}

pub async fn deployed_template(
    client: &Client,
    name: &str,
) -> Result<Option<Template>, DeployError> {
    let response = client
        .get_template()
        .stack_name(name)
        .send()
        .await
        .map_err(DeployError::aws("GetTemplate"))?;
    let body = response.template_body().unwrap_or_default().to_owned();
    let path = std::path::PathBuf::from(format!("<deployed {name}>"));
    // A template the deployer cannot read (hand-edited JSON, say) is shown as unknown.
    Ok(Template::parse(&path, body).ok())
}

fn parameters(spec: &StackSpec) -> Vec<Parameter> {
    spec.parameters
        .iter()
        .map(|(key, value)| {
            Parameter::builder()
                .parameter_key(key)
                .parameter_value(value)
                .build()
        })
        .collect()
}

/// The changes an update of `spec` would make, from a change set that is deleted afterwards;
/// `None` when CloudFormation finds nothing to change.
pub async fn change_set(
    client: &Client,
    spec: &StackSpec,
    pace: Pace,
) -> Result<Option<Vec<ResourceChange>>, DeployError> {
    let pending =
        prepare_change_set(client, spec, "deployer-plan", ChangeSetType::Update, pace).await;
    // A plan leaves nothing behind, whatever happened.
    if let Ok(pending) = &pending {
        delete_change_set(client, &spec.name, &pending.id).await;
    }
    pending.map(|pending| pending.changes)
}

/// A change set that is kept after it was read, so that the one shown is the one executed
/// (`up`): the caller executes it ([`execute_change_set`]) or deletes it.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingChangeSet {
    pub id: String,
    /// `None`: the change set holds no change (CloudFormation fails such a change set).
    pub changes: Option<Vec<ResourceChange>>,
}

/// Creates a change set (`Update` for a deployed stack; `Create` for a new one, which
/// CloudFormation holds `REVIEW_IN_PROGRESS` until it is executed) and waits until it can be
/// read. A change set that fails to be created is deleted here.
pub async fn prepare_change_set(
    client: &Client,
    spec: &StackSpec,
    prefix: &str,
    kind: ChangeSetType,
    pace: Pace,
) -> Result<PendingChangeSet, DeployError> {
    let name = format!("{prefix}-{}", unique_suffix());
    let created = client
        .create_change_set()
        .stack_name(&spec.name)
        .change_set_name(&name)
        .change_set_type(kind)
        .template_body(&spec.template.body)
        .set_parameters(Some(parameters(spec)))
        .capabilities(Capability::CapabilityIam)
        .send()
        .await
        .map_err(DeployError::aws("CreateChangeSet"))?;
    let id = created.id().unwrap_or(&name).to_owned();
    match read_change_set(client, &spec.name, &id, pace).await {
        Ok(changes) => Ok(PendingChangeSet { id, changes }),
        Err(error) => {
            delete_change_set(client, &spec.name, &id).await;
            Err(error)
        }
    }
}

/// Executes exactly this change set (by its id), not a fresh update of the stack.
pub async fn execute_change_set(client: &Client, stack: &str, id: &str) -> Result<(), DeployError> {
    client
        .execute_change_set()
        .stack_name(stack)
        .change_set_name(id)
        .send()
        .await
        .map(drop)
        .map_err(DeployError::aws("ExecuteChangeSet"))
}

/// Best effort: a change set left behind costs nothing and the next plan makes its own.
pub async fn delete_change_set(client: &Client, stack: &str, id: &str) {
    let _ = client
        .delete_change_set()
        .stack_name(stack)
        .change_set_name(id)
        .send()
        .await;
}

/// The status of a stack made for a `CREATE` change set that has not been executed.
pub const REVIEW_IN_PROGRESS: &str = "REVIEW_IN_PROGRESS";

/// Best effort: deletes a change set that will not be executed and, for a `CREATE` one, the
/// empty stack it made.
pub async fn discard_change_set(client: &Client, stack: &str, id: &str, kind: &ChangeSetType) {
    delete_change_set(client, stack, id).await;
    if *kind == ChangeSetType::Create {
        delete_unreviewed_stack(client, stack).await;
    }
}

/// Best effort: deletes the empty stack a `CREATE` change set made, if it is still only that
/// (`REVIEW_IN_PROGRESS`), so that a declined or failed create leaves nothing behind.
pub async fn delete_unreviewed_stack(client: &Client, name: &str) {
    if let Ok(Some(stack)) = describe(client, name).await {
        if stack.status == REVIEW_IN_PROGRESS {
            let _ = client.delete_stack().stack_name(&stack.id).send().await;
        }
    }
}

async fn read_change_set(
    client: &Client,
    stack: &str,
    id: &str,
    pace: Pace,
) -> Result<Option<Vec<ResourceChange>>, DeployError> {
    let deadline = pace.deadline();
    let mut changes = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        let response = client
            .describe_change_set()
            .stack_name(stack)
            .change_set_name(id)
            .set_next_token(next_token.clone())
            .send()
            .await
            .map_err(DeployError::aws("DescribeChangeSet"))?;
        match response.status() {
            Some(ChangeSetStatus::CreateComplete) => {
                changes.extend(response.changes().iter().filter_map(resource_change));
                next_token = response.next_token().map(str::to_owned);
                if next_token.is_none() {
                    return Ok(Some(changes));
                }
            }
            Some(ChangeSetStatus::Failed) => {
                let reason = response.status_reason().unwrap_or_default();
                if reason.contains("didn't contain changes") || reason.contains("No updates") {
                    return Ok(None);
                }
                return Err(DeployError::Aws {
                    operation: "CreateChangeSet",
                    message: format!("change set for {stack} failed: {reason}"),
                });
            }
            _ => {
                deadline
                    .tick(|| format!("the change set of {stack}"))
                    .await?
            }
        }
    }
}

fn resource_change(change: &aws_sdk_cloudformation::types::Change) -> Option<ResourceChange> {
    let resource = change.resource_change()?;
    let details = resource
        .details()
        .iter()
        .filter_map(|detail| {
            let target = detail.target()?;
            let attribute = target.attribute().map(|a| a.as_str()).unwrap_or("?");
            let name = target
                .name()
                .map(|name| format!(".{name}"))
                .unwrap_or_default();
            let recreation = target
                .requires_recreation()
                .map(|r| format!(" (recreation: {})", r.as_str()))
                .unwrap_or_default();
            let cause = detail
                .causing_entity()
                .map(|cause| format!(" <- {cause}"))
                .unwrap_or_default();
            Some(format!("{attribute}{name}{recreation}{cause}"))
        })
        .collect();
    Some(ResourceChange {
        action: resource
            .action()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default(),
        logical_id: resource
            .logical_resource_id()
            .unwrap_or_default()
            .to_owned(),
        resource_type: resource.resource_type().unwrap_or_default().to_owned(),
        replacement: resource.replacement().map(|r| r.as_str().to_owned()),
        details,
    })
}

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!("{nanos:x}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    fn succeeded(self, status: &str) -> bool {
        matches!(
            (self, status),
            (Operation::Create, "CREATE_COMPLETE")
                | (Operation::Update, "UPDATE_COMPLETE")
                | (Operation::Delete, "DELETE_COMPLETE")
        )
    }
}

/// Prints a stack's new events as they appear. Events that existed before the operation are
/// marked seen first, so only this operation's events are printed and judged.
pub struct EventFollower {
    stack: String,
    seen: HashSet<String>,
    /// This operation's events, oldest first.
    events: Vec<StackEvent>,
    total_resources: usize,
}

impl EventFollower {
    pub async fn start(client: &Client, stack: &str, total_resources: usize) -> Self {
        let mut follower = Self {
            stack: stack.to_owned(),
            seen: HashSet::new(),
            events: Vec::new(),
            total_resources,
        };
        // A stack that does not exist yet has no events: nothing to mark.
        if let Ok(events) = follower.fetch(client).await {
            follower.seen.extend(
                events
                    .iter()
                    .filter_map(|event| event.event_id().map(str::to_owned)),
            );
        }
        follower
    }

    /// Most recent first, one page (100 events): enough between two polls.
    async fn fetch(&self, client: &Client) -> Result<Vec<StackEvent>, DeployError> {
        Ok(client
            .describe_stack_events()
            .stack_name(&self.stack)
            .send()
            .await
            .map_err(DeployError::aws("DescribeStackEvents"))?
            .stack_events()
            .to_vec())
    }

    pub async fn poll(&mut self, client: &Client, console: &Console) -> Result<(), DeployError> {
        let mut fresh: Vec<StackEvent> = self
            .fetch(client)
            .await?
            .into_iter()
            .filter(|event| event.event_id().is_some_and(|id| !self.seen.contains(id)))
            .collect();
        fresh.reverse();
        for event in fresh {
            self.seen
                .insert(event.event_id().unwrap_or_default().to_owned());
            self.events.push(event);
            let line = self.render(self.events.last().expect("just pushed"));
            console.line(line);
        }
        Ok(())
    }

    fn done_resources(&self) -> usize {
        self.events
            .iter()
            .filter(|event| {
                event.resource_type() != Some("AWS::CloudFormation::Stack")
                    && event
                        .resource_status()
                        .is_some_and(|status| status.as_str().ends_with("_COMPLETE"))
            })
            .filter_map(|event| event.logical_resource_id())
            .collect::<HashSet<_>>()
            .len()
    }

    fn render(&self, event: &StackEvent) -> String {
        let time = event
            .timestamp()
            .and_then(|time| time.fmt(Format::DateTime).ok())
            .and_then(|text| text.get(11..19).map(str::to_owned))
            .unwrap_or_default();
        let status = event.resource_status().map(|s| s.as_str()).unwrap_or("?");
        let reason = event
            .resource_status_reason()
            .map(|reason| format!("  {reason}"))
            .unwrap_or_default();
        format!(
            "  {time} [{}/{}] {:<28} {:<40} {status}{reason}",
            self.done_resources().min(self.total_resources),
            self.total_resources,
            event.logical_resource_id().unwrap_or_default(),
            event.resource_type().unwrap_or_default(),
        )
    }

    /// The first failure of this operation, with its reason: what to read first.
    pub fn first_failure(&self) -> Option<String> {
        self.events
            .iter()
            .find(|event| {
                event
                    .resource_status()
                    .is_some_and(|status| status.as_str().ends_with("_FAILED"))
                    && event.resource_status_reason().is_some()
            })
            .map(|event| {
                format!(
                    "{} ({}) {}: {}",
                    event.logical_resource_id().unwrap_or_default(),
                    event.resource_type().unwrap_or_default(),
                    event
                        .resource_status()
                        .map(|s| s.as_str())
                        .unwrap_or_default(),
                    event.resource_status_reason().unwrap_or_default()
                )
            })
    }
}

/// Waits for the operation on `stack_id` to end, printing its events; an error names the
/// final status and the first failure.
pub async fn follow(
    client: &Client,
    follower: &mut EventFollower,
    stack_id: &str,
    operation: Operation,
    console: &Console,
    pace: Pace,
) -> Result<(), DeployError> {
    let deadline = pace.deadline();
    loop {
        let stack = describe(client, stack_id).await?;
        // Events may not be readable once a stack is gone.
        if stack.is_some() {
            follower.poll(client, console).await?;
        }
        let Some(stack) = stack else {
            return match operation {
                Operation::Delete => Ok(()),
                _ => Err(DeployError::NotFound(format!(
                    "stack {stack_id} disappeared"
                ))),
            };
        };
        if operation.succeeded(&stack.status) {
            return Ok(());
        }
        let finished = !stack.status.ends_with("_IN_PROGRESS");
        if finished {
            return Err(DeployError::StackFailed {
                stack: stack.name.clone(),
                reason: follower
                    .first_failure()
                    .or(stack.reason.clone())
                    .unwrap_or_else(|| "no reason given".into()),
                status: stack.status,
            });
        }
        deadline.tick(|| format!("stack {}", stack.name)).await?;
    }
}
