//! The cache through Redis failures (restarts, older snapshots, pauses, shutdowns), each forced
//! on a Redis server of the test's own: no record older than an acknowledged write is served.

use std::{sync::Arc, time::Duration};

use oponn::domain::{BookChanges, Title};
use oponn_tests::RedisServer;
use serde_json::json;

use crate::helpers::{Options, TestApp};

fn retitle(title: &str) -> BookChanges {
    BookChanges {
        title: Some(Title::parse(title).expect("valid title")),
        ..BookChanges::default()
    }
}

async fn app_on(redis: &RedisServer) -> TestApp {
    TestApp::spawn_with(Options {
        redis_url: Some(redis.url()),
        ..Options::default()
    })
    .await
}

/// The first path: a reader reads version 1 from MongoDB and is slow; Redis dies; a
/// writer commits version 2 (its write-through finds no Redis) and dies with its repair; Redis
/// comes back empty; the reader's fill of version 1 lands on the empty key. Without the epoch,
/// every instance would then serve version 1 until the record's TTL.
#[tokio::test]
async fn a_fill_that_began_before_redis_restarted_is_not_trusted_after_it() {
    let mut redis = RedisServer::start().await;
    let app = app_on(&redis).await;
    let book = app.insert_uncached("Version one").await;

    let (pause, reader) = app.reader_paused_before_fill(book.id).await;

    redis.kill();
    // A writer without a repair loop: its pending repair dies with it.
    let writer = app.one_shot_datastore().await;
    let written = writer
        .update_book(book.id, retitle("Version two"), None)
        .await
        .expect("the write commits without Redis");
    assert_eq!(written.version, 2);
    drop(writer);

    redis.restart_empty().await;
    // Other traffic on the reader's instance reaches the new run first.
    app.reconnect_redis().await;
    pause.resume();
    let read = reader.await.expect("reader task").expect("reader read");
    assert_eq!(read.map(|b| b.version), Some(1), "the reader began before");

    let other = app.spawn_sibling().await;
    for instance in [&app, &other] {
        assert_eq!(
            instance.served_version(book.id).await,
            2,
            "the fill of version 1 is not trusted"
        );
    }
}

/// A failover to a replica that lagged, played by a restart from a snapshot taken before the
/// last write: the snapshot's records and query results are not trusted by the new run.
#[tokio::test]
async fn a_redis_restored_from_an_older_snapshot_serves_nothing_older() {
    let mut redis = RedisServer::start().await;
    let app = app_on(&redis).await;
    let created = app.create_book("/works/SNAP", "Snapshot one").await;
    let id = created["id"].as_str().expect("an id").to_owned();
    const BOTH: &str = "query($id: ID!) { book(id: $id) { title version } \
                        books(filter: { titlePrefix: \"Snapshot\" }) { nodes { title version } } }";
    let before = app.graphql(BOTH, json!({ "id": id })).await;
    assert_eq!(before["data"]["book"]["version"], 1, "{before}");
    app.graphql(BOTH, json!({ "id": id })).await;
    let snapshot = redis.snapshot().await;

    let written = app
        .graphql(
            "mutation($id: ID!) { updateBook(id: $id, input: { title: \"Snapshot two\" }) { version } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(written["data"]["updateBook"]["version"], 2, "{written}");

    redis.restart_from(&snapshot).await;
    let raw = app
        .stored_entry(&id)
        .await
        .expect("the snapshot holds the record");
    assert!(raw.starts_with("1 "), "the snapshot holds version 1: {raw}");

    let other = app.spawn_sibling().await;
    for instance in [&app, &other, &app] {
        let read = instance.graphql(BOTH, json!({ "id": id })).await;
        assert_eq!(read["data"]["book"]["version"], 2, "{read}");
        assert_eq!(
            read["data"]["books"]["nodes"],
            json!([{ "title": "Snapshot two", "version": 2 }]),
            "{read}"
        );
    }
}

/// A Redis that stops answering for longer than the read timeout (SIGSTOP): the mutation waits
/// for its write-through (up to `OPONN_REDIS_WRITE_TIMEOUT_MS`) instead of replying with the
/// cache still holding the old version, which every instance would serve once Redis resumes.
#[tokio::test]
async fn a_paused_redis_takes_the_write_through_before_the_mutation_replies() {
    let redis = Arc::new(RedisServer::start().await);
    let app = app_on(&redis).await;
    let other = app.spawn_sibling().await;
    let book = app.insert_uncached("Paused one").await;
    assert_eq!(other.served_version(book.id).await, 1);
    assert_eq!(app.cached(book.id).await.expect("cached").version, 1);

    redis.pause();
    // The fault lasts a second (three read timeouts): a duration, not a synchronisation.
    let resumed = tokio::spawn({
        let redis = redis.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            redis.resume();
        }
    });
    let written = app
        .datastore
        .update_book(book.id, retitle("Paused two"), None)
        .await
        .expect("the write commits");
    assert_eq!(written.version, 2);
    assert_eq!(
        app.datastore.cache().pending_repairs(),
        0,
        "Redis took the write before the mutation replied"
    );
    resumed.await.expect("resumed");
    assert_eq!(other.cached(book.id).await.expect("cached").version, 2);
    assert_eq!(other.served_version(book.id).await, 2);
}

/// A server that stops (SIGTERM) with cache writes Redis has not taken hands them over before
/// it exits, instead of leaving the older versions to every other instance.
#[tokio::test]
async fn a_stopping_server_hands_its_pending_repairs_to_redis() {
    let mut app = TestApp::spawn_with(Options {
        proxy_redis: true,
        // No repair loop tick during the test: only the shutdown can land the repair.
        settings: vec![("OPONN_REDIS_RETRY_AFTER_MS", "60000".to_owned())],
        ..Options::default()
    })
    .await;
    let book = app.insert_uncached("Stopping one").await;
    assert_eq!(app.served_version(book.id).await, 1);

    let proxy = app.redis_proxy.take().expect("a Redis proxy");
    proxy.cut().await;
    app.datastore
        .update_book(book.id, retitle("Stopping two"), None)
        .await
        .expect("the write commits");
    assert_eq!(app.datastore.cache().pending_repairs(), 1);

    let server = app.begin_shutdown();
    proxy.restore();
    server.await.expect("server task").expect("clean stop");
    assert_eq!(app.datastore.cache().pending_repairs(), 0);
    let raw = app.stored_entry(book.id).await.expect("repaired");
    assert!(raw.starts_with("2 "), "{raw}");
}
