//! The Open Library client: one polite, bounded, retrying way to fetch a search page.
//!
//! Every attempt takes a permit (at most `OPONN_SOURCE_CONCURRENCY` requests in flight), then
//! its turn in the [`Pace`] (at most `OPONN_SOURCE_RATE_PER_SEC` starts a second, retries
//! included), then runs under `OPONN_SOURCE_TIMEOUT_MS` from sending to the last byte of the
//! body. The permit is released before a retry's backoff, so a waiting page never blocks
//! another page's request.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime},
};

use reqwest::{header::RETRY_AFTER, StatusCode, Url};
use tokio::sync::Semaphore;

use super::{
    pace::Pace,
    retry::{parse_retry_after, Backoff, WaitTooLong},
    SearchPage, SourceError,
};
use crate::config::SourceSettings;

/// The fields asked for: what a book needs, so pages stay small.
const FIELDS: &str = "key,title,author_name,author_key,first_publish_year,subject";

pub struct OpenLibrary {
    http: reqwest::Client,
    search_url: Url,
    page_size: usize,
    concurrency: usize,
    timeout: Duration,
    retries: u32,
    backoff: Backoff,
    permits: Semaphore,
    pace: Pace,
    retried: AtomicU64,
}

/// How one attempt went, when it did not return a page.
enum Failure {
    /// Worth another attempt: a timeout, a connection failure, a 429 or a 5xx.
    Transient {
        cause: String,
        retry_after: Option<Duration>,
    },
    /// Final for this page.
    Final(SourceError),
}

impl OpenLibrary {
    pub fn new(settings: &SourceSettings) -> Result<Self, SourceError> {
        let http = reqwest::Client::builder()
            .user_agent(settings.user_agent.as_str())
            .connect_timeout(settings.timeout)
            .build()
            .map_err(SourceError::Client)?;
        let mut search_url = settings.base_url.clone();
        let path = format!("{}/search.json", search_url.path().trim_end_matches('/'));
        search_url.set_path(&path);
        Ok(Self {
            http,
            search_url,
            page_size: settings.page_size,
            concurrency: settings.concurrency,
            timeout: settings.timeout,
            retries: settings.retries,
            backoff: Backoff {
                base: settings.backoff,
                max: settings.max_backoff,
            },
            permits: Semaphore::new(settings.concurrency),
            pace: Pace::new(settings.rate_per_second),
            retried: AtomicU64::new(0),
        })
    }

    /// The most requests in flight at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Books per page.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Retries made so far, by every caller.
    pub fn retries(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }

    /// Page `page` (from 1) of the results for `query`, retried as the module docs describe.
    #[tracing::instrument(skip(self, query), fields(page))]
    pub async fn search(&self, query: &str, page: u32) -> Result<SearchPage, SourceError> {
        let url = self.page_url(query, page);
        let mut retry = 0;
        loop {
            let (cause, retry_after) = match self.attempt(&url, page).await {
                Ok(found) => return Ok(found),
                Err(Failure::Final(error)) => return Err(error),
                Err(Failure::Transient { cause, retry_after }) => (cause, retry_after),
            };
            if retry == self.retries {
                return Err(SourceError::Unavailable {
                    page,
                    attempts: retry + 1,
                    cause,
                });
            }
            let delay = self
                .backoff
                .delay(retry, retry_after)
                .map_err(|WaitTooLong(wait)| SourceError::TooLongToWait {
                    page,
                    wait,
                    allowed: self.backoff.max,
                })?;
            tracing::warn!(%cause, retry = retry + 1, delay_ms = delay.as_millis() as u64, "retrying the page");
            self.retried.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    fn page_url(&self, query: &str, page: u32) -> Url {
        let mut url = self.search_url.clone();
        url.query_pairs_mut()
            .append_pair("q", query)
            .append_pair("page", &page.to_string())
            .append_pair("limit", &self.page_size.to_string())
            .append_pair("fields", FIELDS);
        url
    }

    async fn attempt(&self, url: &Url, page: u32) -> Result<SearchPage, Failure> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        self.pace.wait().await;
        let exchange = async {
            let response = self.http.get(url.clone()).send().await?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| parse_retry_after(value, SystemTime::now()));
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, retry_after, body))
        };
        let (status, retry_after, body) = match tokio::time::timeout(self.timeout, exchange).await {
            Err(_elapsed) => return Err(transient(format!("no answer within {:?}", self.timeout))),
            Ok(Err(error)) if error.is_builder() => {
                return Err(Failure::Final(SourceError::Client(error)))
            }
            Ok(Err(error)) => return Err(transient(describe(&error))),
            Ok(Ok(exchanged)) => exchanged,
        };
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|error| {
                Failure::Final(SourceError::Malformed {
                    page,
                    reason: error.to_string(),
                })
            });
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(Failure::Transient {
                cause: format!("HTTP {}", status.as_u16()),
                retry_after,
            });
        }
        Err(Failure::Final(SourceError::Refused {
            page,
            status: status.as_u16(),
        }))
    }
}

fn transient(cause: String) -> Failure {
    Failure::Transient {
        cause,
        retry_after: None,
    }
}

/// A transport error's chain of causes on one line (reqwest's own text omits the root cause).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
