//! Hostile input, for every argument of every field, read from the schema by introspection:
//! operator-looking strings, `$` and dotted keys, NUL and control characters, bidi and
//! zero-width marks, long strings, huge and negative numbers, malformed and forged cursors and
//! ids, extra and nested input fields. Every answer must be a valid result or errors that each
//! carry a code; never a 5xx, a driver's text or a hang; and nothing may be written by a caller
//! without a token.

use std::time::Duration;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde_json::{json, Value};

use crate::{
    helpers::{TestApp, TOKEN},
    schema_walk::{named_kind, named_type, Introspected, Override},
};

const CODES: &[&str] = &[
    "NOT_FOUND",
    "CONFLICT",
    "BAD_USER_INPUT",
    "UNAUTHENTICATED",
    "GRAPHQL_PARSE_FAILED",
    "GRAPHQL_VALIDATION_FAILED",
    "BAD_REQUEST",
    "PAYLOAD_TOO_LARGE",
    "RESPONSE_TOO_LARGE",
];

/// Words that only a driver, a database or a panic would put in a message.
const LEAKS: &[&str] = &[
    "kind:",
    "errorkind",
    "sqlite",
    "ferretdb",
    "postgres",
    "panicked",
    "stack backtrace",
    "bson",
    "wire",
    "caused by",
    "redis error",
    "mongodb error",
    "command failed",
];

fn hostile_strings() -> Vec<Value> {
    let forged = |cursor: Value| json!(URL_SAFE_NO_PAD.encode(cursor.to_string()));
    vec![
        json!("$where"),
        json!("{\"$gt\": \"\"}"),
        json!("a.b.c"),
        json!("$ne"),
        json!("'; DROP TABLE books; --"),
        json!("nul\u{0}byte"),
        json!("\u{1b}[31mred"),
        json!("\u{202E}desrever"),
        json!("zero\u{200B}width"),
        json!("\u{FEFF}"),
        json!(""),
        json!(" "),
        json!("(".repeat(5_000)),
        json!("x".repeat(40_000)),
        json!("\u{1F4DA}".repeat(1_000)),
        forged(json!({ "key": { "int": 5 }, "id": { "id": "65a1b2c3d4e5f6a7b8c9d0e1" } })),
        forged(json!({ "key": { "str": "a" }, "id": { "str": "x" } })),
        forged(json!([[[[[[]]]]]])),
        json!("%%%not-base64%%%"),
    ]
}

fn hostile_ids() -> Vec<Value> {
    vec![
        json!(""),
        json!("zz"),
        json!("65a1b2c3d4e5f6a7b8c9d0e1\u{0}"),
        json!("65A1B2C3D4E5F6A7B8C9D0E1"),
        json!("ffffffffffffffffffffffff"),
        json!("000000000000000000000000"),
        json!({ "$gt": "" }),
        json!(12),
        json!("x".repeat(10_000)),
    ]
}

fn hostile_ints() -> Vec<Value> {
    vec![
        json!(-1),
        json!(0),
        json!(2_147_483_647),
        json!(-2_147_483_648),
        json!(1_u64 << 40),
        json!(1.5),
        json!("12"),
        json!(null),
    ]
}

/// Hostile values of the argument's type: for a list, hostile elements and an oversized list;
/// for an input object, each field in turn hostile (the others valid), extra keys, nesting.
fn hostile_values(schema: &Introspected, reference: &Value, depth: usize) -> Vec<Value> {
    let list = reference["kind"] == "LIST"
        || (reference["kind"] == "NON_NULL" && reference["ofType"]["kind"] == "LIST");
    if list {
        let element = if reference["kind"] == "LIST" {
            &reference["ofType"]
        } else {
            &reference["ofType"]["ofType"]
        };
        let mut values: Vec<Value> = hostile_values(schema, element, depth + 1)
            .into_iter()
            .map(|value| json!([value]))
            .collect();
        values.push(json!(vec![schema.valid_value(element); 1_001]));
        values.push(json!([]));
        values.push(json!(null));
        return values;
    }
    match (named_kind(reference), named_type(reference)) {
        ("SCALAR", "ID") => hostile_ids(),
        ("SCALAR", "Int") => hostile_ints(),
        ("SCALAR", "Boolean") => vec![json!("true"), json!(1)],
        ("SCALAR", _) => hostile_strings(),
        ("INPUT_OBJECT", _) if depth < 2 => {
            let valid = schema.valid_value(reference);
            let mut values = vec![
                json!({ "$where": "1" }),
                json!({ "a.b": 1 }),
                json!([valid.clone()]),
                json!("not an object"),
            ];
            for field in schema.input_fields(reference) {
                let name = field["name"].as_str().expect("a name");
                for hostile in hostile_values(schema, &field["type"], depth + 1) {
                    let mut object = valid.clone();
                    object[name] = hostile;
                    values.push(object);
                }
            }
            values
        }
        _ => vec![json!(null)],
    }
}

/// Sends one request and checks the answer is well formed: no 5xx, JSON, every error coded,
/// no driver text, in time.
async fn probe(
    client: &reqwest::Client,
    app: &TestApp,
    token: bool,
    document: &str,
    variables: &Value,
) {
    let mut request = client
        .post(format!("{}/graphql", app.address))
        .json(&json!({ "query": document, "variables": variables }));
    if token {
        request = request.header("authorization", format!("Bearer {TOKEN}"));
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|error| panic!("{document} {variables}: no answer in time: {error}"));
    let status = response.status();
    let body: Value = response.json().await.expect("a JSON body");
    let context = format!("{document}\n{}\n-> {status} {body}", shorten(variables));
    assert!(!status.is_server_error(), "a 5xx: {context}");
    if let Some(errors) = body.get("errors") {
        for error in errors.as_array().expect("errors is a list") {
            let code = error["extensions"]["code"].as_str().unwrap_or_default();
            assert!(
                CODES.contains(&code),
                "an error without a known code: {context}"
            );
            let message = error["message"].as_str().unwrap_or_default().to_lowercase();
            for leak in LEAKS {
                assert!(!message.contains(leak), "{leak:?} in a message: {context}");
            }
        }
    } else {
        assert!(
            body.get("data").is_some(),
            "neither data nor errors: {context}"
        );
    }
}

fn shorten(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(300) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text,
    }
}

fn mongodb_only(digest: Vec<String>) -> Vec<String> {
    digest
        .into_iter()
        .filter(|line| line.starts_with("mongodb "))
        .collect()
}

#[tokio::test]
async fn hostile_values_in_every_argument_get_clean_answers_and_write_nothing() {
    let app = TestApp::spawn().await;
    app.create_book("/works/HOSTILE", "Already here").await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("a client");
    let schema = Introspected::read(&app).await;
    let before = app.digest().await;
    let mut requests = 0;
    for (operation, root) in [("query", "queryType"), ("mutation", "mutationType")] {
        requests += throw_at_every_argument(&client, &app, &schema, operation, root, false).await;
    }
    assert!(
        requests > 300,
        "the walk reached the arguments: {requests} requests"
    );
    assert_eq!(
        mongodb_only(app.digest().await),
        mongodb_only(before),
        "anonymous requests wrote nothing to MongoDB"
    );

    // With the token, mutations get the same clean answers (and may write what is valid).
    throw_at_every_argument(&client, &app, &schema, "mutation", "mutationType", true).await;
}

/// Sends a call of every field of `root` once per hostile value of each of its arguments (the
/// others valid), checking each answer; returns how many requests it sent.
async fn throw_at_every_argument(
    client: &reqwest::Client,
    app: &TestApp,
    schema: &Introspected,
    operation: &str,
    root: &str,
    token: bool,
) -> usize {
    let mut requests = 0;
    for field in schema.fields(root) {
        for argument in field["args"].as_array().expect("args") {
            let name = argument["name"].as_str().expect("a name");
            for value in hostile_values(schema, &argument["type"], 0) {
                let replace = Override {
                    argument: name,
                    value,
                };
                let (document, variables) = schema.call(operation, &field, Some(&replace));
                probe(client, app, token, &document, &variables).await;
                requests += 1;
            }
        }
    }
    requests
}

#[tokio::test]
async fn malformed_bodies_get_a_4xx_with_a_code() {
    let app = TestApp::spawn().await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    for body in [
        r#"{"query": "{ book(id: \"\ud800\") { id } }"}"#.to_owned(),
        format!(r#"{{"query": "{{ __typename }}", "variables": {deep}}}"#),
        r#"{"query": 12}"#.to_owned(),
        "not json".to_owned(),
        format!(r#"{{"query": "{{ __typename }}", "extensions": {deep}}}"#),
    ] {
        let response = app.post_graphql_body(body.clone()).await;
        let status = response.status();
        let answer: Value = response.json().await.expect("a JSON body");
        assert!(
            status.is_client_error(),
            "{status} for {}",
            &body[..body.len().min(80)]
        );
        assert!(
            answer["errors"][0]["extensions"]["code"].is_string(),
            "{answer}"
        );
    }
}
