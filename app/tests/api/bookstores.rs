//! Bookstores: unique normalised names, the book-to-store relation, and batched reads.

use oponn::domain::NewBook;
use serde_json::{json, Value};

use crate::helpers::{
    assert_batched_per_layer, assert_no_errors, error_code, new_book, Options, TestApp,
};

const CREATE: &str = "mutation($name: String!, $city: String!) {
    createBookstore(input: { name: $name, city: $city }) { id name city version } }";
const MOVE: &str = "mutation($book: ID!, $store: ID) { moveBook(bookId: $book, bookstoreId: $store) { id bookstoreId version } }";
const FOR_BOOKS: &str = "query($ids: [ID!]!) { bookstoresForBooks(bookIds: $ids) { id name } }";

async fn create_store(app: &TestApp, name: &str, city: &str) -> Value {
    let body = app
        .graphql(CREATE, json!({ "name": name, "city": city }))
        .await;
    assert_no_errors(&body);
    body["data"]["createBookstore"].clone()
}

#[tokio::test]
async fn look_alike_names_made_with_invisible_characters_collide_or_are_refused() {
    let app = TestApp::spawn().await;
    create_store(&app, "Powell's Books", "Portland").await;
    for invisible in ['\u{200B}', '\u{200D}', '\u{00AD}', '\u{2060}', '\u{FEFF}'] {
        let look_alike = format!("Powell's{invisible} Books");
        let body = app
            .graphql(CREATE, json!({ "name": look_alike, "city": "Portland" }))
            .await;
        assert_eq!(
            error_code(&body),
            "CONFLICT",
            "U+{:04X}: {body}",
            invisible as u32
        );
    }
    for refused in [
        "Powell's\u{202E} Books",
        "Powell's\u{200F} Books",
        "\u{200B}\u{200B}",
        "\u{2800}",
    ] {
        let body = app
            .graphql(CREATE, json!({ "name": refused, "city": "Portland" }))
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{refused:?}: {body}");
    }
    let stores = app
        .graphql_as(None, "{ bookstores { nodes { name } } }", json!({}))
        .await;
    assert_eq!(
        stores["data"]["bookstores"]["nodes"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[tokio::test]
async fn names_that_normalise_alike_collide_and_the_conflict_names_the_holder() {
    let app = TestApp::spawn().await;
    let powells = create_store(&app, "Powell's Books", "Portland").await;
    for variant in [" powell's  BOOKS", "ＰＯＷＥＬＬ'Ｓ books"] {
        let body = app
            .graphql(CREATE, json!({ "name": variant, "city": "Elsewhere" }))
            .await;
        assert_eq!(error_code(&body), "CONFLICT", "{variant}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(
            message.contains(powells["id"].as_str().unwrap()),
            "{message}"
        );
    }
    assert_eq!(
        powells["name"], "Powell's Books",
        "the display name keeps its spelling"
    );
}

#[tokio::test]
async fn concurrent_creates_of_one_name_leave_exactly_one_store() {
    let app = TestApp::spawn().await;
    let variants = [
        "Powell's Books",
        "powell's books",
        " POWELL'S BOOKS ",
        "Powell's  Books",
    ];
    let attempts = futures::future::join_all((0..12).map(|i| {
        app.graphql(
            CREATE,
            json!({ "name": variants[i % 4], "city": "Portland" }),
        )
    }))
    .await;
    let created = attempts
        .iter()
        .filter(|body| body.get("errors").is_none())
        .count();
    let conflicts = attempts
        .iter()
        .filter(|body| body.get("errors").is_some() && error_code(body) == "CONFLICT")
        .count();
    assert_eq!((created, conflicts), (1, 11));
    let found = app
        .graphql(
            "{ bookstoreByName(name: \"POWELL'S BOOKS\") { city } }",
            json!({}),
        )
        .await;
    assert_eq!(found["data"]["bookstoreByName"]["city"], "Portland");
}

#[tokio::test]
async fn a_rename_into_a_taken_name_is_a_conflict_and_a_free_one_succeeds() {
    let app = TestApp::spawn().await;
    create_store(&app, "Strand", "New York").await;
    let other = create_store(&app, "City Lights", "San Francisco").await;
    let rename = "mutation($id: ID!, $name: String!) { updateBookstore(id: $id, input: { name: $name }) { name version } }";
    let clash = app
        .graphql(rename, json!({ "id": other["id"], "name": "STRAND" }))
        .await;
    assert_eq!(error_code(&clash), "CONFLICT");
    let renamed = app
        .graphql(
            rename,
            json!({ "id": other["id"], "name": "City Lights Booksellers" }),
        )
        .await;
    assert_no_errors(&renamed);
    assert_eq!(renamed["data"]["updateBookstore"]["version"], 2);
}

#[tokio::test]
async fn a_book_cannot_move_to_a_store_that_does_not_exist() {
    let app = TestApp::spawn().await;
    let book = app.create_book("/works/MV1", "Mover").await;
    let body = app
        .graphql(
            MOVE,
            json!({ "book": book["id"], "store": "65a1b2c3d4e5f6a7b8c9d0e1" }),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    let body = app
        .graphql(MOVE, json!({ "book": book["id"], "store": "nope" }))
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
}

#[tokio::test]
async fn a_store_that_holds_books_cannot_be_deleted_until_they_move() {
    let app = TestApp::spawn().await;
    let store = create_store(&app, "Shakespeare and Company", "Paris").await;
    let book = app.create_book("/works/SC1", "Ulysses").await;
    assert_no_errors(
        &app.graphql(MOVE, json!({ "book": book["id"], "store": store["id"] }))
            .await,
    );

    let delete = "mutation($id: ID!) { deleteBookstore(id: $id) { name } }";
    let refused = app.graphql(delete, json!({ "id": store["id"] })).await;
    assert_eq!(error_code(&refused), "CONFLICT");

    assert_no_errors(
        &app.graphql(MOVE, json!({ "book": book["id"], "store": null }))
            .await,
    );
    let deleted = app.graphql(delete, json!({ "id": store["id"] })).await;
    assert_no_errors(&deleted);
    let gone = app
        .graphql(
            "query($id: ID!) { bookstore(id: $id) { id } }",
            json!({ "id": store["id"] }),
        )
        .await;
    assert!(gone["data"]["bookstore"].is_null());
}

#[tokio::test]
async fn bookstores_for_books_answers_in_order_with_nulls() {
    let app = TestApp::spawn().await;
    let portland = create_store(&app, "Powell's Books", "Portland").await;
    let paris = create_store(&app, "Shakespeare and Company", "Paris").await;
    let a = app.create_book("/works/B1", "A").await;
    let b = app.create_book("/works/B2", "B").await;
    let c = app.create_book("/works/B3", "C").await;
    app.graphql(MOVE, json!({ "book": a["id"], "store": portland["id"] }))
        .await;
    app.graphql(MOVE, json!({ "book": b["id"], "store": paris["id"] }))
        .await;
    let unknown = "65a1b2c3d4e5f6a7b8c9d0e1";
    let body = app
        .graphql(
            FOR_BOOKS,
            json!({ "ids": [b["id"], unknown, a["id"], c["id"]] }),
        )
        .await;
    assert_no_errors(&body);
    let names: Vec<Value> = body["data"]["bookstoresForBooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|store| store["name"].clone())
        .collect();
    assert_eq!(
        names,
        [
            json!("Shakespeare and Company"),
            Value::Null,
            json!("Powell's Books"),
            Value::Null
        ]
    );
}

/// The brief's test at scale: 1, 10 and 1,000 books cost the same round trips.
#[tokio::test]
async fn bookstores_for_books_costs_the_same_round_trips_for_1_10_and_1000_books() {
    // One bulk write of 1,000 books takes FerretDB longer than the suite's short timeout.
    let app = TestApp::spawn_with(Options {
        settings: vec![("OPONN_MONGODB_TIMEOUT_MS", "20000".into())],
        ..Options::default()
    })
    .await;
    let mut stores = Vec::new();
    for i in 0..5 {
        stores.push(create_store(&app, &format!("Store {i}"), "Lisbon").await);
    }
    let books: Vec<NewBook> = (0..1000)
        .map(|i| new_book(&format!("/works/SCALE{i}"), &format!("Book {i}")))
        .collect();
    let (_, ids) = app.datastore.upsert_books(&books).await.expect("upsert");
    // Stock a sample spread over the whole range: the first ten in pairs, then every 100th.
    for (i, id) in ids.iter().enumerate() {
        if (i < 10 && i % 2 == 0) || i % 100 == 0 {
            let store = stores[i % 5]["id"].as_str().unwrap().parse().unwrap();
            app.datastore
                .move_book(*id, Some(store), None)
                .await
                .expect("move");
        }
    }
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    assert_batched_per_layer(&app, FOR_BOOKS, "bookstoresForBooks", &ids, &[1, 10, 1000]).await;
}

/// No N+1: `Book.bookstore` for 50 books reads the stores with one batched call.
#[tokio::test]
async fn book_bookstore_is_batched_across_a_response() {
    let app = TestApp::spawn().await;
    let mut stores = Vec::new();
    for i in 0..3 {
        stores.push(create_store(&app, &format!("Shop {i}"), "Oslo").await);
    }
    let mut ids = Vec::new();
    for i in 0..50 {
        let book = app
            .create_book(&format!("/works/N{i}"), &format!("N{i}"))
            .await;
        app.graphql(
            MOVE,
            json!({ "book": book["id"], "store": stores[i % 3]["id"] }),
        )
        .await;
        ids.push(book["id"].clone());
    }
    oponn_tests::delete_app_keys(&oponn_tests::Stack::from_env().redis_url, &app.key_prefix)
        .await
        .expect("flush this test's keys");
    let (finds, trips) = (app.mongo_finds(), app.redis_round_trips());
    let body = app
        .graphql(
            "query($ids: [ID!]!) { booksByIds(ids: $ids) { title bookstore { name } } }",
            json!({ "ids": ids }),
        )
        .await;
    assert_no_errors(&body);
    assert!(body["data"]["booksByIds"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["bookstore"]["name"].is_string()));
    assert_eq!(
        app.mongo_finds() - finds,
        2,
        "one query for the books, one for their stores"
    );
    assert_eq!(
        app.redis_round_trips() - trips,
        4,
        "lookup and fill, per layer"
    );
}

const DELETE: &str = "mutation($id: ID!, $to: ID, $drop: Boolean) {
    deleteBookstore(id: $id, moveBooksTo: $to, deleteBooks: $drop) { id } }";
const HOLDINGS: &str = "query($id: ID!) { bookstore(id: $id) { books { nodes { title } } } }";

async fn holdings(app: &TestApp, store: &Value) -> Vec<String> {
    let body = app.graphql(HOLDINGS, json!({ "id": store["id"] })).await;
    assert_no_errors(&body);
    body["data"]["bookstore"]["books"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["title"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn deleting_a_store_can_move_its_books_to_another() {
    let app = TestApp::spawn().await;
    let (closing, staying) = (
        create_store(&app, "Closing Down", "Leeds").await,
        create_store(&app, "Staying Open", "Leeds").await,
    );
    for title in ["One", "Two"] {
        let book = app.create_book(&format!("/works/{title}"), title).await;
        assert_no_errors(
            &app.graphql(MOVE, json!({ "book": book["id"], "store": closing["id"] }))
                .await,
        );
    }
    assert!(
        holdings(&app, &staying).await.is_empty(),
        "cached empty before the move"
    );

    let both = app
        .graphql(
            DELETE,
            json!({ "id": closing["id"], "to": staying["id"], "drop": true }),
        )
        .await;
    assert_eq!(error_code(&both), "BAD_USER_INPUT");
    let to_itself = app
        .graphql(DELETE, json!({ "id": closing["id"], "to": closing["id"] }))
        .await;
    assert_eq!(error_code(&to_itself), "BAD_USER_INPUT");

    let moved = app
        .graphql(DELETE, json!({ "id": closing["id"], "to": staying["id"] }))
        .await;
    assert_no_errors(&moved);
    assert_eq!(holdings(&app, &staying).await, ["One", "Two"]);
    let gone = app.graphql(HOLDINGS, json!({ "id": closing["id"] })).await;
    assert_eq!(gone["data"]["bookstore"], Value::Null);
}

#[tokio::test]
async fn deleting_a_store_can_delete_its_books_with_it() {
    let app = TestApp::spawn().await;
    let store = create_store(&app, "Last Chapter", "York").await;
    let book = app.create_book("/works/LC", "Final").await;
    assert_no_errors(
        &app.graphql(MOVE, json!({ "book": book["id"], "store": store["id"] }))
            .await,
    );
    let refused = app.graphql(DELETE, json!({ "id": store["id"] })).await;
    assert_eq!(error_code(&refused), "CONFLICT");

    assert_no_errors(
        &app.graphql(DELETE, json!({ "id": store["id"], "drop": true }))
            .await,
    );
    let read = app
        .graphql(
            "query($id: ID!) { book(id: $id) { id } }",
            json!({ "id": book["id"] }),
        )
        .await;
    assert_eq!(
        read["data"]["book"],
        Value::Null,
        "the book went with its store"
    );
    assert_eq!(app.count_books().await, 0);
}
