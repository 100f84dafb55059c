//! The outside API books come from: Open Library's search API (`GET {base}/search.json`).
//!
//! * [`search`] holds serde structs for the response as Open Library really sends it: fields go
//!   missing, arrays come empty or absent, numbers arrive where text was expected and text where
//!   numbers were. A record that does not even fit those lenient structs is kept as
//!   [`Record::Unreadable`], so one odd record never costs the rest of its page.
//! * [`convert`] is the one way from a search record to a [`crate::domain::NewBook`]: `TryFrom`,
//!   which validates and says why a record was refused ([`RejectReason`]).
//! * [`OpenLibrary`] is the client: a descriptive `User-Agent`, a timeout on every request, a
//!   bound on requests in flight, a pace (requests per second, retries included), and retries
//!   with exponential backoff and jitter after a timeout, a 429 or a 5xx, honouring
//!   `Retry-After`. Any other 4xx, or a page that is not search JSON, is not retried: asking
//!   again would get the same answer.
//! * [`SourceError`] is what a page can fail with; its text names the page and the cause, and is
//!   meant for the operator reading the end of an ingest run.

mod client;
mod convert;
mod error;
mod pace;
mod retry;
mod search;

pub use client::OpenLibrary;
pub use convert::{InvalidRecord, RejectReason};
pub use error::SourceError;
pub use search::{Record, SearchDoc, SearchPage};
