//! Write-behind (`OPONN_WRITE_MODE=behind`): a mutation replies once the queue holds its intent
//! and Redis its new version; the worker (`crate::worker`) persists it to MongoDB later.
//!
//! The version is allocated in Redis: a writer reads the record (the cache, or MongoDB when the
//! cache lacks it: a pending record is never missing, so MongoDB is then current), then stores
//! version n+1 as pending and queues its change in one script, only if Redis still trusts
//! version n (`cache::pending`); a writer that lost the race reads again. So two writers never both
//! acknowledge version n+1, and the worker can persist "the newest pending version" without
//! ever choosing between two.
//!
//! While changes are queued, MongoDB is behind the cache, so the reads only MongoDB can answer
//! (a list page the query-result cache lacks, `bookstoresForBooks` on a miss, the count behind
//! deleting a store) first wait until the worker has persisted every change queued before them
//! ([`Datastore::caught_up`], bounded by `OPONN_QUEUE_BARRIER_MS`), and a read the cache cannot
//! serve because Redis is down fails with `UNAVAILABLE` instead of reading MongoDB's past.
//!
//! Which collections are written behind: books and bookstores, through every path that writes
//! them (the mutations, emptying a deleted store, the bulk upsert of `seed` and `ingest`, each
//! record at its next version in Redis, so no path writes MongoDB behind the cache's back).
//!
//! Rules MongoDB would check only when the worker writes, checked before the reply:
//!
//! * **Unique values** (a bookstore's name): the record *claims* them in the script that stores
//!   it (`cache::pending`), after the writer found no holder in MongoDB ([`Vet`]); a taken name
//!   is a `CONFLICT` at once, whether MongoDB or a pending write holds it. A name that a
//!   pending rename or delete is giving up is free once the worker persisted that change: the
//!   writer waits for the queue (like a list page) rather than let the worker's write clash.
//! * **References** (a book's store): checked through the cache, which holds pending stores,
//!   before the book's change is queued.

use std::{
    collections::BTreeMap,
    future::Future,
    hash::{Hash, Hasher},
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::{
    sync::{Mutex, Notify},
    time::Instant,
};

use super::{Datastore, DatastoreError};
use crate::{
    cache::{CacheError, Entity, Entry, Epoch, Lookup, Pended},
    domain::{Book, Bookstore, Version},
    queue::{Appends, Carried, Change, Mark, Queue, QueueError},
    store::StoreError,
};

/// The collections whose writes go through the queue in `behind` mode.
const QUEUED: &[&str] = &[Book::COLLECTION, Bookstore::COLLECTION];

/// How many times a writer reads again after losing the version race before it gives up
/// (`CONFLICT`); after each loss it waits a random 0..=n ms (n: the losses so far), so
/// writers racing for one record spread out instead of colliding again in step.
const WRITE_ATTEMPTS: u64 = 32;

/// The longest pause between two checks of the queue's progress.
const BARRIER_PACE: Duration = Duration::from_millis(20);

/// How many locks the writers of one process take turns on (one per record, striped).
const TURNS: usize = 1024;

/// The queue a write-behind datastore appends to.
pub struct Behind {
    queue: Arc<dyn Queue>,
    barrier: Duration,
    /// Writers of one record in this process take turns, so the version race (and its
    /// retries) is only between processes: without them, 40 writers of one record in one
    /// process lose to each other until some run out of attempts.
    turns: Vec<Mutex<()>>,
    progress: Progress,
}

/// The barrier's polls of the queue's progress, shared by every read waiting in this process:
/// one of them polls (for the oldest mark still awaited), at most once per [`BARRIER_PACE`]
/// once it has waited a while, and wakes the others when a mark passed. So however many
/// anonymous reads wait for a lagging worker, the queue is polled as if one did.
#[derive(Default)]
struct Progress {
    state: std::sync::Mutex<ProgressState>,
    changed: Notify,
}

#[derive(Default)]
struct ProgressState {
    /// Polls begun so far.
    polls: u64,
    /// The mark the last successful poll found passed, and which poll it was. A read trusts
    /// only a poll begun after it took its mark: a Redis that went back in time (a lagging
    /// replica promoted) hands out marks below those passed before, for changes not applied.
    passed: Option<((u64, u64), u64)>,
    /// The marks awaited, with how many reads await each.
    awaited: BTreeMap<(u64, u64), (Mark, usize)>,
    /// Whether a read is polling.
    polling: bool,
}

impl Progress {
    fn state(&self) -> std::sync::MutexGuard<'_, ProgressState> {
        self.state.lock().expect("progress lock is never poisoned")
    }
}

/// A read's place among those awaiting a mark; leaving (also by an error or a timeout) gives up
/// the place and, for the poller, the polling.
struct Awaiting<'a> {
    progress: &'a Progress,
    position: (u64, u64),
    polling: bool,
}

impl Drop for Awaiting<'_> {
    fn drop(&mut self) {
        let mut state = self.progress.state();
        if let Some((_, count)) = state.awaited.get_mut(&self.position) {
            *count -= 1;
            if *count == 0 {
                state.awaited.remove(&self.position);
            }
        }
        if self.polling {
            state.polling = false;
            drop(state);
            self.progress.changed.notify_waiters();
        }
    }
}

impl Behind {
    pub fn new(queue: Arc<dyn Queue>, barrier: Duration) -> Self {
        Self {
            queue,
            barrier,
            turns: (0..TURNS).map(|_| Mutex::new(())).collect(),
            progress: Progress::default(),
        }
    }

    /// The lock the writers of record `id` of `E` take turns on.
    fn turn<E: Entity>(&self, id: &E::Id) -> &Mutex<()> {
        let mut hasher = std::hash::DefaultHasher::new();
        (E::COLLECTION, id).hash(&mut hasher);
        &self.turns[(hasher.finish() % TURNS as u64) as usize]
    }
}

impl Datastore {
    /// This datastore, writing the queued collections behind through `behind`.
    pub fn writing_behind(mut self, behind: Behind) -> Self {
        self.behind = Some(Arc::new(behind));
        self
    }

    /// The write-behind queue, in write-behind mode.
    pub fn queue(&self) -> Option<Arc<dyn Queue>> {
        self.behind.as_ref().map(|behind| behind.queue.clone())
    }

    /// The queue, when writes of `collection` go behind.
    pub(super) fn behind(&self, collection: &str) -> Option<&Behind> {
        self.behind
            .as_deref()
            .filter(|_| QUEUED.contains(&collection))
    }

    /// Resolves once MongoDB holds every write of `collection` acknowledged before this call:
    /// at once in write-through, after the worker caught up in write-behind (one poll of the
    /// queue's progress per process at a time: see [`Progress`]).
    pub async fn caught_up(&self, collection: &str) -> Result<(), DatastoreError> {
        let Some(behind) = self.behind(collection) else {
            return Ok(());
        };
        let mark = behind.queue.mark().await.map_err(queue_failed)?;
        let Some(position) = mark.position() else {
            return Ok(());
        };
        let deadline = Instant::now() + behind.barrier;
        let progress = &behind.progress;
        let (mut awaiting, registered) = {
            let mut state = progress.state();
            state.awaited.entry(position).or_insert((mark, 0)).1 += 1;
            let awaiting = Awaiting {
                progress,
                position,
                polling: false,
            };
            (awaiting, state.polls)
        };
        let passed = |state: &ProgressState| matches!(state.passed, Some((at, poll)) if at >= position && poll > registered);
        let mut pause = Duration::from_millis(1);
        loop {
            let changed = progress.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let oldest = {
                let mut state = progress.state();
                if passed(&state) {
                    return Ok(());
                }
                if !awaiting.polling && !state.polling {
                    state.polling = true;
                    awaiting.polling = true;
                }
                let oldest = awaiting
                    .polling
                    .then(|| {
                        state
                            .awaited
                            .first_key_value()
                            .map(|(at, (mark, _))| (*at, mark.clone()))
                    })
                    .flatten();
                if oldest.is_some() {
                    state.polls += 1;
                }
                oldest.map(|(at, mark)| (at, mark, state.polls))
            };
            if Instant::now() >= deadline {
                return Err(DatastoreError::Behind(format!(
                    "the write-behind worker has not persisted the writes acknowledged before \
                     this read within {:?} (OPONN_QUEUE_BARRIER_MS); MongoDB alone would answer \
                     with an older state",
                    behind.barrier
                )));
            }
            match oldest {
                Some((at, oldest, poll)) => {
                    if behind.queue.passed(&oldest).await.map_err(queue_failed)? {
                        progress.state().passed = Some((at, poll));
                        progress.changed.notify_waiters();
                        pause = Duration::from_millis(1);
                        continue;
                    }
                    tokio::time::sleep(
                        pause.min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await;
                    pause = (pause * 2).min(BARRIER_PACE);
                }
                None => {
                    let _ = tokio::time::timeout_at(deadline, changed).await;
                }
            }
        }
    }

    /// One write-behind mutation of record `id`: `decide` gets the record as it stands (or
    /// `None`) and the version the write will have, and says what to do or refuses. Returns
    /// the record before and after (the same when `decide` kept it). `fetch` reads ids from
    /// MongoDB. For records without claims.
    pub(super) async fn write_behind<E, F, Fut>(
        &self,
        behind: &Behind,
        id: E::Id,
        fetch: F,
        decide: impl Fn(Option<&E>, Version) -> Result<Decision<E>, DatastoreError>,
    ) -> Result<(Option<E>, Option<E>), DatastoreError>
    where
        E: Entity,
        F: Fn(Vec<E::Id>) -> Fut,
        Fut: Future<Output = Result<Vec<E>, StoreError>>,
    {
        self.write_behind_vetted(behind, id, fetch, decide, &Unclaimed)
            .await
    }

    /// [`Datastore::write_behind`] for records with claims: before a record's claims are
    /// taken, `vet` checks MongoDB holds none of them for another record.
    pub(super) async fn write_behind_vetted<E, F, Fut>(
        &self,
        behind: &Behind,
        id: E::Id,
        fetch: F,
        decide: impl Fn(Option<&E>, Version) -> Result<Decision<E>, DatastoreError>,
        vet: &impl Vet<E>,
    ) -> Result<(Option<E>, Option<E>), DatastoreError>
    where
        E: Entity,
        F: Fn(Vec<E::Id>) -> Fut,
        Fut: Future<Output = Result<Vec<E>, StoreError>>,
    {
        let mut turn = Some(behind.turn::<E>(&id).lock().await);
        for attempt in 0..WRITE_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=attempt))).await;
            }
            let (noted, current) = self.current(id, &fetch).await?;
            let version = current.version + 1;
            let after = match decide(current.value.as_ref(), version)? {
                Decision::Put(record) => Some(record),
                Decision::Remove => None,
                Decision::Keep => return Ok((current.value.clone(), current.value)),
            };
            // The generation is read before MongoDB is: see `cache::pending`.
            let generation = match &after {
                Some(record) if !record.claims().is_empty() => {
                    let generation = self.cache.claims_generation().await.map_err(cache_failed)?;
                    vet.vet(record).await?;
                    Some(generation)
                }
                _ => None,
            };
            let entry = match &after {
                Some(record) => Entry::present(version, record.clone()),
                None => Entry::absent(version),
            };
            match self
                .cache
                .write_pending(
                    &noted,
                    &id,
                    current.version,
                    &entry,
                    behind.queue.appends(),
                    generation,
                )
                .await
                .map_err(cache_failed)?
            {
                Pended::Stored => {
                    // The version is taken: the next writer may go while this one sends.
                    turn.take();
                    send(behind, &id, &entry).await?;
                    return Ok((current.value, after));
                }
                Pended::Moved { .. } | Pended::Recheck => continue,
                // Vetting again names the holder, or finds the claim released meanwhile.
                Pended::Claimed => {
                    if let Some(record) = &after {
                        vet.vet(record).await?;
                    }
                    continue;
                }
            }
        }
        Err(DatastoreError::Conflict(format!(
            "{} {id} kept changing under concurrent writes; read it again and retry",
            E::COLLECTION
        )))
    }

    /// The record as a writer must see it, and the epoch noted before reading it: the cache's
    /// entry, or MongoDB's record when the cache lacks it (a pending record is never missing,
    /// so MongoDB is current then). Redis trouble fails: only it knows the pending versions.
    async fn current<E, F, Fut>(
        &self,
        id: E::Id,
        fetch: &F,
    ) -> Result<(Epoch, Entry<E>), DatastoreError>
    where
        E: Entity,
        F: Fn(Vec<E::Id>) -> Fut,
        Fut: Future<Output = Result<Vec<E>, StoreError>>,
    {
        let noted = self.cache.note().await;
        match self.cache.get_many::<E>(&[id]).await.pop() {
            Some(Lookup::Hit(entry)) => Ok((noted, entry)),
            Some(Lookup::Miss) => {
                let record = fetch(vec![id]).await?.pop();
                let entry = match record {
                    Some(record) => Entry::present(record.version(), record),
                    None => Entry::absent(0),
                };
                Ok((noted, entry))
            }
            _ => Err(redis_unavailable()),
        }
    }
}

/// Hands the change just recorded with its pending record to the queue (SQS; a stream got it in
/// the script). A failure fails the mutation, though the change is recorded and may still be
/// applied: the same "may or may not have happened" as a timeout.
async fn send<E: Entity>(
    behind: &Behind,
    id: &E::Id,
    entry: &Entry<E>,
) -> Result<(), DatastoreError> {
    if let Appends::Stream(_) = behind.queue.appends() {
        return Ok(());
    }
    let change = Change {
        collection: E::COLLECTION.to_owned(),
        id: id.to_string(),
        version: entry.version,
    };
    let carried = match &entry.value {
        Some(record) => {
            Carried::Record(serde_json::to_value(record).expect("cached types serialise to JSON"))
        }
        None => Carried::Deleted,
    };
    behind
        .queue
        .send(&change, &carried)
        .await
        .map_err(queue_failed)
}

/// Checks, before a write-behind record takes its claims, that MongoDB holds none of them for
/// another record (and fails with the conflict when a record holds one).
pub(super) trait Vet<E> {
    fn vet(&self, record: &E) -> impl Future<Output = Result<(), DatastoreError>> + Send;
}

/// For records without claims.
struct Unclaimed;

impl<E: Sync> Vet<E> for Unclaimed {
    async fn vet(&self, _record: &E) -> Result<(), DatastoreError> {
        Ok(())
    }
}

/// What a write-behind mutation does with the record it read.
pub(super) enum Decision<E> {
    /// Store this as the next version.
    Put(E),
    /// Delete the record.
    Remove,
    /// Leave it as it is (nothing to write).
    Keep,
}

/// Now, to the millisecond: what MongoDB stores of a time, so the cache's pending version and
/// the persisted one are equal.
pub(super) fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

pub(super) fn redis_unavailable() -> DatastoreError {
    DatastoreError::Behind(
        "Redis is unavailable, and in write-behind mode it holds writes MongoDB does not have \
         yet; retry shortly"
            .into(),
    )
}

fn cache_failed(error: CacheError) -> DatastoreError {
    tracing::warn!(%error, "write-behind: Redis did not take the write");
    redis_unavailable()
}

fn queue_failed(error: QueueError) -> DatastoreError {
    tracing::warn!(%error, "write-behind: the queue failed");
    DatastoreError::Behind("the write-behind queue is unavailable; retry shortly".into())
}
