//! The write-behind worker (`oponn worker`, or `oponn serve --with-worker`): takes queued
//! changes, persists the pending records they point at, and acknowledges the changes once
//! MongoDB confirmed.
//!
//! For each batch:
//!
//! 1. Changes that cannot be applied go to the dead letters at once: a malformed message, an
//!    unknown collection, or a change delivered `OPONN_WORKER_MAX_DELIVERIES` times (it may be
//!    what kills its workers); they never hold the others back.
//! 2. The batch's records are read from the cache in one `MGET`; only pending ones are written
//!    (several changes of one record coalesce into one write of its newest version; a change
//!    whose record is not pending any more was a replay: acknowledged as is). A message that
//!    carries its record (SQS) whose record the cache has lost (no entry, or one older than the
//!    change: Redis lost the pending record, and perhaps a read filled the key from MongoDB
//!    since) has the carried record persisted instead, then cached as written through.
//! 3. Each pending record is persisted guarded by version (`store::Persisted`): a replay or a
//!    late delivery never moves MongoDB backwards, so at-least-once delivery is enough.
//! 4. The persisted records are settled in the cache (they get their TTL back), then their
//!    changes are acknowledged. A record MongoDB could not take (down, timed out) is kept and
//!    tried again with backoff, and this worker takes over no other worker's changes meanwhile;
//!    one MongoDB refuses outright (a unique key held by another record) is tried
//!    `OPONN_WORKER_MAX_DELIVERIES` times, then its changes are dead-lettered and the record
//!    stays pending in the cache (`oponn_queue_dead_letters` says so).
//!
//! With SQS, the worker also sweeps, every second, for changes recorded in Redis whose writer
//! died before sending them, and sends them again (see `crate::queue::sqs`).
//!
//! A worker killed at any point loses nothing: its unacknowledged changes are taken over by
//! another worker (or itself, restarted) after `OPONN_WORKER_CLAIM_IDLE_MS`, and applying them
//! again is harmless. On SIGTERM it stops taking changes and finishes what it holds within
//! `OPONN_WORKER_DRAIN_MS`.

use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};

use futures::{stream, StreamExt};
use tokio::{sync::watch, time::Instant};

use crate::{
    cache::{Cache, CacheError, Entity, Entry, Held},
    config::WriteSettings,
    domain::{Book, Bookstore, Version},
    metrics::Metrics,
    queue::{Carried, Change, Delivery, Queue},
    store::{Persisted, Store, StoreError, Stored},
};

/// How long one receive waits for new changes.
const RECEIVE_WAIT: Duration = Duration::from_millis(500);
/// The first pause after a failure; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often the queue's depth is sampled into the metrics, and acknowledged entries trimmed.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Records persisted at once.
const PERSISTS_IN_FLIGHT: usize = 16;
/// The most stranded changes one sweep sends again.
const SWEEP_MAX: usize = 100;

/// The collections the worker persists.
const QUEUED: &[&str] = &[Book::COLLECTION, Bookstore::COLLECTION];

/// Record `id` as MongoDB holds it.
async fn find<E: Stored>(store: &Store, id: E::Id) -> Result<Option<E>, StoreError> {
    Ok(E::records(store).find_many(&[id]).await?.pop())
}

pub struct Worker {
    queue: Arc<dyn Queue>,
    cache: Arc<Cache>,
    store: Store,
    settings: WriteSettings,
    metrics: Metrics,
}

/// What became of one record of a batch.
enum Fate {
    /// Persisted (or nothing to persist): acknowledge its changes.
    Done,
    /// MongoDB or Redis failed: try again.
    Retry,
    /// MongoDB refused it: count an attempt.
    Refused(String),
}

impl Worker {
    pub fn new(
        queue: Arc<dyn Queue>,
        cache: Arc<Cache>,
        store: Store,
        settings: WriteSettings,
        metrics: Metrics,
    ) -> Self {
        Self {
            queue,
            cache,
            store,
            settings,
            metrics,
        }
    }

    /// Applies queued changes until `stop` resolves, then finishes what it holds within the
    /// drain time.
    pub async fn run(&self, stop: impl Future<Output = ()> + Send + 'static) {
        let (stopping, stopped) = watch::channel(false);
        let signal = tokio::spawn(async move {
            stop.await;
            let _ = stopping.send(true);
        });
        let mut healthy = true;
        let mut backoff = FIRST_BACKOFF;
        let mut sampled = Instant::now() - SAMPLE_EVERY;
        let mut refusals: HashMap<String, u32> = HashMap::new();
        tracing::info!("write-behind worker started");
        while !*stopped.borrow() {
            if sampled.elapsed() >= SAMPLE_EVERY {
                self.sample().await;
                sampled = Instant::now();
            }
            let mut stop_signal = stopped.clone();
            let received = tokio::select! {
                _ = stop_signal.changed() => break,
                received = self.queue.receive(self.settings.batch, RECEIVE_WAIT, healthy) => received,
            };
            let screened = match received {
                Ok(received) => self
                    .screen(received)
                    .await
                    .map_err(|error| error.to_string()),
                Err(error) => Err(error.to_string()),
            };
            let mut held = match screened {
                Ok(held) => held,
                Err(error) => {
                    tracing::warn!(%error, "write-behind: reading the queue failed");
                    pause(&mut backoff, &stopped).await;
                    continue;
                }
            };
            let mut draining_since: Option<Instant> = None;
            while !held.is_empty() {
                held = self.apply(held, &mut refusals).await;
                healthy = held.is_empty();
                if healthy {
                    backoff = FIRST_BACKOFF;
                    break;
                }
                self.metrics.worker_retries.inc_by(held.len() as u64);
                // Held, not abandoned: a long MongoDB outage must not count as deliveries.
                if let Err(error) = self.queue.hold(&held).await {
                    tracing::warn!(%error, "write-behind: keeping held changes failed");
                }
                if *stopped.borrow() {
                    let since = *draining_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.settings.drain {
                        tracing::error!(
                            held = held.len(),
                            "write-behind: stopping with changes MongoDB did not take; \
                             another worker takes them over after the claim time"
                        );
                        break;
                    }
                }
                pause(&mut backoff, &stopped).await;
            }
        }
        signal.abort();
        self.sample().await;
        tracing::info!("write-behind worker stopped");
    }

    /// Dead-letters the deliveries that cannot be applied (not a change, an unknown collection,
    /// or a change `OPONN_WORKER_MAX_DELIVERIES` workers began applying without success: it
    /// may be what kills them) and returns the others. Attempts are counted here, once per
    /// receive, not per retry: a batch held through a MongoDB outage does not climb toward the
    /// dead letters, and a worker killed before it began does not count either (a queue's own
    /// delivery count would: workers stopped or killed while they wait are not a poison).
    /// Fails when Redis does not count them: the deliveries are left to come back.
    async fn screen(&self, deliveries: Vec<Delivery>) -> Result<Vec<Delivery>, CacheError> {
        let mut changes = Vec::new();
        for delivery in deliveries {
            let unusable = match &delivery.change {
                Err(reason) => Some(format!("not a change: {reason}")),
                Ok(change) if !QUEUED.contains(&change.collection.as_str()) => {
                    Some(format!("unknown collection {:?}", change.collection))
                }
                Ok(_) => None,
            };
            match unusable {
                Some(reason) => self.dead_letter(&delivery, &reason).await,
                None => changes.push(delivery),
            }
        }
        let members: Vec<String> = changes.iter().filter_map(member).collect();
        let attempts = self.cache.count_attempts(&members).await?;
        let mut usable = Vec::new();
        for (delivery, attempts) in changes.into_iter().zip(attempts) {
            if attempts > u64::from(self.settings.max_deliveries) {
                let reason = format!("{attempts} attempts to apply it did not end");
                self.dead_letter(&delivery, &reason).await;
            } else {
                usable.push(delivery);
            }
        }
        Ok(usable)
    }

    /// Applies one batch of screened deliveries; returns those to try again.
    async fn apply(
        &self,
        deliveries: Vec<Delivery>,
        refusals: &mut HashMap<String, u32>,
    ) -> Vec<Delivery> {
        let mut by_collection: HashMap<&'static str, Vec<(String, Delivery)>> = HashMap::new();
        for delivery in deliveries {
            let Ok(change) = &delivery.change else {
                continue;
            };
            if let Some(collection) = QUEUED
                .iter()
                .find(|collection| **collection == change.collection)
            {
                let id = change.id.clone();
                by_collection
                    .entry(collection)
                    .or_default()
                    .push((id, delivery));
            }
        }
        let mut done = Vec::new();
        let mut retry = Vec::new();
        for (collection, deliveries) in by_collection {
            let (applied, again) = match collection {
                Bookstore::COLLECTION => self.apply_to::<Bookstore>(deliveries, refusals).await,
                _ => self.apply_to::<Book>(deliveries, refusals).await,
            };
            done.extend(applied);
            retry.extend(again);
        }
        if let Err(error) = self.queue.ack(&done).await {
            // Persisted but not acknowledged: delivered again later, and a no-op then.
            tracing::warn!(%error, "write-behind: acknowledging changes failed");
        }
        let applied: Vec<String> = done.iter().filter_map(member).collect();
        if let Err(error) = self.cache.forget_attempts(&applied).await {
            tracing::warn!(%error, "write-behind: forgetting attempts failed");
        }
        retry
    }

    /// Applies the changes of one collection (each with its record's id as queued); returns
    /// the deliveries applied (to acknowledge) and those to try again.
    async fn apply_to<E: Stored>(
        &self,
        deliveries: Vec<(String, Delivery)>,
        refusals: &mut HashMap<String, u32>,
    ) -> (Vec<Delivery>, Vec<Delivery>) {
        let mut by_record: HashMap<E::Id, Vec<Delivery>> = HashMap::new();
        for (id, delivery) in deliveries {
            match id.parse::<E::Id>() {
                Ok(id) => by_record.entry(id).or_default().push(delivery),
                Err(_) => {
                    let reason = format!("not an id of {}: {id:?}", E::COLLECTION);
                    self.dead_letter(&delivery, &reason).await;
                }
            }
        }
        if by_record.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let ids: Vec<E::Id> = by_record.keys().copied().collect();
        let held = match self.cache.held_entries::<E>(&ids).await {
            Ok(held) => held,
            Err(error) => {
                tracing::warn!(%error, "write-behind: reading pending records failed");
                return (Vec::new(), by_record.into_values().flatten().collect());
            }
        };
        let work: Vec<_> = ids
            .into_iter()
            .zip(held)
            .map(|(id, held)| (id, held, newest_carried::<E>(&by_record[&id])))
            .collect();
        let fates: Vec<(E::Id, Fate)> = stream::iter(work)
            .map(|(id, held, carried)| async move {
                match (held, carried) {
                    (Held::Pending(entry), _) => (id, self.persist(id, entry).await),
                    (Held::Missing, Some(entry)) => (id, self.persist_carried(id, entry).await),
                    (Held::Cached(version), Some(entry)) if version < entry.version => {
                        (id, self.persist_carried(id, entry).await)
                    }
                    _ => (id, self.replayed::<E>(id).await),
                }
            })
            .buffer_unordered(PERSISTS_IN_FLIGHT)
            .collect()
            .await;

        let mut done = Vec::new();
        let mut retry = Vec::new();
        for (id, fate) in fates {
            let deliveries = by_record.remove(&id).unwrap_or_default();
            let record = format!("{}:{id}", E::COLLECTION);
            match fate {
                Fate::Done => {
                    refusals.remove(&record);
                    done.extend(deliveries);
                }
                Fate::Retry => retry.extend(deliveries),
                Fate::Refused(reason) => {
                    let attempts = refusals.entry(record.clone()).or_default();
                    *attempts += 1;
                    if *attempts >= self.settings.max_deliveries {
                        refusals.remove(&record);
                        for delivery in &deliveries {
                            self.dead_letter(delivery, &reason).await;
                        }
                    } else {
                        retry.extend(deliveries);
                    }
                }
            }
        }
        (done, retry)
    }

    /// A change whose record is not pending any more: an earlier delivery persisted and
    /// settled it (a replay).
    async fn replayed<E: Stored>(&self, id: E::Id) -> Fate {
        self.count("not_pending");
        self.released::<E>(id).await
    }

    /// Releases the claims of a record cached, not settled (settling releases them), or whose
    /// earlier worker may have died between caching it and releasing them.
    async fn released<E: Stored>(&self, id: E::Id) -> Fate {
        match self.cache.release_claims::<E>(&id).await {
            Ok(()) => Fate::Done,
            Err(error) => {
                tracing::warn!(%error, collection = E::COLLECTION, id = %id, "write-behind: releasing claims failed");
                Fate::Retry
            }
        }
    }

    /// Persists one pending record, then settles it in the cache.
    async fn persist<E: Stored>(&self, id: E::Id, entry: Entry<E>) -> Fate {
        let written = match &entry.value {
            Some(record) => E::records(&self.store)
                .persist(record)
                .await
                .map(|persisted| match persisted {
                    Persisted::Written => "written",
                    Persisted::AlreadyNewer => "already_newer",
                }),
            None => E::records(&self.store)
                .remove_below(id, entry.version)
                .await
                .map(|()| "removed"),
        };
        if let Ok("already_newer") = written {
            return self.overtaken::<E>(id, entry.version).await;
        }
        match written {
            Ok(outcome) => match self.cache.settle_pending::<E>(&id, entry.version).await {
                Ok(_) => {
                    self.count(outcome);
                    Fate::Done
                }
                Err(error) => {
                    tracing::warn!(%error, collection = E::COLLECTION, id = %id, "write-behind: settling a persisted record failed");
                    Fate::Retry
                }
            },
            Err(StoreError::Unavailable(_) | StoreError::TimedOut(_) | StoreError::Contended) => {
                Fate::Retry
            }
            Err(error) => {
                tracing::error!(%error, collection = E::COLLECTION, id = %id, version = entry.version, "write-behind: MongoDB refused a pending record");
                Fate::Refused(error.to_string())
            }
        }
    }

    /// MongoDB already held the pending version `version` or a newer one. The same version: an
    /// earlier attempt persisted it and died before settling; settle it. A newer one: the cache
    /// went back in time (a failover to a replica that lagged, a restore) and holds an older
    /// pending version than MongoDB; replace it with MongoDB's, or readers would be served the
    /// past (and settling would make it look current).
    async fn overtaken<E: Stored>(&self, id: E::Id, version: Version) -> Fate {
        let noted = self.cache.note().await;
        let stored = match find::<E>(&self.store, id).await {
            Ok(stored) => stored,
            Err(StoreError::Unavailable(_) | StoreError::TimedOut(_) | StoreError::Contended) => {
                return Fate::Retry
            }
            Err(error) => return Fate::Refused(error.to_string()),
        };
        match stored {
            Some(record) if record.version() > version => {
                tracing::warn!(collection = E::COLLECTION, id = %id, pending = version, stored = record.version(), "write-behind: MongoDB is ahead of a pending record; caching MongoDB's");
                let entry = Entry::present(record.version(), record);
                self.cache.write_through(&noted, &[(id, entry)]).await;
                self.count("overtaken");
                self.released::<E>(id).await
            }
            _ => match self.cache.settle_pending::<E>(&id, version).await {
                Ok(_) => {
                    self.count("already_newer");
                    Fate::Done
                }
                Err(error) => {
                    tracing::warn!(%error, collection = E::COLLECTION, id = %id, "write-behind: settling a persisted record failed");
                    Fate::Retry
                }
            },
        }
    }

    /// Persists a record a message carried, which the cache lost (Redis lost its pending
    /// version), guarded by version like any other; then caches what MongoDB holds afterwards,
    /// as a write-through would (MongoDB may have been newer already; a key a read filled from
    /// MongoDB's older version meanwhile moves forward).
    async fn persist_carried<E: Stored>(&self, id: E::Id, entry: Entry<E>) -> Fate {
        tracing::warn!(collection = E::COLLECTION, id = %id, version = entry.version, "write-behind: Redis lost a pending record; persisting the one its message carries");
        let noted = self.cache.note().await;
        let written = match &entry.value {
            Some(record) => E::records(&self.store).persist(record).await.map(|_| ()),
            None => {
                E::records(&self.store)
                    .remove_below(id, entry.version)
                    .await
            }
        };
        let now = match written {
            Ok(()) => find::<E>(&self.store, id).await,
            Err(error) => Err(error),
        };
        match now {
            Ok(now) => {
                let cached = match now {
                    Some(record) => Entry::present(record.version(), record),
                    None => Entry::absent(entry.version),
                };
                self.cache.write_through(&noted, &[(id, cached)]).await;
                self.count("carried");
                self.released::<E>(id).await
            }
            Err(StoreError::Unavailable(_) | StoreError::TimedOut(_) | StoreError::Contended) => {
                Fate::Retry
            }
            Err(error) => {
                tracing::error!(%error, collection = E::COLLECTION, id = %id, version = entry.version, "write-behind: MongoDB refused a carried record");
                Fate::Refused(error.to_string())
            }
        }
    }

    /// Sends again the changes whose writer may have died before sending them (SQS), with
    /// the record when the cache still holds that version pending.
    async fn sweep(&self) {
        let stranded = match self.queue.stranded(SWEEP_MAX).await {
            Ok(stranded) if stranded.is_empty() => return,
            Ok(stranded) => stranded,
            Err(error) => {
                tracing::warn!(%error, "write-behind: looking for stranded changes failed");
                return;
            }
        };
        let mut work = self.stranded_records::<Book>(&stranded).await;
        work.extend(self.stranded_records::<Bookstore>(&stranded).await);
        let sends = work.into_iter().map(|(change, carried)| async move {
            match self.queue.send(&change, &carried).await {
                Ok(()) => tracing::warn!(change = change.member(), "write-behind: sent a stranded change again"),
                Err(error) => tracing::warn!(%error, change = change.member(), "write-behind: sending a stranded change again failed"),
            }
        });
        stream::iter(sends)
            .buffer_unordered(PERSISTS_IN_FLIGHT)
            .collect::<Vec<()>>()
            .await;
    }

    /// The stranded changes of `E`'s collection, each with the record it should carry.
    async fn stranded_records<E: Stored>(&self, stranded: &[Change]) -> Vec<(Change, Carried)> {
        let changes: Vec<(Change, E::Id)> = stranded
            .iter()
            .filter(|change| change.collection == E::COLLECTION)
            .filter_map(|change| Some((change.clone(), change.id.parse::<E::Id>().ok()?)))
            .collect();
        let ids: Vec<E::Id> = changes.iter().map(|(_, id)| *id).collect();
        if ids.is_empty() {
            return Vec::new();
        }
        let held = match self.cache.held_entries::<E>(&ids).await {
            Ok(held) => held,
            Err(error) => {
                tracing::warn!(%error, "write-behind: reading stranded records failed");
                return Vec::new();
            }
        };
        changes
            .into_iter()
            .zip(held)
            .map(|((change, _), held)| {
                let carried = match held {
                    Held::Pending(entry) if entry.version == change.version => match entry.value {
                        Some(record) => Carried::Record(
                            serde_json::to_value(record).expect("cached types serialise to JSON"),
                        ),
                        None => Carried::Deleted,
                    },
                    _ => Carried::Nothing,
                };
                (change, carried)
            })
            .collect()
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) {
        tracing::error!(
            entry = delivery.handle,
            reason,
            "write-behind: change dead-lettered"
        );
        match self.queue.dead_letter(delivery, reason).await {
            Ok(()) => {
                self.metrics.worker_dead_letters.inc();
                let members: Vec<String> = member(delivery).into_iter().collect();
                if let Err(error) = self.cache.forget_attempts(&members).await {
                    tracing::warn!(%error, "write-behind: forgetting attempts failed");
                }
            }
            // Still pending: delivered again, and dead-lettered then.
            Err(error) => tracing::warn!(%error, "write-behind: dead-lettering failed"),
        }
    }

    fn count(&self, outcome: &str) {
        self.metrics
            .worker_applied
            .with_label_values(&[outcome])
            .inc();
    }

    /// Samples the queue's depth into the metrics and trims acknowledged entries.
    async fn sample(&self) {
        match self.queue.depth().await {
            Ok(depth) => {
                self.metrics.queue_depth.set(depth.pending as i64);
                self.metrics
                    .queue_oldest
                    .set(depth.oldest.unwrap_or_default().as_secs_f64());
                self.metrics.queue_dead.set(depth.dead as i64);
            }
            Err(error) => tracing::warn!(%error, "write-behind: reading the queue depth failed"),
        }
        if let Err(error) = self.queue.compact().await {
            tracing::warn!(%error, "write-behind: trimming the queue failed");
        }
        self.sweep().await;
    }
}

/// The change's member (`<collection>:<id>:<version>`), if it is a change.
fn member(delivery: &Delivery) -> Option<String> {
    delivery.change.as_ref().ok().map(Change::member)
}

/// The newest record the deliveries of one record carry, as a cache entry.
fn newest_carried<E: Stored>(deliveries: &[Delivery]) -> Option<Entry<E>> {
    deliveries
        .iter()
        .filter_map(|delivery| {
            let version = delivery.change.as_ref().ok()?.version;
            match &delivery.carried {
                Carried::Nothing => None,
                Carried::Deleted => Some(Entry::absent(version)),
                Carried::Record(record) => match serde_json::from_value::<E>(record.clone()) {
                    Ok(record) if record.version() == version => {
                        Some(Entry::present(version, record))
                    }
                    Ok(_) | Err(_) => {
                        tracing::error!(
                            entry = delivery.handle,
                            "write-behind: a message carries a record that is not its change's"
                        );
                        None
                    }
                },
            }
        })
        .max_by_key(|entry| entry.version)
}

/// Waits `backoff` (cut short by the stop signal, unless already draining), then doubles it.
async fn pause(backoff: &mut Duration, stopped: &watch::Receiver<bool>) {
    let mut stopped = stopped.clone();
    if *stopped.borrow() {
        tokio::time::sleep(*backoff).await;
    } else {
        tokio::select! {
            _ = tokio::time::sleep(*backoff) => {}
            _ = stopped.wait_for(|stopped| *stopped) => {}
        }
    }
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
}
