//! The Redis entity cache: the only module that speaks to Redis.
//!
//! Keys follow the brief: `<prefix>books_<id>`, one string per record (see [`entry`] for the
//! value format). The service speaks to one Redis node (a primary, with replicas or not): batches
//! (`MGET`, pipelines) cross slots and the epoch is one node's run, so Redis Cluster is not
//! supported (README, Known limits).
//!
//! The rules this module keeps, and the race each one closes:
//!
//! * **Versioned writes only.** Fills after a miss and write-throughs after a commit both go
//!   through one compare-and-set script ([`script`]): a key never moves to an older version,
//!   so a reader delayed between its MongoDB read and its fill cannot undo a newer write
//!   (invariant 2).
//! * **Absence is versioned too.** An id MongoDB does not have is cached at version 0 for a
//!   short TTL (no hammering MongoDB with missing ids); a delete leaves a tombstone at the
//!   deleted version + 1, so a reader that read the record before the delete cannot bring it
//!   back (its version is lower).
//! * **No fill crosses a Redis outage.** Every value is stamped with the Redis run (the
//!   epoch, see [`link`]) that the writer saw before it read or wrote MongoDB, and only values
//!   of the run that answers are trusted: a restarted server, a snapshot, a promoted replica
//!   all start with nothing trusted, and a fill that began before the outage lands untrusted.
//! * **Redis is never required.** Any Redis failure becomes a miss for reads (`bypass`) and
//!   trips a short breaker. A write-through waits for Redis up to `OPONN_REDIS_WRITE_TIMEOUT_MS`
//!   (a paused or slow Redis takes it before the mutation replies); only a Redis that refuses
//!   connections (it is not running: whatever comes back is a new run, trusting nothing) or
//!   that stays silent past that bound turns it into a pending repair ([`repairs`]), re-applied
//!   when Redis answers; reads of a key with a pending repair skip the cache.
//! * **Batches are one round trip**: one `MGET` for lookups, one pipeline for fills.

mod breaker;
mod client;
pub mod entry;
mod error;
mod link;
mod lookups;
mod pending;
mod raw;
mod repairs;
pub mod results;
mod script;

use std::{
    collections::BTreeSet,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use redis::{ErrorKind, RedisResult, Script, ServerErrorKind};
use tokio::time::Instant;

use self::{
    breaker::Breaker,
    link::{Link, Session},
    lookups::Batches,
    pending::PendingScripts,
    repairs::{Repairs, VersionedWrite},
    results::ResultScripts,
};
pub use crate::entity::Entity;

pub use self::{
    client::{install_crypto_provider, redis_client, ClientError},
    entry::Entry,
    error::{CacheError, Unsettled},
    link::Epoch,
    pending::{Durability, Held, Pended},
    raw::Stamped,
};
use crate::{
    config::{CacheSettings, RedisSettings},
    metrics::Metrics,
};

/// How long a write-through waits between two attempts to reach Redis.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// Lookups of at most this many keys share `MGET`s with concurrent ones ([`lookups`]); larger
/// ones (a `booksByIds` of many ids) go out alone, so they never hold small ones up.
const SHARED_LOOKUP_KEYS: usize = 16;
/// The most keys one shared `MGET` carries.
const SHARED_MGET_KEYS: usize = 512;

/// How often [`Cache::settle`] tries Redis again.
const SETTLE_PACE: Duration = Duration::from_millis(100);

/// The outcome of looking one id up.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup<T> {
    /// The cache knows the record (or knows it does not exist).
    Hit(Entry<T>),
    /// Not cached: read MongoDB, then fill.
    Miss,
    /// The cache cannot be trusted for this id right now: read MongoDB and do not fill.
    Bypass,
}

/// The Redis entity cache. Share it behind an `Arc`.
pub struct Cache {
    link: Link,
    lookups: Batches<String, Option<String>, Epoch>,
    set_if_not_older: Script,
    prefix: String,
    lifetimes: CacheSettings,
    timeout: Duration,
    write_timeout: Duration,
    retry_after: Duration,
    breaker: Breaker,
    /// Open after a write waited the whole write timeout in vain: the writes that follow
    /// within `retry_after` do not wait again.
    silent: Breaker,
    repairs: Repairs,
    results: ResultScripts,
    pending: PendingScripts,
    /// Index ranges whose reconciliation failed (see [`results`]).
    dirty_results: Mutex<BTreeSet<String>>,
    dirty_count: tokio::sync::watch::Sender<usize>,
    metrics: Metrics,
}

impl Cache {
    /// Builds the cache. The connection is made on first use, so this succeeds while Redis is
    /// down; it fails only on a malformed URL or CA file (see [`redis_client`]).
    pub fn connect(
        redis: &RedisSettings,
        lifetimes: &CacheSettings,
        metrics: &Metrics,
    ) -> Result<Self, CacheError> {
        let client = redis_client(redis)?;
        Ok(Self {
            link: Link::new(client, redis.timeout),
            lookups: Batches::new(SHARED_MGET_KEYS),
            set_if_not_older: script::set_if_not_older(),
            prefix: lifetimes.key_prefix.clone(),
            lifetimes: lifetimes.clone(),
            timeout: redis.timeout,
            write_timeout: redis.write_timeout,
            retry_after: redis.retry_after,
            breaker: Breaker::new(redis.retry_after),
            silent: Breaker::new(redis.retry_after),
            repairs: Repairs::new(),
            results: ResultScripts::new(),
            pending: PendingScripts::new(),
            dirty_results: Mutex::default(),
            dirty_count: tokio::sync::watch::Sender::new(0),
            metrics: metrics.clone(),
        })
    }

    /// The Redis key of a record: `<prefix><collection>_<id>`.
    pub fn key<E: Entity>(&self, id: &E::Id) -> String {
        format!("{}{}_{}", self.prefix, E::COLLECTION, id)
    }

    /// The epoch a reader or writer notes before it reads or writes MongoDB, and then stamps
    /// its cache writes with: the run of the Redis server in use, connecting if none is (a
    /// write made while no run is known is stamped [`Epoch::unknown`], trusted by none).
    pub async fn note(&self) -> Epoch {
        if let Some(epoch) = self.link.epoch() {
            return epoch;
        }
        match self.session().await {
            Ok(session) => session.epoch,
            Err(_) => Epoch::unknown(),
        }
    }

    /// Looks every id up with one `MGET`, shared with concurrent lookups when small (see
    /// [`lookups`]). Never fails: Redis trouble yields `Bypass`. A value stamped with another
    /// Redis run than the one answering is a miss.
    pub async fn get_many<E: Entity>(&self, ids: &[E::Id]) -> Vec<Lookup<E>> {
        let started = Instant::now();
        let keys: Vec<String> = ids.iter().map(|id| self.key::<E>(id)).collect();
        let count = keys.len();
        let looked_up = if count <= SHARED_LOOKUP_KEYS {
            self.lookups.lookup(keys, |keys| self.mget(keys)).await
        } else {
            let borrowed: Vec<&String> = keys.iter().collect();
            let answer = self.mget(&borrowed).await;
            answer
                .map(|(epoch, values)| (keys, epoch, values))
                .map_err(Some)
        };
        self.metrics
            .cache_lookup_duration
            .observe(started.elapsed().as_secs_f64());
        let (keys, epoch, values) = match looked_up {
            Ok(looked_up) => looked_up,
            Err(error) => {
                self.count_lookups::<E>("bypass", count);
                // A shared MGET's failure is reported once, by the lookup that sent it.
                if let Some(error) = error.filter(|error| !matches!(error, CacheError::Bypassed)) {
                    tracing::warn!(%error, entity = E::COLLECTION, "cache lookup failed; reading MongoDB");
                }
                return (0..count).map(|_| Lookup::Bypass).collect();
            }
        };
        keys.iter()
            .zip(values)
            .map(|(key, value)| self.classify::<E>(&epoch, key, value))
            .collect()
    }

    /// One `MGET` of `keys`, and the Redis run that answered it.
    fn mget(
        &self,
        keys: &[&String],
    ) -> impl Future<Output = Result<(Epoch, Vec<Option<String>>), CacheError>> + '_ {
        let mget = redis::cmd("MGET").arg(keys).to_owned();
        self.round_trip("mget", |mut connection| async move {
            mget.query_async::<Vec<Option<String>>>(&mut connection)
                .await
        })
    }

    fn classify<E: Entity>(&self, epoch: &Epoch, key: &str, value: Option<String>) -> Lookup<E> {
        if self.repairs.contains(key) {
            self.count_lookups::<E>("bypass", 1);
            return Lookup::Bypass;
        }
        let Some(raw) = value else {
            self.count_lookups::<E>("miss", 1);
            return Lookup::Miss;
        };
        match Entry::decode(&raw) {
            // A pending record (write-behind) is the newest version there is, in every run.
            Ok((stamp, entry)) if stamp == epoch.as_str() || stamp == entry::PENDING => {
                self.count_lookups::<E>("hit", 1);
                Lookup::Hit(entry)
            }
            Ok(_) => {
                // Written for another run of Redis (a restart, a snapshot, a failover): the
                // run that answers never saw the writes made since, so it is not trusted.
                self.count_lookups::<E>("other_epoch", 1);
                Lookup::Miss
            }
            Err(error) => {
                // Treated as a miss: the fill's compare-and-set overwrites what it cannot parse.
                tracing::warn!(%error, key, "ignoring a malformed cache entry");
                self.count_lookups::<E>("miss", 1);
                Lookup::Miss
            }
        }
    }

    /// Caches what MongoDB returned after a miss; `noted` is the epoch noted before MongoDB
    /// was read. Best effort: a failure only costs a later miss, an entry older than the cached
    /// one is refused by the compare-and-set, and nothing is filled into another Redis run than
    /// the noted one.
    pub async fn fill_many<E: Entity>(&self, noted: &Epoch, entries: &[(E::Id, Entry<E>)]) {
        if entries.is_empty() {
            return;
        }
        let stored = match self.session().await {
            Ok(session) if session.epoch == *noted => {
                let writes = self.versioned_writes(noted, entries);
                self.set_many(&session, self.timeout, &writes).await
            }
            Ok(_) => {
                self.metrics
                    .cache_fills
                    .with_label_values(&[E::COLLECTION, "other_epoch"])
                    .inc_by(entries.len() as u64);
                return;
            }
            Err(error) => Err(error),
        };
        match stored {
            Ok(stored) => {
                let fresh = stored.iter().filter(|stored| **stored).count();
                let fills = &self.metrics.cache_fills;
                fills
                    .with_label_values(&[E::COLLECTION, "stored"])
                    .inc_by(fresh as u64);
                fills
                    .with_label_values(&[E::COLLECTION, "stale"])
                    .inc_by((stored.len() - fresh) as u64);
            }
            Err(error) => {
                tracing::warn!(%error, entity = E::COLLECTION, "cache fill failed");
            }
        }
    }

    /// Caches what a committed write produced, stamped with the epoch `noted` before the write
    /// reached MongoDB. Never fails the write. It waits for Redis (past the breaker) up to the
    /// write timeout, reconnecting as needed, so a Redis that is only slow or paused takes it
    /// before the mutation replies; a Redis that refuses connections is not running, and
    /// whatever answers next is a new run that trusts nothing older, so the write becomes a
    /// pending repair at once (see [`repairs`]), as it does past the timeout.
    pub async fn write_through<E: Entity>(&self, noted: &Epoch, entries: &[(E::Id, Entry<E>)]) {
        if entries.is_empty() {
            return;
        }
        let writes = self.versioned_writes(noted, entries);
        let written = self
            .within_write_timeout(|session, left| {
                let writes = &writes;
                async move { self.set_many(&session, left, writes).await.map(|_| ()) }
            })
            .await;
        if let Err(error) = written {
            tracing::warn!(%error, entity = E::COLLECTION, "write-through failed; will repair when Redis answers");
            self.repairs.record(&writes);
            self.metrics
                .cache_pending_repairs
                .set(self.repairs.len() as i64);
        }
    }

    /// Runs a write's cache work (`attempt`, given a session and the time left), past the
    /// breaker, again on a new session after a failure, until it succeeds or the write timeout
    /// passes; a refused connection ends it at once (Redis is not running, and the run that
    /// comes back trusts nothing older).
    async fn within_write_timeout<T, F, Fut>(&self, mut attempt: F) -> Result<T, CacheError>
    where
        F: FnMut(Session, Duration) -> Fut,
        Fut: Future<Output = Result<T, CacheError>>,
    {
        if !self.silent.allows() {
            return Err(CacheError::Bypassed);
        }
        let deadline = Instant::now() + self.write_timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let attempted = match self.link.session().await {
                Ok(session) => attempt(session, left).await,
                Err(error) => Err(self.connect_failed(error)),
            };
            match attempted {
                Ok(done) => return Ok(done),
                Err(CacheError::Redis(error)) if error.is_connection_refusal() => {
                    return Err(CacheError::Redis(error))
                }
                Err(error) if Instant::now() >= deadline => {
                    self.silent.trip();
                    return Err(error);
                }
                Err(_) => {
                    // Reconnect (the failed session was dropped) after a short pause.
                    let left = deadline.saturating_duration_since(Instant::now());
                    tokio::time::sleep(RECONNECT_PAUSE.min(left)).await;
                }
            }
        }
    }

    /// Re-applies pending repairs, forever, every `retry_after`. Spawn once per process.
    pub async fn run_repairs(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.retry_after).await;
            self.repair_once().await;
        }
    }

    async fn repair_once(&self) {
        self.repair_results().await;
        if self.breaker.allows() {
            self.trim_results().await;
        }
        if self.breaker.allows() {
            self.apply_repairs().await;
        }
    }

    /// Re-applies every pending repair, each stamped with the epoch its write noted: under
    /// the same Redis run it restores what the write-through missed; under a new run it lands
    /// untrusted, a version fence for older fills, since that run never saw the write.
    async fn apply_repairs(&self) {
        let writes = self.repairs.snapshot();
        if writes.is_empty() {
            return;
        }
        let applied = match self.link.session().await {
            Ok(session) => self.set_many(&session, self.timeout, &writes).await,
            Err(error) => Err(self.connect_failed(error)),
        };
        match applied {
            Ok(_) => {
                tracing::info!(repaired = writes.len(), "pending cache writes applied");
                self.repairs.settle(&writes);
            }
            Err(error) => tracing::warn!(%error, pending = writes.len(), "cache repair failed"),
        }
        self.metrics
            .cache_pending_repairs
            .set(self.repairs.len() as i64);
    }

    /// How many write-throughs are waiting for Redis.
    pub fn pending_repairs(&self) -> usize {
        self.repairs.len()
    }

    /// Resolves once every pending repair has reached Redis.
    pub async fn repairs_drained(&self) {
        self.repairs.drained().await
    }

    /// Applies pending repairs and drops unreconciled results until none is left, trying
    /// every [`SETTLE_PACE`] (whatever the breaker says) for at most `within`. For a process
    /// about to exit (`oponn ingest`, `oponn seed`, a `serve` that received SIGTERM): its
    /// repairs die with it, and a cached older version would then be served by every other
    /// instance until its TTL ends, breaking invariant 1. Writes go through the same
    /// versioned compare-and-set as every repair.
    pub async fn settle(&self, within: Duration) -> Result<(), Unsettled> {
        let deadline = Instant::now() + within;
        loop {
            self.breaker.reset();
            self.repair_once().await;
            let unsettled = Unsettled {
                records: self.repairs.len(),
                result_ranges: *self.dirty_count.borrow(),
            };
            if unsettled.records == 0 && unsettled.result_ranges == 0 {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(unsettled);
            }
            tokio::time::sleep(SETTLE_PACE.min(deadline - now)).await;
        }
    }

    /// One round trip to Redis, regardless of the breaker; a success closes the breaker.
    pub async fn ping(&self) -> Result<Duration, CacheError> {
        let started = Instant::now();
        let session = self
            .link
            .session()
            .await
            .map_err(|error| self.connect_failed(error))?;
        let mut connection = session.connection.clone();
        let _: String = self
            .call(
                "ping",
                &session,
                self.timeout,
                redis::cmd("PING").query_async(&mut connection),
            )
            .await?;
        self.breaker.reset();
        Ok(started.elapsed())
    }

    fn versioned_writes<E: Entity>(
        &self,
        epoch: &Epoch,
        entries: &[(E::Id, Entry<E>)],
    ) -> Vec<VersionedWrite> {
        entries
            .iter()
            .map(|(id, entry)| VersionedWrite {
                key: self.key::<E>(id),
                version: entry.version,
                value: entry.encode(epoch),
                ttl_ms: self.lifetime(entry).as_millis() as u64,
            })
            .collect()
    }

    /// Records live for the record TTL; a never-seen id for the short negative TTL; a delete's
    /// tombstone (an absence at a version above 0) for the tombstone TTL.
    fn lifetime<T>(&self, entry: &Entry<T>) -> Duration {
        match (&entry.value, entry.version) {
            (Some(_), _) => self.lifetimes.record_ttl,
            (None, 0) => self.lifetimes.negative_ttl,
            (None, _) => self.lifetimes.tombstone_ttl,
        }
    }

    /// Runs the compare-and-set for every write in one pipeline, on `session`, within
    /// `within`; `true` where it stored.
    async fn set_many(
        &self,
        session: &Session,
        within: Duration,
        writes: &[VersionedWrite],
    ) -> Result<Vec<bool>, CacheError> {
        let mut pipeline = redis::pipe();
        for write in writes {
            pipeline
                .cmd("EVALSHA")
                .arg(self.set_if_not_older.get_hash())
                .arg(1)
                .arg(&write.key)
                .arg(write.version)
                .arg(&write.value)
                .arg(write.ttl_ms);
        }
        let mut connection = session.connection.clone();
        let stored: Result<Vec<i64>, CacheError> = self
            .call(
                "set_if_not_older",
                session,
                within,
                pipeline.query_async(&mut connection),
            )
            .await;
        let stored = match stored {
            Err(CacheError::Redis(error))
                if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) =>
            {
                // A new connection to a new run, or flushed scripts: load ours, run again.
                self.call(
                    "script_load",
                    session,
                    within,
                    self.set_if_not_older
                        .prepare_invoke()
                        .load_async(&mut connection),
                )
                .await?;
                self.call(
                    "set_if_not_older",
                    session,
                    within,
                    pipeline.query_async(&mut connection),
                )
                .await?
            }
            other => other?,
        };
        Ok(stored.into_iter().map(|stored| stored == 1).collect())
    }

    /// One round trip for a read or the repair loop: on the session in use (none while the
    /// breaker is open), within the read timeout. Returns the epoch of the run that answered.
    async fn round_trip<T, F, Fut>(
        &self,
        operation: &'static str,
        run: F,
    ) -> Result<(Epoch, T), CacheError>
    where
        F: FnOnce(redis::aio::MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let session = self.session().await?;
        let connection = session.connection.clone();
        let value = self
            .call(operation, &session, self.timeout, run(connection))
            .await?;
        Ok((session.epoch, value))
    }

    /// The session for a read or a fill: none while the breaker is open.
    async fn session(&self) -> Result<Session, CacheError> {
        if !self.breaker.allows() {
            return Err(CacheError::Bypassed);
        }
        self.link
            .session()
            .await
            .map_err(|error| self.connect_failed(error))
    }

    /// Counts a failed connection (or reading its run) and trips the breaker.
    fn connect_failed(&self, error: redis::RedisError) -> CacheError {
        self.metrics
            .cache_errors
            .with_label_values(&["connect"])
            .inc();
        self.breaker.trip();
        CacheError::Redis(error)
    }

    /// Runs one Redis round trip on `session` within `within`, with metrics. A failure other
    /// than an error reply trips the breaker and drops the session: the next call connects
    /// again and learns which run of Redis it reaches.
    async fn call<T>(
        &self,
        operation: &'static str,
        session: &Session,
        within: Duration,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, CacheError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(within, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(CacheError::Redis(error)),
            Err(_) => Err(CacheError::Timeout(within)),
        };
        self.metrics
            .redis_duration
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Err(CacheError::Redis(error))
                if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {}
            Err(error) => {
                self.metrics
                    .cache_errors
                    .with_label_values(&[operation])
                    .inc();
                self.breaker.trip();
                if !matches!(error, CacheError::Redis(error) if matches!(error.kind(), ErrorKind::Server(_)))
                {
                    self.link.drop_session(session);
                }
            }
            Ok(_) => {}
        }
        result
    }

    fn count_lookups<E: Entity>(&self, result: &str, count: usize) {
        self.metrics
            .cache_lookups
            .with_label_values(&[E::COLLECTION, result])
            .inc_by(count as u64);
    }
}
