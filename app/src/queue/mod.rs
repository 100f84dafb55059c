//! The write-behind queue: which records have a version MongoDB does not hold yet.
//!
//! A write-behind mutation stores the new version in the cache as pending and appends a
//! [`Change`] (collection, id, version: no record content) to the queue in one atomic step
//! (`cache::pending`), then replies. The worker (`crate::worker`) takes changes, reads the pending records they point at, persists
//! them, and acknowledges the changes once MongoDB confirmed. The content travels through the
//! cache, not the queue, which is what makes the protocol simple to prove:
//!
//! * **Together or not at all.** A change is queued exactly when its pending version is stored.
//!   Appending first would let a worker read the change before the version lands and
//!   acknowledge it as a no-op; storing first would leave a pending record without a change if
//!   the writer died in between. With an append-only file Redis replays a script whole or not
//!   at all, so the same holds after a crash.
//! * **Newest wins, at least once is enough.** Several changes of one record are applied as
//!   one write of the newest pending version; the write is guarded by version in MongoDB, so a
//!   replay or a late delivery never moves a record backwards.
//!
//! The queue is one small trait; [`streams::RedisStreams`] (a stream and a consumer group) is
//! the implementation the service uses.

pub mod streams;

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::Version;

/// A record that has a new version pending in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Change {
    /// The collection (`books`).
    pub collection: String,
    /// The record's id, as the cache key spells it.
    pub id: String,
    /// The version the writer stored (a delete: its tombstone's version).
    pub version: Version,
}

/// A change handed to a worker, to acknowledge once applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The change, or why the queued message is not one (it goes to the dead letters).
    pub change: Result<Change, String>,
    /// The queue's own id for the message.
    pub handle: String,
    /// How many times the message has been delivered, this time included.
    pub deliveries: u64,
}

/// How far behind the worker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Depth {
    /// Changes appended and not acknowledged yet (delivered or not).
    pub pending: u64,
    /// The age of the oldest of them.
    pub oldest: Option<Duration>,
    /// Messages in the dead-letter stream.
    pub dead: u64,
}

/// A point in the queue: every change appended before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark(pub(crate) Option<String>);

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the queue did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the queue failed: {0}")]
    Redis(#[from] redis::RedisError),
}

/// The consuming side of the queue, and its progress. (Changes are appended by the cache's
/// pending write, into [`Queue::stream`].)
#[async_trait]
pub trait Queue: Send + Sync {
    /// The Redis stream the cache's pending write appends changes to.
    fn stream(&self) -> &str;

    /// Up to `max` changes for this consumer: first those another consumer took and left
    /// unacknowledged for the claim time (when `reclaim`), then new ones, waiting up to `wait`.
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        reclaim: bool,
    ) -> Result<Vec<Delivery>, QueueError>;

    /// Acknowledges applied changes: they are never delivered again.
    async fn ack(&self, deliveries: &[Delivery]) -> Result<(), QueueError>;

    /// Moves a change that cannot be applied to the dead letters (and acknowledges it).
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError>;

    /// The point every change appended so far lies before.
    async fn mark(&self) -> Result<Mark, QueueError>;

    /// Whether every change before `mark` has been acknowledged (applied or dead-lettered).
    async fn passed(&self, mark: &Mark) -> Result<bool, QueueError>;

    async fn depth(&self) -> Result<Depth, QueueError>;

    /// Frees what acknowledged changes still occupy, if the queue keeps them.
    async fn compact(&self) -> Result<(), QueueError> {
        Ok(())
    }
}
