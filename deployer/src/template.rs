//! CloudFormation templates as data: the YAML files under `infra-templates/`, read into JSON
//! with the short-form tags (`!Ref`, `!Sub`, `!GetAtt`, ...) expanded to their long form, so
//! that planning and the template tests can query them without knowing YAML.
//!
//! The body sent to CloudFormation is always the file's text, unchanged; the parsed form is
//! only read.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde_json::{Map, Value};

/// A template file and its parsed form.
#[derive(Debug, Clone)]
pub struct Template {
    pub path: PathBuf,
    /// The text CloudFormation receives.
    pub body: String,
    /// The parsed form, long-form intrinsic functions only.
    pub document: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read template {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("template {path} is not valid YAML: {source}")]
    Parse {
        path: PathBuf,
        source: serde_norway::Error,
    },
    #[error("template {path}: {message}")]
    Shape { path: PathBuf, message: String },
}

impl Template {
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let body = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, body)
    }

    pub fn parse(path: &Path, body: String) -> Result<Self, TemplateError> {
        let yaml: serde_norway::Value =
            serde_norway::from_str(&body).map_err(|source| TemplateError::Parse {
                path: path.to_owned(),
                source,
            })?;
        let document = to_json(yaml).map_err(|message| TemplateError::Shape {
            path: path.to_owned(),
            message,
        })?;
        if !document.get("Resources").is_some_and(Value::is_object) {
            return Err(TemplateError::Shape {
                path: path.to_owned(),
                message: "no Resources section".into(),
            });
        }
        Ok(Self {
            path: path.to_owned(),
            body,
            document,
        })
    }

    /// Every resource, by logical id.
    pub fn resources(&self) -> &Map<String, Value> {
        self.document["Resources"]
            .as_object()
            .expect("checked in Template::parse")
    }

    /// The resources of one type, by logical id.
    pub fn resources_of_type<'a>(
        &'a self,
        resource_type: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        self.resources()
            .iter()
            .filter(move |(_, resource)| resource["Type"] == resource_type)
            .map(|(id, resource)| (id.as_str(), resource))
    }

    /// The one resource of a type; panics in tests are clearer than an `Option` chain.
    pub fn resource(&self, logical_id: &str) -> Option<&Value> {
        self.resources().get(logical_id)
    }

    /// The declared parameters, with their defaults when they have one.
    pub fn parameters(&self) -> BTreeMap<String, Option<String>> {
        self.document
            .get("Parameters")
            .and_then(Value::as_object)
            .map(|parameters| {
                parameters
                    .iter()
                    .map(|(name, spec)| (name.clone(), spec.get("Default").map(scalar_text)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The declared outputs' names.
    pub fn outputs(&self) -> Vec<String> {
        self.document
            .get("Outputs")
            .and_then(Value::as_object)
            .map(|outputs| outputs.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// A scalar as CloudFormation sees a parameter value: text.
pub fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// YAML to JSON, expanding short-form tags: `!Ref x` -> `{"Ref": x}`, `!GetAtt a.b` ->
/// `{"Fn::GetAtt": ["a", "b"]}`, `!Condition c` -> `{"Condition": c}`, `!X v` -> `{"Fn::X": v}`.
fn to_json(yaml: serde_norway::Value) -> Result<Value, String> {
    use serde_norway::Value as Yaml;
    Ok(match yaml {
        Yaml::Null => Value::Null,
        Yaml::Bool(flag) => Value::Bool(flag),
        Yaml::Number(number) => serde_json::to_value(&number).map_err(|error| error.to_string())?,
        Yaml::String(text) => Value::String(text),
        Yaml::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(to_json)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Yaml::Mapping(mapping) => {
            let mut object = Map::new();
            for (key, value) in mapping {
                let key = match key {
                    Yaml::String(key) => key,
                    other => return Err(format!("a mapping key is not text: {other:?}")),
                };
                object.insert(key, to_json(value)?);
            }
            Value::Object(object)
        }
        Yaml::Tagged(tagged) => {
            let name = tagged.tag.to_string();
            let name = name.trim_start_matches('!');
            let value = to_json(tagged.value)?;
            let (key, value) = match (name, value) {
                ("Ref", value) => ("Ref".to_owned(), value),
                ("Condition", value) => ("Condition".to_owned(), value),
                ("GetAtt", Value::String(path)) => {
                    let (resource, attribute) = path
                        .split_once('.')
                        .ok_or_else(|| format!("!GetAtt {path}: expected Resource.Attribute"))?;
                    (
                        "Fn::GetAtt".to_owned(),
                        Value::Array(vec![resource.into(), attribute.into()]),
                    )
                }
                (other, value) => (format!("Fn::{other}"), value),
            };
            Value::Object(Map::from_iter([(key, value)]))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Template {
        Template::parse(Path::new("test.yaml"), body.to_owned()).expect("valid template")
    }

    #[test]
    fn short_form_tags_become_long_form_functions() {
        let template = parse(
            "Resources:\n  A:\n    Type: X\n    Properties:\n      Ref: !Ref B\n      Att: !GetAtt B.Arn\n      Sub: !Sub \"${B}-x\"\n      Split: !Split [\",\", !ImportValue y]\n",
        );
        let properties = &template.resource("A").unwrap()["Properties"];
        assert_eq!(properties["Ref"], serde_json::json!({"Ref": "B"}));
        assert_eq!(
            properties["Att"],
            serde_json::json!({"Fn::GetAtt": ["B", "Arn"]})
        );
        assert_eq!(properties["Sub"], serde_json::json!({"Fn::Sub": "${B}-x"}));
        assert_eq!(
            properties["Split"],
            serde_json::json!({"Fn::Split": [",", {"Fn::ImportValue": "y"}]})
        );
    }

    #[test]
    fn parameters_carry_their_defaults_as_text() {
        let template = parse(
            "Parameters:\n  Count:\n    Type: Number\n    Default: 2\n  Name:\n    Type: String\nResources:\n  A:\n    Type: X\n",
        );
        let parameters = template.parameters();
        assert_eq!(parameters["Count"].as_deref(), Some("2"));
        assert_eq!(parameters["Name"], None);
    }

    #[test]
    fn a_template_without_resources_is_refused() {
        let error = Template::parse(Path::new("empty.yaml"), "Parameters: {}\n".into())
            .expect_err("no resources");
        assert!(error.to_string().contains("no Resources"), "{error}");
    }
}
