//! Ingest against a local HTTP server (wiremock) standing in for Open Library: pagination,
//! retries (429 with `Retry-After`, 500, timeouts), refusals, malformed pages, invalid records,
//! reruns. Each test asserts the run's summary and what MongoDB holds.

use std::time::{Duration, Instant};

use oponn::ingest::{self, IngestError, Progress, Request, Scope};
use oponn::source::{OpenLibrary, SourceError};
use serde_json::{json, Value};
use wiremock::{
    matchers::{method, path, query_param},
    Mock, MockServer, ResponseTemplate,
};

use crate::helpers::{source_settings, Options, TestApp};

/// A search page in Open Library's format: works `first..last` of `found`.
fn page(found: usize, works: std::ops::Range<usize>) -> Value {
    let docs: Vec<Value> = works
        .map(|n| {
            json!({
                "key": format!("/works/OL{n}W"),
                "title": format!("Work {n}"),
                "author_name": ["Ann Author"],
                "first_publish_year": 1900 + n,
                "subject": ["Testing"],
            })
        })
        .collect();
    json!({ "numFound": found, "start": 0, "numFoundExact": true, "docs": docs })
}

async fn serve_page(server: &MockServer, number: u32, body: Value) {
    Mock::given(method("GET"))
        .and(path("/search.json"))
        .and(query_param("page", number.to_string()))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

/// Three pages of ten: 25 works.
async fn three_pages(server: &MockServer) {
    serve_page(server, 1, page(25, 0..10)).await;
    serve_page(server, 2, page(25, 10..20)).await;
    serve_page(server, 3, page(25, 20..25)).await;
}

#[tokio::test]
async fn pages_are_followed_to_the_end_of_the_results() {
    let (app, server) = (TestApp::spawn().await, MockServer::start().await);
    three_pages(&server).await;
    let summary = app
        .ingest(&source_settings(&server.uri()), "anything", Scope::All)
        .await
        .expect("the run succeeds");
    assert_eq!(
        (summary.pages, summary.fetched, summary.inserted),
        (3, 25, 25)
    );
    assert_eq!(
        (summary.changed, summary.unchanged, summary.skipped_total()),
        (0, 0, 0)
    );
    let stored = app.books_in_mongodb().await;
    assert_eq!(stored.len(), 25);
    assert_eq!(stored["/works/OL24W"].get_str("title").unwrap(), "Work 24");
    assert_eq!(stored["/works/OL24W"].get_i64("version").unwrap(), 1);
}

#[tokio::test]
async fn limits_and_pages_cap_the_run() {
    let (app, server) = (TestApp::spawn().await, MockServer::start().await);
    three_pages(&server).await;
    let settings = source_settings(&server.uri());
    let summary = app
        .ingest(&settings, "q", Scope::Records(12))
        .await
        .unwrap();
    assert_eq!((summary.pages, summary.inserted), (2, 12));
    assert_eq!(app.books_in_mongodb().await.len(), 12);
}

#[tokio::test]
async fn a_429_is_retried_after_the_wait_it_asks_for() {
    let (app, server) = (TestApp::spawn().await, MockServer::start().await);
    Mock::given(path("/search.json"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    serve_page(&server, 1, page(3, 0..3)).await;
    let started = Instant::now();
    let summary = app
        .ingest(&source_settings(&server.uri()), "q", Scope::All)
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    assert_eq!((summary.retries, summary.inserted), (1, 3));
    assert_eq!(app.books_in_mongodb().await.len(), 3);
}

#[tokio::test]
async fn a_500_then_success_is_retried() {
    let (app, server) = (TestApp::spawn().await, MockServer::start().await);
    Mock::given(path("/search.json"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    serve_page(&server, 1, page(4, 0..4)).await;
    let summary = app
        .ingest(&source_settings(&server.uri()), "q", Scope::All)
        .await
        .unwrap();
    assert_eq!((summary.retries, summary.inserted), (2, 4));
    assert_eq!(app.books_in_mongodb().await.len(), 4);
}

#[tokio::test]
async fn a_timeout_then_success_is_retried() {
    let (app, server) = (TestApp::spawn().await, MockServer::start().await);
    Mock::given(path("/search.json"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(page(2, 0..2))
                .set_delay(Duration::from_secs(30)),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    serve_page(&server, 1, page(2, 0..2)).await;
    let mut settings = source_settings(&server.uri());
    // Long enough that the prompt second answer cannot time out on a loaded machine.
    settings.timeout = Duration::from_secs(1);
    let summary = app.ingest(&settings, "q", Scope::All).await.unwrap();
    assert_eq!((summary.retries, summary.inserted), (1, 2));
    assert_eq!(app.books_in_mongodb().await.len(), 2);
}

#[tokio::test]
async fn a_permanent_4xx_fails_at_once_without_retrying() {
    let (app, server) = (TestApp::spawn().await, MockServer::start().await);
    Mock::given(path("/search.json"))
        .respond_with(ResponseTemplate::new(403))
        .expect(1)
        .mount(&server)
        .await;
    let failed = app
        .ingest(&source_settings(&server.uri()), "q", Scope::All)
        .await
        .expect_err("a refusal fails the run");
    assert!(
        matches!(
            failed.error,
            IngestError::Source(SourceError::Refused { status: 403, .. })
        ),
        "{failed}"
    );
    assert_eq!(failed.summary.retries, 0);
    assert!(app.books_in_mongodb().await.is_empty());
}

#[tokio::test]
async fn a_malformed_page_fails_the_run_with_a_clear_error() {
    let (app, server) = (TestApp::spawn().await, MockServer::start().await);
    Mock::given(path("/search.json"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>maintenance</html>"))
        .mount(&server)
        .await;
    let failed = app
        .ingest(&source_settings(&server.uri()), "q", Scope::All)
        .await
        .expect_err("not a search page");
    assert!(matches!(
        failed.error,
        IngestError::Source(SourceError::Malformed { page: 1, .. })
    ));
    assert!(
        failed.to_string().contains("not a search result page"),
        "{failed}"
    );
    assert!(app.books_in_mongodb().await.is_empty());
}

#[tokio::test]
async fn malformed_json_mid_run_fails_without_retrying_and_keeps_the_pages_before_it() {
    let (app, server) = (TestApp::spawn().await, MockServer::start().await);
    serve_page(&server, 1, page(30, 0..10)).await;
    Mock::given(path("/search.json"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"{"numFound": 30, "docs": [{"key": "/works/OL10W""#,
            "application/json",
        ))
        .expect(1)
        .mount(&server)
        .await;
    serve_page(&server, 3, page(30, 20..30)).await;
    let mut settings = source_settings(&server.uri());
    settings.concurrency = 1;
    let failed = app
        .ingest(&settings, "q", Scope::All)
        .await
        .expect_err("page 2 is cut short");
    assert!(
        matches!(
            failed.error,
            IngestError::Source(SourceError::Malformed { page: 2, .. })
        ),
        "{failed}"
    );
    assert!(
        failed
            .to_string()
            .contains("page 2 is not a search result page"),
        "{failed}"
    );
    assert_eq!(
        (
            failed.summary.pages,
            failed.summary.inserted,
            failed.summary.retries
        ),
        (1, 10, 0)
    );
    let stored = app.books_in_mongodb().await;
    assert_eq!(stored.len(), 10, "page 1 is kept, page 3 never started");
    assert!(stored.contains_key("/works/OL9W"));
}

#[tokio::test]
async fn invalid_records_are_skipped_and_counted_by_reason() {
    let (app, server) = (TestApp::spawn().await, MockServer::start().await);
    let body = json!({ "numFound": 6, "docs": [
        { "key": "/works/OL1W", "title": "Good", "author_name": ["Ann"], "first_publish_year": 1999 },
        { "key": "/works/OL2W" },
        { "title": "No key" },
        { "key": "/authors/OL3A", "title": "Not a work" },
        { "key": "/works/OL4W", "title": "   " },
        { "key": "/works/OL5W", "title": "Also good, with a \"string\" year", "first_publish_year": "1987" },
        { "key": "/works/OL6W", "title": { "not": "text" } },
        { "key": "/works/OL7W", "title": "A year that is not one", "first_publish_year": "soon" },
        { "key": "/works/OL8W", "title": 1984, "author_name": ["George Orwell"], "subject": [] },
    ]});
    serve_page(&server, 1, body).await;
    let summary = app
        .ingest(&source_settings(&server.uri()), "q", Scope::All)
        .await
        .unwrap();
    assert_eq!((summary.fetched, summary.skipped_total()), (9, 6));
    assert_eq!(summary.skipped["missing title"], 1);
    assert_eq!(summary.skipped["missing key"], 1);
    assert_eq!(summary.skipped["invalid key"], 1);
    assert_eq!(summary.skipped["invalid title"], 1);
    assert_eq!(summary.skipped["unreadable record"], 1);
    assert_eq!(summary.skipped["invalid year"], 1);
    let stored = app.books_in_mongodb().await;
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        ["/works/OL1W", "/works/OL5W", "/works/OL8W"]
    );
    assert_eq!(summary.inserted, 3);
    assert_eq!(
        stored["/works/OL5W"].get_i32("firstPublishYear").unwrap(),
        1987
    );
    assert_eq!(stored["/works/OL8W"].get_str("title").unwrap(), "1984");
}

#[tokio::test]
async fn a_rerun_changes_nothing_and_a_changed_record_bumps_its_version_and_the_cache() {
    let (app, server) = (TestApp::spawn().await, MockServer::start().await);
    three_pages(&server).await;
    let settings = source_settings(&server.uri());
    app.ingest(&settings, "q", Scope::All).await.unwrap();
    let before = app.books_in_mongodb().await;

    let rerun = app.ingest(&settings, "q", Scope::All).await.unwrap();
    assert_eq!((rerun.inserted, rerun.changed, rerun.unchanged), (0, 0, 25));
    assert_eq!(
        app.books_in_mongodb().await,
        before,
        "versions and timestamps untouched"
    );

    // Upstream renames one work.
    server.reset().await;
    let mut first = page(25, 0..10);
    first["docs"][3]["title"] = json!("Work 3, revised");
    serve_page(&server, 1, first).await;
    serve_page(&server, 2, page(25, 10..20)).await;
    serve_page(&server, 3, page(25, 20..25)).await;
    let changed = app.ingest(&settings, "q", Scope::All).await.unwrap();
    assert_eq!(
        (changed.inserted, changed.changed, changed.unchanged),
        (0, 1, 24)
    );

    let stored = app.books_in_mongodb().await;
    let revised = &stored["/works/OL3W"];
    assert_eq!(revised.get_i64("version").unwrap(), 2);
    let id = revised
        .get_object_id("_id")
        .unwrap()
        .to_hex()
        .parse()
        .unwrap();
    let cached = app.cached(id).await.expect("written through to the cache");
    assert_eq!(cached.version, 2);
    assert_eq!(
        cached.value.expect("present").title.as_str(),
        "Work 3, revised"
    );
    let finds = app.mongo_finds();
    let read = app.datastore.book(id).await.unwrap().expect("the book");
    assert_eq!((read.version, read.title.as_str()), (2, "Work 3, revised"));
    assert_eq!(app.mongo_finds(), finds, "served from the cache");
}

/// `oponn ingest` exits when it is done, and has no background repair loop: cache writes Redis
/// missed would die with it, and every server would go on answering with the older cached
/// version. `Cache::settle`, which the command runs before exiting, reports them while Redis is
/// away and lands them once it is back.
#[tokio::test]
async fn cache_writes_redis_missed_during_an_ingest_are_reported_then_settled() {
    let app = TestApp::spawn_with(Options {
        proxy_redis: true,
        ..Default::default()
    })
    .await;
    let server = MockServer::start().await;
    three_pages(&server).await;
    let settings = source_settings(&server.uri());
    app.ingest(&settings, "q", Scope::All).await.unwrap();
    let id = app.books_in_mongodb().await["/works/OL3W"]
        .get_object_id("_id")
        .unwrap()
        .to_hex()
        .parse()
        .unwrap();
    assert_eq!(app.datastore.book(id).await.unwrap().unwrap().version, 1);
    assert_eq!(app.cached(id).await.expect("filled").version, 1);

    let redis = app.redis_proxy.as_ref().expect("a Redis proxy");
    redis.cut().await;
    server.reset().await;
    let mut first = page(25, 0..10);
    first["docs"][3]["title"] = json!("Work 3, revised");
    serve_page(&server, 1, first).await;
    serve_page(&server, 2, page(25, 10..20)).await;
    serve_page(&server, 3, page(25, 20..25)).await;
    let command = app.one_shot_datastore().await;
    let request = Request {
        query: "q".into(),
        scope: Scope::All,
        bookstore: None,
    };
    let source = OpenLibrary::new(&settings).unwrap();
    let changed = ingest::run(&source, &command, &request, &Progress::Log)
        .await
        .unwrap();
    assert_eq!((changed.changed, changed.unchanged), (1, 24));
    assert_eq!(
        app.books_in_mongodb().await["/works/OL3W"]
            .get_i64("version")
            .unwrap(),
        2
    );
    let unsettled = command
        .cache()
        .settle(Duration::from_millis(10))
        .await
        .expect_err("Redis is cut");
    assert_eq!(unsettled.records, 1, "{unsettled}");

    redis.restore();
    command
        .cache()
        .settle(Duration::from_secs(10))
        .await
        .expect("Redis answers again");
    // The command never reached Redis, so it cannot vouch for the run it reaches now: its
    // repair lands as version 2, stamped with no run. It fences older fills out, and no
    // instance serves it or anything older from the cache: the next read goes to MongoDB.
    let raw = app.stored_entry(id).await.expect("repaired");
    assert!(raw.starts_with("2 none "), "{raw}");
    app.reconnect_redis().await;
    assert_eq!(app.cached(id).await, None, "not served from the cache");
    let book = app.datastore.book(id).await.unwrap().unwrap();
    assert_eq!(book.version, 2);
    assert_eq!(book.title.as_str(), "Work 3, revised");
    assert_eq!(
        app.cached(id).await.expect("filled by that read").version,
        2
    );
}

#[tokio::test]
async fn an_outage_mid_run_fails_and_keeps_what_was_written() {
    let (app, server) = (TestApp::spawn().await, MockServer::start().await);
    serve_page(&server, 1, page(30, 0..10)).await;
    Mock::given(path("/search.json"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    serve_page(&server, 3, page(30, 20..30)).await;
    let failed = app
        .ingest(&source_settings(&server.uri()), "q", Scope::All)
        .await
        .expect_err("page 2 never answers");
    assert!(
        matches!(
            failed.error,
            IngestError::Source(SourceError::Unavailable {
                page: 2,
                attempts: 4,
                ..
            })
        ),
        "{failed}"
    );
    let stored = app.books_in_mongodb().await;
    assert!(stored.contains_key("/works/OL0W"), "page 1 is kept");
    assert!(!stored
        .keys()
        .any(|k| (10..20).any(|n| k == &format!("/works/OL{n}W"))));
    assert_eq!(
        stored.len(),
        failed.summary.inserted,
        "the summary says exactly what was kept"
    );
}

#[tokio::test]
async fn ingesting_into_a_bookstore_stocks_every_book_in_the_same_write() {
    let (app, server) = (TestApp::spawn().await, MockServer::start().await);
    three_pages(&server).await;
    let create = "mutation($name: String!) { createBookstore(input: { name: $name, city: \"Paris\" }) { id } }";
    let mut stores: Vec<oponn::domain::BookstoreId> = Vec::new();
    for name in ["Shakespeare and Company", "Gibert Jeune"] {
        let body = app.graphql(create, json!({ "name": name })).await;
        stores.push(
            body["data"]["createBookstore"]["id"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
        );
    }
    let listed = "query($id: ID!) { bookstore(id: $id) { books(first: 100) { nodes { title } } } }";
    let count = |body: Value| {
        body["data"]["bookstore"]["books"]["nodes"]
            .as_array()
            .unwrap()
            .len()
    };
    let sid = |i: usize| json!({ "id": stores[i].to_string() });
    assert_eq!(count(app.graphql(listed, sid(0)).await), 0, "cached empty");

    let settings = source_settings(&server.uri());
    let first = app
        .ingest_into(&settings, "q", Scope::All, Some(stores[0]))
        .await
        .unwrap();
    assert_eq!(first.inserted, 25);
    let stored = app.books_in_mongodb().await;
    assert!(stored
        .values()
        .all(|d| d.get_object_id("bookstoreId").unwrap() == stores[0].object_id()));
    assert!(
        stored.values().all(|d| d.get_i64("version").unwrap() == 1),
        "stocked in the insert itself"
    );
    assert_eq!(
        count(app.graphql(listed, sid(0)).await),
        25,
        "the cached page was reconciled"
    );

    let again = app
        .ingest_into(&settings, "q", Scope::All, Some(stores[0]))
        .await
        .unwrap();
    assert_eq!((again.changed, again.unchanged), (0, 25));

    let moved = app
        .ingest_into(&settings, "q", Scope::All, Some(stores[1]))
        .await
        .unwrap();
    assert_eq!((moved.changed, moved.unchanged), (25, 0));
    assert!(app
        .books_in_mongodb()
        .await
        .values()
        .all(|d| d.get_i64("version").unwrap() == 2));
    assert_eq!(count(app.graphql(listed, sid(0)).await), 0);
    assert_eq!(count(app.graphql(listed, sid(1)).await), 25);
}

/// The recorded sample `make run` ingests, served as recorded: 33 records, one with a blank title.
#[tokio::test]
async fn the_recorded_sample_ingests_as_make_run_shows() {
    let (app, server) = (TestApp::spawn().await, MockServer::start().await);
    for number in 1..=3u32 {
        let path = format!(
            "{}/sample/openlibrary/search-page-{number}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let body: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        serve_page(&server, number, body).await;
    }
    let mut settings = source_settings(&server.uri());
    settings.page_size = 12;
    let summary = app.ingest(&settings, "classics", Scope::All).await.unwrap();
    assert_eq!(
        (summary.pages, summary.fetched, summary.inserted),
        (3, 33, 32)
    );
    assert_eq!(summary.skipped["invalid title"], 1);
    let stored = app.books_in_mongodb().await;
    assert_eq!(
        stored["/works/OL27448W"].get_str("title").unwrap(),
        "The Lord of the Rings"
    );
    assert!(!stored.contains_key("/works/OL99999999W"));
}
