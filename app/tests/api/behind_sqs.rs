//! Write-behind on SQS (`OPONN_QUEUE=sqs`) against a moto server on 127.0.0.1: the core cases
//! of `behind.rs` again, and what SQS changes: a writer that died between its Redis script and
//! its send is swept and persisted, and a pending record Redis lost is persisted from the copy
//! its message carries.

use mongodb::bson::{doc, Document};
use oponn::{
    cache::Entry,
    domain::{Book, BookId, Title},
    queue::Appends,
};
use oponn_tests::Moto;
use serde_json::json;

use crate::{
    behind::{self, new_book, retitle, stored, stored_version, On},
    helpers::{unique_suffix, Options, TestApp},
};

const DELETE: &str = "mutation($id: ID!) { deleteBook(id: $id) { id } }";
const BOOK: &str = "query($id: ID!) { book(id: $id) { id title version } }";

/// Write-behind on two FIFO queues of the test's own.
pub(crate) async fn sqs_options(extra: Vec<(&'static str, String)>) -> Options {
    let moto = Moto::shared();
    let (queue, dead) = moto
        .fifo_queues(&format!("oponn-{}", unique_suffix()))
        .await;
    let mut settings = vec![
        ("OPONN_WRITE_MODE", "behind".to_owned()),
        ("OPONN_QUEUE", "sqs".to_owned()),
        ("OPONN_SQS_QUEUE_URL", queue),
        ("OPONN_SQS_DEAD_LETTER_URL", dead),
    ];
    settings.extend(extra);
    Options {
        settings,
        ..Options::default()
    }
}

async fn spawn_sqs() -> TestApp {
    TestApp::spawn_with(sqs_options(vec![]).await).await
}

async fn queued(app: &TestApp) -> u64 {
    redis::cmd("ZCARD")
        .arg(format!("{}queued", app.key_prefix))
        .query_async(&mut app.redis().await)
        .await
        .expect("ZCARD")
}

#[tokio::test]
async fn on_sqs_a_mutation_is_served_from_the_cache_before_mongodb_has_it_then_persisted() {
    let app = spawn_sqs().await;
    let id = new_book(&app, "First title").await;
    let body = retitle(&app, id, "Second title").await;
    assert_eq!(body["data"]["updateBook"]["version"], 2, "{body}");
    assert_eq!(stored(&app, id).await, None, "no worker ran");
    assert!(app
        .stored_entry(id)
        .await
        .expect("cached")
        .starts_with("2 pending "));
    assert_eq!(queued(&app).await, 2, "both changes are in the queued set");
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
    assert_eq!(queued(&app).await, 0, "applied changes leave the set");

    // A delete goes the same way.
    let deleted = app.graphql(DELETE, json!({ "id": id.to_string() })).await;
    assert!(deleted.get("errors").is_none(), "{deleted}");
    app.persisted().await;
    assert_eq!(stored(&app, id).await, None, "deleted in MongoDB");
    worker.stop().await;
}

#[tokio::test]
async fn on_sqs_a_list_page_waits_for_the_worker_rather_than_answer_from_mongodb_alone() {
    behind::a_list_page_waits_for_the_worker(On::Sqs).await;
}

/// The body of a change's message, as a writer sends it.
fn message(id: BookId, version: i64, record: Option<&Book>) -> String {
    json!({
        "c": "books",
        "i": id.to_string(),
        "v": version,
        "record": record.map(|book| serde_json::to_value(book).expect("JSON")),
    })
    .to_string()
}

async fn send_raw(app: &TestApp, body: String, group: &str) {
    let url = app.setting("OPONN_SQS_QUEUE_URL");
    Moto::shared()
        .client()
        .await
        .send_message()
        .queue_url(url)
        .message_group_id(group)
        .message_deduplication_id(uuid::Uuid::new_v4().simple().to_string())
        .message_body(body)
        .send()
        .await
        .expect("SendMessage");
}

#[tokio::test]
async fn on_sqs_replayed_and_late_changes_never_move_mongodb_backwards() {
    let app = spawn_sqs().await;
    let id = new_book(&app, "Version 1").await;
    for version in 2..=4 {
        let body = retitle(&app, id, &format!("Version {version}")).await;
        assert_eq!(body["data"]["updateBook"]["version"], version, "{body}");
    }
    let worker = app.spawn_worker().await;
    app.persisted().await;
    assert_eq!(stored_version(&app, id).await, Some(4));
    let book = app.datastore.book(id).await.expect("read").expect("exists");

    // Every change again, oldest last, each with an older record than MongoDB's; then one
    // more, after the cache forgot the book (its TTL ran out), so the carried record is
    // offered to MongoDB itself.
    for version in [4, 1, 3, 2] {
        let mut older = book.clone();
        older.version = version;
        older.title = Title::parse(&format!("Replayed {version}")).expect("valid");
        send_raw(
            &app,
            message(id, version, Some(&older)),
            &format!("books:{id}"),
        )
        .await;
    }
    wait_until_drained(&app).await;
    let _: () = redis::cmd("DEL")
        .arg(format!("{}books_{id}", app.key_prefix))
        .query_async(&mut app.redis().await)
        .await
        .expect("DEL");
    let mut older = book.clone();
    older.version = 3;
    older.title = Title::parse("Replayed after expiry").expect("valid");
    send_raw(&app, message(id, 3, Some(&older)), &format!("books:{id}")).await;
    wait_until_drained(&app).await;

    let document = stored(&app, id).await.expect("stored");
    assert_eq!(document.get_i64("version"), Ok(4));
    assert_eq!(document.get_str("title"), Ok("Version 4"));
    let read = app.graphql(BOOK, json!({ "id": id.to_string() })).await;
    assert_eq!(read["data"]["book"]["version"], 4, "{read}");
    worker.stop().await;
}

/// Waits until the queue holds no message (raw sends are not in the `queued` set, so the
/// barrier does not see them).
async fn wait_until_drained(app: &TestApp) {
    let url = app.setting("OPONN_SQS_QUEUE_URL");
    let client = Moto::shared().client().await;
    for _ in 0..200 {
        let attributes = client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(
                aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            )
            .send()
            .await
            .expect("GetQueueAttributes");
        let left: u64 = attributes
            .attributes()
            .into_iter()
            .flatten()
            .filter_map(|(_, count)| count.parse::<u64>().ok())
            .sum();
        if left == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the SQS queue did not drain");
}

#[tokio::test]
async fn on_sqs_concurrent_writers_on_two_instances_get_distinct_versions_and_the_newest_persists()
{
    behind::concurrent_writers_on_two_instances(On::Sqs).await;
}

#[tokio::test]
async fn on_sqs_with_mongodb_down_mutations_are_accepted_and_the_backlog_drains_when_it_returns() {
    behind::with_mongodb_down_the_backlog_drains(On::Sqs).await;
}

/// A writer that died between its Redis script and its send left a change in the `queued`
/// set and none in SQS: the worker's sweep sends it after the grace, and it is persisted.
#[tokio::test]
async fn on_sqs_a_change_whose_writer_died_before_sending_it_is_swept_and_persisted() {
    let app =
        TestApp::spawn_with(sqs_options(vec![("OPONN_QUEUE_BARRIER_MS", "20000".into())]).await)
            .await;
    let id = new_book(&app, "Before the crash").await;
    let worker = app.spawn_worker().await;
    app.persisted().await;

    // What the dead writer did: the script alone (the pending record and the `queued` member).
    let cache = app.datastore.cache();
    let noted = cache.note().await;
    let mut book = app.datastore.book(id).await.expect("read").expect("exists");
    book.version = 2;
    book.title = Title::parse("Written by a writer that died").expect("valid");
    let queued_key = format!("{}queued", app.key_prefix);
    cache
        .write_pending::<Book>(
            &noted,
            &id,
            1,
            &Entry::present(2, book),
            Appends::Index(&queued_key),
            None,
        )
        .await
        .expect("the script runs");
    assert_eq!(queued(&app).await, 1);

    app.persisted().await;
    let document = stored(&app, id).await.expect("stored");
    assert_eq!(document.get_i64("version"), Ok(2));
    assert_eq!(
        document.get_str("title"),
        Ok("Written by a writer that died")
    );
    assert_eq!(queued(&app).await, 0);
    worker.stop().await;
}

/// Once sent, a change survives Redis losing its pending record: the worker finds no entry
/// and persists the record the message carries.
#[tokio::test]
async fn on_sqs_a_pending_record_redis_lost_is_persisted_from_its_message() {
    let app = spawn_sqs().await;
    let id = new_book(&app, "Version 1").await;
    let body = retitle(&app, id, "Only in SQS now").await;
    assert_eq!(body["data"]["updateBook"]["version"], 2, "{body}");
    let _: () = redis::cmd("DEL")
        .arg(format!("{}books_{id}", app.key_prefix))
        .query_async(&mut app.redis().await)
        .await
        .expect("DEL");

    let worker = app.spawn_worker().await;
    app.persisted().await;
    let document = stored(&app, id).await.expect("persisted from the message");
    assert_eq!(document.get_i64("version"), Ok(2));
    assert_eq!(document.get_str("title"), Ok("Only in SQS now"));
    let read = app.graphql(BOOK, json!({ "id": id.to_string() })).await;
    assert_eq!(read["data"]["book"]["title"], "Only in SQS now", "{read}");
    assert!(
        worker
            .metrics
            .worker_applied
            .with_label_values(&["carried"])
            .get()
            >= 1
    );
    worker.stop().await;
}

#[tokio::test]
async fn on_sqs_a_message_that_is_no_change_is_dead_lettered_and_counted() {
    let app = spawn_sqs().await;
    let id = new_book(&app, "Fine").await;
    send_raw(&app, "junk".to_owned(), "junk").await;
    let worker = app.spawn_worker().await;
    app.persisted().await;
    wait_until_drained(&app).await;
    assert_eq!(stored_version(&app, id).await, Some(1));
    assert_eq!(worker.metrics.worker_dead_letters.get(), 1);
    let depth = app
        .datastore
        .queue()
        .expect("a queue")
        .depth()
        .await
        .expect("depth");
    assert_eq!((depth.pending, depth.dead), (0, 1));
    worker.stop().await;
}

/// A worker retrying what it holds while MongoDB is away keeps it: the visibility timeout starts
/// again on every retry, so another worker does not receive the same messages meanwhile (their
/// receive counts would otherwise climb toward the dead letters over a long outage).
#[tokio::test]
async fn on_sqs_a_worker_keeps_what_it_holds_through_a_mongodb_outage() {
    let app = TestApp::spawn_with(Options {
        proxy_mongo: true,
        ..sqs_options(vec![
            ("OPONN_MONGODB_TIMEOUT_MS", "200".into()),
            ("OPONN_WORKER_CLAIM_IDLE_MS", "1000".into()),
            ("OPONN_QUEUE_BARRIER_MS", "20000".into()),
        ])
        .await
    })
    .await;
    let id = new_book(&app, "Version 1").await;
    let workers = [app.spawn_worker().await, app.spawn_worker().await];
    app.persisted().await;

    let proxy = app.mongo_proxy.as_ref().expect("a proxy");
    proxy.cut().await;
    assert_eq!(
        retitle(&app, id, "Version 2").await["data"]["updateBook"]["version"],
        2
    );
    // The outage lasts three and a half visibility timeouts: time passing is what is tested.
    tokio::time::sleep(std::time::Duration::from_millis(3_500)).await;
    let retried: Vec<u64> = workers
        .iter()
        .map(|w| w.metrics.worker_retries.get())
        .collect();
    assert_eq!(
        retried.iter().filter(|n| **n > 0).count(),
        1,
        "one worker held the change, the other never received it: {retried:?}"
    );

    proxy.restore();
    app.persisted().await;
    assert_eq!(stored_version(&app, id).await, Some(2));
    for worker in workers {
        worker.stop().await;
    }
}

const CREATE_STORE: &str = "mutation($name: String!) { createBookstore(input: { name: $name, city: \"Portland\" }) { id version } }";

/// Bookstores travel through SQS like books: two stores created behind, one of whose pending
/// record Redis then loses, are both persisted (that one from its message), and their name
/// claims are released.
#[tokio::test]
async fn on_sqs_bookstores_are_persisted_also_from_their_messages() {
    let app = spawn_sqs().await;
    let round = unique_suffix();
    let mut ids = Vec::new();
    for name in ["Kept", "Lost"] {
        let body = app
            .graphql(
                CREATE_STORE,
                json!({ "name": format!("SQS {name} {round}") }),
            )
            .await;
        ids.push(
            body["data"]["createBookstore"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{body}"))
                .to_owned(),
        );
    }
    let _: () = redis::cmd("DEL")
        .arg(format!("{}bookstores_{}", app.key_prefix, ids[1]))
        .query_async(&mut app.redis().await)
        .await
        .expect("DEL");

    let worker = app.spawn_worker().await;
    app.persisted().await;
    let stores = app.mongodb().await.collection::<Document>("bookstores");
    for (id, name) in ids.iter().zip(["Kept", "Lost"]) {
        let oid = mongodb::bson::oid::ObjectId::parse_str(id).expect("an ObjectId");
        let document = stores
            .find_one(doc! { "_id": oid })
            .await
            .expect("find_one")
            .unwrap_or_else(|| panic!("store {name} persisted"));
        assert_eq!(
            document.get_str("name"),
            Ok(format!("SQS {name} {round}").as_str())
        );
    }
    let claims: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}claim_*", app.key_prefix))
        .query_async(&mut app.redis().await)
        .await
        .expect("KEYS");
    assert_eq!(claims, Vec::<String>::new());
    worker.stop().await;
}
