//! A local stand-in for Open Library's `/search.json`, for `make run` (no internet) and
//! `make bench-ingest` (a source that is never the bottleneck). Loopback only.
//!
//! ```text
//! local_openlibrary --listen 127.0.0.1:18091 --recorded app/sample/openlibrary
//! local_openlibrary --listen 127.0.0.1:18091 --generated 10000
//! ```
//!
//! `--recorded DIR` serves the docs of the recorded pages in `DIR` (`search-page-1.json`,
//! `search-page-2.json`, ... in order), `--generated N` serves N synthetic works. Either way the
//! docs are re-paged by the request's `page` and `limit`, so any `OPONN_SOURCE_PAGE_SIZE` sees a
//! consistent result list, and every query gets the same results.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "it prints its figures"
)]

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::Context;
use axum::{
    extract::{Query, State},
    routing::get,
    Json, Router,
};
use clap::Parser;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:18091")]
    listen: SocketAddr,
    /// A folder of recorded `/search.json` pages.
    #[arg(
        long,
        conflicts_with = "generated",
        required_unless_present = "generated"
    )]
    recorded: Option<PathBuf>,
    /// Serve this many synthetic works instead.
    #[arg(long)]
    generated: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct SearchParams {
    #[serde(default)]
    q: String,
    page: Option<usize>,
    limit: Option<usize>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.listen.ip().is_loopback(),
        "--listen must be a loopback address"
    );
    let docs = match (&args.recorded, args.generated) {
        (Some(folder), _) => recorded(folder)?,
        (None, Some(count)) => (0..count).map(generated).collect(),
        (None, None) => anyhow::bail!("give --recorded DIR or --generated N"),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    println!(
        "serving {} works on http://{}/search.json",
        docs.len(),
        listener.local_addr()?
    );
    let router = Router::new()
        .route("/search.json", get(search))
        .with_state(Arc::new(docs));
    axum::serve(listener, router).await?;
    Ok(())
}

async fn search(
    State(docs): State<Arc<Vec<Value>>>,
    Query(params): Query<SearchParams>,
) -> Json<Value> {
    let limit = params.limit.unwrap_or(100).clamp(1, 1000);
    let start = params.page.unwrap_or(1).max(1).saturating_sub(1) * limit;
    let page: Vec<&Value> = docs.iter().skip(start).take(limit).collect();
    Json(json!({
        "numFound": docs.len(),
        "start": start,
        "numFoundExact": true,
        "num_found": docs.len(),
        "q": params.q,
        "offset": null,
        "docs": page,
    }))
}

/// Every doc of `search-page-1.json`, `search-page-2.json`, ... in `folder`, in order.
fn recorded(folder: &std::path::Path) -> anyhow::Result<Vec<Value>> {
    let mut docs = Vec::new();
    for page in 1.. {
        let path = folder.join(format!("search-page-{page}.json"));
        if !path.exists() {
            break;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let body: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let page_docs = body["docs"]
            .as_array()
            .with_context(|| format!("{} has no docs", path.display()))?;
        docs.extend(page_docs.iter().cloned());
    }
    anyhow::ensure!(
        !docs.is_empty(),
        "no search-page-N.json in {}",
        folder.display()
    );
    Ok(docs)
}

/// The `n`-th synthetic work: the fields a real search doc has, with varied values.
fn generated(n: usize) -> Value {
    json!({
        "key": format!("/works/OL{}W", 90_000_000 + n),
        "title": format!("Generated Work {n}"),
        "author_name": [format!("Author {}", n % 997), format!("Co-Author {}", n % 89)],
        "first_publish_year": 1800 + (n % 220),
        "subject": ["Benchmarks", format!("Subject {}", n % 50), format!("Topic {}", n % 7)],
    })
}
