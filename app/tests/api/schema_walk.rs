//! The API's schema, read by introspection, and calls built from it: tests that must cover every
//! field (the token check on every mutation, hostile values for every argument) walk the schema
//! instead of listing fields, so a field added later is covered without editing them.

use serde_json::{json, Map, Value};

use crate::helpers::{assert_no_errors, unique_suffix, TestApp};

const SCHEMA: &str = r#"{
  __schema {
    queryType { fields { name args { name type { ...Ref } } type { ...Ref } } }
    mutationType { fields { name args { name type { ...Ref } } type { ...Ref } } }
    types { name kind inputFields { name defaultValue type { ...Ref } } enumValues { name } }
  }
}
fragment Ref on __Type { kind name ofType { kind name ofType { kind name ofType { kind name } } } }"#;

pub struct Introspected(Value);

/// One argument of a call, replaced by a value of the test's choosing.
pub struct Override<'a> {
    pub argument: &'a str,
    pub value: Value,
}

impl Introspected {
    pub async fn read(app: &TestApp) -> Self {
        let body = app.graphql_as(None, SCHEMA, json!({})).await;
        assert_no_errors(&body);
        Self(body["data"]["__schema"].clone())
    }

    /// The fields of `root` (`queryType` or `mutationType`).
    pub fn fields(&self, root: &str) -> Vec<Value> {
        self.0[root]["fields"]
            .as_array()
            .expect("root fields")
            .clone()
    }

    /// `<operation>($a0: T0, ...) { field(arg0: $a0, ...) { __typename } }` with variables that
    /// satisfy every argument's type, except the one `replace` names, which gets its value.
    pub fn call(
        &self,
        operation: &str,
        field: &Value,
        replace: Option<&Override>,
    ) -> (String, Value) {
        let name = field["name"].as_str().expect("a field name");
        let mut declarations = Vec::new();
        let mut arguments = Vec::new();
        let mut variables = Map::new();
        for (index, argument) in field["args"].as_array().expect("args").iter().enumerate() {
            let argument_name = argument["name"].as_str().expect("a name");
            let variable = format!("a{index}");
            declarations.push(format!("${variable}: {}", type_name(&argument["type"])));
            arguments.push(format!("{argument_name}: ${variable}"));
            let value = match replace {
                Some(replace) if replace.argument == argument_name => replace.value.clone(),
                _ => self.valid_value(&argument["type"]),
            };
            variables.insert(variable, value);
        }
        let selection = match named_kind(&field["type"]) {
            "OBJECT" | "INTERFACE" | "UNION" => "{ __typename }",
            _ => "",
        };
        let wrap = |parts: Vec<String>| match parts.is_empty() {
            true => String::new(),
            false => format!("({})", parts.join(", ")),
        };
        (
            format!(
                "{operation}{} {{ {name}{} {selection} }}",
                wrap(declarations),
                wrap(arguments)
            ),
            Value::Object(variables),
        )
    }

    /// A value of the type: required input fields filled, optional ones left out, ids well
    /// formed (and unknown, so updates and deletes answer NOT_FOUND rather than change anything).
    pub fn valid_value(&self, reference: &Value) -> Value {
        match reference["kind"].as_str().expect("a kind") {
            "NON_NULL" => self.valid_value(&reference["ofType"]),
            "LIST" => json!([self.valid_value(&reference["ofType"])]),
            "SCALAR" => match reference["name"].as_str().expect("a scalar name") {
                "ID" => json!("65a1b2c3d4e5f6a7b8c9d0e1"),
                "Int" => json!(1),
                "Float" => json!(1.5),
                "Boolean" => json!(true),
                _ => json!(format!("valid-{}", unique_suffix())),
            },
            "ENUM" => json!(self.named(reference)["enumValues"][0]["name"]),
            "INPUT_OBJECT" => {
                let mut object = Map::new();
                for input in self.input_fields(reference) {
                    if input["type"]["kind"] == "NON_NULL" && input["defaultValue"].is_null() {
                        let name = input["name"].as_str().expect("a name").to_owned();
                        object.insert(name, self.valid_value(&input["type"]));
                    }
                }
                Value::Object(object)
            }
            kind => panic!("no value for an argument of kind {kind}"),
        }
    }

    /// The fields of an input object type.
    pub fn input_fields(&self, reference: &Value) -> Vec<Value> {
        self.named(reference)["inputFields"]
            .as_array()
            .expect("input fields")
            .clone()
    }

    fn named(&self, reference: &Value) -> &Value {
        let mut reference = reference;
        while reference["name"].is_null() {
            reference = &reference["ofType"];
        }
        self.0["types"]
            .as_array()
            .expect("types")
            .iter()
            .find(|definition| definition["name"] == reference["name"])
            .expect("the type is defined")
    }
}

pub fn type_name(reference: &Value) -> String {
    match reference["kind"].as_str() {
        Some("NON_NULL") => format!("{}!", type_name(&reference["ofType"])),
        Some("LIST") => format!("[{}]", type_name(&reference["ofType"])),
        _ => reference["name"].as_str().expect("a named type").to_owned(),
    }
}

/// The kind of the named type under any list and non-null wrappers.
pub fn named_kind(reference: &Value) -> &str {
    match reference["kind"].as_str() {
        Some("NON_NULL" | "LIST") => named_kind(&reference["ofType"]),
        kind => kind.expect("a kind"),
    }
}

/// The name of the named type under any wrappers.
pub fn named_type(reference: &Value) -> &str {
    match reference["kind"].as_str() {
        Some("NON_NULL" | "LIST") => named_type(&reference["ofType"]),
        _ => reference["name"].as_str().expect("a named type"),
    }
}

const DESCRIPTIONS: &str = r#"{
  __schema {
    types {
      name kind description
      fields { name description args { name description } }
      inputFields { name description }
      enumValues { name description }
    }
  }
}"#;

/// The schema is a contract clients read: every type, field, argument, input field and enum
/// value of the API (GraphQL's own built-ins aside) says what it is.
#[tokio::test]
async fn every_type_field_and_argument_has_a_description() {
    let app = TestApp::spawn().await;
    let body = app.graphql_as(None, DESCRIPTIONS, json!({})).await;
    assert_no_errors(&body);
    let described = |value: &Value| value["description"].as_str().is_some_and(|d| !d.is_empty());
    let built_in = ["String", "Int", "Float", "Boolean", "ID"];
    let mut missing = Vec::new();
    for kind in body["data"]["__schema"]["types"].as_array().expect("types") {
        let name = kind["name"].as_str().expect("a type name");
        if name.starts_with("__") || built_in.contains(&name) {
            continue;
        }
        if !described(kind) {
            missing.push(name.to_owned());
        }
        for (list, what) in [("fields", "."), ("inputFields", "."), ("enumValues", ".")] {
            for member in kind[list].as_array().into_iter().flatten() {
                let member_name = format!("{name}{what}{}", member["name"].as_str().unwrap_or("?"));
                if !described(member) {
                    missing.push(member_name.clone());
                }
                for argument in member["args"].as_array().into_iter().flatten() {
                    if !described(argument) {
                        missing.push(format!("{member_name}({})", argument["name"]));
                    }
                }
            }
        }
    }
    assert!(missing.is_empty(), "without a description: {missing:#?}");
}
