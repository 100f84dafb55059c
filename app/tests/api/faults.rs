//! Outages, injected by cutting the test's own proxy in front of Redis or MongoDB.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{assert_no_errors, book_id, error_code, Options, TestApp};

const BOOK: &str = "query($id: ID!) { book(id: $id) { title version } }";
const RETITLE: &str =
    "mutation($id: ID!, $t: String!) { updateBook(id: $id, input: { title: $t }) { version } }";

async fn readiness(app: &TestApp) -> (u16, Value) {
    let response = app.get_ops("/readyz").await;
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

#[tokio::test]
async fn with_redis_down_reads_answer_from_mongodb_and_readyz_says_so() {
    let app = TestApp::spawn_with(Options {
        proxy_redis: true,
        ..Default::default()
    })
    .await;
    let id = app.create_book("/works/R1", "Survivor").await["id"].clone();
    let proxy = app.redis_proxy.as_ref().expect("proxy");

    proxy.cut().await;
    let finds = app.mongo_finds();
    let read = app.graphql(BOOK, json!({ "id": id })).await;
    assert_no_errors(&read);
    assert_eq!(read["data"]["book"]["title"], "Survivor");
    assert_eq!(app.mongo_finds(), finds + 1, "answered by MongoDB");

    let (status, body) = readiness(&app).await;
    assert_eq!(status, 200, "still serving: {body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["redis"]["up"], false);
    assert_eq!(body["mongodb"]["up"], true);

    let metrics = app.get_ops("/metrics").await.text().await.expect("text");
    assert!(
        metrics.contains("oponn_cache_lookups_total{entity=\"books\",result=\"bypass\"}"),
        "bypassed lookups are counted"
    );
    assert!(app.metrics.cache_errors.with_label_values(&["mget"]).get() >= 1);

    proxy.restore();
    let (status, body) = readiness(&app).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
}

/// What `deployer verify` reads through the load balancer: the broken dependency by name.
#[tokio::test]
async fn with_redis_down_the_public_readyz_names_redis_and_answers_503() {
    let app = TestApp::spawn_with(Options {
        proxy_redis: true,
        ..Default::default()
    })
    .await;
    app.redis_proxy.as_ref().expect("proxy").cut().await;

    let response = app.get("/readyz").await;

    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({ "status": "degraded", "mongodb": "ok", "redis": "down" })
    );
    // The load balancer's check stays green: a Redis outage takes no task out.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

/// Invariant 1 through a Redis outage: a write acknowledged while Redis was down is never
/// hidden by the older version Redis still holds when it comes back.
#[tokio::test]
async fn a_write_during_a_redis_outage_is_repaired_when_redis_returns() {
    let app = TestApp::spawn_with(Options {
        proxy_redis: true,
        ..Default::default()
    })
    .await;
    let created = app.create_book("/works/R2", "v1").await;
    let id = book_id(&created);
    let proxy = app.redis_proxy.as_ref().expect("proxy");

    proxy.cut().await;
    let written = app
        .graphql(RETITLE, json!({ "id": id.to_string(), "t": "v2" }))
        .await;
    assert_no_errors(&written);
    assert_eq!(app.datastore.cache().pending_repairs(), 1);

    proxy.restore();
    let read = app.graphql(BOOK, json!({ "id": id.to_string() })).await;
    assert_eq!(
        read["data"]["book"]["version"], 2,
        "the pending key bypasses the stale cache"
    );

    tokio::time::timeout(
        Duration::from_secs(10),
        app.datastore.cache().repairs_drained(),
    )
    .await
    .expect("the repair lands once Redis answers");
    assert_eq!(app.cached(id).await.expect("cached").version, 2);
}

#[tokio::test]
async fn with_mongodb_down_cached_reads_answer_and_writes_fail_without_half_writing() {
    let app = TestApp::spawn_with(Options {
        proxy_mongo: true,
        ..Default::default()
    })
    .await;
    let id = app.create_book("/works/M1", "Cached").await["id"].clone();
    let proxy = app.mongo_proxy.as_ref().expect("proxy");

    proxy.cut().await;
    let read = app.graphql(BOOK, json!({ "id": id })).await;
    assert_no_errors(&read);
    assert_eq!(read["data"]["book"]["title"], "Cached", "served from Redis");

    let uncached = app
        .graphql(BOOK, json!({ "id": "65a1b2c3d4e5f6a7b8c9d0e1" }))
        .await;
    assert_eq!(error_code(&uncached), "UNAVAILABLE");

    let write = app.graphql(RETITLE, json!({ "id": id, "t": "Lost" })).await;
    assert_eq!(error_code(&write), "UNAVAILABLE");
    assert!(
        !write["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Kind:"),
        "no driver text reaches the client: {write}"
    );

    let (status, body) = readiness(&app).await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["mongodb"]["up"], false);

    proxy.restore();
    // The driver finds the server again on its own schedule: wait for /readyz to say so.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while readiness(&app).await.0 != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "MongoDB never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cached = app
        .cached(book_id(&json!({ "id": id })))
        .await
        .expect("cached");
    assert_eq!(cached.version, 1, "the failed write left the cache alone");
    let stored = app
        .datastore
        .store()
        .books()
        .find_many(&[book_id(&json!({ "id": id }))])
        .await
        .expect("MongoDB is back");
    assert_eq!(stored[0].version, 1, "and MongoDB unchanged");
    assert_eq!(stored[0].title.as_str(), "Cached");
}

/// A write whose reconciliation cannot reach Redis: cached results are not used until the
/// affected ranges are dropped, so no result that misses the write is ever served.
#[tokio::test]
async fn a_write_that_cannot_reconcile_never_leaves_a_stale_result_served() {
    let app = TestApp::spawn_with(Options {
        proxy_redis: true,
        ..Default::default()
    })
    .await;
    const PAGE: &str = "{ books(filter: { author: \"A. Author\" }) { nodes { title } } }";
    let titles = |body: Value| {
        body["data"]["books"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["title"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    app.create_book("/works/Q1", "First").await;
    assert_eq!(titles(app.graphql(PAGE, json!({})).await), ["First"]);

    let proxy = app.redis_proxy.as_ref().expect("proxy");
    proxy.cut().await;
    app.create_book("/works/Q2", "Second").await;
    assert!(!app.datastore.cache().results_clean());
    proxy.restore();

    assert_eq!(
        titles(app.graphql(PAGE, json!({})).await),
        ["First", "Second"],
        "the unreconciled result is bypassed"
    );
    tokio::time::timeout(
        Duration::from_secs(10),
        app.datastore.cache().results_repaired(),
    )
    .await
    .expect("the ranges are dropped once Redis answers");
    assert_eq!(
        titles(app.graphql(PAGE, json!({})).await),
        ["First", "Second"]
    );
    assert_eq!(
        titles(app.graphql(PAGE, json!({})).await),
        ["First", "Second"]
    );
    assert!(
        app.metrics.query_cache_count("hit") >= 1,
        "cached again after the repair"
    );
}
