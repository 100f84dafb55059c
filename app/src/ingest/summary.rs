//! The figures of one ingest run, added up page by page.
//!
//! Every fetched record ends in exactly one column: `fetched = inserted + changed + unchanged +
//! skipped` (a record seen twice in one run is skipped the second time as `duplicate key`).

use std::{collections::BTreeMap, fmt, time::Duration};

use crate::{domain::BookId, store::UpsertSummary};

/// The reason counted for a record already ingested earlier in the same run.
pub const DUPLICATE_KEY: &str = "duplicate key";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Pages fetched and stored.
    pub pages: u32,
    /// Records received from the source (within `--limit`).
    pub fetched: usize,
    pub inserted: usize,
    pub changed: usize,
    pub unchanged: usize,
    /// Records not ingested, by reason.
    pub skipped: BTreeMap<&'static str, usize>,
    /// Requests the source client retried.
    pub retries: u64,
    pub elapsed: Duration,
    /// A few ids of stored books, for a first query.
    pub example_ids: Vec<BookId>,
}

impl Summary {
    pub const EXAMPLE_IDS: usize = 3;

    pub fn skipped_total(&self) -> usize {
        self.skipped.values().sum()
    }

    /// Books written or confirmed per second over the whole run.
    pub fn books_per_second(&self) -> f64 {
        let stored = self.inserted + self.changed + self.unchanged;
        match self.elapsed.as_secs_f64() {
            secs if secs > 0.0 => stored as f64 / secs,
            _ => 0.0,
        }
    }

    /// Adds one stored page.
    pub fn add_page(&mut self, page: &PageTally) {
        self.pages += 1;
        self.fetched += page.fetched;
        self.inserted += page.upserted.inserted;
        self.changed += page.upserted.changed;
        self.unchanged += page.upserted.unchanged;
        for (reason, count) in &page.skipped {
            *self.skipped.entry(reason).or_default() += count;
        }
    }

    /// `missing title: 1, duplicate key: 2`, or `none`.
    pub fn skipped_by_reason(&self) -> String {
        if self.skipped.is_empty() {
            return "none".into();
        }
        self.skipped
            .iter()
            .map(|(reason, count)| format!("{reason}: {count}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} pages, {} fetched, {} inserted, {} changed, {} unchanged, {} skipped ({}), \
             {} retries, {:.1}s ({:.0} books/s)",
            self.pages,
            self.fetched,
            self.inserted,
            self.changed,
            self.unchanged,
            self.skipped_total(),
            self.skipped_by_reason(),
            self.retries,
            self.elapsed.as_secs_f64(),
            self.books_per_second(),
        )
    }
}

/// What one page contributed.
#[derive(Debug, Default)]
pub struct PageTally {
    pub fetched: usize,
    pub upserted: UpsertSummary,
    pub skipped: BTreeMap<&'static str, usize>,
}

impl PageTally {
    pub fn skip(&mut self, reason: &'static str) {
        *self.skipped.entry(reason).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_add_up_and_print_on_one_line() {
        let mut summary = Summary::default();
        let mut page = PageTally {
            fetched: 4,
            upserted: UpsertSummary {
                inserted: 2,
                changed: 1,
                unchanged: 0,
            },
            ..PageTally::default()
        };
        page.skip("missing title");
        summary.add_page(&page);
        summary.add_page(&page);
        assert_eq!(
            (summary.pages, summary.fetched, summary.inserted),
            (2, 8, 4)
        );
        assert_eq!(summary.skipped["missing title"], 2);
        assert_eq!(
            summary.fetched,
            summary.inserted + summary.changed + summary.unchanged + summary.skipped_total()
        );
        assert!(summary.to_string().contains("2 skipped (missing title: 2)"));
    }
}
