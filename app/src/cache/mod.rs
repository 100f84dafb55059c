//! The Redis entity cache: the only module that speaks to Redis.
//!
//! Keys follow the brief: `<prefix>books_<id>`, one string per record (see [`entry`] for the
//! value format). Every operation touches one key per command, so the layout works on Redis
//! Cluster too.
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
//! * **Redis is never required.** Any Redis failure becomes a miss for reads (`bypass`), trips
//!   a short breaker, and turns write-throughs into pending repairs ([`repairs`]) that are
//!   re-applied when Redis answers; reads of a key with a pending repair skip the cache.
//! * **Batches are one round trip**: one `MGET` for lookups, one pipeline for fills.

mod breaker;
pub mod entry;
mod error;
mod repairs;
pub mod results;
mod script;

use std::{
    collections::BTreeSet,
    fmt::Display,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    ErrorKind, RedisResult, Script, ServerErrorKind,
};
use secrecy::ExposeSecret;
use serde::{de::DeserializeOwned, Serialize};
use tokio::time::Instant;

use self::{
    breaker::Breaker,
    repairs::{Repairs, VersionedWrite},
    results::ResultScripts,
};
pub use self::{
    entry::Entry,
    error::{CacheError, Unsettled},
};
use crate::{
    config::{CacheSettings, RedisSettings},
    domain::Version,
    metrics::Metrics,
};

/// A record type the entity cache can hold: describing an entity here is all the cache and
/// the datastore's read-through need.
pub trait CacheEntity: Serialize + DeserializeOwned + Clone + Send + Sync {
    /// The collection name: the key stem (`books` gives `books_<id>`) and the metric label.
    const COLLECTION: &'static str;
    type Id: Display + Copy + Eq + std::hash::Hash + Send + Sync;

    fn id(&self) -> Self::Id;
    fn version(&self) -> Version;
}

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
    connection: ConnectionManager,
    set_if_not_older: Script,
    prefix: String,
    lifetimes: CacheSettings,
    timeout: Duration,
    retry_after: Duration,
    breaker: Breaker,
    repairs: Repairs,
    results: ResultScripts,
    /// Index ranges whose reconciliation failed (see [`results`]).
    dirty_results: Mutex<BTreeSet<String>>,
    dirty_count: tokio::sync::watch::Sender<usize>,
    metrics: Metrics,
}

impl Cache {
    /// Builds the cache. The connection is made on first use, so this succeeds while Redis is
    /// down; it fails only on a malformed URL.
    pub fn connect(
        redis: &RedisSettings,
        lifetimes: &CacheSettings,
        metrics: &Metrics,
    ) -> Result<Self, CacheError> {
        let client = redis::Client::open(redis.url.expose_secret())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(redis.timeout))
            .set_response_timeout(Some(redis.timeout))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            connection,
            set_if_not_older: script::set_if_not_older(),
            prefix: lifetimes.key_prefix.clone(),
            lifetimes: lifetimes.clone(),
            timeout: redis.timeout,
            retry_after: redis.retry_after,
            breaker: Breaker::new(redis.retry_after),
            repairs: Repairs::new(),
            results: ResultScripts::new(),
            dirty_results: Mutex::default(),
            dirty_count: tokio::sync::watch::Sender::new(0),
            metrics: metrics.clone(),
        })
    }

    /// The Redis key of a record: `<prefix><collection>_<id>`.
    pub fn key<E: CacheEntity>(&self, id: &E::Id) -> String {
        format!("{}{}_{}", self.prefix, E::COLLECTION, id)
    }

    /// Looks every id up with one `MGET`. Never fails: Redis trouble yields `Bypass`.
    pub async fn get_many<E: CacheEntity>(&self, ids: &[E::Id]) -> Vec<Lookup<E>> {
        let keys: Vec<String> = ids.iter().map(|id| self.key::<E>(id)).collect();
        let mut connection = self.connection.clone();
        let values: Vec<Option<String>> = match self
            .call(
                "mget",
                redis::cmd("MGET").arg(&keys).query_async(&mut connection),
            )
            .await
        {
            Ok(values) => values,
            Err(error) => {
                self.count_lookups::<E>("bypass", keys.len());
                if !matches!(error, CacheError::Bypassed) {
                    tracing::warn!(%error, entity = E::COLLECTION, "cache lookup failed; reading MongoDB");
                }
                return keys.iter().map(|_| Lookup::Bypass).collect();
            }
        };
        keys.iter()
            .zip(values)
            .map(|(key, value)| self.classify::<E>(key, value))
            .collect()
    }

    fn classify<E: CacheEntity>(&self, key: &str, value: Option<String>) -> Lookup<E> {
        if self.repairs.contains(key) {
            self.count_lookups::<E>("bypass", 1);
            return Lookup::Bypass;
        }
        let Some(raw) = value else {
            self.count_lookups::<E>("miss", 1);
            return Lookup::Miss;
        };
        match Entry::decode(&raw) {
            Ok(entry) => {
                self.count_lookups::<E>("hit", 1);
                Lookup::Hit(entry)
            }
            Err(error) => {
                // Treated as a miss: the fill's compare-and-set overwrites what it cannot parse.
                tracing::warn!(%error, key, "ignoring a malformed cache entry");
                self.count_lookups::<E>("miss", 1);
                Lookup::Miss
            }
        }
    }

    /// Caches what MongoDB returned after a miss. Best effort: a failure only costs a later
    /// miss, and an entry older than the cached one is refused by the compare-and-set.
    pub async fn fill_many<E: CacheEntity>(&self, entries: &[(E::Id, Entry<E>)]) {
        if entries.is_empty() {
            return;
        }
        let writes = self.versioned_writes(entries);
        match self.set_many(&writes).await {
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

    /// Caches what a committed write produced. Never fails the write: if Redis cannot take it
    /// now, it becomes a pending repair (see [`repairs`]).
    pub async fn write_through<E: CacheEntity>(&self, entries: &[(E::Id, Entry<E>)]) {
        if entries.is_empty() {
            return;
        }
        let writes = self.versioned_writes(entries);
        if let Err(error) = self.set_many(&writes).await {
            tracing::warn!(%error, entity = E::COLLECTION, "write-through failed; will repair when Redis answers");
            self.repairs.record(&writes);
            self.metrics
                .cache_pending_repairs
                .set(self.repairs.len() as i64);
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
        let writes = self.repairs.snapshot();
        if writes.is_empty() || !self.breaker.allows() {
            return;
        }
        match self.set_many(&writes).await {
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

    /// Applies pending repairs and drops unreconciled results until none is left, trying every
    /// `retry_after` for at most `within`. For a process about to exit (`oponn ingest`, `oponn
    /// seed`): its repairs die with it, and a cached older version would then be served by
    /// every other instance until its TTL ends, breaking invariant 1. Writes go through the
    /// same versioned compare-and-set as every repair.
    pub async fn settle(&self, within: Duration) -> Result<(), Unsettled> {
        let deadline = Instant::now() + within;
        loop {
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
            tokio::time::sleep(self.retry_after.min(deadline - now)).await;
        }
    }

    /// One round trip to Redis, regardless of the breaker; a success closes the breaker.
    pub async fn ping(&self) -> Result<Duration, CacheError> {
        let started = Instant::now();
        let mut connection = self.connection.clone();
        let pong: RedisResult<String> = match tokio::time::timeout(
            self.timeout,
            redis::cmd("PING").query_async(&mut connection),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => return Err(CacheError::Timeout(self.timeout)),
        };
        pong?;
        self.breaker.reset();
        Ok(started.elapsed())
    }

    fn versioned_writes<E: CacheEntity>(
        &self,
        entries: &[(E::Id, Entry<E>)],
    ) -> Vec<VersionedWrite> {
        entries
            .iter()
            .map(|(id, entry)| VersionedWrite {
                key: self.key::<E>(id),
                version: entry.version,
                value: entry.encode(),
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

    /// Runs the compare-and-set for every write in one pipeline; `true` where it stored.
    async fn set_many(&self, writes: &[VersionedWrite]) -> Result<Vec<bool>, CacheError> {
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
        let mut connection = self.connection.clone();
        let stored: Result<Vec<i64>, CacheError> = self
            .call("set_if_not_older", pipeline.query_async(&mut connection))
            .await;
        let stored = match stored {
            Err(CacheError::Redis(error))
                if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) =>
            {
                // Redis restarted or flushed its scripts: load ours and run the batch again.
                self.call(
                    "script_load",
                    self.set_if_not_older
                        .prepare_invoke()
                        .load_async(&mut connection),
                )
                .await?;
                self.call("set_if_not_older", pipeline.query_async(&mut connection))
                    .await?
            }
            other => other?,
        };
        Ok(stored.into_iter().map(|stored| stored == 1).collect())
    }

    /// Runs one Redis round trip under the timeout and the breaker, with metrics.
    async fn call<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, CacheError> {
        if !self.breaker.allows() {
            return Err(CacheError::Bypassed);
        }
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(CacheError::Redis(error)),
            Err(_) => Err(CacheError::Timeout(self.timeout)),
        };
        self.metrics
            .redis_duration
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Err(CacheError::Redis(error))
                if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {}
            Err(_) => {
                self.metrics
                    .cache_errors
                    .with_label_values(&[operation])
                    .inc();
                self.breaker.trip();
            }
            Ok(_) => {}
        }
        result
    }

    fn count_lookups<E: CacheEntity>(&self, result: &str, count: usize) {
        self.metrics
            .cache_lookups
            .with_label_values(&[E::COLLECTION, result])
            .inc_by(count as u64);
    }
}
