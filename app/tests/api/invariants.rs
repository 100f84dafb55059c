//! The cache invariants of DESIGN.md, each forced rather than hoped for.

use std::time::Duration;

use oponn::domain::{BookChanges, Title};
use serde_json::json;

use crate::helpers::TestApp;

fn retitle(title: &str) -> BookChanges {
    BookChanges {
        title: Some(Title::parse(title).expect("valid title")),
        ..BookChanges::default()
    }
}

/// Invariant 2: a reader stopped between its MongoDB read (version 1) and its fill, while a
/// writer commits version 2, must not leave version 1 in the cache. Without the version check
/// in the compare-and-set script, the late fill would overwrite version 2 and this test fails.
#[tokio::test]
async fn a_reader_paused_before_its_fill_cannot_overwrite_a_newer_write() {
    let app = TestApp::spawn().await;
    let book = app.insert_uncached("Version one").await;

    let (pause, reader) = app.reader_paused_before_fill(book.id).await;

    let written = app
        .datastore
        .update_book(book.id, retitle("Version two"), None)
        .await
        .expect("the write commits");
    assert_eq!(written.version, 2);
    pause.resume();

    let read = reader.await.expect("reader task").expect("reader read");
    assert_eq!(
        read.map(|b| b.version),
        Some(1),
        "the reader saw the world before the write"
    );

    let cached = app.cached(book.id).await.expect("cached");
    assert_eq!(cached.version, 2, "the stale fill was refused");
    let finds = app.mongo_finds();
    let after = app
        .datastore
        .book(book.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(after.title.as_str(), "Version two");
    assert_eq!(app.mongo_finds(), finds);
}

/// Invariant 2 for deletes: the tombstone outranks the deleted record.
#[tokio::test]
async fn a_reader_paused_before_its_fill_cannot_resurrect_a_deleted_book() {
    let app = TestApp::spawn().await;
    let book = app.insert_uncached("Doomed").await;

    let (pause, reader) = app.reader_paused_before_fill(book.id).await;
    app.datastore
        .delete_book(book.id)
        .await
        .expect("the delete commits");
    pause.resume();
    reader.await.expect("reader task").expect("reader read");

    let cached = app.cached(book.id).await.expect("a tombstone");
    assert!(
        cached.value.is_none(),
        "the deleted book is not cached again"
    );
    assert!(app.datastore.book(book.id).await.expect("read").is_none());
}

/// Invariant 1 across instances: once a mutation on one instance has replied, reads on another
/// instance (same Redis, same MongoDB) return that version or newer, every time.
#[tokio::test]
async fn reads_on_another_instance_see_every_acknowledged_write() {
    let writer = TestApp::spawn().await;
    let reader = writer.spawn_sibling().await;
    let id = writer.create_book("/works/RYW", "v1").await["id"].clone();
    // Warm the reader's view so that a stale cache entry would be served if it were left.
    reader
        .graphql(
            "query($id: ID!) { book(id: $id) { version } }",
            json!({ "id": id }),
        )
        .await;

    for round in 2..=30 {
        let written = writer
            .graphql(
                "mutation($id: ID!, $t: String!) { updateBook(id: $id, input: { title: $t }) { version } }",
                json!({ "id": id, "t": format!("v{round}") }),
            )
            .await;
        let version = written["data"]["updateBook"]["version"]
            .as_i64()
            .expect("a version");
        let read = reader
            .graphql(
                "query($id: ID!) { book(id: $id) { title version } }",
                json!({ "id": id }),
            )
            .await;
        let seen = read["data"]["book"]["version"].as_i64().expect("a version");
        assert!(
            seen >= version,
            "round {round}: read version {seen} after write {version}"
        );
    }
}

/// Readers racing a writer, unforced: when the dust settles the cache holds exactly what
/// MongoDB holds. (Racing writers on two instances: the test below.)
#[tokio::test]
async fn readers_racing_a_writer_leave_the_cache_equal_to_mongodb() {
    let app = TestApp::spawn().await;
    let book = app.insert_uncached("v0").await;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn({
        let datastore = app.datastore.clone();
        async move {
            for i in 1..=10 {
                datastore
                    .update_book(book.id, retitle(&format!("v{i}")), None)
                    .await?;
            }
            Ok(())
        }
    });
    for _ in 0..10 {
        let datastore = app.datastore.clone();
        tasks.spawn(async move {
            for _ in 0..10 {
                datastore.book(book.id).await?;
            }
            Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        let outcome: Result<(), oponn::datastore::DatastoreError> = done.expect("task");
        outcome.expect("operation");
    }
    let stored = app
        .datastore
        .store()
        .books()
        .find_many(&[book.id])
        .await
        .expect("MongoDB read")
        .pop()
        .expect("exists");
    assert_eq!(stored.version, 11, "ten writes on top of version 1");
    let cached = tokio::time::timeout(Duration::from_secs(5), app.cached(book.id))
        .await
        .expect("Redis answers")
        .expect("cached");
    assert_eq!(cached.version, stored.version);
    assert_eq!(cached.value.expect("present"), stored);
}

/// Invariants 1 and 2 at scale, through two instances at once: writers on both race on a few
/// books (version-conditioned in MongoDB, so every acknowledged version is distinct) while
/// readers on both read them. Every read returns at least the newest version acknowledged
/// before it began; once the writers stop, the cache holds exactly what MongoDB holds.
#[tokio::test(flavor = "multi_thread")]
async fn thousands_of_writes_through_two_instances_keep_both_invariants() {
    const BOOKS: usize = 8;
    const WRITES: usize = 2_000;
    const WRITERS_PER_INSTANCE: usize = 4;
    const READERS_PER_INSTANCE: usize = 2;
    use std::sync::{
        atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering},
        Arc, Mutex,
    };

    let first = TestApp::spawn().await;
    let second = first.spawn_sibling().await;
    let mut books = Vec::new();
    for n in 0..BOOKS {
        books.push(first.insert_uncached(&format!("Book {n}")).await.id);
    }
    let books = Arc::new(books);
    let acknowledged: Arc<Vec<AtomicI64>> =
        Arc::new((0..BOOKS).map(|_| AtomicI64::new(1)).collect());
    let versions: Arc<Mutex<Vec<(usize, i64)>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let writing = Arc::new(AtomicBool::new(true));
    let stale = Arc::new(AtomicUsize::new(0));
    let reads = Arc::new(AtomicUsize::new(0));

    let mut writers = tokio::task::JoinSet::new();
    let mut readers = tokio::task::JoinSet::new();
    for app in [&first, &second] {
        for _ in 0..WRITERS_PER_INSTANCE {
            let (datastore, books, acknowledged, versions, next) = (
                app.datastore.clone(),
                books.clone(),
                acknowledged.clone(),
                versions.clone(),
                next.clone(),
            );
            writers.spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= WRITES {
                        return;
                    }
                    let book = n % BOOKS;
                    let written = datastore
                        .update_book(books[book], retitle(&format!("write {n}")), None)
                        .await
                        .expect("the write commits");
                    acknowledged[book].fetch_max(written.version, Ordering::SeqCst);
                    versions.lock().expect("lock").push((book, written.version));
                }
            });
        }
        for reader in 0..READERS_PER_INSTANCE {
            let (datastore, books, acknowledged, writing, stale, reads) = (
                app.datastore.clone(),
                books.clone(),
                acknowledged.clone(),
                writing.clone(),
                stale.clone(),
                reads.clone(),
            );
            readers.spawn(async move {
                let mut n = reader;
                while writing.load(Ordering::Relaxed) {
                    let book = n % BOOKS;
                    n += 1;
                    let before = acknowledged[book].load(Ordering::SeqCst);
                    let read = datastore.book(books[book]).await.expect("a read");
                    if read.expect("exists").version < before {
                        stale.fetch_add(1, Ordering::Relaxed);
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    }
    while let Some(done) = writers.join_next().await {
        done.expect("writer");
    }
    writing.store(false, Ordering::Relaxed);
    while let Some(done) = readers.join_next().await {
        done.expect("reader");
    }

    let mut versions = versions.lock().expect("lock").clone();
    assert_eq!(versions.len(), WRITES);
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(
        versions.len(),
        WRITES,
        "two writes acknowledged with one version"
    );
    assert!(reads.load(Ordering::Relaxed) > 0);
    assert_eq!(
        stale.load(Ordering::Relaxed),
        0,
        "reads older than an acknowledged write"
    );
    let stored = first
        .datastore
        .store()
        .books()
        .find_many(&books)
        .await
        .expect("MongoDB read");
    for record in stored {
        let cached = first.cached(record.id).await.expect("cached");
        assert_eq!(cached.version, record.version);
        assert_eq!(cached.value.as_ref(), Some(&record));
    }
}
