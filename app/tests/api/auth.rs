//! Mutations need a bearer token; queries do not.

use serde_json::{json, Value};

use crate::{
    helpers::{assert_no_errors, error_code, TestApp},
    schema_walk::Introspected,
};

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

/// Every field of the mutation root, read by introspection, refuses a caller without a valid
/// token, before and after the same document ran with one; a mutation added later is checked
/// by this test without editing it.
#[tokio::test]
async fn every_mutation_field_refuses_callers_without_a_valid_token() {
    let app = TestApp::spawn().await;
    let schema = Introspected::read(&app).await;
    let fields = schema.fields("mutationType");
    assert!(
        fields.len() >= 7,
        "the mutation root has its fields: {fields:?}"
    );

    for field in fields {
        let name = field["name"].as_str().expect("a field name");
        let (document, variables) = schema.call("mutation", &field, None);

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
