//! `make bench-queries`: the query-result cache, measured in-process against the local stack.
//!
//! 1. `bookstoresForBooks` with 100 books and a filtered `books` page (author, 20 per page),
//!    warm (the same query again and again) and cold (the cached result dropped before each
//!    request, so every request queries MongoDB and fills), at 16 concurrent callers: requests/s
//!    and p50/p99.
//! 2. The cost of one write as the number of cached results grows from 10 to 10,000: once with
//!    results the write cannot affect indexed under other authors (equality terms: the write
//!    visits only its own ranges), once with results that have no equality term (title
//!    prefixes: the write must visit every one).
//!
//! Needs MONGODB_URI and REDIS_URL (the Makefile exports the local stack's). Loopback only.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "it prints its figures"
)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::future::join_all;
use mongodb::bson::doc;
use oponn::{
    cache::results::ResultLookup,
    config::Settings,
    datastore::Datastore,
    domain::{
        Book, BookChanges, BookId, BookstoreName, Label, LabelList, NewBook, NewBookstore,
        SourceKey, Title,
    },
    metrics::Metrics,
    query::{CachedResult, Filter, Scalar, Source, Spec},
};

const BOOKS: usize = 2_000;
const AUTHORS: usize = 100;
const CALLERS: usize = 16;
const REQUESTS: usize = 1_600;
/// Cold requests each query MongoDB; on FerretDB they are slow, so fewer of them.
const COLD_REQUESTS: usize = 160;

async fn datastore(database: &str, prefix: &str) -> anyhow::Result<Datastore> {
    let settings = Settings::from_lookup(|name| match name {
        "MONGODB_DATABASE" => Some(database.to_owned()),
        "OPONN_KEY_PREFIX" => Some(prefix.to_owned()),
        "OPONN_MONGODB_TIMEOUT_MS" => Some("30000".to_owned()),
        other => std::env::var(other).ok(),
    })?;
    oponn::startup::connect(&settings, &Metrics::new()).await
}

fn book(i: usize) -> NewBook {
    let author = format!("Author {}", i % AUTHORS);
    NewBook {
        source_key: SourceKey::parse(&format!("/works/BENCH{i}")).expect("a valid value"),
        title: Title::parse(&format!("Title {i:05}")).expect("a valid value"),
        authors: LabelList::parse("authors", &[author.as_str()], 10).expect("a valid value"),
        first_publish_year: None,
        subjects: LabelList::default(),
        author_credits: Vec::new(),
    }
}

fn author(n: usize) -> Filter {
    Filter::Eq("authors".into(), Scalar::Str(format!("Author {n}")))
}

/// Runs `requests` calls of `call(i)` from `CALLERS` tasks; prints requests/s, p50, p99.
async fn measure<F, Fut>(label: &str, requests: usize, call: F)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<Duration>> + Send,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let tasks = (0..CALLERS).map(|caller| {
        let call = call.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            for i in (caller..requests).step_by(CALLERS) {
                latencies.extend(call(i).await);
            }
            latencies
        })
    });
    let mut latencies: Vec<Duration> = join_all(tasks)
        .await
        .into_iter()
        .flat_map(|t| t.expect("a caller"))
        .collect();
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "{label:44} {:>9.0} {:>9.2} {:>9.2}",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
    );
}

fn books_spec(filter: Filter) -> Spec {
    Spec {
        name: "books".into(),
        sources: vec![Source::of::<Book>(filter)],
        after: None,
        first: Some(20),
    }
}

/// Registers `n` (empty) cached results on `books`, each with `filter(i)`.
async fn register(datastore: &Datastore, n: usize, filter: impl Fn(usize) -> Filter) {
    let cache = datastore.cache();
    let lookups = (0..n).map(|i| {
        let spec = books_spec(filter(i));
        async move {
            if let ResultLookup::Miss(guard) = cache.lookup_result(&spec).await {
                cache
                    .fill_result(&CachedResult::from_documents(spec, vec![vec![]]), guard)
                    .await;
            }
        }
    });
    // In slices, so that at most a few hundred calls are in flight.
    let lookups: Vec<_> = lookups.collect();
    let mut lookups = lookups.into_iter();
    loop {
        let slice: Vec<_> = lookups.by_ref().take(256).collect();
        if slice.is_empty() {
            break;
        }
        join_all(slice).await;
    }
}

/// The mean time of one `updateBook` (MongoDB write, entity write-through, reconciliation).
async fn write_cost(datastore: &Datastore, id: BookId, writes: usize) -> Duration {
    let started = Instant::now();
    for i in 0..writes {
        let changes = BookChanges {
            title: Some(Title::parse(&format!("Title {i:05}")).expect("a valid value")),
            ..BookChanges::default()
        };
        datastore
            .update_book(id, changes, None)
            .await
            .expect("update");
    }
    started.elapsed() / writes as u32
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let run = std::process::id();
    let database = format!("oponn_bench_queries_{run}");
    let data = datastore(&database, &format!("benchq{run}:")).await?;
    eprintln!("[bench-queries] seeding {BOOKS} books by {AUTHORS} authors in 5 stores");
    let books: Vec<NewBook> = (0..BOOKS).map(book).collect();
    let mut ids = Vec::new();
    for chunk in books.chunks(500) {
        ids.extend(data.upsert_books(chunk).await?.1);
    }
    let mut stores = Vec::new();
    for i in 0..5 {
        let new = NewBookstore {
            name: BookstoreName::parse(&format!("Bench Store {i}"))?,
            city: Label::parse("city", "Benchville")?,
        };
        stores.push(data.create_bookstore(new).await?.id);
    }
    // Stock the books directly in MongoDB (setup, not the path under test), then start cold.
    let client = mongodb::Client::with_uri_str(std::env::var("MONGODB_URI")?).await?;
    let collection = client
        .database(&database)
        .collection::<mongodb::bson::Document>("books");
    for (n, store) in stores.iter().enumerate() {
        let chunk: Vec<_> = ids
            .iter()
            .skip(n)
            .step_by(5)
            .map(BookId::object_id)
            .collect();
        collection
            .update_many(
                doc! { "_id": { "$in": chunk } },
                doc! { "$set": { "bookstoreId": store.object_id() } },
            )
            .await?;
    }
    let data = datastore(&database, &format!("benchq{run}b:")).await?;

    println!(
        "\nquery-result cache, {CALLERS} concurrent callers, {REQUESTS} requests per warm row, {COLD_REQUESTS} per cold row"
    );
    println!(
        "{:44} {:>9} {:>9} {:>9}",
        "query", "req/s", "p50 ms", "p99 ms"
    );
    let hundred: Arc<Vec<BookId>> = Arc::new(ids[..100].to_vec());
    {
        let (data, hundred) = (data.clone(), hundred.clone());
        data.bookstores_for_books(&hundred).await?;
        measure("bookstoresForBooks(100 books), warm", REQUESTS, move |_| {
            let (data, hundred) = (data.clone(), hundred.clone());
            async move {
                let t = Instant::now();
                data.bookstores_for_books(&hundred).await.expect("stores");
                Some(t.elapsed())
            }
        })
        .await;
    }
    {
        let (data, ids) = (data.clone(), Arc::new(ids.clone()));
        measure(
            "bookstoresForBooks(100 books), cold",
            COLD_REQUESTS,
            move |i| {
                let (data, ids) = (data.clone(), ids.clone());
                async move {
                    // A different set of 100 books each time: its result is not cached.
                    let wanted: Vec<BookId> = (0..100)
                        .map(|k| ids[(i * 7919 + k * 13) % ids.len()])
                        .collect();
                    let t = Instant::now();
                    data.bookstores_for_books(&wanted).await.expect("stores");
                    Some(t.elapsed())
                }
            },
        )
        .await;
    }
    {
        let data = data.clone();
        data.books_page(author(1), 20, None).await?;
        measure("books(author, first: 20), warm", REQUESTS, move |_| {
            let data = data.clone();
            async move {
                let t = Instant::now();
                data.books_page(author(1), 20, None).await.expect("page");
                Some(t.elapsed())
            }
        })
        .await;
    }
    {
        let data = data.clone();
        measure("books(author, first: 20), cold", COLD_REQUESTS, move |i| {
            let data = data.clone();
            async move {
                let filter = author(i % AUTHORS);
                data.cache().drop_result(&books_spec(filter.clone())).await;
                let t = Instant::now();
                data.books_page(filter, 20, None).await.expect("page");
                Some(t.elapsed())
            }
        })
        .await;
    }

    println!("\ncost of one updateBook as cached results on `books` grow (mean of 50 writes)");
    println!(
        "{:>8} {:>26} {:>26}",
        "results", "indexed by author (ms)", "no equality term (ms)"
    );
    let target = ids[0]; // by "Author 0"
    for n in [10usize, 100, 1_000, 10_000] {
        let termed = datastore(&database, &format!("benchq{run}t{n}:")).await?;
        register(&termed, n, |i| author(AUTHORS + i)).await;
        let termed_cost = write_cost(&termed, target, 50).await;
        let untermed = datastore(&database, &format!("benchq{run}u{n}:")).await?;
        register(&untermed, n, |i| {
            Filter::Prefix("title".into(), format!("Z{i}"))
        })
        .await;
        let untermed_cost = write_cost(&untermed, target, 50).await;
        println!(
            "{n:>8} {:>26.2} {:>26.2}",
            termed_cost.as_secs_f64() * 1e3,
            untermed_cost.as_secs_f64() * 1e3
        );
    }
    client.database(&database).drop().await?;
    let redis_url = std::env::var("REDIS_URL")?;
    oponn_tests::delete_keys_with_prefix(&redis_url, &format!("benchq{run}")).await?;
    oponn_tests::delete_keys_with_prefix(&redis_url, &format!("{{benchq{run}")).await?;
    Ok(())
}
