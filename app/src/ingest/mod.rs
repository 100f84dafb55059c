//! Ingest: search results from the source, validated, upserted into MongoDB through the cache.
//!
//! ```text
//! source (pages, bounded and paced) -> convert (TryFrom, reasons) -> Datastore::upsert_books
//! ```
//!
//! Page 1 comes first: it says how many results there are, hence how many pages to fetch
//! (`--pages` and `--limit` cap that). The other pages are fetched and stored with at most
//! `OPONN_SOURCE_CONCURRENCY` in flight. Invariants:
//!
//! * **One batch per page**, never one round trip per book: each page's valid books go to MongoDB
//!   in one `upsert_books` call, which writes every written record through to the cache in one
//!   pipeline, so the cache stays consistent with MongoDB.
//! * **Idempotent**: books are keyed by the source's work key, and unchanged records are not
//!   written; re-running an ingest reports 0 inserted, 0 changed, and versions stay put.
//! * **A bad record never fails a run**: it is skipped and counted by reason. A record seen
//!   twice in one run (result lists shift while they are paged through) is stored once.
//! * **An outage fails the run, keeping what was written**: after the first page that cannot be
//!   fetched or stored, no new page starts, but pages already in flight finish, so no upsert is
//!   ever cut between its MongoDB write and its cache write. The failure carries the summary of
//!   what was stored.

mod progress;
mod summary;

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
};

use futures::{future, stream, StreamExt};
use tokio::time::Instant;

pub use progress::Progress;
pub use summary::{PageTally, Summary, DUPLICATE_KEY};

use crate::{
    datastore::{Datastore, DatastoreError},
    domain::{BookstoreId, NewBook, SourceKey},
    source::{OpenLibrary, SearchPage, SourceError},
};

/// What to ingest.
#[derive(Debug, Clone)]
pub struct Request {
    pub query: String,
    pub scope: Scope,
    /// Stock every ingested book in this bookstore (which the caller checked exists).
    pub bookstore: Option<BookstoreId>,
}

/// How much of the results to ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every page, to the end of the results.
    All,
    /// At most this many pages.
    Pages(u32),
    /// At most this many records.
    Records(usize),
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("storing page {page} failed: {error}")]
    Store {
        page: u32,
        #[source]
        error: DatastoreError,
    },
}

/// A run that stopped early: why, and what it had stored by then (which stays stored).
#[derive(Debug, thiserror::Error)]
#[error("{error} (the {} books stored before it are kept)", summary.inserted + summary.changed + summary.unchanged)]
pub struct Failed {
    pub summary: Summary,
    pub error: IngestError,
}

/// Runs one ingest; see the module docs.
#[tracing::instrument(skip_all, fields(query = %request.query))]
pub async fn run(
    source: &OpenLibrary,
    datastore: &Datastore,
    request: &Request,
    progress: &Progress,
) -> Result<Summary, Failed> {
    let run = Run {
        source,
        datastore,
        query: &request.query,
        bookstore: request.bookstore,
        progress,
        started: Instant::now(),
        seen: Mutex::default(),
        summary: Mutex::default(),
    };
    let outcome = run.every_page(request.scope).await;
    progress.finish();
    let mut summary = run
        .summary
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    summary.retries = source.retries();
    summary.elapsed = run.started.elapsed();
    match outcome {
        Ok(()) => Ok(summary),
        Err(error) => Err(Failed { summary, error }),
    }
}

struct Run<'a> {
    source: &'a OpenLibrary,
    datastore: &'a Datastore,
    query: &'a str,
    bookstore: Option<BookstoreId>,
    progress: &'a Progress,
    started: Instant,
    /// Source keys already taken in this run.
    seen: Mutex<HashSet<SourceKey>>,
    summary: Mutex<Summary>,
}

impl Run<'_> {
    async fn every_page(&self, scope: Scope) -> Result<(), IngestError> {
        let first = self.source.search(self.query, 1).await?;
        let plan = Plan::new(scope, &first, self.source.page_size());
        self.progress.set_pages(plan.pages);
        if plan.pages == 0 {
            return Ok(());
        }
        self.store(1, first, plan.records_on(1)).await?;

        let failed = AtomicBool::new(false);
        let failed = &failed;
        let outcomes: Vec<Result<(), IngestError>> = stream::iter(2..=plan.pages)
            .take_while(|_| future::ready(!failed.load(Ordering::Relaxed)))
            .map(|page| async move {
                let outcome = self.fetch_and_store(page, plan.records_on(page)).await;
                if outcome.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                outcome
            })
            .buffer_unordered(self.source.concurrency())
            .collect()
            .await;
        outcomes.into_iter().collect()
    }

    async fn fetch_and_store(&self, page: u32, records: usize) -> Result<(), IngestError> {
        let found = self.source.search(self.query, page).await?;
        self.store(page, found, records).await
    }

    /// Validates the first `records` records of a page and upserts the valid ones in one batch.
    async fn store(&self, page: u32, found: SearchPage, records: usize) -> Result<(), IngestError> {
        let mut tally = PageTally::default();
        let mut books = Vec::with_capacity(records);
        for record in found.docs.into_iter().take(records) {
            tally.fetched += 1;
            match NewBook::try_from(record) {
                Err(invalid) => {
                    tracing::debug!(page, %invalid, "record skipped");
                    tally.skip(invalid.reason.as_str());
                }
                Ok(book) if self.first_sighting(&book.source_key) => books.push(book),
                Ok(_) => tally.skip(DUPLICATE_KEY),
            }
        }
        let mut example_ids = Vec::new();
        if !books.is_empty() {
            let (upserted, ids) = self
                .datastore
                .upsert_books_into(&books, self.bookstore)
                .await
                .map_err(|error| IngestError::Store { page, error })?;
            tally.upserted = upserted;
            example_ids = ids;
        }
        let mut summary = self
            .summary
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        summary.add_page(&tally);
        let room = Summary::EXAMPLE_IDS.saturating_sub(summary.example_ids.len());
        summary
            .example_ids
            .extend(example_ids.into_iter().take(room));
        self.progress
            .page_stored(page, &tally, &summary, self.started.elapsed());
        Ok(())
    }

    fn first_sighting(&self, key: &SourceKey) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key.clone())
    }
}

/// How many pages to fetch, and how many records of each to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    pages: u32,
    page_size: usize,
    /// The most records to take over the whole run.
    records: usize,
}

impl Plan {
    fn new(scope: Scope, first: &SearchPage, page_size: usize) -> Self {
        // A source that reports no count but sends results still has at least this page.
        let found = usize::try_from(first.num_found())
            .unwrap_or(usize::MAX)
            .max(first.docs.len());
        let records = match scope {
            Scope::Records(limit) => found.min(limit),
            Scope::All | Scope::Pages(_) => found,
        };
        let pages = u32::try_from(records.div_ceil(page_size)).unwrap_or(u32::MAX);
        let pages = match scope {
            Scope::Pages(limit) => pages.min(limit),
            Scope::All | Scope::Records(_) => pages,
        };
        Self {
            pages,
            page_size,
            records,
        }
    }

    /// Records to take from page `page` (from 1): a full page, except where `--limit` ends.
    fn records_on(&self, page: u32) -> usize {
        let before = (page as usize - 1).saturating_mul(self.page_size);
        self.records.saturating_sub(before).min(self.page_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_page(num_found: u64, docs: usize) -> SearchPage {
        let docs: Vec<String> = (0..docs)
            .map(|n| format!(r#"{{"key": "/works/OL{n}W"}}"#))
            .collect();
        serde_json::from_str(&format!(
            r#"{{"numFound": {num_found}, "docs": [{}]}}"#,
            docs.join(",")
        ))
        .expect("a page")
    }

    #[test]
    fn all_pages_to_the_end_of_the_results() {
        let plan = Plan::new(Scope::All, &first_page(250, 100), 100);
        assert_eq!(plan.pages, 3);
        assert_eq!((plan.records_on(1), plan.records_on(3)), (100, 50));
    }

    #[test]
    fn pages_and_limits_cap_the_run() {
        assert_eq!(
            Plan::new(Scope::Pages(2), &first_page(1_000, 100), 100).pages,
            2
        );
        assert_eq!(
            Plan::new(Scope::Pages(9), &first_page(150, 100), 100).pages,
            2
        );
        let plan = Plan::new(Scope::Records(120), &first_page(1_000, 100), 100);
        assert_eq!(plan.pages, 2);
        assert_eq!((plan.records_on(1), plan.records_on(2)), (100, 20));
    }

    #[test]
    fn no_results_means_no_pages_and_an_uncounted_page_is_still_one() {
        assert_eq!(Plan::new(Scope::All, &first_page(0, 0), 100).pages, 0);
        assert_eq!(Plan::new(Scope::All, &first_page(0, 7), 100).pages, 1);
    }
}
