//! Redis over TLS (`rediss://`), against a `redis-server` of the test's own that speaks only
//! TLS, its certificate signed by a CA made for the test (`RedisServer::start_tls`): with that CA
//! in `OPONN_REDIS_CA_FILE` the cache and the write-behind queue work as over plain TCP; without
//! it the handshake fails and the service answers from MongoDB, as with any Redis outage.

use mongodb::bson::{doc, Document};
use oponn::domain::BookId;
use oponn_tests::RedisServer;
use serde_json::{json, Value};

use crate::helpers::{assert_no_errors, book_id, unique_suffix, Options, TestApp};

const UPDATE: &str = "mutation($id: ID!, $title: String!) { updateBook(id: $id, input: { title: $title }) { id title version } }";
const BOOK: &str = "query($id: ID!) { book(id: $id) { id title version } }";

async fn app_on(redis: &RedisServer, mut settings: Vec<(&'static str, String)>) -> TestApp {
    settings.push(("OPONN_REDIS_CA_FILE", redis.ca_file().display().to_string()));
    app_trusting_only_public_roots(redis, settings).await
}

async fn app_trusting_only_public_roots(
    redis: &RedisServer,
    settings: Vec<(&'static str, String)>,
) -> TestApp {
    TestApp::spawn_with(Options {
        redis_url: Some(redis.url()),
        settings,
        ..Options::default()
    })
    .await
}

async fn new_book(app: &TestApp, title: &str) -> BookId {
    book_id(
        &app.create_book(&format!("/works/tls-{}", unique_suffix()), title)
            .await,
    )
}

async fn retitle(app: &TestApp, id: BookId, title: &str) -> Value {
    let body = app
        .graphql(UPDATE, json!({ "id": id.to_string(), "title": title }))
        .await;
    assert_no_errors(&body);
    body["data"]["updateBook"].clone()
}

async fn read(app: &TestApp, id: BookId) -> Value {
    let body = app.graphql(BOOK, json!({ "id": id.to_string() })).await;
    assert_no_errors(&body);
    body["data"]["book"].clone()
}

fn lookups(app: &TestApp, result: &str) -> u64 {
    app.metrics
        .cache_lookups
        .with_label_values(&["books", result])
        .get()
}

async fn readyz(app: &TestApp) -> Value {
    let response = app.get_ops("/readyz").await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON")
}

/// The record as the TLS server holds it, read over a connection of the test's own.
async fn cached_on(redis: &RedisServer, app: &TestApp, id: BookId) -> Option<String> {
    redis::cmd("GET")
        .arg(format!("{}books_{id}", app.key_prefix))
        .query_async(&mut redis.connection().await)
        .await
        .expect("GET")
}

#[tokio::test]
async fn books_are_cached_on_a_tls_redis_trusted_through_its_ca_file() {
    let redis = RedisServer::start_tls().await;
    let app = app_on(&redis, vec![]).await;

    let id = new_book(&app, "Sealed in transit").await;
    let updated = retitle(&app, id, "Still sealed").await;
    assert_eq!(updated["version"], 2, "{updated}");
    let finds = app.mongo_finds();
    let hits = lookups(&app, "hit");
    for _ in 0..2 {
        let book = read(&app, id).await;
        assert_eq!(book["title"], "Still sealed", "{book}");
        assert_eq!(book["version"], 2, "{book}");
    }
    assert_eq!(lookups(&app, "hit"), hits + 2, "both reads are cache hits");
    assert_eq!(app.mongo_finds(), finds, "no read reached MongoDB");
    assert_eq!(lookups(&app, "bypass"), 0, "Redis was never skipped");
    let cached = cached_on(&redis, &app, id).await.expect("cached");
    assert!(
        cached.starts_with("2 "),
        "the TLS server holds version 2: {cached}"
    );

    let ready = readyz(&app).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["redis"]["up"], true, "{ready}");
}

#[tokio::test]
async fn without_its_ca_the_handshake_fails_and_reads_are_answered_from_mongodb() {
    let redis = RedisServer::start_tls().await;
    // No OPONN_REDIS_CA_FILE: the public roots cannot vouch for the test's CA.
    let app = app_trusting_only_public_roots(&redis, vec![]).await;
    let book = app.insert_uncached("Read without the cache").await;

    for _ in 0..2 {
        let read = read(&app, book.id).await;
        assert_eq!(read["title"], "Read without the cache", "{read}");
    }
    assert_eq!(lookups(&app, "hit"), 0);
    assert!(lookups(&app, "bypass") >= 2, "every read skipped Redis");
    assert_eq!(
        cached_on(&redis, &app, book.id).await,
        None,
        "nothing cached"
    );

    let ready = readyz(&app).await;
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["mongodb"]["up"], true, "{ready}");
    assert_eq!(ready["redis"]["up"], false, "{ready}");
    assert!(
        ready["redis"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{ready}"
    );
}

#[tokio::test]
async fn write_behind_queues_and_persists_through_a_tls_redis() {
    let redis = RedisServer::start_tls().await;
    let app = app_on(&redis, vec![("OPONN_WRITE_MODE", "behind".to_owned())]).await;

    let id = new_book(&app, "Queued over TLS").await;
    let updated = retitle(&app, id, "Persisted over TLS").await;
    assert_eq!(updated["version"], 2, "{updated}");
    let cached = cached_on(&redis, &app, id).await.expect("cached");
    assert!(cached.starts_with("2 pending "), "{cached}");

    let worker = app.spawn_worker().await;
    app.persisted().await;
    let stored = app
        .mongodb()
        .await
        .collection::<Document>("books")
        .find_one(doc! { "_id": id.object_id() })
        .await
        .expect("find_one")
        .expect("persisted");
    assert_eq!(stored.get_i64("version").expect("a version"), 2);
    assert_eq!(
        stored.get_str("title").expect("a title"),
        "Persisted over TLS"
    );
    worker.stop().await;
}

#[tokio::test]
async fn a_ca_file_that_holds_no_certificate_stops_start_up_naming_the_setting() {
    let redis = RedisServer::start_tls().await;
    let not_pem = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let settings = oponn::config::Settings::from_lookup(|name| match name {
        "MONGODB_URI" => Some("mongodb://127.0.0.1:1/".into()),
        "REDIS_URL" => Some(redis.url()),
        "OPONN_REDIS_CA_FILE" => Some(not_pem.into()),
        _ => None,
    })
    .expect("settings");
    let refused = oponn::startup::connect(&settings, &oponn::metrics::Metrics::new()).await;
    let message = format!("{:#}", refused.err().expect("refused"));
    assert!(message.contains("OPONN_REDIS_CA_FILE="), "{message}");
    assert!(message.contains("no certificate"), "{message}");
}
