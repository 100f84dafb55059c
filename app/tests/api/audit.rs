//! The consistency audit (`datastore::audit`): silent on a consistent cache, and each kind of
//! disagreement, made by writing Redis or MongoDB behind the service's back, is found.

use mongodb::bson::{doc, Document};
use oponn::{
    datastore::{AuditCursor, Finding, Inconsistency},
    domain::{Book, BookId},
};

use crate::helpers::{book_id, unique_suffix, Options, TestApp};

async fn audit_all(app: &TestApp) -> Vec<Finding> {
    let mut cursor = AuditCursor::once();
    let mut findings = Vec::new();
    while !cursor.finished() {
        let audited = app
            .datastore
            .audit_step(&mut cursor, 100)
            .await
            .expect("the audit runs");
        findings.extend(audited.findings);
    }
    findings.sort_by(|a, b| a.id.cmp(&b.id));
    findings
}

async fn cached_book(app: &TestApp, title: &str) -> Book {
    let id = book_id(
        &app.create_book(&format!("/works/audit-{}", unique_suffix()), title)
            .await,
    );
    app.datastore.book(id).await.expect("read").expect("exists")
}

async fn set_raw(app: &TestApp, id: BookId, value: String) {
    let _: () = redis::cmd("SET")
        .arg(format!("{}books_{id}", app.key_prefix))
        .arg(value)
        .query_async(&mut app.redis().await)
        .await
        .expect("SET");
}

fn kind_of(findings: &[Finding], id: BookId) -> Option<Inconsistency> {
    findings
        .iter()
        .find(|f| f.id == id.to_string())
        .map(|f| f.kind)
}

#[tokio::test]
async fn the_audit_is_silent_on_a_consistent_cache_and_names_each_disagreement() {
    let app = TestApp::spawn().await;
    let books: Vec<Book> = futures::future::join_all((0..6).map(|n| {
        let app = &app;
        async move { cached_book(app, &format!("Audited {n}")).await }
    }))
    .await;
    assert_eq!(audit_all(&app).await, Vec::new(), "a consistent cache");

    let epoch = app
        .datastore
        .cache()
        .current_epoch()
        .await
        .expect("an epoch");
    let collection = app.mongodb().await.collection::<Document>("books");
    let json = |book: &Book| serde_json::to_string(book).expect("json");

    // MongoDB moved on without the cache: the cache serves the past.
    collection
        .update_one(
            doc! { "_id": books[0].id.object_id() },
            doc! { "$set": { "title": "Moved on" }, "$inc": { "version": 1 } },
        )
        .await
        .expect("update");
    // The cache claims a version MongoDB never had.
    let mut newer = books[1].clone();
    newer.version += 1;
    set_raw(
        &app,
        newer.id,
        format!("{} {epoch} {}", newer.version, json(&newer)),
    )
    .await;
    // Same version, other content.
    let mut other = books[2].clone();
    other.title = oponn::domain::Title::parse("Other content").expect("valid");
    set_raw(
        &app,
        other.id,
        format!("{} {epoch} {}", other.version, json(&other)),
    )
    .await;
    // Gone from MongoDB, still cached.
    collection
        .delete_one(doc! { "_id": books[3].id.object_id() })
        .await
        .expect("delete");
    // A tombstone for a record MongoDB still has.
    set_raw(
        &app,
        books[4].id,
        format!("{} {epoch} -", books[4].version + 1),
    )
    .await;
    // Another Redis run's value is never served: not a finding, whatever it says.
    set_raw(
        &app,
        books[5].id,
        format!("99 0123456789abcdef {}", json(&books[5])),
    )
    .await;

    let findings = audit_all(&app).await;
    assert_eq!(
        kind_of(&findings, books[0].id),
        Some(Inconsistency::CacheOlder)
    );
    assert_eq!(
        kind_of(&findings, books[1].id),
        Some(Inconsistency::CacheNewer)
    );
    assert_eq!(
        kind_of(&findings, books[2].id),
        Some(Inconsistency::ContentDiffers)
    );
    assert_eq!(
        kind_of(&findings, books[3].id),
        Some(Inconsistency::CacheOnly)
    );
    assert_eq!(
        kind_of(&findings, books[4].id),
        Some(Inconsistency::MongodbOnly)
    );
    assert_eq!(findings.len(), 5, "{findings:#?}");
}

#[tokio::test]
async fn a_pending_record_the_worker_never_persisted_is_found_once_the_queue_has_drained() {
    let app = TestApp::spawn_with(Options {
        settings: vec![
            ("OPONN_WRITE_MODE", "behind".into()),
            ("OPONN_QUEUE_BARRIER_MS", "300".into()),
        ],
        ..Options::default()
    })
    .await;
    let queued = cached_book(&app, "Queued").await;
    // Without a worker, a pending record is not judged: it is expected to be ahead.
    assert_eq!(audit_all(&app).await, Vec::new());

    let worker = app.spawn_worker().await;
    app.persisted().await;
    assert_eq!(audit_all(&app).await, Vec::new(), "persisted and settled");

    // A pending record with no queued change (what a lost change would leave).
    let mut orphan = queued.clone();
    orphan.version += 1;
    set_raw(
        &app,
        orphan.id,
        format!(
            "{} pending {}",
            orphan.version,
            serde_json::to_string(&orphan).expect("json")
        ),
    )
    .await;
    let findings = audit_all(&app).await;
    assert_eq!(
        kind_of(&findings, orphan.id),
        Some(Inconsistency::PendingPastDrain)
    );
    assert_eq!(findings[0].stored, Some(queued.version));
    worker.stop().await;
}
