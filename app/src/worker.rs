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
    cache::{Cache, CacheEntity, Entry, Held},
    config::WriteSettings,
    domain::{Book, BookId},
    metrics::Metrics,
    queue::{Carried, Change, Delivery, Queue},
    store::{Persisted, Store, StoreError},
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
            let mut held = match received {
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

    /// Applies one batch; returns the deliveries to try again.
    async fn apply(
        &self,
        deliveries: Vec<Delivery>,
        refusals: &mut HashMap<String, u32>,
    ) -> Vec<Delivery> {
        let mut by_record: HashMap<BookId, Vec<Delivery>> = HashMap::new();
        for delivery in deliveries {
            let unusable = match &delivery.change {
                Err(reason) => Some(format!("not a change: {reason}")),
                Ok(_) if delivery.deliveries > u64::from(self.settings.max_deliveries) => {
                    Some(format!(
                        "delivered {} times without being applied",
                        delivery.deliveries
                    ))
                }
                Ok(change) if change.collection != Book::COLLECTION => {
                    Some(format!("unknown collection {:?}", change.collection))
                }
                Ok(change) => match change.id.parse::<BookId>() {
                    Ok(id) => {
                        by_record.entry(id).or_default().push(delivery.clone());
                        None
                    }
                    Err(_) => Some(format!("not a book id: {:?}", change.id)),
                },
            };
            if let Some(reason) = unusable {
                self.dead_letter(&delivery, &reason).await;
            }
        }
        if by_record.is_empty() {
            return Vec::new();
        }
        let ids: Vec<BookId> = by_record.keys().copied().collect();
        let held = match self.cache.held_entries::<Book>(&ids).await {
            Ok(held) => held,
            Err(error) => {
                tracing::warn!(%error, "write-behind: reading pending records failed");
                return by_record.into_values().flatten().collect();
            }
        };
        let work: Vec<_> = ids
            .into_iter()
            .zip(held)
            .map(|(id, held)| (id, held, newest_carried(&by_record[&id])))
            .collect();
        let fates: Vec<(BookId, Fate)> = stream::iter(work)
            .map(|(id, held, carried)| async move {
                match (held, carried) {
                    (Held::Pending(entry), _) => (id, self.persist(id, entry).await),
                    (Held::Missing, Some(entry)) => (id, self.persist_carried(id, entry).await),
                    (Held::Cached(version), Some(entry)) if version < entry.version => {
                        (id, self.persist_carried(id, entry).await)
                    }
                    _ => {
                        self.count("not_pending");
                        (id, Fate::Done)
                    }
                }
            })
            .buffer_unordered(PERSISTS_IN_FLIGHT)
            .collect()
            .await;

        let mut done = Vec::new();
        let mut retry = Vec::new();
        for (id, fate) in fates {
            let deliveries = by_record.remove(&id).unwrap_or_default();
            match fate {
                Fate::Done => {
                    refusals.remove(&id.to_string());
                    done.extend(deliveries);
                }
                Fate::Retry => retry.extend(deliveries),
                Fate::Refused(reason) => {
                    let attempts = refusals.entry(id.to_string()).or_default();
                    *attempts += 1;
                    if *attempts >= self.settings.max_deliveries {
                        refusals.remove(&id.to_string());
                        for delivery in &deliveries {
                            self.dead_letter(delivery, &reason).await;
                        }
                    } else {
                        retry.extend(deliveries);
                    }
                }
            }
        }
        if let Err(error) = self.queue.ack(&done).await {
            // Persisted but not acknowledged: delivered again later, and a no-op then.
            tracing::warn!(%error, "write-behind: acknowledging changes failed");
        }
        retry
    }

    /// Persists one pending record, then settles it in the cache.
    async fn persist(&self, id: BookId, entry: crate::cache::Entry<Book>) -> Fate {
        let books = self.store.books();
        let written = match &entry.value {
            Some(book) => books.persist(book).await.map(|persisted| match persisted {
                Persisted::Written => "written",
                Persisted::AlreadyNewer => "already_newer",
            }),
            None => books
                .remove_below(id, entry.version)
                .await
                .map(|()| "removed"),
        };
        if let Ok("already_newer") = written {
            return self.overtaken(id, entry.version).await;
        }
        match written {
            Ok(outcome) => match self.cache.settle_pending::<Book>(&id, entry.version).await {
                Ok(_) => {
                    self.count(outcome);
                    Fate::Done
                }
                Err(error) => {
                    tracing::warn!(%error, book_id = %id, "write-behind: settling a persisted record failed");
                    Fate::Retry
                }
            },
            Err(StoreError::Unavailable(_) | StoreError::TimedOut(_) | StoreError::Contended) => {
                Fate::Retry
            }
            Err(error) => {
                tracing::error!(%error, book_id = %id, version = entry.version, "write-behind: MongoDB refused a pending record");
                Fate::Refused(error.to_string())
            }
        }
    }

    /// MongoDB already held the pending version `version` or a newer one. The same version: an
    /// earlier attempt persisted it and died before settling; settle it. A newer one: the cache
    /// went back in time (a failover to a replica that lagged, a restore) and holds an older
    /// pending version than MongoDB; replace it with MongoDB's, or readers would be served the
    /// past (and settling would make it look current).
    async fn overtaken(&self, id: BookId, version: crate::domain::Version) -> Fate {
        let noted = self.cache.note().await;
        let stored = match self.store.books().find_many(&[id]).await {
            Ok(mut stored) => stored.pop(),
            Err(StoreError::Unavailable(_) | StoreError::TimedOut(_) | StoreError::Contended) => {
                return Fate::Retry
            }
            Err(error) => return Fate::Refused(error.to_string()),
        };
        match stored {
            Some(book) if book.version > version => {
                tracing::warn!(book_id = %id, pending = version, stored = book.version, "write-behind: MongoDB is ahead of a pending record; caching MongoDB's");
                let entry = Entry::present(book.version, book);
                self.cache.write_through(&noted, &[(id, entry)]).await;
                self.count("overtaken");
                Fate::Done
            }
            _ => match self.cache.settle_pending::<Book>(&id, version).await {
                Ok(_) => {
                    self.count("already_newer");
                    Fate::Done
                }
                Err(error) => {
                    tracing::warn!(%error, book_id = %id, "write-behind: settling a persisted record failed");
                    Fate::Retry
                }
            },
        }
    }

    /// Persists a record a message carried, which the cache lost (Redis lost its pending
    /// version), guarded by version like any other; then caches what MongoDB holds afterwards,
    /// as a write-through would (MongoDB may have been newer already; a key a read filled from
    /// MongoDB's older version meanwhile moves forward).
    async fn persist_carried(&self, id: BookId, entry: Entry<Book>) -> Fate {
        tracing::warn!(book_id = %id, version = entry.version, "write-behind: Redis lost a pending record; persisting the one its message carries");
        let noted = self.cache.note().await;
        let books = self.store.books();
        let written = match &entry.value {
            Some(book) => books.persist(book).await.map(|_| ()),
            None => books.remove_below(id, entry.version).await,
        };
        let now = match written {
            Ok(()) => books.find_many(&[id]).await,
            Err(error) => Err(error),
        };
        match now {
            Ok(mut now) => {
                let cached = match now.pop() {
                    Some(book) => Entry::present(book.version, book),
                    None => Entry::absent(entry.version),
                };
                self.cache.write_through(&noted, &[(id, cached)]).await;
                self.count("carried");
                Fate::Done
            }
            Err(StoreError::Unavailable(_) | StoreError::TimedOut(_) | StoreError::Contended) => {
                Fate::Retry
            }
            Err(error) => {
                tracing::error!(%error, book_id = %id, version = entry.version, "write-behind: MongoDB refused a carried record");
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
        let books: Vec<(Change, BookId)> = stranded
            .into_iter()
            .filter_map(|change| {
                let id = change.id.parse::<BookId>().ok()?;
                (change.collection == Book::COLLECTION).then_some((change, id))
            })
            .collect();
        let ids: Vec<BookId> = books.iter().map(|(_, id)| *id).collect();
        let held = match self.cache.held_entries::<Book>(&ids).await {
            Ok(held) => held,
            Err(error) => {
                tracing::warn!(%error, "write-behind: reading stranded records failed");
                return;
            }
        };
        let work: Vec<(Change, Carried)> = books
            .into_iter()
            .zip(held)
            .map(|((change, _), held)| {
                let carried = match held {
                    Held::Pending(entry) if entry.version == change.version => match entry.value {
                        Some(book) => Carried::Record(
                            serde_json::to_value(book).expect("cached types serialise to JSON"),
                        ),
                        None => Carried::Deleted,
                    },
                    _ => Carried::Nothing,
                };
                (change, carried)
            })
            .collect();
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

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) {
        tracing::error!(
            entry = delivery.handle,
            reason,
            "write-behind: change dead-lettered"
        );
        match self.queue.dead_letter(delivery, reason).await {
            Ok(()) => self.metrics.worker_dead_letters.inc(),
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

/// The newest record the deliveries of one record carry, as a cache entry.
fn newest_carried(deliveries: &[Delivery]) -> Option<Entry<Book>> {
    deliveries
        .iter()
        .filter_map(|delivery| {
            let version = delivery.change.as_ref().ok()?.version;
            match &delivery.carried {
                Carried::Nothing => None,
                Carried::Deleted => Some(Entry::absent(version)),
                Carried::Record(record) => match serde_json::from_value::<Book>(record.clone()) {
                    Ok(book) if book.version == version => Some(Entry::present(version, book)),
                    Ok(_) | Err(_) => {
                        tracing::error!(entry = delivery.handle, "write-behind: a message carries a record that is not its change's book");
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
