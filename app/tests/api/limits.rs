//! What an anonymous request can cost: list costs that multiply, aliases, response size,
//! deadlines that cancel work, filter values and cursors checked like the records they match.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{assert_no_errors, error_code, Options, TestApp};

fn error_message(body: &Value) -> &str {
    body["errors"][0]["message"].as_str().unwrap_or_default()
}

fn aliased(count: usize, field: &str) -> String {
    let fields: Vec<String> = (0..count).map(|n| format!("a{n}: {field}")).collect();
    format!("{{ {} }}", fields.join(" "))
}

#[tokio::test]
async fn hundreds_of_aliases_are_refused_naming_the_limit() {
    let app = TestApp::spawn().await;
    let query = aliased(500, "books(first: 100) { nodes { id } }");
    let body = app.graphql_as(None, &query, json!({})).await;
    assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
    assert!(
        error_message(&body).contains("OPONN_MAX_QUERY_ALIASES"),
        "{body}"
    );
    assert!(body["data"].is_null());
}

#[tokio::test]
async fn list_costs_multiply_by_page_size_and_nest() {
    let app = TestApp::spawn().await;
    // 20 aliases of a full page: within the alias limit, but 20 x 100 records of 3 fields.
    let wide = aliased(20, "books(first: 100) { nodes { id title authors } }");
    // Lists inside lists multiply: 100 stores x 100 books each.
    let deep = "{ bookstores(first: 100) { nodes { books(first: 100) { nodes { id } } } } }";
    let ids: Vec<String> = (0..1_000).map(|n| format!("{n:024x}")).collect();
    let batch = format!(
        "{{ booksByIds(ids: {}) {{ id title authors subjects bookstore {{ name city }} }} }}",
        serde_json::to_string(&ids).expect("json")
    );
    for query in [wide.as_str(), deep, batch.as_str()] {
        let body = app.graphql_as(None, query, json!({})).await;
        assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
        assert!(
            error_message(&body).contains("OPONN_MAX_QUERY_COMPLEXITY"),
            "{body}"
        );
    }

    // What clients really send still passes: a full page with its stores, a page of stores
    // with a few books each, a hundred ids.
    for query in [
        "{ books(first: 100) { nodes { id title authors bookstore { name } } pageInfo { endCursor hasNextPage } } }",
        "{ bookstores(first: 20) { nodes { name books(first: 5) { nodes { title } } } } }",
        &format!("{{ booksByIds(ids: {}) {{ id title }} }}", serde_json::to_string(&ids[..100]).expect("json")),
    ] {
        let body = app.graphql_as(None, query, json!({})).await;
        assert_no_errors(&body);
    }
}

#[tokio::test]
async fn a_response_over_the_size_limit_is_an_error_with_a_code() {
    let app = TestApp::spawn_with(Options {
        settings: vec![("OPONN_MAX_RESPONSE_BYTES", "2000".to_owned())],
        ..Default::default()
    })
    .await;
    for n in 0..30 {
        app.create_book(
            &format!("/works/BIG{n}"),
            &format!("A title long enough {n}"),
        )
        .await;
    }
    let body = app
        .graphql_as(
            None,
            "{ books(first: 30) { nodes { id title authors } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "RESPONSE_TOO_LARGE", "{body}");
    assert!(error_message(&body).contains("OPONN_MAX_RESPONSE_BYTES"));
    let small = app
        .graphql_as(None, "{ books(first: 2) { nodes { id } } }", json!({}))
        .await;
    assert_no_errors(&small);
}

#[tokio::test]
async fn a_request_past_its_deadline_is_a_timeout_with_a_code_and_its_work_is_cancelled() {
    let app = TestApp::spawn_with(Options {
        settings: vec![("OPONN_REQUEST_TIMEOUT_MS", "500".to_owned())],
        ..Default::default()
    })
    .await;
    app.create_book("/works/SLOW", "Slow").await;
    // The page's work stops between its MongoDB query and its cache fill, as a slow database
    // would hold it, and never resumes on its own.
    let mut pause = app.datastore.checkpoints().pause_before_result_fill();
    let response = app
        .post_graphql_body(json!({ "query": "{ books { nodes { id } } }" }).to_string())
        .await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("a GraphQL-shaped body");
    assert_eq!(error_code(&body), "TIMEOUT", "{body}");
    assert!(error_message(&body).contains("OPONN_REQUEST_TIMEOUT_MS"));
    // The loader ran the page on a task of its own; the request's end must have dropped it.
    tokio::time::timeout(Duration::from_secs(5), pause.abandoned())
        .await
        .expect("the request's work was cancelled with it, not left running");
    assert_eq!(
        app.metrics.http_requests.with_label_values(&["5xx"]).get(),
        1,
        "the timeout is counted as a 5xx"
    );
}

#[tokio::test]
async fn filter_values_a_record_could_not_hold_are_refused() {
    let app = TestApp::spawn().await;
    let long = "x".repeat(501);
    let parens = "(".repeat(5_000);
    for filter in [
        json!({ "titlePrefix": parens }),
        json!({ "titlePrefix": "a\u{0}b" }),
        json!({ "titlePrefix": "" }),
        json!({ "title": long }),
        json!({ "author": "x".repeat(201) }),
        json!({ "author": "tab\u{1b}[31m" }),
        json!({ "subject": "" }),
    ] {
        let body = app
            .graphql_as(
                None,
                "query($f: BookFilter) { books(filter: $f) { nodes { id } } }",
                json!({ "f": filter }),
            )
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{filter}: {body}");
        assert!(error_message(&body).starts_with("filter."), "{body}");
    }
    for filter in [
        json!({ "city": "\u{7}" }),
        json!({ "namePrefix": "x".repeat(121) }),
    ] {
        let body = app
            .graphql_as(
                None,
                "query($f: BookstoreFilter) { bookstores(filter: $f) { nodes { id } } }",
                json!({ "f": filter }),
            )
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{filter}: {body}");
    }
}

/// A cursor whose sort key has another type than the sort field would be ordered one way by
/// MongoDB and another by the cache.
#[tokio::test]
async fn cursors_of_the_wrong_types_are_refused() {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    let app = TestApp::spawn().await;
    let forged = |cursor: Value| URL_SAFE_NO_PAD.encode(cursor.to_string());
    for cursor in [
        forged(json!({ "key": { "int": 5 }, "id": { "id": "65a1b2c3d4e5f6a7b8c9d0e1" } })),
        forged(json!({ "key": "null", "id": { "id": "65a1b2c3d4e5f6a7b8c9d0e1" } })),
        forged(json!({ "key": { "str": "a" }, "id": { "str": "65a1b2c3d4e5f6a7b8c9d0e1" } })),
        forged(json!({ "key": { "str": "a" }, "id": { "id": "65A1B2C3D4E5F6A7B8C9D0E1" } })),
        forged(
            json!({ "key": { "str": "x".repeat(600) }, "id": { "id": "65a1b2c3d4e5f6a7b8c9d0e1" } }),
        ),
        "not-a-cursor".to_owned(),
    ] {
        let body = app
            .graphql_as(
                None,
                "query($a: String) { books(after: $a) { nodes { id } } }",
                json!({ "a": cursor }),
            )
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{cursor}: {body}");
    }
    // A cursor the API gave still works.
    app.create_book("/works/C1", "Alpha").await;
    app.create_book("/works/C2", "Beta").await;
    let first = app
        .graphql_as(
            None,
            "{ books(first: 1) { pageInfo { endCursor } } }",
            json!({}),
        )
        .await;
    let cursor = first["data"]["books"]["pageInfo"]["endCursor"].clone();
    let next = app
        .graphql_as(
            None,
            "query($a: String) { books(first: 1, after: $a) { nodes { title } } }",
            json!({ "a": cursor }),
        )
        .await;
    assert_no_errors(&next);
    assert_eq!(next["data"]["books"]["nodes"][0]["title"], "Beta");
}

#[tokio::test]
async fn a_document_with_many_errors_reports_a_bounded_number() {
    let app = TestApp::spawn().await;
    let fields: Vec<String> = (0..100).map(|n| format!("unknown{n}")).collect();
    let body = app
        .graphql_as(None, &format!("{{ {} }}", fields.join(" ")), json!({}))
        .await;
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 20, "{body}");
    assert!(errors[19]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("81 more errors"));
}

/// Polls `condition` every 50 ms for up to `within`; what is awaited is Redis expiring keys
/// and the repair loop trimming, which announce themselves to no one.
async fn eventually<F, Fut>(within: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn zcard(app: &TestApp, name: &str) -> usize {
    let mut redis = app.redis().await;
    redis::cmd("ZCARD")
        .arg(app.result_cache_key(name))
        .query_async(&mut redis)
        .await
        .expect("ZCARD")
}

#[tokio::test]
async fn index_entries_of_anonymous_queries_leave_with_their_results() {
    let app = TestApp::spawn_with(Options {
        settings: vec![
            ("OPONN_CACHE_RESULT_TTL_SECS", "3".to_owned()),
            ("OPONN_REDIS_RETRY_AFTER_MS", "100".to_owned()),
        ],
        ..Default::default()
    })
    .await;
    for round in 0..20 {
        let ids: Vec<String> = (0..50)
            .map(|n| format!("{:024x}", round * 1_000 + n))
            .collect();
        let body = app
            .graphql_as(
                None,
                "query($ids: [ID!]!) { bookstoresForBooks(bookIds: $ids) { id } }",
                json!({ "ids": ids }),
            )
            .await;
        assert_no_errors(&body);
    }
    assert_eq!(
        zcard(&app, "tables").await,
        1_000,
        "one entry per id and result"
    );
    assert_eq!(zcard(&app, "expiry").await, 1_000);
    let emptied = eventually(Duration::from_secs(15), || async {
        zcard(&app, "tables").await == 0 && zcard(&app, "expiry").await == 0
    })
    .await;
    assert!(emptied, "expired results leave no index entries behind");
}

#[tokio::test]
async fn a_range_holds_at_most_its_cap_the_oldest_leaving_first() {
    let app = TestApp::spawn_with(Options {
        settings: vec![("OPONN_CACHE_RESULTS_PER_RANGE", "5".to_owned())],
        ..Default::default()
    })
    .await;
    let book = app.create_book("/works/CAP", "Capped").await;
    // Title prefixes have no equality term: every such result lands in the range every book
    // write visits.
    for n in 0..20 {
        let body = app
            .graphql_as(
                None,
                "query($p: String!) { books(filter: { titlePrefix: $p }) { nodes { id } } }",
                json!({ "p": format!("C{n}") }),
            )
            .await;
        assert_no_errors(&body);
    }
    let mut redis = app.redis().await;
    let in_range: usize = redis::cmd("ZLEXCOUNT")
        .arg(app.result_cache_key("tables"))
        .arg("[books::")
        .arg("[books::\u{ff}")
        .query_async(&mut redis)
        .await
        .expect("ZLEXCOUNT");
    assert_eq!(in_range, 5);
    let evicted = app
        .metrics
        .query_cache
        .with_label_values(&["books", "evicted"])
        .get();
    assert_eq!(evicted, 15);
    // The newest stayed: the last prefix is answered from the cache.
    let hits = || {
        app.metrics
            .query_cache
            .with_label_values(&["books", "hit"])
            .get()
    };
    let before = hits();
    let body = app
        .graphql_as(
            None,
            "{ books(filter: { titlePrefix: \"C19\" }) { nodes { id } } }",
            json!({}),
        )
        .await;
    assert_no_errors(&body);
    assert_eq!(hits(), before + 1);
    // And a write still reconciles what is cached.
    let renamed = app
        .graphql(
            "mutation($id: ID!) { updateBook(id: $id, input: { title: \"C19 now\" }) { id } }",
            json!({ "id": book["id"] }),
        )
        .await;
    assert_no_errors(&renamed);
    let body = app
        .graphql_as(
            None,
            "{ books(filter: { titlePrefix: \"C19\" }) { nodes { title } } }",
            json!({}),
        )
        .await;
    assert_eq!(body["data"]["books"]["nodes"][0]["title"], "C19 now");
}
