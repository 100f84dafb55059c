//! `make bench-store`: the service over HTTP on a generated catalogue (see `oponn::catalogue`)
//! of 10,000 and 100,000 books (`BENCH_SIZES=10000,100000`), one request at a time: p50 and
//! p99 of
//! - `updateBook` (a version-conditioned write, cache and cached results reconciled);
//! - `booksByIds` of 100 ids, cold: Redis holds none of them;
//! - `books(filter: {author})`, cold: a first page, then the next page (20 books each);
//! - `bookstoresForBooks` of 100 books, cold;
//! - `books(filter: {bookstoreId})`, cold: a store's first page, stores of every size;
//! - `books` with no filter, cold: a next page from a cursor anywhere in the title order.
//!
//! Cold: the benchmark deletes its key prefix before each kind of request, and no two requests
//! ask for the same ids or author. Each catalogue lives in its own database (`bench_store_<n>`),
//! seeded once through the bulk path and kept for the next run. Needs MONGODB_URI and
//! REDIS_URL (the Makefile exports the local stack's). Loopback only.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "it prints its figures"
)]

use std::time::{Duration, Instant};

use anyhow::Context;
use mongodb::bson::doc;
use oponn::{
    catalogue,
    config::Settings,
    metrics::Metrics,
    query::{Cursor, Scalar},
    startup,
};
use serde_json::{json, Value};

const TOKEN: &str = "bench-token-0123456789abcdef";
const PREFIX: &str = "bench_store:";
const SAMPLES: usize = 200;

fn settings(database: &str) -> anyhow::Result<Settings> {
    Ok(Settings::from_lookup(|name| match name {
        "MONGODB_DATABASE" => Some(database.to_owned()),
        "OPONN_KEY_PREFIX" => Some(PREFIX.to_owned()),
        "OPONN_API_TOKENS" => Some(TOKEN.to_owned()),
        "OPONN_LISTEN" => Some("127.0.0.1:0".to_owned()),
        "OPONN_MONGODB_TIMEOUT_MS" => Some("30000".to_owned()),
        "OPONN_LOG_LEVEL" => Some("warn".to_owned()),
        other => std::env::var(other).ok(),
    })?)
}

struct Client {
    http: reqwest::Client,
    url: String,
}

impl Client {
    async fn graphql(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let response: Value = self
            .http
            .post(&self.url)
            .bearer_auth(TOKEN)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await?
            .json()
            .await?;
        if let Some(errors) = response.get("errors") {
            anyhow::bail!("GraphQL errors: {errors}");
        }
        Ok(response["data"].clone())
    }
}

/// p50 and p99 of `durations`, in milliseconds.
fn percentiles(mut durations: Vec<Duration>) -> (f64, f64) {
    durations.sort();
    let at = |q: f64| {
        let index = ((durations.len() as f64 * q).ceil() as usize).clamp(1, durations.len()) - 1;
        durations[index].as_secs_f64() * 1000.0
    };
    (at(0.50), at(0.99))
}

/// Deletes every key of the benchmark's prefix (entity keys and query-result keys).
async fn delete_prefix(redis_url: &str) -> anyhow::Result<()> {
    oponn_tests::delete_app_keys(redis_url, PREFIX).await?;
    Ok(())
}

async fn bench(books: usize) -> anyhow::Result<Vec<(String, f64, f64)>> {
    let database = format!("bench_store_{books}");
    let settings = settings(&database)?;
    let redis_url = std::env::var("REDIS_URL").context("REDIS_URL")?;
    let datastore = startup::connect(&settings, &Metrics::new()).await?;
    datastore.store().ensure_indexes().await?;
    let shelves = catalogue::generate(books, 500);
    let client = mongodb::Client::with_uri_str(std::env::var("MONGODB_URI")?).await?;
    let stored = client
        .database(&database)
        .collection::<mongodb::bson::Document>("books")
        .count_documents(doc! {})
        .await?;
    if stored as usize != books {
        eprintln!("[bench] seeding {books} books into {database} (once; kept for later runs)");
        let report = catalogue::seed(&datastore, &shelves).await?;
        datastore.cache().settle(Duration::from_secs(30)).await?;
        eprintln!("[bench] seeded at {:.0} books/s", report.books_per_second());
        // Let the server's statistics catch up with the load before measuring.
        tokio::time::sleep(Duration::from_secs(15)).await;
    }
    let stored: Vec<(String, String)> = client
        .database(&database)
        .collection::<mongodb::bson::Document>("books")
        .find(doc! {})
        .projection(doc! { "_id": 1, "title": 1 })
        .await?
        .try_collect::<Vec<_>>()
        .await?
        .iter()
        .filter_map(|d| {
            let id = d.get_object_id("_id").ok()?.to_hex();
            Some((id, d.get_str("title").ok()?.to_owned()))
        })
        .collect();
    let ids: Vec<String> = stored.iter().map(|(id, _)| id.clone()).collect();
    let stores: Vec<String> = client
        .database(&database)
        .collection::<mongodb::bson::Document>("bookstores")
        .find(doc! {})
        .projection(doc! { "_id": 1 })
        .await?
        .try_collect::<Vec<_>>()
        .await?
        .iter()
        .filter_map(|d| d.get_object_id("_id").ok().map(|id| id.to_hex()))
        .collect();
    let mut authors: Vec<String> = shelves
        .iter()
        .flat_map(|s| s.books.iter().flat_map(|b| b.authors.to_strings()))
        .collect();
    authors.sort();
    authors.dedup();
    fastrand::seed(7);
    fastrand::shuffle(&mut authors);

    let app = startup::Application::build(settings).await?;
    let url = format!("http://127.0.0.1:{}/graphql", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let client = Client {
        http: reqwest::Client::new(),
        url,
    };
    let mut results = Vec::new();
    let batches = SAMPLES.min(ids.len() / 100);

    delete_prefix(&redis_url).await?;
    let mut timings = Vec::new();
    for n in 0..SAMPLES {
        let id = &ids[(n * 7919) % ids.len()];
        let started = Instant::now();
        client
            .graphql(
                "mutation($id: ID!, $title: String!) { updateBook(id: $id, input: { title: $title }) { id version } }",
                json!({ "id": id, "title": format!("Benchmark title {n}") }),
            )
            .await?;
        timings.push(started.elapsed());
    }
    let (p50, p99) = percentiles(timings);
    results.push(("updateBook".to_owned(), p50, p99));

    for (name, query) in [
        (
            "booksByIds(100), cold",
            "query($ids: [ID!]!) { booksByIds(ids: $ids) { id title authors version } }",
        ),
        (
            "bookstoresForBooks(100), cold",
            "query($ids: [ID!]!) { bookstoresForBooks(bookIds: $ids) { id name } }",
        ),
    ] {
        delete_prefix(&redis_url).await?;
        let mut timings = Vec::new();
        for batch in ids.chunks(100).take(batches) {
            let started = Instant::now();
            client.graphql(query, json!({ "ids": batch })).await?;
            timings.push(started.elapsed());
        }
        let (p50, p99) = percentiles(timings);
        results.push((name.to_owned(), p50, p99));
    }

    delete_prefix(&redis_url).await?;
    let page = "query($author: String!, $after: String) { books(filter: { author: $author }, first: 20, after: $after) { nodes { id title } pageInfo { hasNextPage endCursor } } }";
    let (mut first_pages, mut next_pages) = (Vec::new(), Vec::new());
    for author in authors.iter().take(SAMPLES) {
        let started = Instant::now();
        let data = client.graphql(page, json!({ "author": author })).await?;
        first_pages.push(started.elapsed());
        let info = &data["books"]["pageInfo"];
        if info["hasNextPage"] == json!(true) {
            let started = Instant::now();
            client
                .graphql(
                    page,
                    json!({ "author": author, "after": info["endCursor"] }),
                )
                .await?;
            next_pages.push(started.elapsed());
        }
    }
    let (p50, p99) = percentiles(first_pages);
    results.push(("books(author), cold first page".to_owned(), p50, p99));
    if !next_pages.is_empty() {
        let samples = next_pages.len();
        let (p50, p99) = percentiles(next_pages);
        results.push((
            format!("books(author), cold next page ({samples} authors)"),
            p50,
            p99,
        ));
    }

    // A store's first page, each store once (stores of every size: the catalogue's are skewed).
    delete_prefix(&redis_url).await?;
    let by_store = "query($store: ID) { books(filter: { bookstoreId: $store }, first: 20) { nodes { id title } } }";
    let mut timings = Vec::new();
    for store in stores.iter().take(SAMPLES) {
        let started = Instant::now();
        client.graphql(by_store, json!({ "store": store })).await?;
        timings.push(started.elapsed());
    }
    let (p50, p99) = percentiles(timings);
    results.push(("books(bookstoreId), cold first page".to_owned(), p50, p99));

    // A next page of the whole listing from anywhere in the title order: a client paging
    // through the catalogue, deep pages included. Each cursor is a stored book's (title, id).
    delete_prefix(&redis_url).await?;
    let every = "query($after: String) { books(first: 20, after: $after) { nodes { id title } pageInfo { endCursor } } }";
    let mut timings = Vec::new();
    for n in 0..SAMPLES {
        let (id, title) = &stored[(n * 6151 + 17) % stored.len()];
        let after = Cursor {
            key: Scalar::Str(title.clone()),
            id: Scalar::Id(id.clone()),
        }
        .encode();
        let started = Instant::now();
        client.graphql(every, json!({ "after": after })).await?;
        timings.push(started.elapsed());
    }
    let (p50, p99) = percentiles(timings);
    results.push((
        "books(), cold next page anywhere in the order".to_owned(),
        p50,
        p99,
    ));

    let _ = stop.send(());
    server.await??;
    delete_prefix(&redis_url).await?;
    Ok(results)
}

use futures::TryStreamExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "10000,100000".to_owned())
        .split(',')
        .map(|n| n.trim().parse())
        .collect::<Result<_, _>>()
        .context("BENCH_SIZES: comma-separated numbers of books")?;
    for books in sizes {
        let results = bench(books).await?;
        println!("\n{books} books, one request at a time, {SAMPLES} requests each:");
        println!("| request | p50 ms | p99 ms |\n|---|---:|---:|");
        for (name, p50, p99) in results {
            println!("| {name} | {p50:.1} | {p99:.1} |");
        }
    }
    Ok(())
}
