//! The connection to Redis, and which run of the Redis server it reaches.
//!
//! A Redis that restarts comes back empty, or from a snapshot; a failover promotes a replica
//! that may lack the last writes. Either way the server now holds a past the service never
//! acknowledged, and no key inside it can say so: a key in a snapshot comes back with the
//! snapshot. What does change is the server's `run_id` (`INFO server`), new for every process
//! start, so every restart and every promoted replica. That run is the cache's **epoch**:
//!
//! * every connection learns its server's run before it carries any command (a [`Session`]),
//!   and a connection never reconnects by itself (a `MultiplexedConnection` fails once its
//!   server is gone; the next call opens and verifies a new one);
//! * every value the cache stores is stamped with an epoch, and a value stamped with another
//!   run than the one that answers is not trusted (a miss);
//! * a fill is stamped with the epoch noted before its MongoDB read, so a fill that began
//!   before an outage can never be trusted after it.

use std::{
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use redis::{aio::MultiplexedConnection, AsyncConnectionConfig, RedisResult};

/// The run of the Redis server a value was written to (a prefix of its `run_id`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Epoch(Arc<str>);

/// How many characters of the 40-character `run_id` an epoch keeps: 64 bits.
const EPOCH_CHARS: usize = 16;

impl Epoch {
    /// The stamp of a write made while no run was known: never trusted by any run.
    pub fn unknown() -> Self {
        Self(Arc::from("none"))
    }

    /// The stamp of a write-behind record MongoDB does not hold yet: trusted by every run
    /// (see `pending`).
    pub(super) fn pending() -> Self {
        Self(Arc::from(super::entry::PENDING))
    }

    fn from_run_id(run_id: &str) -> Self {
        Self(Arc::from(
            run_id.chars().take(EPOCH_CHARS).collect::<String>(),
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A connection, and the run of the server it reaches.
#[derive(Clone)]
pub(super) struct Session {
    pub connection: MultiplexedConnection,
    pub epoch: Epoch,
    id: u64,
}

pub(super) struct Link {
    client: redis::Client,
    timeout: Duration,
    current: Mutex<Option<Session>>,
    /// One connection attempt at a time: callers that find no session wait for it, and share
    /// its failure rather than each trying again in turn (a silent Redis would otherwise cost
    /// the last of N waiting requests N connect timeouts).
    connecting: tokio::sync::Mutex<()>,
    /// Connection attempts made so far.
    attempts: AtomicU64,
    next_id: AtomicU64,
}

impl Link {
    pub(super) fn new(client: redis::Client, timeout: Duration) -> Self {
        Self {
            client,
            timeout,
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            attempts: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
        }
    }

    /// The epoch of the session in use, without any I/O.
    pub(super) fn epoch(&self) -> Option<Epoch> {
        self.lock().as_ref().map(|session| session.epoch.clone())
    }

    /// The session in use, or a new one: connected and its server's run read.
    pub(super) async fn session(&self) -> RedisResult<Session> {
        if let Some(session) = self.lock().clone() {
            return Ok(session);
        }
        let attempts = self.attempts.load(Ordering::Acquire);
        let _connecting = self.connecting.lock().await;
        if let Some(session) = self.lock().clone() {
            return Ok(session);
        }
        if self.attempts.load(Ordering::Acquire) != attempts {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "Redis could not be reached just now (a concurrent attempt failed)",
            )));
        }
        self.attempts.fetch_add(1, Ordering::AcqRel);
        // Commands carry their own deadlines (reads and writes differ): none on the connection,
        // one around connecting and reading the run.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(None);
        let (connection, run_id) = tokio::time::timeout(self.timeout, async {
            let mut connection = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let info: String = redis::cmd("INFO")
                .arg("server")
                .query_async(&mut connection)
                .await?;
            RedisResult::Ok((connection, run_id_of(&info)?))
        })
        .await
        .map_err(|_| {
            redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "Redis did not answer INFO within the timeout",
            ))
        })??;
        let session = Session {
            connection,
            epoch: Epoch::from_run_id(&run_id),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
        };
        let previous = self.lock().replace(session.clone());
        debug_assert!(previous.is_none());
        tracing::info!(epoch = %session.epoch, "connected to Redis");
        Ok(session)
    }

    /// Forgets `session` after a failure on it (unless it was already replaced), so the next
    /// call connects again and verifies which run it reaches.
    pub(super) fn drop_session(&self, session: &Session) {
        let mut current = self.lock();
        if current.as_ref().is_some_and(|c| c.id == session.id) {
            *current = None;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Session>> {
        self.current.lock().expect("link lock is never poisoned")
    }
}

/// The `run_id` line of `INFO server`.
fn run_id_of(info: &str) -> RedisResult<String> {
    info.lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .map(str::trim)
        .filter(|run_id| !run_id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            redis::RedisError::from((
                redis::ErrorKind::Client,
                "INFO server has no run_id: the cache cannot tell one Redis run from another",
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_is_a_prefix_of_the_run_id() {
        let epoch = Epoch::from_run_id("a1b2c3d4e5f60718293a4b5c6d7e8f9012345678");
        assert_eq!(epoch.as_str(), "a1b2c3d4e5f60718");
        assert_ne!(epoch, Epoch::unknown());
    }
}
