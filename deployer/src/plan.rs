//! What `plan` shows and `up` applies: per stack, create / update / no change, as a diff a
//! person can review. Pure: built from a [`StackSpec`], the deployed stack's parameters and
//! template, and CloudFormation's change set, which the `cloudformation` module fetches.

use std::{collections::BTreeMap, fmt};

use serde_json::Value;

use crate::{stacks::StackSpec, template::Template};

#[derive(Debug, Clone, PartialEq)]
pub struct StackPlan {
    pub stack: String,
    pub action: PlanAction,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PlanAction {
    /// The stack does not exist: every resource of the template is added.
    Create {
        resources: Vec<(String, String)>,
    },
    Update {
        parameters: Vec<ParameterChange>,
        /// Logical ids of resources whose template text changed (from comparing templates;
        /// CloudFormation's change set says what that does to the live resources).
        template_changes: Vec<String>,
        resources: Vec<ResourceChange>,
    },
    NoChange,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterChange {
    pub name: String,
    pub from: Option<String>,
    pub to: String,
}

/// One row of a change set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceChange {
    pub action: String,
    pub logical_id: String,
    pub resource_type: String,
    /// `True`, `False` or `Conditional` for a Modify.
    pub replacement: Option<String>,
    /// What changed: `Properties.DesiredCount (recreation: Never)`.
    pub details: Vec<String>,
}

/// Resource types that hold data: a replacement creates an empty one and deletes the old.
pub const STATEFUL: &[&str] = &[
    "AWS::ECR::Repository",
    "AWS::S3::Bucket",
    "AWS::SQS::Queue",
    "AWS::Logs::LogGroup",
    "AWS::ElastiCache::ReplicationGroup",
    "AWS::ElastiCache::CacheCluster",
    "AWS::SecretsManager::Secret",
    "AWS::DynamoDB::Table",
    "AWS::RDS::DBInstance",
];

impl StackPlan {
    pub fn create(spec: &StackSpec) -> Self {
        let resources = spec
            .template
            .resources()
            .iter()
            .map(|(id, resource)| {
                let kind = resource["Type"].as_str().unwrap_or("?").to_owned();
                (id.clone(), kind)
            })
            .collect();
        Self {
            stack: spec.name.clone(),
            action: PlanAction::Create { resources },
        }
    }

    /// A creation as its `CREATE` change set has it: the resources it adds (those whose
    /// condition holds), else every resource of the template.
    pub fn create_from_change_set(spec: &StackSpec, changes: Option<&[ResourceChange]>) -> Self {
        match changes {
            Some(changes) if !changes.is_empty() => Self {
                stack: spec.name.clone(),
                action: PlanAction::Create {
                    resources: changes
                        .iter()
                        .map(|change| (change.logical_id.clone(), change.resource_type.clone()))
                        .collect(),
                },
            },
            _ => Self::create(spec),
        }
    }

    /// An update, from the deployed stack's parameters and template and the change set's rows
    /// (`None` when CloudFormation found nothing to change).
    pub fn update(
        spec: &StackSpec,
        deployed_parameters: &BTreeMap<String, String>,
        deployed_template: Option<&Template>,
        change_set: Option<Vec<ResourceChange>>,
    ) -> Self {
        let parameters = parameter_changes(&spec.parameters, deployed_parameters);
        let template_changes = deployed_template
            .map(|deployed| template_changes(deployed, &spec.template))
            .unwrap_or_default();
        let action = match change_set {
            None if parameters.is_empty() && template_changes.is_empty() => PlanAction::NoChange,
            resources => PlanAction::Update {
                parameters,
                template_changes,
                resources: resources.unwrap_or_default(),
            },
        };
        Self {
            stack: spec.name.clone(),
            action,
        }
    }

    pub fn is_change(&self) -> bool {
        self.action != PlanAction::NoChange
    }

    /// The replaced (or possibly replaced) resources that hold data, as `Repository
    /// (AWS::ECR::Repository)`: replacing one loses what it holds.
    pub fn stateful_replacements(&self) -> Vec<String> {
        match &self.action {
            PlanAction::Update { resources, .. } => resources
                .iter()
                .filter(|change| {
                    matches!(change.replacement.as_deref(), Some("True" | "Conditional"))
                        && STATEFUL.contains(&change.resource_type.as_str())
                })
                .map(|change| format!("{} ({})", change.logical_id, change.resource_type))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Whether any resource is replaced (a new physical resource; the old one is deleted).
    pub fn replaces_something(&self) -> bool {
        match &self.action {
            PlanAction::Update { resources, .. } => resources
                .iter()
                .any(|change| change.replacement.as_deref() == Some("True")),
            _ => false,
        }
    }
}

/// The parameters whose value differs; parameters the deployer does not pass keep theirs.
pub fn parameter_changes(
    intended: &BTreeMap<String, String>,
    deployed: &BTreeMap<String, String>,
) -> Vec<ParameterChange> {
    intended
        .iter()
        .filter(|(name, value)| deployed.get(*name) != Some(value))
        .map(|(name, value)| ParameterChange {
            name: name.clone(),
            from: deployed.get(name).cloned(),
            to: value.clone(),
        })
        .collect()
}

/// Logical ids added, removed or changed between two templates, in order.
pub fn template_changes(deployed: &Template, intended: &Template) -> Vec<String> {
    let before = deployed.resources();
    let after = intended.resources();
    let mut ids: Vec<&String> = before.keys().chain(after.keys()).collect();
    ids.sort();
    ids.dedup();
    ids.into_iter()
        .filter(|id| before.get(*id) != after.get(*id))
        .map(|id| {
            let sign = match (before.contains_key(id), after.contains_key(id)) {
                (false, _) => "+",
                (_, false) => "-",
                _ => "~",
            };
            format!("{sign} {id}")
        })
        .collect()
}

fn sign(action: &str) -> &'static str {
    match action {
        "Add" => "+",
        "Remove" => "-",
        "Modify" | "Dynamic" => "~",
        "Import" => "<",
        _ => "?",
    }
}

impl fmt::Display for StackPlan {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.action {
            PlanAction::NoChange => writeln!(out, "= {}: no change", self.stack),
            PlanAction::Create { resources } => {
                writeln!(
                    out,
                    "+ {}: create ({} resources)",
                    self.stack,
                    resources.len()
                )?;
                for (id, kind) in resources {
                    writeln!(out, "    + {id:<32} {kind}")?;
                }
                Ok(())
            }
            PlanAction::Update {
                parameters,
                template_changes,
                resources,
            } => {
                writeln!(out, "~ {}: update", self.stack)?;
                for change in parameters {
                    let from = change.from.as_deref().unwrap_or("(unset)");
                    writeln!(
                        out,
                        "    parameter {}: {} -> {}",
                        change.name, from, change.to
                    )?;
                }
                for change in template_changes {
                    writeln!(out, "    template {change}")?;
                }
                for change in resources {
                    let replacement = match change.replacement.as_deref() {
                        Some("True") => "  REPLACED (a new resource; the old one is deleted)",
                        Some("Conditional") => "  may be replaced",
                        _ => "",
                    };
                    writeln!(
                        out,
                        "    {} {:<32} {:<40} {}{}",
                        sign(&change.action),
                        change.logical_id,
                        change.resource_type,
                        change.action,
                        replacement
                    )?;
                    for detail in &change.details {
                        writeln!(out, "        {detail}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// The text of a JSON value, for parameters read back from a stack.
pub fn text(value: &Value) -> String {
    crate::template::scalar_text(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(action: &str, id: &str, replacement: Option<&str>) -> ResourceChange {
        ResourceChange {
            action: action.into(),
            logical_id: id.into(),
            resource_type: "AWS::ECS::TaskDefinition".into(),
            replacement: replacement.map(Into::into),
            details: vec![],
        }
    }

    #[test]
    fn only_the_parameters_that_differ_are_changes() {
        let intended = BTreeMap::from([
            ("DesiredCount".to_owned(), "3".to_owned()),
            ("App".to_owned(), "oponn".to_owned()),
        ]);
        let deployed = BTreeMap::from([
            ("DesiredCount".to_owned(), "2".to_owned()),
            ("App".to_owned(), "oponn".to_owned()),
            ("AmiId".to_owned(), "/aws/service/...".to_owned()),
        ]);
        assert_eq!(
            parameter_changes(&intended, &deployed),
            [ParameterChange {
                name: "DesiredCount".into(),
                from: Some("2".into()),
                to: "3".into()
            }]
        );
    }

    #[test]
    fn a_replacement_is_rendered_loudly() {
        let plan = StackPlan {
            stack: "oponn-dev-service".into(),
            action: PlanAction::Update {
                parameters: vec![],
                template_changes: vec![],
                resources: vec![
                    change("Modify", "TaskDefinition", Some("True")),
                    change("Modify", "Service", Some("False")),
                ],
            },
        };
        let text = plan.to_string();
        assert!(plan.replaces_something());
        assert!(text.contains("~ TaskDefinition"), "{text}");
        assert!(text.contains("REPLACED"), "{text}");
        assert_eq!(text.matches("REPLACED").count(), 1, "{text}");
    }
}
