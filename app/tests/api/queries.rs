//! List queries and the query-result cache, through the API: paging, cache hits, and writes
//! that reconcile cached results in place (no MongoDB query afterwards) or drop them.

use serde_json::{json, Value};

use crate::helpers::{assert_no_errors, error_code, TestApp};

const BOOKS: &str = "query($filter: BookFilter, $first: Int, $after: String) {
    books(filter: $filter, first: $first, after: $after) {
        nodes { id title authors version } pageInfo { hasNextPage endCursor } } }";
const STORE_BOOKS: &str =
    "query($id: ID!) { bookstore(id: $id) { name books(first: 10) { nodes { title } } } }";
const UPDATE: &str = "mutation($id: ID!, $input: UpdateBookInput!) { updateBook(id: $id, input: $input) { id version } }";
const CREATE_STORE: &str = "mutation($name: String!, $city: String!) {
    createBookstore(input: { name: $name, city: $city }) { id } }";
const MOVE: &str =
    "mutation($book: ID!, $store: ID) { moveBook(bookId: $book, bookstoreId: $store) { id } }";

async fn create(app: &TestApp, key: &str, title: &str, author: &str) -> Value {
    let body = app
        .graphql(
            "mutation($input: CreateBookInput!) { createBook(input: $input) { id title } }",
            json!({ "input": { "sourceKey": key, "title": title, "authors": [author] } }),
        )
        .await;
    assert_no_errors(&body);
    body["data"]["createBook"].clone()
}

async fn titles(app: &TestApp, filter: Value, first: i64) -> (Vec<String>, Value) {
    let body = app
        .graphql(BOOKS, json!({ "filter": filter, "first": first }))
        .await;
    assert_no_errors(&body);
    let books = &body["data"]["books"];
    let titles = books["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["title"].as_str().unwrap().to_owned())
        .collect();
    (titles, books["pageInfo"].clone())
}

#[tokio::test]
async fn pages_follow_their_cursors_to_the_end() {
    let app = TestApp::spawn().await;
    for (i, title) in ["E", "A", "D", "B", "C"].iter().enumerate() {
        create(&app, &format!("/works/P{i}"), title, "Le Guin").await;
    }
    create(&app, "/works/other", "Other", "Someone Else").await;

    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let body = app
            .graphql(
                BOOKS,
                json!({ "filter": { "author": "Le Guin" }, "first": 2, "after": after }),
            )
            .await;
        assert_no_errors(&body);
        let page = &body["data"]["books"];
        seen.extend(
            page["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["title"].as_str().unwrap().to_owned()),
        );
        if !page["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, ["A", "B", "C", "D", "E"]);
}

/// Relay connections: `edges { cursor node }` carry the same records as `nodes`, warm or cold;
/// `startCursor` and `endCursor` are the first and last edges' cursors, and any edge's cursor
/// reads on from that record; lists page forward, so `hasPreviousPage` is false.
#[tokio::test]
async fn edges_carry_the_nodes_with_cursors_that_page_on_from_each() {
    const EDGES: &str = "query($first: Int, $after: String, $filter: BookFilter) {
        books(filter: $filter, first: $first, after: $after) {
            nodes { title }
            edges { cursor node { title bookstore { name } } }
            pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";
    let app = TestApp::spawn().await;
    for title in ["Edge A", "Edge B", "Edge C", "Edge D"] {
        create(&app, &format!("/works/EDGE{}", &title[5..]), title, "Edgar").await;
    }
    let filter = json!({ "author": "Edgar" });
    for _ in ["cold", "warm"] {
        let body = app
            .graphql(EDGES, json!({ "first": 3, "filter": filter }))
            .await;
        assert_no_errors(&body);
        let page = &body["data"]["books"];
        let edges = page["edges"].as_array().expect("edges");
        let from_edges: Vec<&Value> = edges.iter().map(|e| &e["node"]["title"]).collect();
        let from_nodes: Vec<&Value> = page["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| &n["title"])
            .collect();
        assert_eq!(from_edges, from_nodes);
        assert_eq!(
            from_nodes,
            [&json!("Edge A"), &json!("Edge B"), &json!("Edge C")]
        );
        let info = &page["pageInfo"];
        assert_eq!(info["hasNextPage"], true);
        assert_eq!(info["hasPreviousPage"], false);
        assert_eq!(info["startCursor"], edges[0]["cursor"]);
        assert_eq!(info["endCursor"], edges[2]["cursor"]);

        let after_first = app
            .graphql(
                EDGES,
                json!({ "first": 3, "filter": filter, "after": edges[0]["cursor"] }),
            )
            .await;
        assert_no_errors(&after_first);
        let titles: Vec<&Value> = after_first["data"]["books"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| &n["title"])
            .collect();
        assert_eq!(
            titles,
            [&json!("Edge B"), &json!("Edge C"), &json!("Edge D")]
        );
    }
}

#[tokio::test]
async fn a_cached_page_is_served_without_mongodb() {
    let app = TestApp::spawn().await;
    create(&app, "/works/H1", "Hit", "Cached").await;
    let first = titles(&app, json!({ "author": "Cached" }), 10).await;
    let finds = app.mongo_finds();
    let second = titles(&app, json!({ "author": "Cached" }), 10).await;
    assert_eq!(first, second);
    assert_eq!(
        app.mongo_finds() - finds,
        0,
        "the page and its books came from Redis"
    );
}

#[tokio::test]
async fn a_created_book_enters_a_cached_page_without_a_recompute() {
    let app = TestApp::spawn().await;
    create(&app, "/works/E1", "B", "Entering").await;
    create(&app, "/works/E2", "D", "Entering").await;
    let (before, _) = titles(&app, json!({ "author": "Entering" }), 10).await;
    assert_eq!(before, ["B", "D"]);

    create(&app, "/works/E3", "C", "Entering").await;
    let finds = app.mongo_finds();
    let (after, info) = titles(&app, json!({ "author": "Entering" }), 10).await;
    assert_eq!(after, ["B", "C", "D"]);
    assert_eq!(info["hasNextPage"], false);
    assert_eq!(
        app.mongo_finds() - finds,
        0,
        "the write reconciled the cached page in place"
    );
}

#[tokio::test]
async fn a_book_that_changes_author_leaves_one_page_and_enters_another() {
    let app = TestApp::spawn().await;
    let moving = create(&app, "/works/M1", "Moving", "Old Author").await;
    create(&app, "/works/M2", "Staying", "Old Author").await;
    create(&app, "/works/M3", "Already", "New Author").await;
    titles(&app, json!({ "author": "Old Author" }), 10).await;
    titles(&app, json!({ "author": "New Author" }), 10).await;

    let body = app
        .graphql(
            UPDATE,
            json!({ "id": moving["id"], "input": { "authors": ["New Author"] } }),
        )
        .await;
    assert_no_errors(&body);
    let finds = app.mongo_finds();
    assert_eq!(
        titles(&app, json!({ "author": "Old Author" }), 10).await.0,
        ["Staying"]
    );
    assert_eq!(
        titles(&app, json!({ "author": "New Author" }), 10).await.0,
        ["Already", "Moving"]
    );
    assert_eq!(
        app.mongo_finds() - finds,
        0,
        "both pages reconciled in place"
    );
}

#[tokio::test]
async fn a_member_leaving_a_full_page_drops_it_and_the_next_read_is_right() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for title in ["A", "B", "C"] {
        ids.push(create(&app, &format!("/works/F{title}"), title, "Full").await["id"].clone());
    }
    let (page, info) = titles(&app, json!({ "author": "Full" }), 2).await;
    assert_eq!(
        (page, info["hasNextPage"].clone()),
        (vec!["A".to_owned(), "B".to_owned()], json!(true))
    );

    let body = app
        .graphql(
            "mutation($id: ID!) { deleteBook(id: $id) { id } }",
            json!({ "id": ids[0] }),
        )
        .await;
    assert_no_errors(&body);
    let finds = app.mongo_finds();
    let (page, info) = titles(&app, json!({ "author": "Full" }), 2).await;
    assert_eq!(page, ["B", "C"]);
    assert_eq!(info["hasNextPage"], false);
    assert!(
        app.mongo_finds() - finds >= 1,
        "the dropped page was recomputed"
    );
}

#[tokio::test]
async fn moving_a_book_reaches_both_stores_cached_lists() {
    let app = TestApp::spawn().await;
    let store = |name: &'static str| {
        let app = &app;
        async move {
            let body = app
                .graphql(CREATE_STORE, json!({ "name": name, "city": "Lyon" }))
                .await;
            assert_no_errors(&body);
            body["data"]["createBookstore"]["id"].clone()
        }
    };
    let (left, right) = (store("Left Bank").await, store("Right Bank").await);
    let book = create(&app, "/works/MV", "Wanderer", "Anyone").await;
    let listed = |id: Value| {
        let app = &app;
        async move {
            let body = app.graphql(STORE_BOOKS, json!({ "id": id })).await;
            assert_no_errors(&body);
            body["data"]["bookstore"]["books"]["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["title"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    app.graphql(MOVE, json!({ "book": book["id"], "store": left }))
        .await;
    assert_eq!(listed(left.clone()).await, ["Wanderer"]);
    assert!(listed(right.clone()).await.is_empty());

    assert_no_errors(
        &app.graphql(MOVE, json!({ "book": book["id"], "store": right }))
            .await,
    );
    let finds = app.mongo_finds();
    assert!(listed(left).await.is_empty());
    assert_eq!(listed(right).await, ["Wanderer"]);
    assert_eq!(
        app.mongo_finds() - finds,
        0,
        "both store pages reconciled in place"
    );
}

#[tokio::test]
async fn renaming_a_store_moves_it_between_cached_name_pages() {
    let app = TestApp::spawn().await;
    let body = app
        .graphql(
            CREATE_STORE,
            json!({ "name": "Alpha Books", "city": "Rome" }),
        )
        .await;
    let id = body["data"]["createBookstore"]["id"].clone();
    let names = |prefix: &'static str| {
        let app = &app;
        async move {
            let body = app
                .graphql(
                    "query($p: String) { bookstores(filter: { namePrefix: $p }) { nodes { name } } }",
                    json!({ "p": prefix }),
                )
                .await;
            assert_no_errors(&body);
            body["data"]["bookstores"]["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(names("ALPHA").await, ["Alpha Books"]);
    assert!(names("beta").await.is_empty());
    let renamed = app
        .graphql(
            "mutation($id: ID!) { updateBookstore(id: $id, input: { name: \"Beta Books\" }) { name } }",
            json!({ "id": id }),
        )
        .await;
    assert_no_errors(&renamed);
    assert!(names("ALPHA").await.is_empty());
    assert_eq!(names("beta").await, ["Beta Books"]);
}

#[tokio::test]
async fn bad_page_arguments_are_bad_user_input() {
    let app = TestApp::spawn().await;
    for variables in [
        json!({ "first": 0 }),
        json!({ "first": 101 }),
        json!({ "after": "garbage" }),
        json!({ "filter": { "bookstoreId": "not-an-id" } }),
    ] {
        let body = app.graphql(BOOKS, variables.clone()).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{variables}: {body}");
    }
}

/// Invariant 4: a cached result served by one instance reflects a write another instance
/// replied to, through the shared Redis.
#[tokio::test]
async fn a_write_on_one_instance_is_reflected_in_results_the_other_serves() {
    let reader = TestApp::spawn().await;
    let writer = reader.spawn_sibling().await;
    let book = create(&writer, "/works/I4", "Shared", "Two Instances").await;
    assert_eq!(
        titles(&reader, json!({ "author": "Two Instances" }), 10)
            .await
            .0,
        ["Shared"]
    );
    let body = writer
        .graphql(
            UPDATE,
            json!({ "id": book["id"], "input": { "title": "Shared, revised" } }),
        )
        .await;
    assert_no_errors(&body);
    create(&writer, "/works/I4b", "Another", "Two Instances").await;

    let finds = reader.mongo_finds();
    assert_eq!(
        titles(&reader, json!({ "author": "Two Instances" }), 10)
            .await
            .0,
        ["Another", "Shared, revised"]
    );
    assert_eq!(
        reader.mongo_finds() - finds,
        0,
        "served from the reconciled cache"
    );
}

/// A list query paused between its MongoDB query and its result fill while a write commits:
/// the fill is refused, so the cache never holds a result that misses the write.
#[tokio::test]
async fn a_result_computed_before_a_write_is_never_cached_after_it() {
    let app = TestApp::spawn().await;
    create(&app, "/works/R1", "Before", "Racing").await;
    let mut pause = app.datastore.checkpoints().pause_before_result_fill();
    let reader = tokio::spawn({
        let datastore = app.datastore.clone();
        async move {
            let filter = oponn::query::Filter::Eq(
                "authors".into(),
                oponn::query::Scalar::Str("Racing".into()),
            );
            datastore.books_page(filter, 10, None).await
        }
    });
    pause.reached().await;
    create(&app, "/works/R2", "During", "Racing").await;
    pause.resume();
    let stale = reader.await.unwrap().expect("the read succeeds");
    assert_eq!(
        stale.items.len(),
        1,
        "the reader's own answer predates the write"
    );

    assert_eq!(
        app.metrics.query_cache_count("refused"),
        1,
        "its fill was refused"
    );
    let (page, _) = titles(&app, json!({ "author": "Racing" }), 10).await;
    assert_eq!(page, ["Before", "During"]);
}

/// No N+1: every store's `books` page in a response is looked up together, so a warm
/// `bookstores { books }` costs the same Redis round trips for 2 stores as for 6.
#[tokio::test]
async fn the_books_of_many_stores_cost_the_same_round_trips_as_of_two() {
    let app = TestApp::spawn().await;
    for i in 0..6 {
        let body = app
            .graphql(
                CREATE_STORE,
                json!({ "name": format!("Branch {i}"), "city": "Bern" }),
            )
            .await;
        let store = body["data"]["createBookstore"]["id"].clone();
        let book = create(
            &app,
            &format!("/works/BR{i}"),
            &format!("Book {i}"),
            "Anyone",
        )
        .await;
        assert_no_errors(
            &app.graphql(MOVE, json!({ "book": book["id"], "store": store }))
                .await,
        );
    }
    const NESTED: &str =
        "query($n: Int!) { bookstores(first: $n) { nodes { name books { nodes { title } } } } }";
    let mut costs = Vec::new();
    for n in [2, 6] {
        let cold = app.graphql(NESTED, json!({ "n": n })).await;
        assert_no_errors(&cold);
        let (trips, finds) = (app.redis_round_trips(), app.mongo_finds());
        let warm = app.graphql(NESTED, json!({ "n": n })).await;
        assert_eq!(warm, cold);
        let stores = warm["data"]["bookstores"]["nodes"].as_array().unwrap();
        assert_eq!(stores.len(), n as usize);
        assert!(stores
            .iter()
            .all(|s| s["books"]["nodes"].as_array().unwrap().len() == 1));
        assert_eq!(app.mongo_finds() - finds, 0, "warm: no MongoDB query");
        costs.push(app.redis_round_trips() - trips);
    }
    assert_eq!(
        costs[0], costs[1],
        "the same round trips for 2 and 6 stores"
    );
    assert_eq!(
        costs[0], 4,
        "stores page, its stores, the books pages, their books"
    );
}
