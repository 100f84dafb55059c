//! Write-behind (`OPONN_WRITE_MODE=behind`) on the real Redis and MongoDB: a mutation is served
//! from the cache before MongoDB has it, a worker persists it, reads that only MongoDB can
//! answer wait for the worker, and nothing a replay, a race or an outage does moves a record
//! backwards or loses an acknowledged write. (The crash tests with killed worker processes are
//! in `tests/tests/behind.rs`.)

use std::collections::BTreeSet;

use futures::future::join_all;
use mongodb::bson::{doc, Document};
use oponn::domain::BookId;
use serde_json::{json, Value};

use crate::helpers::{book_id, error_code, unique_suffix, Options, TestApp};

const UPDATE: &str = "mutation($id: ID!, $title: String!) { updateBook(id: $id, input: { title: $title }) { id title version } }";
const BOOK: &str = "query($id: ID!) { book(id: $id) { id title version } }";
const BY_TITLE: &str = "query($prefix: String!) { books(filter: { titlePrefix: $prefix }, first: 10) { edges { node { id title version } } } }";

fn behind(extra: Vec<(&'static str, String)>) -> Options {
    let mut settings = vec![("OPONN_WRITE_MODE", "behind".to_owned())];
    settings.extend(extra);
    Options {
        settings,
        ..Options::default()
    }
}

/// Which queue a case shared with `behind_sqs.rs` runs on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum On {
    Stream,
    Sqs,
}

/// Write-behind options on `on`'s queue, with `extra` settings.
async fn options_on(on: On, extra: Vec<(&'static str, String)>) -> Options {
    match on {
        On::Stream => behind(extra),
        On::Sqs => crate::behind_sqs::sqs_options(extra).await,
    }
}

async fn spawn_behind() -> TestApp {
    TestApp::spawn_with(behind(vec![])).await
}

pub(crate) async fn retitle(app: &TestApp, id: BookId, title: &str) -> Value {
    app.graphql(UPDATE, json!({ "id": id.to_string(), "title": title }))
        .await
}

/// The book as MongoDB holds it, read directly.
pub(crate) async fn stored(app: &TestApp, id: BookId) -> Option<Document> {
    app.mongodb()
        .await
        .collection::<Document>("books")
        .find_one(doc! { "_id": id.object_id() })
        .await
        .expect("find_one")
}

pub(crate) async fn stored_version(app: &TestApp, id: BookId) -> Option<i64> {
    stored(app, id)
        .await
        .map(|d| d.get_i64("version").expect("a version"))
}

pub(crate) async fn new_book(app: &TestApp, title: &str) -> BookId {
    book_id(
        &app.create_book(&format!("/works/behind-{}", unique_suffix()), title)
            .await,
    )
}

#[tokio::test]
async fn a_mutation_is_served_from_the_cache_before_mongodb_has_it_then_persisted() {
    let app = spawn_behind().await;
    let id = new_book(&app, "First title").await;
    assert_eq!(
        stored(&app, id).await,
        None,
        "no worker ran: MongoDB lacks the create"
    );

    let body = retitle(&app, id, "Second title").await;
    assert_eq!(body["data"]["updateBook"]["version"], 2, "{body}");
    assert!(
        app.stored_entry(id)
            .await
            .expect("cached")
            .starts_with("2 pending "),
        "the new version is pending in Redis"
    );
    // Read-your-writes from another instance, while MongoDB still lacks the book.
    let sibling = app.spawn_sibling().await;
    let read = sibling.graphql(BOOK, json!({ "id": id.to_string() })).await;
    assert_eq!(read["data"]["book"]["title"], "Second title", "{read}");

    let worker = app.spawn_worker().await;
    app.persisted().await;
    let document = stored(&app, id).await.expect("persisted");
    assert_eq!(document.get_i64("version"), Ok(2));
    assert_eq!(document.get_str("title"), Ok("Second title"));
    let entry = app.stored_entry(id).await.expect("still cached");
    assert!(
        entry.starts_with("2 ") && !entry.starts_with("2 pending "),
        "settled: {entry}"
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{}books_{id}", app.key_prefix))
        .query_async(&mut app.redis().await)
        .await
        .expect("PTTL");
    assert!(ttl > 0, "a settled record has its TTL back, got {ttl}");
    worker.stop().await;
}

#[tokio::test]
async fn a_list_page_waits_for_the_worker_rather_than_answer_from_mongodb_alone() {
    a_list_page_waits_for_the_worker(On::Stream).await;
}

pub(crate) async fn a_list_page_waits_for_the_worker(on: On) {
    let app =
        TestApp::spawn_with(options_on(on, vec![("OPONN_QUEUE_BARRIER_MS", "300".into())]).await)
            .await;
    let prefix = format!("Zeta {}", unique_suffix());
    let id = new_book(&app, "Alpha").await;
    assert_eq!(
        retitle(&app, id, &prefix).await["data"]["updateBook"]["version"],
        2
    );

    let refused = app.graphql(BY_TITLE, json!({ "prefix": prefix })).await;
    assert_eq!(
        error_code(&refused),
        "UNAVAILABLE",
        "without a worker MongoDB would answer with no book: {refused}"
    );

    let worker = app.spawn_worker().await;
    let page = app.graphql(BY_TITLE, json!({ "prefix": prefix })).await;
    let edges = page["data"]["books"]["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 1, "{page}");
    assert_eq!(edges[0]["node"]["version"], 2);
    worker.stop().await;
}

#[tokio::test]
async fn replayed_and_late_changes_never_move_mongodb_backwards() {
    let app = spawn_behind().await;
    let id = new_book(&app, "Version 1").await;
    for version in 2..=4 {
        let body = retitle(&app, id, &format!("Version {version}")).await;
        assert_eq!(body["data"]["updateBook"]["version"], version, "{body}");
    }
    let worker = app.spawn_worker().await;
    app.persisted().await;
    assert_eq!(stored_version(&app, id).await, Some(4));
    let applied = |outcome: &str| {
        worker
            .metrics
            .worker_applied
            .with_label_values(&[outcome])
            .get()
    };
    let written = applied("written");

    // Every change again, oldest last, as a redelivery after a crash would bring them.
    let stream = format!("{}writes", app.key_prefix);
    let mut redis = app.redis().await;
    for version in [4, 1, 3, 2] {
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("c")
            .arg("books")
            .arg("i")
            .arg(id.to_string())
            .arg("v")
            .arg(version)
            .query_async(&mut redis)
            .await
            .expect("XADD");
    }
    app.persisted().await;
    let document = stored(&app, id).await.expect("stored");
    assert_eq!(document.get_i64("version"), Ok(4));
    assert_eq!(document.get_str("title"), Ok("Version 4"));
    assert_eq!(applied("written"), written, "the replays wrote nothing");
    assert!(applied("not_pending") >= 1);

    // The guarded write itself: an older version offered after a newer one changes nothing.
    let book = app.datastore.book(id).await.expect("read").expect("exists");
    let mut older = book.clone();
    older.version = 3;
    older.title = oponn::domain::Title::parse("Older").expect("valid");
    let persisted = app.datastore.store().books().persist(&older).await;
    assert_eq!(
        persisted.expect("persist"),
        oponn::store::Persisted::AlreadyNewer
    );
    assert_eq!(
        stored(&app, id).await.expect("stored").get_str("title"),
        Ok("Version 4")
    );
    worker.stop().await;
}

/// Invariant 1 and the ordering rule under contention: two instances update one record at
/// once; every acknowledged version is distinct, and MongoDB ends at the highest one, with its
/// content.
#[tokio::test]
async fn concurrent_writers_on_two_instances_get_distinct_versions_and_the_newest_persists() {
    concurrent_writers_on_two_instances(On::Stream).await;
}

pub(crate) async fn concurrent_writers_on_two_instances(on: On) {
    const WRITES_PER_INSTANCE: usize = 40;
    let app = TestApp::spawn_with(options_on(on, vec![]).await).await;
    let sibling = app.spawn_sibling().await;
    let worker = app.spawn_worker().await;
    let id = new_book(&app, "Contended").await;

    let writes = (0..WRITES_PER_INSTANCE).flat_map(|n| {
        [&app, &sibling].map(|instance| {
            let title = format!("Write {n} via {}", instance.address);
            async move { retitle(instance, id, &title).await }
        })
    });
    let replies = join_all(writes).await;
    let mut acknowledged: Vec<(i64, String)> = replies
        .iter()
        .map(|body| {
            let book = &body["data"]["updateBook"];
            let version = book["version"].as_i64().unwrap_or_else(|| panic!("{body}"));
            (version, book["title"].as_str().expect("title").to_owned())
        })
        .collect();
    acknowledged.sort();
    let versions: BTreeSet<i64> = acknowledged.iter().map(|(v, _)| *v).collect();
    assert_eq!(
        versions.len(),
        acknowledged.len(),
        "two writes acknowledged with one version"
    );
    let (newest, title) = acknowledged.last().expect("writes").clone();
    assert_eq!(newest, 1 + 2 * WRITES_PER_INSTANCE as i64);

    app.persisted().await;
    let document = stored(&app, id).await.expect("stored");
    assert_eq!(document.get_i64("version"), Ok(newest));
    assert_eq!(document.get_str("title"), Ok(title.as_str()));
    worker.stop().await;
}

#[tokio::test]
async fn without_redis_reads_and_writes_fail_rather_than_serve_mongodb_s_older_version() {
    let app = TestApp::spawn_with(Options {
        proxy_redis: true,
        ..behind(vec![])
    })
    .await;
    let id = new_book(&app, "Before").await;
    assert_eq!(
        retitle(&app, id, "After").await["data"]["updateBook"]["version"],
        2
    );

    let proxy = app.redis_proxy.as_ref().expect("a proxy");
    proxy.cut().await;
    let read = app.graphql(BOOK, json!({ "id": id.to_string() })).await;
    assert_eq!(error_code(&read), "UNAVAILABLE", "{read}");
    let write = retitle(&app, id, "Lost?").await;
    assert_eq!(error_code(&write), "UNAVAILABLE", "{write}");

    proxy.restore();
    app.reconnect_redis().await;
    let read = app.graphql(BOOK, json!({ "id": id.to_string() })).await;
    assert_eq!(read["data"]["book"]["title"], "After", "{read}");
    assert_eq!(read["data"]["book"]["version"], 2);
}

#[tokio::test]
async fn with_mongodb_down_mutations_are_accepted_and_the_backlog_drains_when_it_returns() {
    with_mongodb_down_the_backlog_drains(On::Stream).await;
}

pub(crate) async fn with_mongodb_down_the_backlog_drains(on: On) {
    const WRITES: i64 = 30;
    let app = TestApp::spawn_with(Options {
        proxy_mongo: true,
        ..options_on(
            on,
            vec![
                ("OPONN_MONGODB_TIMEOUT_MS", "300".into()),
                ("OPONN_QUEUE_BARRIER_MS", "10000".into()),
            ],
        )
        .await
    })
    .await;
    let id = new_book(&app, "Version 1").await;
    let worker = app.spawn_worker().await;
    app.persisted().await;

    let proxy = app.mongo_proxy.as_ref().expect("a proxy");
    proxy.cut().await;
    for version in 2..=WRITES {
        let body = retitle(&app, id, &format!("Version {version}")).await;
        assert_eq!(body["data"]["updateBook"]["version"], version, "{body}");
    }
    assert_eq!(
        stored_version(&app, id).await,
        Some(1),
        "MongoDB is cut off"
    );
    let depth = app
        .datastore
        .cache()
        .pending_entries::<oponn::domain::Book>(&[id])
        .await;
    assert_eq!(
        depth.expect("MGET")[0].as_ref().map(|e| e.version),
        Some(WRITES)
    );

    proxy.restore();
    app.persisted().await;
    let document = stored(&app, id).await.expect("stored");
    assert_eq!(document.get_i64("version"), Ok(WRITES));
    assert_eq!(
        document.get_str("title"),
        Ok(format!("Version {WRITES}").as_str())
    );
    assert!(
        worker.metrics.worker_retries.get() > 0,
        "the worker kept the writes while MongoDB was away"
    );
    worker.stop().await;
}

#[tokio::test]
async fn changes_that_cannot_be_applied_are_dead_lettered_without_blocking_the_others() {
    let app = TestApp::spawn_with(behind(vec![("OPONN_WORKER_MAX_DELIVERIES", "2".into())])).await;
    let taken = app.insert_uncached("Holder").await;
    let id = new_book(&app, "Fine").await;
    let stream = format!("{}writes", app.key_prefix);
    let mut redis = app.redis().await;
    // A message that is no change, and a change of a collection nobody writes behind.
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("junk")
        .arg("1")
        .query_async(&mut redis)
        .await
        .expect("XADD");
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("c")
        .arg("authors")
        .arg("i")
        .arg("x")
        .arg("v")
        .arg(1)
        .query_async(&mut redis)
        .await
        .expect("XADD");
    // A pending record MongoDB must refuse: it claims another book's unique source key.
    let poison = BookId::from_object_id(mongodb::bson::oid::ObjectId::new());
    let mut record = app.datastore.book(id).await.expect("read").expect("exists");
    record.id = poison;
    record.source_key = taken.source_key.clone();
    let _: () = redis::cmd("SET")
        .arg(format!("{}books_{poison}", app.key_prefix))
        .arg(format!(
            "1 pending {}",
            serde_json::to_string(&record).expect("json")
        ))
        .query_async(&mut redis)
        .await
        .expect("SET");
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("c")
        .arg("books")
        .arg("i")
        .arg(poison.to_string())
        .arg("v")
        .arg(1)
        .query_async(&mut redis)
        .await
        .expect("XADD");
    assert_eq!(
        retitle(&app, id, "Fine, twice").await["data"]["updateBook"]["version"],
        2
    );

    let worker = app.spawn_worker().await;
    app.persisted().await;
    assert_eq!(
        stored_version(&app, id).await,
        Some(2),
        "the good change persisted"
    );
    let dead: u64 = redis::cmd("XLEN")
        .arg(format!("{stream}:dead"))
        .query_async(&mut redis)
        .await
        .expect("XLEN");
    assert_eq!(dead, 3);
    assert_eq!(worker.metrics.worker_dead_letters.get(), 3);
    assert_eq!(stored(&app, poison).await, None);
    worker.stop().await;
}

#[tokio::test]
async fn write_behind_refuses_a_redis_that_evicts_keys_without_a_ttl() {
    let redis = oponn_tests::RedisServer::start().await;
    let mut connection = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query_async(&mut connection)
        .await
        .expect("CONFIG SET");
    let settings = oponn::config::Settings::from_lookup(|name| match name {
        "MONGODB_URI" => Some("mongodb://127.0.0.1:1/".into()),
        "REDIS_URL" => Some(redis.url()),
        "OPONN_WRITE_MODE" => Some("behind".into()),
        _ => None,
    })
    .expect("settings");
    let refused = oponn::startup::connect(&settings, &oponn::metrics::Metrics::new()).await;
    let message = format!("{:#}", refused.err().expect("refused"));
    assert!(message.contains("allkeys-lru"), "{message}");
}

async fn readyz(app: &TestApp) -> Value {
    let response = app.get_ops("/readyz").await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON")
}

#[tokio::test]
async fn readyz_reports_the_queue_and_is_degraded_while_the_worker_lags() {
    let app = TestApp::spawn_with(behind(vec![("OPONN_QUEUE_LAG_DEGRADED_MS", "1".into())])).await;
    let id = new_book(&app, "Lagging").await;
    assert_eq!(
        retitle(&app, id, "Still lagging").await["data"]["updateBook"]["version"],
        2
    );
    let lagging = readyz(&app).await;
    assert_eq!(lagging["status"], "degraded", "{lagging}");
    assert_eq!(lagging["queue"]["pending"], 2, "{lagging}");
    assert!(
        lagging["queue"]["oldestSeconds"].as_f64().is_some(),
        "{lagging}"
    );

    let worker = app.spawn_worker().await;
    app.persisted().await;
    let caught_up = readyz(&app).await;
    assert_eq!(caught_up["status"], "ready", "{caught_up}");
    assert_eq!(caught_up["queue"]["pending"], 0);
    assert_eq!(caught_up["queue"]["deadLetters"], 0);
    worker.stop().await;
}

const CREATE_STORE: &str = "mutation($name: String!) { createBookstore(input: { name: $name, city: \"Portland\" }) { id } }";
const MOVE: &str = "mutation($book: ID!, $store: ID) { moveBook(bookId: $book, bookstoreId: $store) { bookstoreId version } }";
const DELETE_STORE: &str = "mutation($id: ID!, $to: ID, $drop: Boolean) { deleteBookstore(id: $id, moveBooksTo: $to, deleteBooks: $drop) { id } }";

async fn new_store(app: &TestApp) -> String {
    let body = app
        .graphql(
            CREATE_STORE,
            json!({ "name": format!("Store {}", unique_suffix()) }),
        )
        .await;
    body["data"]["createBookstore"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

/// Deleting a store moves or deletes its books through the queue too: each book gets its next
/// version in Redis, so a book mutation at the same moment is ordered, never overwritten in
/// MongoDB behind the cache's back.
#[tokio::test]
async fn emptying_a_store_writes_its_books_behind_at_their_next_versions() {
    let app = spawn_behind().await;
    let worker = app.spawn_worker().await;
    let (from, to, gone) = (
        new_store(&app).await,
        new_store(&app).await,
        new_store(&app).await,
    );
    let kept = new_book(&app, "Kept").await;
    let dropped = new_book(&app, "Dropped").await;
    for (book, store) in [(kept, &from), (dropped, &gone)] {
        let body = app
            .graphql(MOVE, json!({ "book": book.to_string(), "store": store }))
            .await;
        assert_eq!(body["data"]["moveBook"]["version"], 2, "{body}");
    }
    // A pending write on top, not persisted yet when the store is emptied.
    assert_eq!(
        retitle(&app, kept, "Kept, retitled").await["data"]["updateBook"]["version"],
        3
    );

    let moved = app
        .graphql(DELETE_STORE, json!({ "id": from, "to": to }))
        .await;
    assert!(moved.get("errors").is_none(), "{moved}");
    let deleted = app
        .graphql(DELETE_STORE, json!({ "id": gone, "drop": true }))
        .await;
    assert!(deleted.get("errors").is_none(), "{deleted}");
    let read = app.graphql(BOOK, json!({ "id": kept.to_string() })).await;
    assert_eq!(
        read["data"]["book"]["version"], 4,
        "moved at its next version: {read}"
    );

    app.persisted().await;
    let document = stored(&app, kept).await.expect("stored");
    assert_eq!(document.get_i64("version"), Ok(4));
    assert_eq!(
        document.get_str("title"),
        Ok("Kept, retitled"),
        "the retitle survived the move"
    );
    assert_eq!(
        document.get_object_id("bookstoreId").map(|id| id.to_hex()),
        Ok(to.clone())
    );
    assert_eq!(stored(&app, dropped).await, None, "deleted with its store");
    worker.stop().await;
}

/// The bulk upsert (`oponn seed`, `oponn ingest`) is written behind record by record: new books
/// are queued, unchanged ones are left alone (no new version), changed ones get their next one.
#[tokio::test]
async fn a_bulk_upsert_is_written_behind_and_leaves_unchanged_books_alone() {
    let app = spawn_behind().await;
    let suffix = unique_suffix();
    let batch: Vec<_> = (0..3)
        .map(|n| {
            crate::helpers::new_book(&format!("/works/bulk-{suffix}-{n}"), &format!("Bulk {n}"))
        })
        .collect();
    let (summary, ids) = app.datastore.upsert_books(&batch).await.expect("upsert");
    assert_eq!(
        (summary.inserted, summary.changed, summary.unchanged),
        (3, 0, 0)
    );
    assert!(app
        .stored_entry(ids[0])
        .await
        .expect("cached")
        .starts_with("1 pending "));

    let (again, _) = app.datastore.upsert_books(&batch).await.expect("upsert");
    assert_eq!((again.inserted, again.changed, again.unchanged), (0, 0, 3));
    let mut changed = batch.clone();
    changed[1].title = oponn::domain::Title::parse("Bulk one, revised").expect("valid");
    let (third, _) = app.datastore.upsert_books(&changed).await.expect("upsert");
    assert_eq!((third.inserted, third.changed, third.unchanged), (0, 1, 2));

    let worker = app.spawn_worker().await;
    app.persisted().await;
    assert_eq!(stored_version(&app, ids[0]).await, Some(1));
    let revised = stored(&app, ids[1]).await.expect("stored");
    assert_eq!(revised.get_i64("version"), Ok(2));
    assert_eq!(revised.get_str("title"), Ok("Bulk one, revised"));
    worker.stop().await;
}

/// SIGTERM while MongoDB is away: the worker keeps trying for `OPONN_WORKER_DRAIN_MS`, then
/// stops without acknowledging what it could not persist; the next worker takes it over (after
/// the claim time) and persists it.
#[tokio::test]
async fn a_stopping_worker_gives_up_within_its_drain_time_and_loses_nothing() {
    let app = TestApp::spawn_with(Options {
        proxy_mongo: true,
        ..behind(vec![
            ("OPONN_MONGODB_TIMEOUT_MS", "200".into()),
            ("OPONN_WORKER_DRAIN_MS", "300".into()),
            ("OPONN_WORKER_CLAIM_IDLE_MS", "200".into()),
            ("OPONN_QUEUE_BARRIER_MS", "10000".into()),
        ])
    })
    .await;
    let id = new_book(&app, "Version 1").await;
    let worker = app.spawn_worker().await;
    app.persisted().await;
    let proxy = app.mongo_proxy.as_ref().expect("a proxy");
    proxy.cut().await;
    assert_eq!(
        retitle(&app, id, "Version 2").await["data"]["updateBook"]["version"],
        2
    );
    // The worker takes the change and cannot persist it (a counter has no event to await:
    // polled, at most 5 s).
    for _ in 0..500 {
        if worker.metrics.worker_retries.get() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        worker.metrics.worker_retries.get() > 0,
        "the worker held the change"
    );
    tokio::time::timeout(std::time::Duration::from_secs(5), worker.stop())
        .await
        .expect("the worker stops within its drain time");
    assert_eq!(stored_version(&app, id).await, Some(1));

    proxy.restore();
    let next = app.spawn_worker().await;
    app.persisted().await;
    assert_eq!(
        stored_version(&app, id).await,
        Some(2),
        "taken over and persisted"
    );
    next.stop().await;
}

/// Every worker process joins the group under a name of its own; those that hold nothing and
/// stayed idle for 240 claim times are forgotten, so the group stays bounded however often
/// workers restart.
#[tokio::test]
async fn consumers_of_workers_long_gone_are_forgotten() {
    let app = TestApp::spawn_with(behind(vec![("OPONN_WORKER_CLAIM_IDLE_MS", "2".into())])).await;
    let stream = format!("{}writes", app.key_prefix);
    let mut redis = app.redis().await;
    let consumers = |mut redis: redis::aio::MultiplexedConnection| {
        let stream = stream.clone();
        async move {
            let reply: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(&stream)
                .arg("workers")
                .query_async(&mut redis)
                .await
                .expect("XINFO CONSUMERS");
            reply
                .consumers
                .into_iter()
                .map(|c| c.name)
                .collect::<Vec<_>>()
        }
    };
    for ghost in ["ghost-1", "ghost-2"] {
        let _: redis::Value = redis::cmd("XGROUP")
            .arg("CREATECONSUMER")
            .arg(&stream)
            .arg("workers")
            .arg(ghost)
            .query_async(&mut redis)
            .await
            .expect("XGROUP CREATECONSUMER");
    }
    assert_eq!(consumers(redis.clone()).await.len(), 2);
    // Idle past 240 claim times (480 ms), then a worker's first sample prunes them.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let worker = app.spawn_worker().await;
    let mut left = consumers(redis.clone()).await;
    for _ in 0..200 {
        if !left.iter().any(|name| name.starts_with("ghost-")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        left = consumers(redis.clone()).await;
    }
    assert!(
        !left.iter().any(|name| name.starts_with("ghost-")),
        "{left:?}"
    );
    worker.stop().await;
}

/// A Redis that went back in time (a failover to a replica that lagged, a restore) can hold an
/// older pending version than MongoDB. The worker must not settle it as current: it caches
/// MongoDB's newer version instead, so readers are not served the past.
#[tokio::test]
async fn a_pending_record_older_than_mongodb_is_replaced_by_mongodb_s_not_settled() {
    let mut redis = oponn_tests::RedisServer::start().await;
    let app = TestApp::spawn_with(Options {
        redis_url: Some(redis.url()),
        ..behind(vec![("OPONN_QUEUE_BARRIER_MS", "10000".into())])
    })
    .await;
    let id = new_book(&app, "Version 1").await;
    assert_eq!(
        retitle(&app, id, "Version 2").await["data"]["updateBook"]["version"],
        2
    );
    // The replica that will be promoted: version 2 pending, its change not delivered yet.
    let lagging = redis.snapshot().await;

    let worker = app.spawn_worker().await;
    assert_eq!(
        retitle(&app, id, "Version 3").await["data"]["updateBook"]["version"],
        3
    );
    app.persisted().await;
    worker.stop().await;
    assert_eq!(stored_version(&app, id).await, Some(3));

    redis.restart_from(&lagging).await;
    app.reconnect_redis().await;
    let worker = app.spawn_worker().await;
    app.persisted().await;
    let read = app.graphql(BOOK, json!({ "id": id.to_string() })).await;
    assert_eq!(read["data"]["book"]["version"], 3, "{read}");
    assert_eq!(read["data"]["book"]["title"], "Version 3");
    assert_eq!(
        worker
            .metrics
            .worker_applied
            .with_label_values(&["overtaken"])
            .get(),
        1
    );
    worker.stop().await;
}

/// Two instances creating the same name (under normalisation) at the same moment, with no
/// worker running (so MongoDB has neither): the first claim wins in Redis, the other gets
/// `CONFLICT` at once, never two stores.
#[tokio::test]
async fn two_instances_racing_for_one_bookstore_name_get_one_store_and_one_conflict() {
    let app = spawn_behind().await;
    let sibling = app.spawn_sibling().await;
    let name = format!("Powell's Books {}", unique_suffix());
    for _ in 0..5 {
        let names = [name.clone(), format!("  {}  ", name.to_uppercase())];
        let round = unique_suffix();
        let attempts = [(&app, &names[0]), (&sibling, &names[1])].map(|(instance, name)| {
            let name = format!("{name} {round}");
            async move {
                instance
                    .graphql(CREATE_STORE, json!({ "name": name }))
                    .await
            }
        });
        let replies = join_all(attempts).await;
        let created = replies
            .iter()
            .filter(|body| body["data"]["createBookstore"]["id"].is_string())
            .count();
        let conflicts = replies
            .iter()
            .filter(|body| body.get("errors").is_some() && error_code(body) == "CONFLICT")
            .count();
        assert_eq!((created, conflicts), (1, 1), "{replies:?}");
    }
}

const STORE: &str = "query($id: ID!) { bookstore(id: $id) { id name version } }";
const STORE_BY_NAME: &str =
    "query($name: String!) { bookstoreByName(name: $name) { id name version } }";
const RENAME_STORE: &str = "mutation($id: ID!, $name: String!) { updateBookstore(id: $id, input: { name: $name }) { id name version } }";

async fn create_store(app: &TestApp, name: &str) -> Value {
    app.graphql(CREATE_STORE, json!({ "name": name })).await
}

/// The bookstore as MongoDB holds it: (name, version).
async fn stored_store(app: &TestApp, id: &str) -> Option<(String, i64)> {
    let id = mongodb::bson::oid::ObjectId::parse_str(id).expect("an ObjectId");
    let document = app
        .mongodb()
        .await
        .collection::<Document>("bookstores")
        .find_one(doc! { "_id": id })
        .await
        .expect("find_one")?;
    Some((
        document.get_str("name").expect("a name").to_owned(),
        document.get_i64("version").expect("a version"),
    ))
}

/// The app's claims and sets of claims left in Redis (not the claims' generation).
async fn claims_left(app: &TestApp) -> Vec<String> {
    let mut redis = app.redis().await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}claim*", app.key_prefix))
        .query_async(&mut redis)
        .await
        .expect("KEYS");
    keys.retain(|key| *key != format!("{}claims", app.key_prefix));
    keys.sort();
    keys
}

/// A bookstore is written behind like a book: served (by id and by name) and usable as a
/// book's store before MongoDB has it, then persisted; its name claim lasts until then.
#[tokio::test]
async fn a_bookstore_is_served_before_mongodb_has_it_then_persisted_and_its_claim_released() {
    let app = spawn_behind().await;
    let name = format!("Behind Books {}", unique_suffix());
    let created = create_store(&app, &name).await;
    let id = created["data"]["createBookstore"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    let renamed = app
        .graphql(
            RENAME_STORE,
            json!({ "id": id, "name": format!("{name} Annex") }),
        )
        .await;
    assert_eq!(
        renamed["data"]["updateBookstore"]["version"], 2,
        "{renamed}"
    );
    assert_eq!(
        stored_store(&app, &id).await,
        None,
        "MongoDB has it already"
    );

    let served = app.graphql(STORE, json!({ "id": id })).await;
    assert_eq!(served["data"]["bookstore"]["version"], 2, "{served}");
    let by_name = app
        .graphql(
            STORE_BY_NAME,
            json!({ "name": format!("{} annex", name.to_uppercase()) }),
        )
        .await;
    assert_eq!(by_name["data"]["bookstoreByName"]["id"], id, "{by_name}");
    let by_old_name = app.graphql(STORE_BY_NAME, json!({ "name": name })).await;
    assert_eq!(
        by_old_name["data"]["bookstoreByName"],
        Value::Null,
        "{by_old_name}"
    );
    let book = new_book(&app, "Shelved").await;
    let moved = app
        .graphql(MOVE, json!({ "book": book.to_string(), "store": id }))
        .await;
    assert_eq!(moved["data"]["moveBook"]["bookstoreId"], id, "{moved}");
    assert_eq!(
        claims_left(&app).await.len(),
        3,
        "two names claimed, and the store's set of claims"
    );

    let worker = app.spawn_worker().await;
    app.persisted().await;
    assert_eq!(
        stored_store(&app, &id).await,
        Some((format!("{name} Annex"), 2))
    );
    assert_eq!(claims_left(&app).await, Vec::<String>::new());
    worker.stop().await;
}

/// A taken name is a `CONFLICT` at once, whether a pending write claims it or MongoDB holds it,
/// for a create and for a rename; a store keeps its own name through an update.
#[tokio::test]
async fn a_taken_name_is_a_conflict_at_once_whether_pending_or_persisted() {
    let app = spawn_behind().await;
    let name = format!("Taken Books {}", unique_suffix());
    let first = create_store(&app, &name).await;
    let first = first["data"]["createBookstore"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    let other = new_store(&app).await;
    let clash = |body: Value| {
        assert_eq!(error_code(&body), "CONFLICT", "{body}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains(&first)),
            "the conflict names the holder: {body}"
        );
    };
    // Pending: only the claim knows.
    clash(create_store(&app, &name.to_lowercase()).await);
    clash(
        app.graphql(RENAME_STORE, json!({ "id": other, "name": name }))
            .await,
    );

    let worker = app.spawn_worker().await;
    app.persisted().await;
    assert!(claims_left(&app).await.is_empty());
    // Persisted: only MongoDB knows.
    clash(create_store(&app, &format!(" {name} ")).await);
    clash(
        app.graphql(RENAME_STORE, json!({ "id": other, "name": name }))
            .await,
    );
    let kept = app
        .graphql(
            RENAME_STORE,
            json!({ "id": first, "name": name.to_uppercase() }),
        )
        .await;
    assert_eq!(kept["data"]["updateBookstore"]["version"], 2, "{kept}");
    worker.stop().await;
}

/// A name a queued rename gives up is free once the worker persisted the rename: before that a
/// create of it waits for the queue (and fails `UNAVAILABLE`, not `CONFLICT`, when no worker
/// runs), so the worker never meets the old holder in MongoDB's unique index.
#[tokio::test]
async fn a_name_given_up_by_a_queued_rename_is_free_once_the_worker_persisted_it() {
    let app = TestApp::spawn_with(behind(vec![("OPONN_QUEUE_BARRIER_MS", "300".into())])).await;
    let name = format!("Moving Books {}", unique_suffix());
    let holder = create_store(&app, &name).await;
    let holder = holder["data"]["createBookstore"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{holder}"))
        .to_owned();
    let worker = app.spawn_worker().await;
    app.persisted().await;
    worker.stop().await;

    let renamed = app
        .graphql(
            RENAME_STORE,
            json!({ "id": holder, "name": format!("{name} Moved") }),
        )
        .await;
    assert_eq!(
        renamed["data"]["updateBookstore"]["version"], 2,
        "{renamed}"
    );
    let early = create_store(&app, &name).await;
    assert_eq!(error_code(&early), "UNAVAILABLE", "{early}");

    let worker = app.spawn_worker().await;
    let created = create_store(&app, &name).await;
    let created = created["data"]["createBookstore"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    app.persisted().await;
    assert_eq!(
        stored_store(&app, &holder).await,
        Some((format!("{name} Moved"), 2))
    );
    assert_eq!(stored_store(&app, &created).await, Some((name, 1)));
    assert_eq!(worker.metrics.worker_dead_letters.get(), 0);
    worker.stop().await;
}

/// Renames racing over a small pool of names through two instances while a worker persists:
/// every acknowledged rename reaches MongoDB (the worker never meets a name held by another
/// store in the unique index, which would dead-letter the change), and once drained MongoDB
/// holds each store at its newest acknowledged version and name, and no claim is left.
#[tokio::test]
async fn renames_racing_over_few_names_all_persist_and_leave_no_claim() {
    let app = spawn_behind().await;
    let sibling = app.spawn_sibling().await;
    let worker = app.spawn_worker().await;
    let round = unique_suffix();
    let names: Vec<String> = (0..6).map(|i| format!("Pool {round} {i}")).collect();
    let mut stores = Vec::new();
    for name in &names[..3] {
        let body = create_store(&app, name).await;
        stores.push(
            body["data"]["createBookstore"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{body}"))
                .to_owned(),
        );
    }
    let writers = (0..8).map(|writer| {
        let instance = if writer % 2 == 0 { &app } else { &sibling };
        let (stores, names) = (&stores, &names);
        async move {
            let mut acknowledged = Vec::new();
            for _ in 0..15 {
                let store = &stores[fastrand::usize(..stores.len())];
                let name = &names[fastrand::usize(..names.len())];
                let body = instance
                    .graphql(RENAME_STORE, json!({ "id": store, "name": name }))
                    .await;
                match body["data"]["updateBookstore"]["version"].as_i64() {
                    Some(version) => acknowledged.push((store.clone(), version, name.clone())),
                    None => assert!(
                        ["CONFLICT", "UNAVAILABLE"].contains(&error_code(&body)),
                        "{body}"
                    ),
                }
            }
            acknowledged
        }
    });
    let acknowledged: Vec<(String, i64, String)> =
        join_all(writers).await.into_iter().flatten().collect();
    assert!(
        acknowledged.len() >= 10,
        "too few renames went through: {acknowledged:?}"
    );
    app.persisted().await;
    for store in &stores {
        let newest = acknowledged
            .iter()
            .filter(|(id, _, _)| id == store)
            .max_by_key(|(_, version, _)| *version);
        let (name, version) = stored_store(&app, store).await.expect("persisted");
        if let Some((_, acked, acked_name)) = newest {
            assert_eq!((&name, version), (acked_name, *acked), "store {store}");
        }
    }
    assert_eq!(worker.metrics.worker_dead_letters.get(), 0);
    assert_eq!(claims_left(&app).await, Vec::<String>::new());
    worker.stop().await;
}

/// Two stores swapping names through a third while no worker runs: each rename to a name the
/// other is giving up waits for the queue, so the swap cannot be queued as a cycle the worker
/// could never persist (each store's new name still held by the other in MongoDB); with a
/// worker it goes through, step by step.
#[tokio::test]
async fn two_stores_swap_names_without_queueing_a_cycle_the_worker_cannot_persist() {
    let app = TestApp::spawn_with(behind(vec![("OPONN_QUEUE_BARRIER_MS", "300".into())])).await;
    let round = unique_suffix();
    let [n, m, x] = ["N", "M", "X"].map(|name| format!("Swap {round} {name}"));
    let [a, b] = [&n, &m].map(|name| {
        let app = &app;
        async move {
            let body = create_store(app, name).await;
            body["data"]["createBookstore"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{body}"))
                .to_owned()
        }
    });
    let (a, b) = (a.await, b.await);
    let worker = app.spawn_worker().await;
    app.persisted().await;
    worker.stop().await;

    let rename =
        |id: &str, name: &str| app.graphql(RENAME_STORE, json!({ "id": id, "name": name }));
    assert_eq!(
        rename(&a, &x).await["data"]["updateBookstore"]["version"],
        2
    );
    let early = rename(&b, &n).await;
    assert_eq!(error_code(&early), "UNAVAILABLE", "{early}");

    let worker = app.spawn_worker().await;
    let late = rename(&b, &n).await;
    assert_eq!(late["data"]["updateBookstore"]["version"], 2, "{late}");
    let last = rename(&a, &m).await;
    assert_eq!(last["data"]["updateBookstore"]["version"], 3, "{last}");
    app.persisted().await;
    assert_eq!(stored_store(&app, &a).await, Some((m, 3)));
    assert_eq!(stored_store(&app, &b).await, Some((n, 2)));
    assert_eq!(worker.metrics.worker_dead_letters.get(), 0);
    worker.stop().await;
}

async fn behind_on(redis: &oponn_tests::RedisServer) -> TestApp {
    TestApp::spawn_with(Options {
        redis_url: Some(redis.url()),
        ..behind(vec![])
    })
    .await
}

/// Redis crashed and came back from its append-only file: the queue's connections died with
/// it, and every kind of call (a command, a pipeline, a script) answers on its first try, each
/// sent once more on a new connection.
#[tokio::test]
async fn after_a_redis_restart_every_queue_call_answers_on_its_first_try() {
    let mut redis = oponn_tests::RedisServer::start_durable().await;
    let app = behind_on(&redis).await;
    let queue = app.datastore.queue().expect("write-behind has a queue");
    let id = new_book(&app, "Before the crash").await;
    let mark = queue.mark().await.expect("a mark");
    queue.depth().await.expect("the depth");
    queue.passed(&mark).await.expect("passed");

    redis.crash_and_restart().await;
    let depth = queue
        .depth()
        .await
        .expect("the depth (a pipeline) after the restart");
    assert_eq!(depth.pending, 1, "the AOF kept the change: {depth:?}");
    let mark = queue
        .mark()
        .await
        .expect("a mark (a command) after the restart");
    assert!(!queue.passed(&mark).await.expect("passed after the restart"));

    app.reconnect_redis().await;
    let worker = app.spawn_worker().await;
    app.persisted().await;
    assert_eq!(stored_version(&app, id).await, Some(1));
    worker.stop().await;
}

/// A Redis without an append-only file restarted empty loses the stream and its consumer
/// group: the running worker makes the group again (at the stream's start), so a change
/// queued after the restart, which recreated the stream alone, is still persisted.
#[tokio::test]
async fn a_worker_makes_the_consumer_group_again_after_redis_restarted_empty() {
    let mut redis = oponn_tests::RedisServer::start().await;
    let app = behind_on(&redis).await;
    let worker = app.spawn_worker().await;
    new_book(&app, "Before").await;
    app.persisted().await;

    redis.restart_empty().await;
    app.reconnect_redis().await;
    let id = new_book(&app, "After the restart").await;
    app.persisted().await;
    assert_eq!(stored_version(&app, id).await, Some(1));
    worker.stop().await;
}

/// A change is dead-lettered for the attempts to apply it, not for its deliveries: one that
/// workers received and lost before they began (stopped, killed while waiting) is applied by
/// the next, however often that happened; one that `OPONN_WORKER_MAX_DELIVERIES` workers began
/// applying (it may be what kills them) goes to the dead letters without blocking the others.
#[tokio::test]
async fn changes_are_dead_lettered_for_attempts_to_apply_them_not_for_deliveries() {
    let app = TestApp::spawn_with(behind(vec![
        ("OPONN_WORKER_MAX_DELIVERIES", "2".into()),
        ("OPONN_WORKER_CLAIM_IDLE_MS", "100".into()),
    ]))
    .await;
    let queue = app.datastore.queue().expect("write-behind has a queue");
    let (lost, cursed) = (
        new_book(&app, "Lost by workers").await,
        new_book(&app, "Kills its workers").await,
    );
    let stream = format!("{}writes", app.key_prefix);
    let mut redis = app.redis().await;
    // Ten workers that took both changes and died before applying either.
    for ghost in 0..10 {
        let _: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("workers")
            .arg(format!("ghost-{ghost}"))
            .arg("STREAMS")
            .arg(&stream)
            .arg(if ghost == 0 { ">" } else { "0" })
            .query_async(&mut redis)
            .await
            .expect("XREADGROUP");
        if ghost > 0 {
            let _: redis::Value = redis::cmd("XAUTOCLAIM")
                .arg(&stream)
                .arg("workers")
                .arg(format!("ghost-{ghost}"))
                .arg(0)
                .arg("0")
                .query_async(&mut redis)
                .await
                .expect("XAUTOCLAIM");
        }
    }
    // Two workers began applying the cursed change and died.
    let _: () = redis::cmd("HSET")
        .arg(format!("{}attempts", app.key_prefix))
        .arg(format!("books:{cursed}:1"))
        .arg(2)
        .query_async(&mut redis)
        .await
        .expect("HSET");

    let worker = app.spawn_worker().await;
    app.persisted().await;
    assert_eq!(
        stored_version(&app, lost).await,
        Some(1),
        "the lost change persisted"
    );
    assert_eq!(stored_version(&app, cursed).await, None);
    assert_eq!(worker.metrics.worker_dead_letters.get(), 1);
    let depth = queue.depth().await.expect("the depth");
    assert_eq!((depth.pending, depth.dead), (0, 1), "{depth:?}");
    let attempts: std::collections::HashMap<String, u64> = redis::cmd("HGETALL")
        .arg(format!("{}attempts", app.key_prefix))
        .query_async(&mut redis)
        .await
        .expect("HGETALL");
    assert!(attempts.is_empty(), "attempts are forgotten: {attempts:?}");
    worker.stop().await;
}

/// The queue, counting the barrier's polls of its progress.
struct CountingPolls {
    queue: std::sync::Arc<dyn oponn::queue::Queue>,
    polls: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl oponn::queue::Queue for CountingPolls {
    fn appends(&self) -> oponn::queue::Appends<'_> {
        self.queue.appends()
    }
    async fn receive(
        &self,
        max: usize,
        wait: std::time::Duration,
        reclaim: bool,
    ) -> Result<Vec<oponn::queue::Delivery>, oponn::queue::QueueError> {
        self.queue.receive(max, wait, reclaim).await
    }
    async fn ack(
        &self,
        deliveries: &[oponn::queue::Delivery],
    ) -> Result<(), oponn::queue::QueueError> {
        self.queue.ack(deliveries).await
    }
    async fn dead_letter(
        &self,
        delivery: &oponn::queue::Delivery,
        reason: &str,
    ) -> Result<(), oponn::queue::QueueError> {
        self.queue.dead_letter(delivery, reason).await
    }
    async fn mark(&self) -> Result<oponn::queue::Mark, oponn::queue::QueueError> {
        self.queue.mark().await
    }
    async fn passed(&self, mark: &oponn::queue::Mark) -> Result<bool, oponn::queue::QueueError> {
        self.polls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.queue.passed(mark).await
    }
    async fn depth(&self) -> Result<oponn::queue::Depth, oponn::queue::QueueError> {
        self.queue.depth().await
    }
}

/// However many reads wait for a lagging worker, one of them polls the queue's progress: 50
/// reads waiting 300 ms poll it about as often as one would (each alone would poll it about 20
/// times), all fail `UNAVAILABLE` at their deadline, and all pass together once a worker runs.
#[tokio::test]
async fn reads_waiting_for_the_worker_share_one_poll_of_the_queue() {
    const READS: usize = 50;
    let app = spawn_behind().await;
    new_book(&app, "Waited for").await;
    let queue = app.datastore.queue().expect("write-behind has a queue");
    let counting = std::sync::Arc::new(CountingPolls {
        queue,
        polls: std::sync::atomic::AtomicU64::new(0),
    });
    let datastore = app
        .one_shot_datastore()
        .await
        .writing_behind(oponn::datastore::Behind::new(
            counting.clone(),
            std::time::Duration::from_millis(300),
        ));
    let waits = (0..READS).map(|_| datastore.caught_up("books"));
    let outcomes = join_all(waits).await;
    assert!(outcomes.iter().all(Result::is_err), "{outcomes:?}");
    let polls = counting.polls.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        polls <= 40,
        "{READS} waiting reads polled the queue {polls} times"
    );

    let worker = app.spawn_worker().await;
    let waits = (0..READS).map(|_| datastore.caught_up("books"));
    let outcomes = join_all(waits).await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    worker.stop().await;
}
