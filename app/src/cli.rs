//! The `oponn` command line: `serve`, `seed`, `ingest`, `schema`.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::{
    config::Settings,
    datastore::Datastore,
    domain::{BookstoreId, BookstoreName},
    ingest::{self, Progress, Summary},
    metrics::Metrics,
    sample,
    source::OpenLibrary,
    startup, telemetry,
};

#[derive(Debug, Parser)]
#[command(
    name = "oponn",
    version,
    about = "A GraphQL service over MongoDB with a Redis cache"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve GraphQL over HTTP until SIGTERM or Ctrl-C.
    Serve {
        /// Also run the write-behind worker in this process (small deployments; with
        /// `OPONN_WRITE_MODE=behind`).
        #[arg(long)]
        with_worker: bool,
    },
    /// Persist queued write-behind changes to MongoDB until SIGTERM or Ctrl-C, then finish
    /// what it holds within `OPONN_WORKER_DRAIN_MS` (needs `OPONN_WRITE_MODE=behind`). Serves
    /// `/metrics` on `OPONN_OPS_LISTEN`.
    Worker,
    /// Load books from a JSON file (an array of books) into MongoDB, through the cache.
    /// Idempotent: records are matched by `sourceKey`, and unchanged ones are left alone.
    ///
    /// With `--generate N`, a generated catalogue instead: N Open Library-like books over
    /// `--stores` bookstores of skewed sizes, the same on every run (`make seed-large`; the load
    /// tests and benchmarks use it). Prints the books/s of the bulk writes.
    Seed {
        #[arg(long, default_value = "app/sample/books.json")]
        file: PathBuf,
        /// Generate this many books instead of reading `--file`.
        #[arg(long, conflicts_with = "file", value_parser = clap::value_parser!(u32).range(1..))]
        generate: Option<u32>,
        /// The number of bookstores of a generated catalogue.
        #[arg(long, default_value_t = 500, requires = "generate", value_parser = clap::value_parser!(u32).range(1..))]
        stores: u32,
    },
    /// Ingest books from the Open Library search API (`OPONN_SOURCE_URL`) into MongoDB,
    /// through the cache. Idempotent: books are matched by their work key, and unchanged ones
    /// are left alone. Exits non-zero if the source or MongoDB fails (what was stored is kept),
    /// or if Redis does not take the cache writes within `OPONN_CACHE_SETTLE_MS`.
    Ingest(IngestArgs),
    /// Compare every cached record with MongoDB once (see README, "Consistency audit"): print
    /// each disagreement found twice, and exit non-zero if there is one. In write-behind mode,
    /// pending records are judged once the worker has caught up with them.
    AuditCache,
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Exit 0 if the server on `OPONN_LISTEN` answers `/healthz` with 200 (the container's
    /// health check: the runtime image has no curl).
    Probe,
}

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// The search query, as typed in Open Library's search box.
    #[arg(long)]
    query: String,
    /// Fetch at most this many pages (default: every page of the results).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "limit")]
    pages: Option<u32>,
    /// Ingest at most this many records.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
    /// Stock the ingested books in this bookstore (matched by normalised name; it must exist).
    #[arg(long)]
    bookstore: Option<String>,
}

impl IngestArgs {
    fn request(&self, bookstore: Option<BookstoreId>) -> ingest::Request {
        let scope = match (self.pages, self.limit) {
            (Some(pages), _) => ingest::Scope::Pages(pages),
            (None, Some(limit)) => {
                ingest::Scope::Records(usize::try_from(limit).unwrap_or(usize::MAX))
            }
            (None, None) => ingest::Scope::All,
        };
        ingest::Request {
            query: self.query.clone(),
            scope,
            bookstore,
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Schema = cli.command {
        #[allow(
            clippy::print_stdout,
            reason = "the SDL on stdout is what `oponn schema` is for"
        )]
        {
            print!("{}", crate::graphql::sdl());
        }
        return Ok(());
    }
    if let Command::Probe = cli.command {
        return probe();
    }
    let settings = Settings::from_env()?;
    telemetry::init(&settings.log)?;
    match cli.command {
        Command::Serve { with_worker } => {
            let mut app = startup::Application::build(settings).await?;
            if with_worker {
                app = app.with_worker();
            }
            app.run_until(startup::shutdown_signal()).await
        }
        Command::Worker => startup::run_worker(settings, startup::shutdown_signal()).await,
        Command::Seed {
            generate: Some(books),
            stores,
            ..
        } => seed_catalogue(&settings, books as usize, stores as usize).await,
        Command::Seed { file, .. } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let books =
                sample::parse(&text).with_context(|| format!("parsing {}", file.display()))?;
            let datastore = open_datastore(&settings).await?;
            let upserted = datastore.upsert_books(&books).await;
            let settled = settle_cache(&datastore, settings.cache.settle).await;
            close(&datastore).await;
            let (summary, ids) = upserted?;
            settled?;
            let example: Vec<String> = ids.iter().take(3).map(|id| format!("\"{id}\"")).collect();
            tracing::info!(
                file = %file.display(),
                inserted = summary.inserted,
                changed = summary.changed,
                unchanged = summary.unchanged,
                example = %format!("{{ booksByIds(ids: [{}]) {{ id title authors }} }}", example.join(", ")),
                "seeded"
            );
            Ok(())
        }
        Command::Ingest(args) => run_ingest(&settings, &args).await,
        Command::AuditCache => audit_cache(&settings).await,
        Command::Schema | Command::Probe => unreachable!("handled before settings are loaded"),
    }
}

/// `oponn seed --generate`: see [`crate::catalogue::seed`].
async fn seed_catalogue(settings: &Settings, books: usize, stores: usize) -> anyhow::Result<()> {
    let datastore = open_datastore(settings).await?;
    let shelves = crate::catalogue::generate(books, stores);
    let report = crate::catalogue::seed(&datastore, &shelves).await;
    let settled = settle_cache(&datastore, settings.cache.settle).await;
    close(&datastore).await;
    let report = report?;
    settled?;
    tracing::info!(
        books,
        stores = shelves.len(),
        inserted = report.summary.inserted,
        changed = report.summary.changed,
        unchanged = report.summary.unchanged,
        elapsed_ms = report.elapsed.as_millis() as u64,
        books_per_second = report.books_per_second().round(),
        "seeded a generated catalogue"
    );
    Ok(())
}

/// The datastore of a one-shot command, with MongoDB's indexes in place.
async fn audit_cache(settings: &Settings) -> anyhow::Result<()> {
    /// Keys per `SCAN` step.
    const STEP: usize = 500;
    let datastore = open_datastore(settings).await?;
    let mut cursor = crate::datastore::AuditCursor::once();
    let mut checked = 0;
    let mut findings = Vec::new();
    while !cursor.finished() {
        let audited = datastore
            .audit_step(&mut cursor, STEP)
            .await
            .context("auditing the cache (are Redis and MongoDB reachable?)")?;
        checked += audited.checked.iter().map(|(_, n)| n).sum::<usize>();
        for finding in audited.findings {
            tracing::error!(
                entity = finding.entity,
                id = finding.id,
                kind = finding.kind.label(),
                cached = finding.cached,
                stored = ?finding.stored,
                "the cache and MongoDB disagree"
            );
            findings.push(finding);
        }
    }
    close(&datastore).await;
    tracing::info!(checked, findings = findings.len(), "cache audited");
    if !findings.is_empty() {
        anyhow::bail!("{} cached record(s) disagree with MongoDB", findings.len());
    }
    Ok(())
}

async fn open_datastore(settings: &Settings) -> anyhow::Result<crate::datastore::Datastore> {
    let datastore = startup::connect(settings, &Metrics::new()).await?;
    datastore
        .store()
        .ensure_indexes()
        .await
        .context("creating MongoDB indexes (is MongoDB reachable?)")?;
    Ok(datastore)
}

/// Closes the MongoDB client before a one-shot command exits: dropped at exit instead, the
/// driver ends its sessions on a task the exiting runtime no longer runs, and can panic.
async fn close(datastore: &crate::datastore::Datastore) {
    let closing = datastore.store().clone().shutdown();
    if tokio::time::timeout(std::time::Duration::from_secs(5), closing)
        .await
        .is_err()
    {
        tracing::warn!("the MongoDB client did not close within 5 s; exiting anyway");
    }
}

async fn run_ingest(settings: &Settings, args: &IngestArgs) -> anyhow::Result<()> {
    let source = OpenLibrary::new(&settings.source)?;
    let datastore = open_datastore(settings).await?;
    let bookstore = match &args.bookstore {
        None => None,
        Some(name) => Some(stocked_store(&datastore, name).await?),
    };
    let request = args.request(bookstore);
    tracing::info!(
        query = %request.query,
        source = %settings.source.base_url,
        "ingesting"
    );
    let progress = Progress::for_stderr();
    let outcome = ingest::run(&source, &datastore, &request, &progress).await;
    let settled = settle_cache(&datastore, settings.cache.settle).await;
    close(&datastore).await;
    match outcome {
        Ok(summary) => {
            log_summary(&summary, "ingested");
            settled
        }
        Err(failed) => {
            log_summary(&failed.summary, "ingest stopped");
            if let Err(unsettled) = settled {
                tracing::error!(error = format!("{unsettled:#}"), "the cache may be stale");
            }
            Err(anyhow::Error::new(failed).context(format!("ingesting {:?}", request.query)))
        }
    }
}

/// Before a one-shot command exits: the cache writes Redis missed are retried here, as the
/// server's repair loop would, since they die with the process (see `Cache::settle`). Fails
/// (non-zero exit) if Redis still does not take them.
async fn settle_cache(datastore: &Datastore, within: Duration) -> anyhow::Result<()> {
    datastore.cache().settle(within).await.with_context(|| {
        format!("the writes are stored in MongoDB, but Redis did not take them within {within:?}")
    })
}

/// The id of the bookstore `--bookstore` names; a clear error when there is none, before
/// anything is fetched or written.
async fn stocked_store(datastore: &Datastore, name: &str) -> anyhow::Result<BookstoreId> {
    let parsed = BookstoreName::parse(name).with_context(|| format!("--bookstore {name:?}"))?;
    match datastore.bookstore_by_name(&parsed).await? {
        Some(store) => Ok(store.id),
        None => anyhow::bail!(
            "--bookstore {name:?}: no bookstore has that name; create it first with the \
             createBookstore mutation (or run the ingest without --bookstore)"
        ),
    }
}

/// `GET /healthz` on the local server, with a plain TCP request and a short timeout.
fn probe() -> anyhow::Result<()> {
    use std::{
        io::{Read, Write},
        net::{SocketAddr, TcpStream},
        time::Duration,
    };
    let listen: SocketAddr = std::env::var("OPONN_LISTEN")
        .unwrap_or_else(|_| "127.0.0.1:8080".to_owned())
        .parse()
        .context("OPONN_LISTEN is not an address")?;
    let address = SocketAddr::from(([127, 0, 0, 1], listen.port()));
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    match response.lines().next() {
        Some(status) if status.starts_with("HTTP/1.1 200") => Ok(()),
        status => anyhow::bail!("/healthz answered {status:?}"),
    }
}

/// The closing summary, as one structured log line (`message`: `ingested` or `ingest stopped`;
/// on a stop, the error follows on stderr).
fn log_summary(summary: &Summary, message: &'static str) {
    let ids: Vec<String> = summary
        .example_ids
        .iter()
        .map(|id| format!("\"{id}\""))
        .collect();
    tracing::info!(
        pages = summary.pages,
        fetched = summary.fetched,
        inserted = summary.inserted,
        changed = summary.changed,
        unchanged = summary.unchanged,
        skipped = summary.skipped_total(),
        skipped_by_reason = %summary.skipped_by_reason(),
        retries = summary.retries,
        elapsed_ms = summary.elapsed.as_millis() as u64,
        books_per_second = summary.books_per_second().round(),
        example = %format!("{{ booksByIds(ids: [{}]) {{ id title authors }} }}", ids.join(", ")),
        "{message}"
    );
}
