//! GraphQL over HTTP as the specification describes it: media types, status codes, GET for
//! queries, automatic persisted queries.

use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{error_code, TestApp, TOKEN};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

fn sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

async fn post(app: &TestApp, accept: Option<&str>, body: Value) -> (StatusCode, String, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/graphql", app.address))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    answer(request).await
}

/// `/graphql` with `params` in its query string.
fn url(app: &TestApp, params: &[(&str, String)]) -> reqwest::Url {
    reqwest::Url::parse_with_params(&format!("{}/graphql", app.address), params).expect("a URL")
}

async fn get(
    app: &TestApp,
    accept: Option<&str>,
    params: &[(&str, String)],
) -> (StatusCode, String, Value) {
    let mut request = reqwest::Client::new().get(url(app, params));
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    answer(request).await
}

async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, String, Value) {
    let response = request.send().await.expect("an answer");
    let status = response.status();
    let media = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, media, body)
}

#[tokio::test]
async fn the_roots_are_named_query_and_mutation() {
    let app = TestApp::spawn().await;
    let (_, _, body) = post(&app, None, json!({ "query": "{ __typename }" })).await;
    assert_eq!(body["data"]["__typename"], "Query");
    let (_, _, body) = post(
        &app,
        None,
        json!({ "query": "{ __schema { mutationType { name } } }" }),
    )
    .await;
    assert_eq!(body["data"]["__schema"]["mutationType"]["name"], "Mutation");
}

#[tokio::test]
async fn a_json_client_gets_json_and_200_even_for_request_errors() {
    let app = TestApp::spawn().await;
    for accept in [None, Some("application/json"), Some("*/*")] {
        let (status, media, body) = post(&app, accept, json!({ "query": "{ book(" })).await;
        assert_eq!(
            (status, media.as_str()),
            (StatusCode::OK, "application/json")
        );
        assert_eq!(error_code(&body), "GRAPHQL_PARSE_FAILED");
        assert!(
            body.get("data").is_none(),
            "a request error has no data: {body}"
        );
    }
}

#[tokio::test]
async fn a_graphql_response_client_gets_400_for_request_errors_and_200_for_field_errors() {
    let app = TestApp::spawn().await;
    let accept = Some("application/graphql-response+json, application/json;q=0.9");
    for (query, code) in [
        ("{ book(", "GRAPHQL_PARSE_FAILED"),
        ("{ noSuchField }", "GRAPHQL_VALIDATION_FAILED"),
    ] {
        let (status, media, body) = post(&app, accept, json!({ "query": query })).await;
        assert_eq!(
            (status, media.as_str()),
            (StatusCode::BAD_REQUEST, GRAPHQL_RESPONSE)
        );
        assert_eq!(error_code(&body), code);
        assert!(body.get("data").is_none(), "{body}");
    }
    // An error in a field is a partial result: the request ran, 200 with data.
    let (status, _, body) = post(
        &app,
        accept,
        json!({ "query": "{ book(id: \"nope\") { id } }" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    assert!(body.get("data").is_some(), "{body}");
}

#[tokio::test]
async fn queries_run_over_get_and_mutations_do_not() {
    let app = TestApp::spawn().await;
    let book = app.create_book("/works/GET1", "Over GET").await;
    let (status, _, body) = get(
        &app,
        None,
        &[
            (
                "query",
                "query($id: ID!) { book(id: $id) { title } }".to_owned(),
            ),
            ("variables", json!({ "id": book["id"] }).to_string()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["book"]["title"], "Over GET");

    let response = reqwest::Client::new()
        .get(url(&app, &[("query", "{ __typename }".to_owned())]))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");

    let mutation = "mutation { deleteBook(id: \"65a1b2c3d4e5f6a7b8c9d0e1\") { id } }";
    let response = reqwest::Client::new()
        .get(url(&app, &[("query", mutation.to_owned())]))
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[header::ALLOW], "POST");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(error_code(&body), "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn get_without_a_query_is_graphiql_for_browsers_and_an_error_otherwise() {
    let app = TestApp::spawn().await;
    let page = reqwest::Client::new()
        .get(format!("{}/graphql", app.address))
        .header(header::ACCEPT, "text/html,application/xhtml+xml")
        .send()
        .await
        .expect("an answer");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.expect("text").contains("graphiql"));
    let (status, _, body) = get(&app, Some("application/json"), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "BAD_REQUEST");
}

#[tokio::test]
async fn persisted_queries_register_on_the_follow_up_and_then_run_by_hash_over_post_and_get() {
    let app = TestApp::spawn().await;
    let query = "{ books(first: 1) { nodes { id } } }";
    let extensions = json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256(query) } });

    let (status, _, body) = post(&app, None, json!({ "extensions": extensions })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(error_code(&body), "PERSISTED_QUERY_NOT_FOUND");
    assert_eq!(body["errors"][0]["message"], "PersistedQueryNotFound");

    let (_, _, body) = post(
        &app,
        None,
        json!({ "query": query, "extensions": extensions }),
    )
    .await;
    assert!(body.get("errors").is_none(), "{body}");

    let (_, _, body) = post(&app, None, json!({ "extensions": extensions })).await;
    assert!(body["data"]["books"]["nodes"].is_array(), "{body}");
    let (status, _, body) = get(&app, None, &[("extensions", extensions.to_string())]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["data"]["books"]["nodes"].is_array(), "{body}");
}

#[tokio::test]
async fn a_persisted_query_is_checked_like_any_other() {
    let app = TestApp::spawn().await;
    // A text that does not match its hash is refused.
    let lying = json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256("{ other }") } });
    let (_, _, body) = post(
        &app,
        None,
        json!({ "query": "{ __typename }", "extensions": lying }),
    )
    .await;
    assert_eq!(error_code(&body), "BAD_REQUEST");

    // A document that fails validation is not registered.
    let invalid = "{ noSuchField }";
    let hash = json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256(invalid) } });
    post(&app, None, json!({ "query": invalid, "extensions": hash })).await;
    let (_, _, body) = post(&app, None, json!({ "extensions": hash })).await;
    assert_eq!(error_code(&body), "PERSISTED_QUERY_NOT_FOUND");

    // A mutation registered by a caller with a token does not run by hash without one.
    let mutation =
        "mutation { createBook(input: { sourceKey: \"/works/APQ\", title: \"T\" }) { id } }";
    let hash = json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256(mutation) } });
    let registered = reqwest::Client::new()
        .post(format!("{}/graphql", app.address))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(json!({ "query": mutation, "extensions": hash }).to_string())
        .send()
        .await
        .expect("an answer");
    let registered: Value = registered.json().await.expect("JSON");
    assert!(registered.get("errors").is_none(), "{registered}");
    let before = app.count_books().await;
    let (_, _, body) = post(&app, None, json!({ "extensions": hash })).await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    assert_eq!(app.count_books().await, before);
}

#[tokio::test]
async fn choosing_no_or_an_unknown_operation_is_a_bad_request_with_a_code() {
    let app = TestApp::spawn().await;
    let document = "query A { __typename } query B { __typename }";
    for body in [
        json!({ "query": document }),
        json!({ "query": document, "operationName": "C" }),
    ] {
        let (status, _, answer) = post(&app, Some(GRAPHQL_RESPONSE), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(error_code(&answer), "BAD_REQUEST");
        assert!(answer.get("data").is_none(), "{answer}");
    }
    let (_, _, answer) = post(
        &app,
        None,
        json!({ "query": document, "operationName": "B" }),
    )
    .await;
    assert_eq!(answer["data"]["__typename"], "Query");
}

/// Safelist mode (`OPONN_SAFELIST`): the listed documents run, by hash over GET or POST or by
/// their text; any other document is `QUERY_NOT_IN_SAFELIST` (400 for graphql-response+json
/// clients) and writes nothing, and no APQ registration adds to the list.
#[tokio::test]
async fn in_safelist_mode_only_the_listed_documents_run() {
    let listed = "{ books(first: 1) { nodes { id } } }";
    let path = std::env::temp_dir().join(format!("safelist-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&path, json!({ sha256(listed): listed }).to_string()).expect("written");
    let app = TestApp::spawn_with(crate::helpers::Options {
        settings: vec![("OPONN_SAFELIST", path.display().to_string())],
        ..Default::default()
    })
    .await;
    let by_hash = json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256(listed) } });

    let (status, _, body) = get(&app, None, &[("extensions", by_hash.to_string())]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["data"]["books"]["nodes"].is_array(), "{body}");
    let (_, _, body) = post(&app, None, json!({ "query": listed })).await;
    assert!(body["data"]["books"]["nodes"].is_array(), "{body}");

    let create = "mutation { createBook(input: { sourceKey: \"/works/SAFE\", title: \"Unlisted\" }) { id } }";
    for accept in [None, Some(GRAPHQL_RESPONSE)] {
        let (status, _, body) = post(&app, accept, json!({ "query": create })).await;
        let expected = match accept {
            None => StatusCode::OK,
            Some(_) => StatusCode::BAD_REQUEST,
        };
        assert_eq!(status, expected, "{body}");
        assert_eq!(error_code(&body), "QUERY_NOT_IN_SAFELIST", "{body}");
        assert!(body.get("data").is_none(), "{body}");
    }
    let register = json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256(create) } });
    let (_, _, body) = post(
        &app,
        None,
        json!({ "query": create, "extensions": register }),
    )
    .await;
    assert_eq!(error_code(&body), "QUERY_NOT_IN_SAFELIST", "{body}");
    let (_, _, body) = post(&app, None, json!({ "extensions": register })).await;
    assert_eq!(error_code(&body), "PERSISTED_QUERY_NOT_FOUND", "{body}");
    assert_eq!(app.books_in_mongodb().await.len(), 0, "nothing was written");
    std::fs::remove_file(path).expect("removed");
}
