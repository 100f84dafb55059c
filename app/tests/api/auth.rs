//! Mutations need a bearer token; queries do not.

use serde_json::{json, Value};

use crate::helpers::{assert_no_errors, error_code, TestApp};

const CREATE: &str =
    "mutation { createBook(input: { sourceKey: \"/works/AUTH\", title: \"T\" }) { id } }";

#[tokio::test]
async fn a_mutation_without_a_token_is_unauthenticated_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let body = app.graphql_as(None, CREATE, json!({})).await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    assert_eq!(app.count_books().await, 0);
}

#[tokio::test]
async fn a_wrong_or_malformed_token_is_unauthenticated_and_writes_nothing() {
    let app = TestApp::spawn().await;
    for header in [
        "Bearer wrong-token-0123456789ab",
        "Basic dGVzdA==",
        "Bearer",
    ] {
        let body = app.graphql_as(Some(header), CREATE, json!({})).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{header}");
    }
    assert_eq!(app.count_books().await, 0);
}

#[tokio::test]
async fn a_mutation_hidden_behind_an_operation_name_still_needs_a_token() {
    let app = TestApp::spawn().await;
    let document = format!(
        "query Harmless {{ __typename }} {}",
        CREATE.replacen("mutation", "mutation Sneaky", 1)
    );
    let response = app
        .post_graphql_body(json!({ "query": document, "operationName": "Sneaky" }).to_string())
        .await;
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    assert_eq!(app.count_books().await, 0);
}

#[tokio::test]
async fn queries_need_no_token() {
    let app = TestApp::spawn().await;
    let body = app
        .graphql_as(
            None,
            "{ book(id: \"65a1b2c3d4e5f6a7b8c9d0e1\") { id } }",
            json!({}),
        )
        .await;
    assert_no_errors(&body);
}

const UPDATE: &str =
    "mutation($id: ID!, $title: String!) { updateBook(id: $id, input: { title: $title }) { id version } }";

/// The first round's hole: a memo of parsed documents answered before the token check, so a
/// document that had once run with a token ran for anyone afterwards.
#[tokio::test]
async fn a_mutation_that_ran_with_a_token_does_not_run_again_without_one() {
    let app = TestApp::spawn().await;
    let first = app.create_book("/works/REPLAY1", "First").await;
    let second = app.create_book("/works/REPLAY2", "Second").await;
    let body = app
        .graphql(UPDATE, json!({ "id": first["id"], "title": "Authorised" }))
        .await;
    assert_no_errors(&body);
    let before = app.digest().await;

    for authorization in [None, Some("Bearer wrong-token-0123456789ab")] {
        for book in [&first, &second] {
            let variables = json!({ "id": book["id"], "title": "Replayed" });
            let body = app.graphql_as(authorization, UPDATE, variables).await;
            assert_eq!(
                error_code(&body),
                "UNAUTHENTICATED",
                "{authorization:?}: {body}"
            );
            assert!(body["data"].is_null(), "nothing ran: {body}");
        }
    }
    assert_eq!(
        app.digest().await,
        before,
        "MongoDB and Redis are unchanged"
    );

    let body = app
        .graphql(
            UPDATE,
            json!({ "id": second["id"], "title": "Still works" }),
        )
        .await;
    assert_no_errors(&body);
}

const MUTATION_ROOT: &str = r#"{
  __schema {
    mutationType { fields { name args { name type { ...Ref } } type { ...Ref } } }
    types { name kind inputFields { name defaultValue type { ...Ref } } enumValues { name } }
  }
}
fragment Ref on __Type { kind name ofType { kind name ofType { kind name ofType { kind name } } } }"#;

/// Every field of the mutation root, read by introspection, refuses a caller without a valid
/// token, before and after the same document ran with one; a mutation added later is checked
/// by this test without editing it.
#[tokio::test]
async fn every_mutation_field_refuses_callers_without_a_valid_token() {
    let app = TestApp::spawn().await;
    let schema = app.graphql_as(None, MUTATION_ROOT, json!({})).await;
    assert_no_errors(&schema);
    let schema = &schema["data"]["__schema"];
    let fields = schema["mutationType"]["fields"]
        .as_array()
        .expect("mutation fields");
    assert!(
        fields.len() >= 7,
        "the mutation root has its fields: {fields:?}"
    );

    for field in fields {
        let name = field["name"].as_str().expect("a field name");
        let (document, variables) = call_with_valid_arguments(schema, field);

        // With the token first, so that anything the server caches about this document is warm,
        // and to prove the arguments are valid: the refusals below come from the token alone.
        let authorised = app.graphql(&document, variables.clone()).await;
        if let Some(error) = authorised["errors"].get(0) {
            let code = error["extensions"]["code"].as_str().unwrap_or_default();
            let message = error["message"].as_str().unwrap_or_default();
            let refused_before_resolving =
                matches!(code, "UNAUTHENTICATED" | "GRAPHQL_VALIDATION_FAILED")
                    || message.starts_with("Failed to parse")
                    || message.starts_with("Invalid value");
            assert!(
                !refused_before_resolving,
                "{name}: the generated call must reach the resolver: {authorised}"
            );
        }

        let before = app.digest().await;
        for authorization in [None, Some("Bearer wrong-token-0123456789ab"), None] {
            let body = app
                .graphql_as(authorization, &document, variables.clone())
                .await;
            assert_eq!(error_code(&body), "UNAUTHENTICATED", "{name}: {body}");
        }
        assert_eq!(app.digest().await, before, "{name} wrote nothing");
    }
}

/// `mutation($a0: T0, ...) { field(arg0: $a0, ...) { __typename } }` with variables that
/// satisfy every argument's type.
fn call_with_valid_arguments(schema: &Value, field: &Value) -> (String, Value) {
    let name = field["name"].as_str().expect("a field name");
    let mut declarations = Vec::new();
    let mut arguments = Vec::new();
    let mut variables = serde_json::Map::new();
    for (index, argument) in field["args"].as_array().expect("args").iter().enumerate() {
        let variable = format!("a{index}");
        declarations.push(format!("${variable}: {}", type_name(&argument["type"])));
        arguments.push(format!(
            "{}: ${variable}",
            argument["name"].as_str().expect("a name")
        ));
        variables.insert(variable, valid_value(schema, &argument["type"]));
    }
    let selection = match named_kind(&field["type"]) {
        "OBJECT" | "INTERFACE" | "UNION" => "{ __typename }",
        _ => "",
    };
    let declarations = match declarations.is_empty() {
        true => String::new(),
        false => format!("({})", declarations.join(", ")),
    };
    let arguments = match arguments.is_empty() {
        true => String::new(),
        false => format!("({})", arguments.join(", ")),
    };
    (
        format!("mutation{declarations} {{ {name}{arguments} {selection} }}"),
        Value::Object(variables),
    )
}

fn type_name(reference: &Value) -> String {
    match reference["kind"].as_str() {
        Some("NON_NULL") => format!("{}!", type_name(&reference["ofType"])),
        Some("LIST") => format!("[{}]", type_name(&reference["ofType"])),
        _ => reference["name"].as_str().expect("a named type").to_owned(),
    }
}

fn named_kind(reference: &Value) -> &str {
    match reference["kind"].as_str() {
        Some("NON_NULL" | "LIST") => named_kind(&reference["ofType"]),
        kind => kind.expect("a kind"),
    }
}

/// A value of the type: required input fields filled, optional ones left out, ids well formed
/// (and unknown, so updates and deletes answer NOT_FOUND rather than change anything).
fn valid_value(schema: &Value, reference: &Value) -> Value {
    match reference["kind"].as_str().expect("a kind") {
        "NON_NULL" => valid_value(schema, &reference["ofType"]),
        "LIST" => json!([valid_value(schema, &reference["ofType"])]),
        "SCALAR" => match reference["name"].as_str().expect("a scalar name") {
            "ID" => json!("65a1b2c3d4e5f6a7b8c9d0e1"),
            "Int" => json!(1),
            "Float" => json!(1.5),
            "Boolean" => json!(true),
            _ => json!(format!("valid-{}", crate::helpers::unique_suffix())),
        },
        "ENUM" => {
            let definition = named_type(schema, reference);
            json!(definition["enumValues"][0]["name"])
        }
        "INPUT_OBJECT" => {
            let definition = named_type(schema, reference);
            let mut object = serde_json::Map::new();
            for input in definition["inputFields"].as_array().expect("input fields") {
                if input["type"]["kind"] == "NON_NULL" && input["defaultValue"].is_null() {
                    let name = input["name"].as_str().expect("a name").to_owned();
                    object.insert(name, valid_value(schema, &input["type"]));
                }
            }
            Value::Object(object)
        }
        kind => panic!("no value for an argument of kind {kind}"),
    }
}

fn named_type<'a>(schema: &'a Value, reference: &Value) -> &'a Value {
    schema["types"]
        .as_array()
        .expect("types")
        .iter()
        .find(|definition| definition["name"] == reference["name"])
        .expect("the type is defined")
}
