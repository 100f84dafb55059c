//! Books through the API: the behaviours a client relies on.

use serde_json::json;

use crate::helpers::{assert_no_errors, error_code, new_book, TestApp};

const BOOK: &str = "query($id: ID!) { book(id: $id) { id sourceKey title authors firstPublishYear subjects version updatedAt } }";
const UPDATE: &str = "mutation($id: ID!, $input: UpdateBookInput!, $expected: Int) {
    updateBook(id: $id, input: $input, expectedVersion: $expected) { id title firstPublishYear version } }";

#[tokio::test]
async fn a_created_book_reads_back_with_every_field() {
    let app = TestApp::spawn().await;
    let created = app
        .graphql(
            "mutation($input: CreateBookInput!) { createBook(input: $input) { id version } }",
            json!({ "input": {
                "sourceKey": "/works/OL27448W", "title": "  The Lord  of the Rings ",
                "authors": ["J.R.R. Tolkien", "J.R.R. Tolkien"], "firstPublishYear": 1954,
                "subjects": ["Fantasy", "Middle Earth"] } }),
        )
        .await;
    assert_no_errors(&created);
    let id = &created["data"]["createBook"]["id"];
    assert_eq!(created["data"]["createBook"]["version"], 1);

    let read = app.graphql(BOOK, json!({ "id": id })).await;
    let book = &read["data"]["book"];
    assert_eq!(
        book["title"], "The Lord of the Rings",
        "titles are normalised"
    );
    assert_eq!(
        book["authors"],
        json!(["J.R.R. Tolkien"]),
        "duplicate authors are dropped"
    );
    assert_eq!(book["firstPublishYear"], 1954);
    assert_eq!(book["subjects"], json!(["Fantasy", "Middle Earth"]));
    assert_eq!(book["sourceKey"], "/works/OL27448W");
    assert!(book["updatedAt"].as_str().is_some());
}

#[tokio::test]
async fn an_unknown_id_reads_as_null_not_an_error() {
    let app = TestApp::spawn().await;
    let body = app
        .graphql(BOOK, json!({ "id": "65a1b2c3d4e5f6a7b8c9d0e1" }))
        .await;
    assert_no_errors(&body);
    assert!(body["data"]["book"].is_null());
}

#[tokio::test]
async fn a_malformed_id_is_bad_user_input() {
    let app = TestApp::spawn().await;
    let body = app.graphql(BOOK, json!({ "id": "not-an-id" })).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    let body = app
        .graphql(
            "query($ids: [ID!]!) { booksByIds(ids: $ids) { id } }",
            json!({ "ids": ["65a1b2c3d4e5f6a7b8c9d0e1", "x"] }),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
}

#[tokio::test]
async fn books_by_ids_keeps_the_order_given_with_nulls_for_unknown_ids() {
    let app = TestApp::spawn().await;
    let first = app.create_book("/works/A1", "First").await;
    let second = app.create_book("/works/A2", "Second").await;
    let unknown = "65a1b2c3d4e5f6a7b8c9d0e1";
    let body = app
        .graphql(
            "query($ids: [ID!]!) { booksByIds(ids: $ids) { title } }",
            json!({ "ids": [second["id"], unknown, first["id"], second["id"]] }),
        )
        .await;
    assert_no_errors(&body);
    assert_eq!(
        body["data"]["booksByIds"],
        json!([{ "title": "Second" }, null, { "title": "First" }, { "title": "Second" }])
    );
}

#[tokio::test]
async fn asking_for_more_ids_than_the_limit_is_bad_user_input() {
    let app = TestApp::spawn_with(crate::helpers::Options {
        settings: vec![("OPONN_MAX_BATCH_IDS", "3".into())],
        ..Default::default()
    })
    .await;
    let ids = vec!["65a1b2c3d4e5f6a7b8c9d0e1"; 4];
    let body = app
        .graphql(
            "query($ids: [ID!]!) { booksByIds(ids: $ids) { id } }",
            json!({ "ids": ids }),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
}

#[tokio::test]
async fn a_duplicate_source_key_is_a_conflict_and_creates_nothing() {
    let app = TestApp::spawn().await;
    app.create_book("/works/DUP", "Original").await;
    let body = app
        .graphql(
            "mutation { createBook(input: { sourceKey: \"/works/DUP\", title: \"Copy\" }) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "CONFLICT");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("/works/DUP"));
    assert_eq!(app.count_books().await, 1);
}

#[tokio::test]
async fn invalid_fields_are_bad_user_input() {
    let app = TestApp::spawn().await;
    for input in [
        json!({ "sourceKey": "/works/X", "title": "   " }),
        json!({ "sourceKey": "has space", "title": "T" }),
        json!({ "sourceKey": "/works/X", "title": "T", "firstPublishYear": 99999 }),
        json!({ "sourceKey": "/works/X", "title": "T", "authors": [""] }),
    ] {
        let body = app
            .graphql(
                "mutation($input: CreateBookInput!) { createBook(input: $input) { id } }",
                json!({ "input": input }),
            )
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{input}");
    }
}

#[tokio::test]
async fn an_update_bumps_the_version_and_can_clear_a_field() {
    let app = TestApp::spawn().await;
    let created = app
        .graphql(
            "mutation { createBook(input: { sourceKey: \"/works/U1\", title: \"Old\", firstPublishYear: 1990 }) { id } }",
            json!({}),
        )
        .await;
    let id = &created["data"]["createBook"]["id"];
    let body = app
        .graphql(
            UPDATE,
            json!({ "id": id, "input": { "title": "New", "firstPublishYear": null } }),
        )
        .await;
    assert_no_errors(&body);
    assert_eq!(body["data"]["updateBook"]["title"], "New");
    assert!(body["data"]["updateBook"]["firstPublishYear"].is_null());
    assert_eq!(body["data"]["updateBook"]["version"], 2);
}

#[tokio::test]
async fn an_update_at_a_stale_expected_version_is_a_conflict_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let id = app.create_book("/works/V1", "Original").await["id"].clone();
    app.graphql(
        UPDATE,
        json!({ "id": id, "input": { "title": "Second" }, "expected": 1 }),
    )
    .await;
    let body = app
        .graphql(
            UPDATE,
            json!({ "id": id, "input": { "title": "Lost" }, "expected": 1 }),
        )
        .await;
    assert_eq!(error_code(&body), "CONFLICT");
    let read = app.graphql(BOOK, json!({ "id": id })).await;
    assert_eq!(read["data"]["book"]["title"], "Second");
    assert_eq!(read["data"]["book"]["version"], 2);
}

#[tokio::test]
async fn an_empty_update_is_bad_user_input() {
    let app = TestApp::spawn().await;
    let id = app.create_book("/works/E1", "Title").await["id"].clone();
    let body = app.graphql(UPDATE, json!({ "id": id, "input": {} })).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
}

#[tokio::test]
async fn writes_to_an_unknown_id_are_not_found() {
    let app = TestApp::spawn().await;
    let unknown = "65a1b2c3d4e5f6a7b8c9d0e1";
    let body = app
        .graphql(UPDATE, json!({ "id": unknown, "input": { "title": "T" } }))
        .await;
    assert_eq!(error_code(&body), "NOT_FOUND");
    let body = app
        .graphql(
            "mutation($id: ID!) { deleteBook(id: $id) { id } }",
            json!({ "id": unknown }),
        )
        .await;
    assert_eq!(error_code(&body), "NOT_FOUND");
}

#[tokio::test]
async fn a_deleted_book_reads_as_null() {
    let app = TestApp::spawn().await;
    let id = app.create_book("/works/D1", "Doomed").await["id"].clone();
    let deleted = app
        .graphql(
            "mutation($id: ID!) { deleteBook(id: $id) { title version } }",
            json!({ "id": id }),
        )
        .await;
    assert_no_errors(&deleted);
    assert_eq!(deleted["data"]["deleteBook"]["title"], "Doomed");
    let read = app.graphql(BOOK, json!({ "id": id })).await;
    assert_no_errors(&read);
    assert!(read["data"]["book"].is_null());
}

/// A batch upsert inserts new keys, updates changed ones, and a rerun writes nothing.
#[tokio::test]
async fn a_batch_upsert_inserts_updates_and_reruns_as_a_no_op() {
    let app = TestApp::spawn().await;
    let first = vec![new_book("/works/U1", "One"), new_book("/works/U2", "Two")];
    let (summary, ids) = app.datastore.upsert_books(&first).await.expect("upsert");
    assert_eq!(
        (summary.inserted, summary.changed, summary.unchanged),
        (2, 0, 0)
    );

    let second = vec![
        new_book("/works/U1", "One"),
        new_book("/works/U2", "Two, revised"),
    ];
    let (summary, again) = app.datastore.upsert_books(&second).await.expect("upsert");
    assert_eq!(
        (summary.inserted, summary.changed, summary.unchanged),
        (0, 1, 1)
    );
    assert_eq!(again, ids, "the same records, in batch order");
    let (summary, _) = app.datastore.upsert_books(&second).await.expect("upsert");
    assert_eq!(
        (summary.inserted, summary.changed, summary.unchanged),
        (0, 0, 2)
    );

    let books = app.datastore.books(&ids).await.expect("read");
    let versions: Vec<_> = books
        .iter()
        .flatten()
        .map(|b| (b.title.as_str(), b.version))
        .collect();
    assert_eq!(versions, [("One", 1), ("Two, revised", 2)]);
}

/// The same key twice in one batch is inserted once, then updated by the second occurrence.
#[tokio::test]
async fn a_key_twice_in_one_batch_is_inserted_then_updated() {
    let app = TestApp::spawn().await;
    let batch = vec![
        new_book("/works/T1", "Draft"),
        new_book("/works/T1", "Final"),
    ];
    let (summary, ids) = app.datastore.upsert_books(&batch).await.expect("upsert");
    assert_eq!((summary.inserted, summary.changed), (1, 1));
    assert_eq!(ids[0], ids[1]);
    assert_eq!(app.count_books().await, 1);
    let book = app
        .datastore
        .book(ids[0])
        .await
        .expect("read")
        .expect("present");
    assert_eq!((book.title.as_str(), book.version), ("Final", 2));
}

/// Two ingests of the same new keys at once: each key ends up stored once, and neither fails.
#[tokio::test]
async fn concurrent_upserts_of_the_same_new_keys_store_each_once() {
    let app = TestApp::spawn().await;
    let batch: Vec<_> = (0..40)
        .map(|i| new_book(&format!("/works/C{i}"), &format!("C{i}")))
        .collect();
    let (a, b) = tokio::join!(
        app.datastore.upsert_books(&batch),
        app.datastore.upsert_books(&batch)
    );
    let ((a, ids_a), (b, ids_b)) = (a.expect("first"), b.expect("second"));
    assert_eq!(
        a.inserted + b.inserted,
        40,
        "each key inserted by exactly one of them"
    );
    assert_eq!(ids_a, ids_b);
    assert_eq!(app.count_books().await, 40);
}
