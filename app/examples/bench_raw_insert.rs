//! The raw bulk-insert rate of the MongoDB server, for `make bench-ingest` to compare against:
//! `--count` documents shaped like stored books, inserted with unordered `insert_many` calls of
//! `--batch` documents, `--concurrency` at a time, into a fresh database that is dropped after.
//! Prints one line: `raw_insert count=<n> seconds=<s> docs_per_second=<r>`.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "it prints its figures"
)]

use std::time::Instant;

use clap::Parser;
use futures::{stream, StreamExt, TryStreamExt};
use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Another database to drop when done (the ingest benchmark's).
    #[arg(long)]
    drop_after: Option<String>,
}

fn book(n: usize) -> Document {
    doc! {
        "_id": ObjectId::new(),
        "sourceKey": format!("/works/OL{n}W"),
        "title": format!("Generated Work {n}"),
        "authors": [format!("Author {}", n % 997), format!("Co-Author {}", n % 89)],
        "firstPublishYear": 1800 + (n % 220) as i32,
        "subjects": ["Generated", "Benchmark"],
        "version": 1_i64,
        "updatedAt": DateTime::now(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = mongodb::Client::with_uri_str(std::env::var("MONGODB_URI")?).await?;
    let database = client.database(&format!("oponn_bench_raw_{}", std::process::id()));
    let books = database.collection::<Document>("books");
    books
        .create_index(
            mongodb::IndexModel::builder()
                .keys(doc! { "sourceKey": 1 })
                .options(
                    mongodb::options::IndexOptions::builder()
                        .unique(true)
                        .build(),
                )
                .build(),
        )
        .await?;
    let batches: Vec<Vec<Document>> = (0..args.count)
        .collect::<Vec<_>>()
        .chunks(args.batch)
        .map(|chunk| chunk.iter().copied().map(book).collect())
        .collect();
    let started = Instant::now();
    stream::iter(batches)
        .map(|batch| {
            let books = books.clone();
            async move { books.insert_many(batch).ordered(false).await.map(|_| ()) }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    database.drop().await?;
    if let Some(other) = &args.drop_after {
        client.database(other).drop().await?;
    }
    println!(
        "raw_insert count={} seconds={seconds:.3} docs_per_second={:.0}",
        args.count,
        args.count as f64 / seconds
    );
    Ok(())
}
