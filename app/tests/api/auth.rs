//! Mutations need a bearer token; queries do not.

use serde_json::json;

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
    let body = app.graphql_as(None, &document, json!({})).await;
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
