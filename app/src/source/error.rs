//! What fetching a page from the source can fail with. Every variant is final for that page:
//! retryable causes are retried inside the client, and surface here only once retries ran out.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Timeouts, connection failures, 429s or 5xx on every attempt.
    #[error("the source did not answer page {page} after {attempts} attempts (last: {cause})")]
    Unavailable {
        page: u32,
        attempts: u32,
        cause: String,
    },
    /// The source asked us to wait longer than `OPONN_SOURCE_MAX_BACKOFF_MS` allows.
    #[error(
        "the source asked to wait {}s before page {page}, longer than the {}s allowed",
        wait.as_secs(),
        allowed.as_secs()
    )]
    TooLongToWait {
        page: u32,
        wait: Duration,
        allowed: Duration,
    },
    /// A 4xx other than 429 (or an unexpected 1xx/3xx): asking again would get the same answer.
    #[error("the source refused page {page} with HTTP {status}")]
    Refused { page: u32, status: u16 },
    /// A 2xx whose body is not a search page.
    #[error("page {page} is not a search result page: {reason}")]
    Malformed { page: u32, reason: String },
    /// The HTTP client could not be built (a bad `User-Agent`, no TLS backend).
    #[error("the HTTP client cannot be built: {0}")]
    Client(#[source] reqwest::Error),
}
