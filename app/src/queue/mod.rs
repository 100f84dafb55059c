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
//! The queue is one small trait with two implementations (`OPONN_QUEUE`):
//! [`streams::RedisStreams`] (a stream and a consumer group, appended to by the cache's script
//! itself) and [`sqs::Sqs`] (an SQS FIFO queue). SQS cannot take part in a Redis script, so
//! there the script records the change in the sorted set `<prefix>queued` instead (with Redis's
//! time), the writer then sends it to SQS with the record's content, and that set is what the
//! barrier and the depth read; see [`sqs`] for how a change whose send never happened is
//! found and sent again.

mod lane;
pub mod sqs;
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

impl Change {
    /// The change as one string, `<collection>:<id>:<version>` (the member of SQS's
    /// `queued` set and its deduplication id).
    pub fn member(&self) -> String {
        format!("{}:{}:{}", self.collection, self.id, self.version)
    }

    /// The inverse of [`Change::member`].
    pub fn from_member(member: &str) -> Option<Self> {
        let mut parts = member.rsplitn(3, ':');
        let version = parts.next()?.parse().ok()?;
        let id = parts.next()?.to_owned();
        let collection = parts.next()?.to_owned();
        Some(Self {
            collection,
            id,
            version,
        })
    }
}

/// What a message carries of its record besides the change. Stream entries carry nothing (the
/// record is in the cache); SQS messages carry the record as the writer stored it, so that a
/// change survives Redis losing its pending record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Carried {
    #[default]
    Nothing,
    /// The record's JSON, as the cache stores it.
    Record(serde_json::Value),
    /// The change is a delete.
    Deleted,
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
    /// The record the message carries, if any.
    pub carried: Carried,
}

/// Where the cache's pending write records a change, in the same script as the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appends<'a> {
    /// `XADD` to this stream: the change is queued by the script itself.
    Stream(&'a str),
    /// `ZADD` to this sorted set (score: Redis's time in ms, member: [`Change::member`]); the
    /// writer then sends the change with [`Queue::send`].
    Index(&'a str),
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

impl Mark {
    /// Where the mark lies, for ordering marks of one queue (a stream id `<ms>-<seq>`, or
    /// Redis's time in ms); `None` for a mark every state has passed (an empty queue).
    pub fn position(&self) -> Option<(u64, u64)> {
        let mark = self.0.as_deref()?;
        let (ms, seq) = mark.split_once('-').unwrap_or((mark, "0"));
        Some((ms.parse().unwrap_or(0), seq.parse().unwrap_or(0)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the queue did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the queue failed: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("SQS failed: {0}")]
    Sqs(String),
}

/// The consuming side of the queue, and its progress. (Changes are recorded by the cache's
/// pending write, where [`Queue::appends`] says, then [`Queue::send`]t.)
#[async_trait]
pub trait Queue: Send + Sync {
    /// Where the cache's pending write records changes.
    fn appends(&self) -> Appends<'_>;

    /// Sends a change whose pending record the cache just stored (SQS); nothing for a stream,
    /// which the script appended to. An error fails the mutation, though the change may still
    /// be applied later (it is recorded: see [`Queue::stranded`]).
    async fn send(&self, _change: &Change, _carried: &Carried) -> Result<(), QueueError> {
        Ok(())
    }

    /// Changes recorded for a while (a grace of some seconds) that the queue may never have
    /// received (their writer died between its script and its send), each returned at most
    /// once in a while, for the worker to send again; none for a stream.
    async fn stranded(&self, _max: usize) -> Result<Vec<Change>, QueueError> {
        Ok(Vec::new())
    }

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

    /// Keeps `deliveries`, which this worker holds to try again, from being handed to another
    /// worker meanwhile (SQS: their visibility timeout starts again). A Redis stream needs
    /// nothing: only a healthy worker claims another's changes.
    async fn hold(&self, _deliveries: &[Delivery]) -> Result<(), QueueError> {
        Ok(())
    }
}
