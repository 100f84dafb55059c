//! The entity cache's contract: what a read costs, hit or miss, single or batched.

use serde_json::json;

use crate::helpers::{assert_no_errors, book_id, TestApp};

const BOOK: &str = "query($id: ID!) { book(id: $id) { id title version } }";
const BOOKS: &str = "query($ids: [ID!]!) { booksByIds(ids: $ids) { id } }";

#[tokio::test]
async fn cache_hit_does_not_query_mongodb() {
    let app = TestApp::spawn().await;
    let book = app.insert_uncached("Cold").await;

    let before_miss = app.mongo_finds();
    let cold = app
        .graphql(BOOK, json!({ "id": book.id.to_string() }))
        .await;
    assert_eq!(cold["data"]["book"]["title"], "Cold");
    assert_eq!(
        app.mongo_finds(),
        before_miss + 1,
        "a miss reads MongoDB once"
    );

    let before_hit = app.mongo_finds();
    for _ in 0..5 {
        let warm = app
            .graphql(BOOK, json!({ "id": book.id.to_string() }))
            .await;
        assert_eq!(warm["data"]["book"]["title"], "Cold");
    }
    assert_eq!(app.mongo_finds(), before_hit, "hits never reach MongoDB");
}

#[tokio::test]
async fn a_batch_of_n_ids_costs_one_redis_round_trip_and_at_most_one_mongodb_query() {
    let app = TestApp::spawn().await;
    for n in [1usize, 10, 100] {
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            ids.push(
                app.insert_uncached(&format!("Book {i}"))
                    .await
                    .id
                    .to_string(),
            );
        }

        let (finds, trips) = (app.mongo_finds(), app.redis_round_trips());
        let cold = app.graphql(BOOKS, json!({ "ids": ids })).await;
        assert_no_errors(&cold);
        assert_eq!(cold["data"]["booksByIds"].as_array().unwrap().len(), n);
        assert_eq!(
            app.mongo_finds() - finds,
            1,
            "n={n}: one $in query for every miss"
        );
        assert_eq!(
            app.redis_round_trips() - trips,
            2,
            "n={n}: one MGET, one fill pipeline"
        );

        let (finds, trips) = (app.mongo_finds(), app.redis_round_trips());
        let warm = app.graphql(BOOKS, json!({ "ids": ids })).await;
        assert_eq!(warm, cold);
        assert_eq!(app.mongo_finds() - finds, 0, "n={n}: all hits");
        assert_eq!(app.redis_round_trips() - trips, 1, "n={n}: one MGET");
    }
}

/// Concurrent single-record reads share `MGET`s (`cache::lookups`), each still answered with
/// its own record. That a read never joins an `MGET` already sent is shown in that module's
/// tests; `invariants.rs` runs reads and writes through two instances over this path.
#[tokio::test]
async fn concurrent_reads_share_redis_round_trips() {
    let app = TestApp::spawn().await;
    let mut books = Vec::new();
    for i in 0..8 {
        let book = app.insert_uncached(&format!("Shared {i}")).await;
        app.datastore.book(book.id).await.unwrap();
        books.push(book);
    }

    const READS: usize = 200;
    let (finds, trips) = (app.mongo_finds(), app.redis_round_trips());
    let reads: Vec<_> = (0..READS)
        .map(|i| {
            let (datastore, book) = (app.datastore.clone(), books[i % books.len()].clone());
            tokio::spawn(async move { (book.title.clone(), datastore.book(book.id).await) })
        })
        .collect();
    for read in futures::future::join_all(reads).await {
        let (title, read) = read.unwrap();
        assert_eq!(
            read.unwrap().unwrap().title,
            title,
            "each read gets its own book"
        );
    }
    let trips = app.redis_round_trips() - trips;
    assert!(
        trips <= (READS / 2) as u64,
        "{READS} concurrent reads took {trips} Redis round trips"
    );
    assert_eq!(app.mongo_finds(), finds, "all hits");
}

#[tokio::test]
async fn unknown_ids_are_cached_as_absent() {
    let app = TestApp::spawn().await;
    let unknown = json!({ "id": "65a1b2c3d4e5f6a7b8c9d0e1" });
    app.graphql(BOOK, unknown.clone()).await;
    let finds = app.mongo_finds();
    let again = app.graphql(BOOK, unknown).await;
    assert!(again["data"]["book"].is_null());
    assert_eq!(
        app.mongo_finds(),
        finds,
        "the absence was served from Redis"
    );
}

#[tokio::test]
async fn a_create_after_a_cached_absence_is_visible_at_once() {
    // The absence is cached at version 0; the create writes version 1 through the same
    // compare-and-set, so the stale absence cannot hide the new record.
    let app = TestApp::spawn().await;
    let book = app.insert_uncached("Later").await;
    let epoch = app.datastore.cache().note().await;
    app.datastore
        .cache()
        .fill_many(
            &epoch,
            &[(
                book.id,
                oponn::cache::Entry::<oponn::domain::Book>::absent(0),
            )],
        )
        .await;
    app.datastore
        .cache()
        .write_through(
            &epoch,
            &[(
                book.id,
                oponn::cache::Entry::present(book.version, book.clone()),
            )],
        )
        .await;
    let read = app
        .graphql(BOOK, json!({ "id": book.id.to_string() }))
        .await;
    assert_eq!(read["data"]["book"]["title"], "Later");
}

#[tokio::test]
async fn writes_go_through_to_the_cache() {
    let app = TestApp::spawn().await;
    let created = app.create_book("/works/W1", "Before").await;
    let id = book_id(&created);
    assert_eq!(
        app.cached(id).await.map(|entry| entry.version),
        Some(1),
        "create caches"
    );

    app.graphql(
        "mutation($id: ID!) { updateBook(id: $id, input: { title: \"After\" }) { version } }",
        json!({ "id": id.to_string() }),
    )
    .await;
    let cached = app.cached(id).await.expect("still cached");
    assert_eq!(cached.version, 2);
    assert_eq!(cached.value.expect("present").title.as_str(), "After");

    let finds = app.mongo_finds();
    let read = app.graphql(BOOK, json!({ "id": id.to_string() })).await;
    assert_eq!(read["data"]["book"]["title"], "After");
    assert_eq!(
        app.mongo_finds(),
        finds,
        "the updated record is served from Redis"
    );

    app.graphql(
        "mutation($id: ID!) { deleteBook(id: $id) { id } }",
        json!({ "id": id.to_string() }),
    )
    .await;
    let tombstone = app.cached(id).await.expect("a tombstone");
    assert_eq!(tombstone.version, 3);
    assert!(tombstone.value.is_none());
}

#[tokio::test]
async fn keys_follow_the_brief_under_the_configured_prefix() {
    let app = TestApp::spawn().await;
    let book = app.insert_uncached("Keyed").await;
    let key = app.datastore.cache().key::<oponn::domain::Book>(&book.id);
    assert_eq!(key, format!("{}books_{}", app.key_prefix, book.id));
}
