//! Authors, the third entity: stored by ingest from the books' author keys, linked to books
//! many-to-many (`Book.authorList`), listed (`authors`), paged per author (`Author.books`,
//! reconciled like every cached list) and read for many books at once (`authorsForBooks`).

use oponn::domain::{BookChanges, Label, NewAuthor, NewBook, SourceKey};
use serde_json::{json, Value};

use crate::helpers::{assert_batched_per_layer, assert_no_errors, new_book, Options, TestApp};

const BOOK: &str =
    "query($id: ID!) { book(id: $id) { title authors authorList { name sourceKey } } }";
const AUTHORS: &str = "query($prefix: String) {
    authors(filter: { namePrefix: $prefix }) { nodes { name sourceKey version } } }";
const AUTHOR_BOOKS: &str = "query($id: ID!, $first: Int) {
    author(id: $id) { name books(first: $first) { nodes { title } pageInfo { hasNextPage } } } }";
const FOR_BOOKS: &str =
    "query($ids: [ID!]!) { authorsForBooks(bookIds: $ids) { bookId authors { name } } }";
const RELINK: &str = "mutation($id: ID!, $authors: [ID!]) {
    updateBook(id: $id, input: { authorIds: $authors }) { id version } }";

fn author(key: &str, name: &str) -> NewAuthor {
    NewAuthor {
        source_key: SourceKey::parse(key).expect("a key"),
        name: Label::parse("name", name).expect("a name"),
    }
}

fn crediting(key: &str, title: &str, authors: &[NewAuthor]) -> NewBook {
    let mut book = new_book(key, title);
    book.author_credits = authors.to_vec();
    book
}

fn titles(body: &Value) -> Vec<String> {
    body["data"]["author"]["books"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|book| book["title"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn ingest_stores_the_credited_authors_once_and_links_their_books() {
    let app = TestApp::spawn().await;
    let (tolkien, lewis) = (
        author("OL26320A", "J.R.R. Tolkien"),
        author("OL31574A", "C.S. Lewis"),
    );
    let books = [
        crediting("/works/A1", "The Hobbit", std::slice::from_ref(&tolkien)),
        crediting("/works/A2", "Letters", &[lewis.clone(), tolkien.clone()]),
    ];
    let (_, ids) = app.datastore.upsert_books(&books).await.expect("upsert");

    let body = app.graphql(BOOK, json!({ "id": ids[1].to_string() })).await;
    assert_no_errors(&body);
    assert_eq!(
        body["data"]["book"]["authorList"],
        json!([
            { "name": "C.S. Lewis", "sourceKey": "OL31574A" },
            { "name": "J.R.R. Tolkien", "sourceKey": "OL26320A" },
        ])
    );
    // Today's names field is left as it was.
    assert_eq!(body["data"]["book"]["authors"], json!(["A. Author"]));

    // Re-running the batch writes nothing: the authors stay at version 1.
    let (summary, _) = app.datastore.upsert_books(&books).await.expect("again");
    assert_eq!((summary.inserted, summary.changed), (0, 0));
    let body = app.graphql(AUTHORS, json!({})).await;
    assert_no_errors(&body);
    assert_eq!(
        body["data"]["authors"]["nodes"],
        json!([
            { "name": "C.S. Lewis", "sourceKey": "OL31574A", "version": 1 },
            { "name": "J.R.R. Tolkien", "sourceKey": "OL26320A", "version": 1 },
        ])
    );

    // A rename reaches the cached list of authors.
    let renamed = [crediting(
        "/works/A1",
        "The Hobbit",
        &[author("OL26320A", "Tolkien")],
    )];
    app.datastore.upsert_books(&renamed).await.expect("rename");
    let body = app.graphql(AUTHORS, json!({ "prefix": "T" })).await;
    assert_eq!(
        body["data"]["authors"]["nodes"],
        json!([{ "name": "Tolkien", "sourceKey": "OL26320A", "version": 2 }])
    );
}

/// A write to a book's authors reaches every cached `Author.books` page it affects, and the
/// page equals MongoDB's answer with the cache bypassed.
#[tokio::test]
async fn a_write_to_a_books_authors_reconciles_author_books_pages() {
    let app = TestApp::spawn().await;
    let (ann, bo) = (author("OL1A", "Ann"), author("OL2A", "Bo"));
    let books: Vec<NewBook> = ["Alpha", "Beta", "Gamma"]
        .iter()
        .enumerate()
        .map(|(i, title)| crediting(&format!("/works/R{i}"), title, std::slice::from_ref(&ann)))
        .collect();
    let (_, ids) = app.datastore.upsert_books(&books).await.expect("upsert");
    app.datastore
        .upsert_authors(std::slice::from_ref(&bo))
        .await
        .expect("authors");
    let page = |author: &NewAuthor| json!({ "id": author.id().to_string(), "first": 2 });

    // Cache both authors' first pages.
    let body = app.graphql(AUTHOR_BOOKS, page(&ann)).await;
    assert_eq!(titles(&body), ["Alpha", "Beta"]);
    assert_eq!(
        body["data"]["author"]["books"]["pageInfo"]["hasNextPage"],
        true
    );
    assert_eq!(
        titles(&app.graphql(AUTHOR_BOOKS, page(&bo)).await),
        Vec::<String>::new()
    );
    // Each page is registered in the `tables` index under its author's term, which is how a
    // write to a book's `authorIds` finds it (before and after the write).
    let tables: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{{{}q}}tables", app.key_prefix))
        .arg(0)
        .arg(-1)
        .query_async(&mut app.redis().await)
        .await
        .unwrap();
    for author in [&ann, &bo] {
        let range = format!("books:authorIds=o{}:", author.id());
        assert!(
            tables.iter().any(|member| member.starts_with(&range)),
            "{range} in {tables:?}"
        );
    }

    // "Alpha" moves from Ann to Bo; "Gamma" gets both.
    let relink = |id: &oponn::domain::BookId, authors: Vec<String>| json!({ "id": id.to_string(), "authors": authors });
    for (book, authors) in [
        (&ids[0], vec![bo.id().to_string()]),
        (&ids[2], vec![ann.id().to_string(), bo.id().to_string()]),
    ] {
        assert_no_errors(&app.graphql(RELINK, relink(book, authors)).await);
    }
    let hits = app.metrics.query_cache_count("hit");
    let ann_page = app.graphql(AUTHOR_BOOKS, page(&ann)).await;
    let bo_page = app.graphql(AUTHOR_BOOKS, page(&bo)).await;
    assert_eq!(titles(&ann_page), ["Beta", "Gamma"]);
    assert_eq!(titles(&bo_page), ["Alpha", "Gamma"]);

    // Each equals MongoDB's answer with every cache bypassed.
    for author in [&ann, &bo] {
        let filter = oponn::query::Filter::Eq(
            "authorIds".into(),
            oponn::query::Scalar::Id(author.id().to_string()),
        );
        let mut stored: Vec<String> = app
            .datastore
            .store()
            .find_matching("books", &filter)
            .await
            .expect("MongoDB")
            .iter()
            .map(|d| d.get_str("title").unwrap().to_owned())
            .collect();
        stored.sort();
        stored.truncate(2);
        let served = if author == &ann { &ann_page } else { &bo_page };
        assert_eq!(titles(served), stored);
    }
    assert!(
        app.metrics.query_cache_count("hit") > hits,
        "at least one page was reconciled in place and served from the cache"
    );
    assert_eq!(app.metrics.query_cache_count("stale"), 0);

    // Taking every author off a book takes it off their pages.
    let changes = BookChanges {
        author_ids: Some(Vec::new()),
        ..BookChanges::default()
    };
    app.datastore
        .update_book(ids[2], changes, None)
        .await
        .expect("update");
    assert_eq!(
        titles(&app.graphql(AUTHOR_BOOKS, page(&bo)).await),
        ["Alpha"]
    );
}

/// Like `bookstoresForBooks`: one batched read per layer (books, then authors), whatever the
/// number of books.
#[tokio::test]
async fn authors_for_books_costs_the_same_round_trips_for_1_10_and_100_books() {
    let app = TestApp::spawn_with(Options {
        settings: vec![("OPONN_MONGODB_TIMEOUT_MS", "20000".into())],
        ..Options::default()
    })
    .await;
    let authors: Vec<NewAuthor> = (0..7)
        .map(|i| author(&format!("OL{i}A"), &format!("Author {i}")))
        .collect();
    let books: Vec<NewBook> = (0..100)
        .map(|i| {
            let credited = [authors[i % 7].clone(), authors[(i + 3) % 7].clone()];
            crediting(&format!("/works/AS{i}"), &format!("Book {i}"), &credited)
        })
        .collect();
    let (_, ids) = app.datastore.upsert_books(&books).await.expect("upsert");
    let unknown = "65a1b2c3d4e5f6a7b8c9d0e1".to_owned();
    let body = app
        .graphql(FOR_BOOKS, json!({ "ids": [ids[1].to_string(), &unknown] }))
        .await;
    assert_no_errors(&body);
    assert_eq!(
        body["data"]["authorsForBooks"],
        json!([
            { "bookId": ids[1].to_string(), "authors": [{ "name": "Author 1" }, { "name": "Author 4" }] },
            { "bookId": unknown, "authors": [] },
        ])
    );
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    assert_batched_per_layer(&app, FOR_BOOKS, "authorsForBooks", &ids, &[1, 10, 100]).await;
}

/// From Open Library's own fields: `author_key` beside `author_name`, stored in the same run
/// as the books, once per key however many books credit it.
#[tokio::test]
async fn an_ingest_run_stores_authors_by_their_open_library_keys() {
    use wiremock::{
        matchers::{method, path, query_param},
        Mock, MockServer, ResponseTemplate,
    };
    let (app, server) = (TestApp::spawn().await, MockServer::start().await);
    let docs: Vec<Value> = (0..4)
        .map(|n| {
            json!({
                "key": format!("/works/OL{n}W"),
                "title": format!("Work {n}"),
                "author_name": ["Ann Author", "Bo Writer"],
                "author_key": ["OL1A", if n % 2 == 0 { "OL2A" } else { "bad key" }],
            })
        })
        .collect();
    Mock::given(method("GET"))
        .and(path("/search.json"))
        .and(query_param("page", "1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "numFound": 4, "start": 0, "docs": docs })),
        )
        .mount(&server)
        .await;
    let settings = crate::helpers::source_settings(&server.uri());
    let summary = app
        .ingest(&settings, "q", oponn::ingest::Scope::All)
        .await
        .expect("the run succeeds");
    assert_eq!(summary.inserted, 4);
    let body = app.graphql(AUTHORS, json!({})).await;
    assert_eq!(
        body["data"]["authors"]["nodes"],
        json!([
            { "name": "Ann Author", "sourceKey": "OL1A", "version": 1 },
            { "name": "Bo Writer", "sourceKey": "OL2A", "version": 1 },
        ])
    );
    let ann = author("OL1A", "Ann Author").id().to_string();
    let body = app
        .graphql(AUTHOR_BOOKS, json!({ "id": ann, "first": 10 }))
        .await;
    assert_eq!(titles(&body), ["Work 0", "Work 1", "Work 2", "Work 3"]);
    // A key that does not parse credits no one; the name stays in `authors`.
    let book = app.books_in_mongodb().await["/works/OL1W"].clone();
    assert_eq!(book.get_array("authorIds").unwrap().len(), 1);
    assert_eq!(book.get_array("authors").unwrap().len(), 2);
}
