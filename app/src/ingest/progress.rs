//! Progress while an ingest runs: a bar on a terminal, a log line per page otherwise.
//!
//! The bar draws on stderr, and only when stderr is a terminal, so logs (stdout) and pipes stay
//! clean; without it each stored page is logged, which is what a container or CI wants.

use std::{io::IsTerminal, time::Duration};

use indicatif::{ProgressBar, ProgressStyle};

use super::summary::{PageTally, Summary};

pub enum Progress {
    Bar(ProgressBar),
    Log,
}

impl Progress {
    /// A bar if stderr is a terminal, log lines otherwise.
    pub fn for_stderr() -> Self {
        if !std::io::stderr().is_terminal() {
            return Self::Log;
        }
        let bar = ProgressBar::new(0);
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} pages  {msg}",
        )
        .expect("the template is valid");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        Self::Bar(bar)
    }

    /// The number of pages the run will fetch, once the first page has told.
    pub fn set_pages(&self, pages: u32) {
        match self {
            Self::Bar(bar) => bar.set_length(pages.into()),
            Self::Log => tracing::info!(pages, "pages to fetch"),
        }
    }

    pub fn page_stored(&self, page: u32, tally: &PageTally, so_far: &Summary, elapsed: Duration) {
        match self {
            Self::Bar(bar) => {
                let stored = so_far.inserted + so_far.changed + so_far.unchanged;
                let rate = stored as f64 / elapsed.as_secs_f64().max(1e-3);
                bar.set_message(format!("{stored} books, {rate:.0} books/s"));
                bar.inc(1);
            }
            Self::Log => tracing::info!(
                page,
                fetched = tally.fetched,
                inserted = tally.upserted.inserted,
                changed = tally.upserted.changed,
                unchanged = tally.upserted.unchanged,
                skipped = tally.skipped.values().sum::<usize>(),
                "page stored"
            ),
        }
    }

    pub fn finish(&self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
