//! The HTTP surface: bad bodies, limits, health, metrics, request ids.

use serde_json::{json, Value};

use crate::helpers::{error_code, Options, TestApp};

#[tokio::test]
async fn a_malformed_json_body_is_a_400_with_a_code() {
    let app = TestApp::spawn().await;
    let response = app.post_graphql_body("{\"query\": ").await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(error_code(&body), "BAD_REQUEST");
}

#[tokio::test]
async fn an_oversized_body_is_a_413_with_a_code() {
    let app = TestApp::spawn_with(Options {
        settings: vec![("OPONN_MAX_BODY_BYTES", "1024".into())],
        ..Default::default()
    })
    .await;
    let padding = " ".repeat(2048);
    let response = app
        .post_graphql_body(format!("{{\"query\": \"{{ __typename }}\"{padding}}}"))
        .await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(error_code(&body), "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn malformed_graphql_is_a_parse_error_with_a_code() {
    let app = TestApp::spawn().await;
    let body = app.graphql("{ book(id: ", json!({})).await;
    assert_eq!(error_code(&body), "GRAPHQL_PARSE_FAILED");
    let body = app.graphql("{ noSuchField }", json!({})).await;
    assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED");
}

#[tokio::test]
async fn queries_deeper_than_the_limit_are_refused() {
    let app = TestApp::spawn_with(Options {
        settings: vec![("OPONN_MAX_QUERY_DEPTH", "3".into())],
        ..Default::default()
    })
    .await;
    let body = app
        .graphql(
            "{ __schema { types { fields { type { name } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED");
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish() {
    let mut app = TestApp::spawn().await;
    let book = app.insert_uncached("In flight").await;
    let mut pause = app.datastore.checkpoints().pause_before_fill();
    let request = tokio::spawn({
        let client = reqwest::Client::new();
        let url = format!("{}/graphql", app.address);
        let id = book.id.to_string();
        async move {
            client
                .post(url)
                .json(&json!({ "query": "query($id: ID!) { book(id: $id) { title } }", "variables": { "id": id } }))
                .send()
                .await
        }
    });
    pause.reached().await;
    let server = app.begin_shutdown();
    tokio::task::yield_now().await;
    assert!(
        !server.is_finished(),
        "the server waits for the request in flight"
    );
    pause.resume();

    let response = request.await.expect("task").expect("the request completes");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["data"]["book"]["title"], "In flight");
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .expect("the server stops once drained")
        .expect("server task")
        .expect("clean exit");
}

#[tokio::test]
async fn healthz_answers_while_the_process_is_up() {
    let app = TestApp::spawn().await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("text"), "ok");
}

#[tokio::test]
async fn readyz_reports_each_dependency() {
    let app = TestApp::spawn().await;
    let response = app.get_ops("/readyz").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["mongodb"]["up"], true);
    assert_eq!(body["redis"]["up"], true);
}

#[tokio::test]
async fn metrics_expose_cache_and_database_counters() {
    let app = TestApp::spawn().await;
    let book = app.insert_uncached("Metered").await;
    let query = "query($id: ID!) { book(id: $id) { id } }";
    app.graphql(query, json!({ "id": book.id.to_string() }))
        .await;
    app.graphql(query, json!({ "id": book.id.to_string() }))
        .await;
    let text = app.get_ops("/metrics").await.text().await.expect("text");
    for line in [
        "oponn_cache_lookups_total{entity=\"books\",result=\"hit\"} 1",
        "oponn_cache_lookups_total{entity=\"books\",result=\"miss\"} 1",
        "oponn_cache_fills_total{entity=\"books\",outcome=\"stored\"} 1",
        "oponn_mongodb_command_duration_seconds_bucket{command=\"find\"",
        "oponn_redis_command_duration_seconds_bucket{operation=\"mget\"",
        "oponn_cache_lookup_duration_seconds_count 2",
        "oponn_http_requests_total{status=\"2xx\"}",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_keeps_the_callers() {
    let app = TestApp::spawn().await;
    let generated = app.get("/healthz").await;
    assert!(generated.headers().get("x-request-id").is_some());
    let response = reqwest::Client::new()
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "caller-chosen-id")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.headers()["x-request-id"], "caller-chosen-id");
}

#[tokio::test]
async fn graphiql_is_served_on_get() {
    let app = TestApp::spawn().await;
    let response = app.get_page("/graphql").await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.expect("text").contains("graphiql"));
}

#[tokio::test]
async fn graphiql_and_introspection_can_be_switched_off() {
    let app = TestApp::spawn_with(Options {
        settings: vec![
            ("OPONN_GRAPHIQL", "false".into()),
            ("OPONN_INTROSPECTION", "false".into()),
        ],
        ..Default::default()
    })
    .await;
    let page = app.get_page("/graphql").await;
    assert_eq!(page.status(), 404);
    let body: Value = page.json().await.expect("JSON");
    assert_eq!(error_code(&body), "NOT_FOUND");
    let schema = app
        .graphql_as(None, "{ __schema { queryType { name } } }", json!({}))
        .await;
    assert!(
        schema["data"]["__schema"].is_null(),
        "introspection answers nothing: {schema}"
    );
    let typename = app.graphql_as(None, "{ __typename }", json!({})).await;
    assert!(typename.get("errors").is_none(), "{typename}");
}

#[tokio::test]
async fn graphiql_loads_only_pinned_assets_under_a_content_security_policy() {
    let app = TestApp::spawn().await;
    let response = app.get_page("/graphql").await;
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    let page = response.text().await.expect("text");
    assert!(!page.contains(".development.js"), "production builds only");
    assert_eq!(page.matches("integrity=\"sha384-").count(), 4);
}

#[tokio::test]
async fn bodies_that_are_not_json_are_refused_before_they_run() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::new();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let mut request = client
            .post(format!("{}/graphql", app.address))
            .body(r#"{"query": "{ __typename }"}"#);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.expect("answer");
        assert_eq!(response.status(), 415, "{content_type:?}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(error_code(&body), "UNSUPPORTED_MEDIA_TYPE");
    }
}

#[tokio::test]
async fn every_error_response_is_graphql_shaped_with_a_code() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::new();
    let not_found = app.get("/nowhere").await;
    assert_eq!(not_found.status(), 404);
    let body: Value = not_found.json().await.expect("JSON");
    assert_eq!(error_code(&body), "NOT_FOUND");
    let wrong_method = client
        .delete(format!("{}/graphql", app.address))
        .send()
        .await
        .expect("answer");
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "GET, POST");
    let body: Value = wrong_method.json().await.expect("JSON");
    assert_eq!(error_code(&body), "METHOD_NOT_ALLOWED");
    assert_eq!(
        app.metrics.http_requests.with_label_values(&["4xx"]).get(),
        2
    );
}

#[tokio::test]
async fn responses_carry_security_headers_and_answers_are_not_cached() {
    let app = TestApp::spawn().await;
    let response = app
        .post_graphql_body(r#"{"query": "{ __typename }"}"#)
        .await;
    let headers = response.headers();
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(headers["content-security-policy"]
        .to_str()
        .expect("ascii")
        .contains("frame-ancestors 'none'"));
    assert_eq!(headers["content-type"], "application/json");
    let typed = reqwest::Client::new()
        .post(format!("{}/graphql", app.address))
        .header("content-type", "application/json")
        .header(
            "accept",
            "application/graphql-response+json, application/json",
        )
        .body(r#"{"query": "{ __typename }"}"#)
        .send()
        .await
        .expect("answer");
    assert_eq!(
        typed.headers()["content-type"],
        "application/graphql-response+json"
    );
}

#[tokio::test]
async fn unsafe_request_ids_are_replaced_not_echoed() {
    let app = TestApp::spawn().await;
    for hostile in ["<script>alert(1)</script>", "a b", &"x".repeat(65)] {
        let response = reqwest::Client::new()
            .get(format!("{}/healthz", app.address))
            .header("x-request-id", hostile)
            .send()
            .await
            .expect("answer");
        let id = response.headers()["x-request-id"].to_str().expect("ascii");
        assert_ne!(id, hostile);
        assert_eq!(id.len(), 36, "a fresh UUID: {id}");
    }
}

#[tokio::test]
async fn metrics_are_not_on_the_public_listener_and_readiness_is_there_only_redacted() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.get("/metrics").await.status(),
        404,
        "/metrics on the public port"
    );
    assert_eq!(app.get_ops("/metrics").await.status(), 200);
    assert_eq!(app.get_ops("/readyz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
}

#[tokio::test]
async fn the_public_readyz_says_a_word_per_dependency_and_nothing_else() {
    let app = TestApp::spawn().await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({ "status": "ready", "mongodb": "ok", "redis": "ok" }),
        "no latencies, no error text, no hosts"
    );
}

/// Anonymous clients cannot turn `/readyz` into database load: a burst shares one probe.
#[tokio::test]
async fn a_hundred_concurrent_public_readyz_requests_cost_at_most_two_probes() {
    let app = TestApp::spawn().await;
    let redis_pings = || {
        app.metrics
            .redis_duration
            .with_label_values(&["ping"])
            .get_sample_count()
    };
    let (mongodb_before, redis_before) = (app.metrics.mongodb_command_count("ping"), redis_pings());

    let statuses = futures::future::join_all((0..100).map(|_| app.get("/readyz"))).await;

    assert!(statuses.iter().all(|response| response.status() == 200));
    let mongodb = app.metrics.mongodb_command_count("ping") - mongodb_before;
    let redis = redis_pings() - redis_before;
    assert!((1..=2).contains(&mongodb), "{mongodb} MongoDB pings");
    assert!((1..=2).contains(&redis), "{redis} Redis pings");
}
