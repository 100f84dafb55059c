//! The consistency audit: cached records compared with MongoDB, in both write modes.
//!
//! The invariants are proven by tests; the audit watches for them breaking in production (what
//! Meta's Polaris does for its caches). A background sampler (`serve`, every
//! `OPONN_AUDIT_EVERY_MS`) walks the cached keys a few at a time and counts what it finds in
//! `oponn_cache_inconsistent_total{entity, kind}`; `oponn audit-cache` walks them all once and
//! exits non-zero on a finding.
//!
//! Only what readers trust is judged: an entry of the Redis run that answers, or a pending
//! one. A pending record is expected to be newer than MongoDB until the worker has persisted
//! it, so it is judged only after the queue has passed a mark taken after it was read: if it
//! is still pending at the same version then, the worker failed it. A finding is reported only
//! if a second look a moment later finds the same (a write between the cache read and the
//! MongoDB read is not an inconsistency).

use std::{collections::HashMap, future::Future, str::FromStr, time::Duration};

use serde::Serialize;

use super::{Datastore, DatastoreError};
use crate::{
    cache::{entry::PENDING, Entity, Stamped},
    domain::{Book, Bookstore, Version},
    store::StoreError,
};

/// How long the second look waits for writes in flight to finish.
const SECOND_LOOK_AFTER: Duration = Duration::from_millis(200);

/// What a cached entry and MongoDB disagree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Inconsistency {
    /// Still pending after the worker caught up with the changes queued before it was read.
    PendingPastDrain,
    /// A settled cached record newer than MongoDB's.
    CacheNewer,
    /// A cached record older than MongoDB's: readers are served the past.
    CacheOlder,
    /// The same version with other content.
    ContentDiffers,
    /// A cached record MongoDB does not have.
    CacheOnly,
    /// A cached absence (or tombstone) where MongoDB has the record.
    MongodbOnly,
}

impl Inconsistency {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::PendingPastDrain => "pending_past_drain",
            Self::CacheNewer => "cache_newer",
            Self::CacheOlder => "cache_older",
            Self::ContentDiffers => "content_differs",
            Self::CacheOnly => "cache_only",
            Self::MongodbOnly => "mongodb_only",
        }
    }
}

/// One inconsistency, as found twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub entity: &'static str,
    pub id: String,
    pub kind: Inconsistency,
    /// The cached version.
    pub cached: Version,
    /// MongoDB's version (`None`: no record).
    pub stored: Option<Version>,
}

/// What one audit step looked at and found.
#[derive(Debug, Default)]
pub struct Audited {
    /// How many cached records of each entity it compared.
    pub checked: Vec<(&'static str, usize)>,
    pub findings: Vec<Finding>,
}

/// Where a walk over the cached keys is: one `SCAN` cursor per entity.
#[derive(Debug, Default)]
pub struct AuditCursor {
    books: Walk,
    bookstores: Walk,
    /// Stop each walk after one round (`oponn audit-cache`) instead of going round forever.
    once: bool,
}

#[derive(Debug, Default)]
struct Walk {
    cursor: u64,
    rounds: u64,
}

impl AuditCursor {
    /// A cursor that walks every key once.
    pub fn once() -> Self {
        Self {
            once: true,
            ..Self::default()
        }
    }

    /// Whether a `once` cursor has walked every key.
    pub fn finished(&self) -> bool {
        self.books.rounds > 0 && self.bookstores.rounds > 0
    }
}

impl Datastore {
    /// Audits about `count` more cached records of each entity from `cursor`.
    pub async fn audit_step(
        &self,
        cursor: &mut AuditCursor,
        count: usize,
    ) -> Result<Audited, DatastoreError> {
        let mut audited = Audited::default();
        let books = self.store.books();
        if !(cursor.once && cursor.books.rounds > 0) {
            self.audit_walk::<Book, _, _>(&mut cursor.books, count, &mut audited, |ids| {
                let books = &books;
                async move { books.find_many(&ids).await }
            })
            .await?;
        }
        let stores = self.store.bookstores();
        if !(cursor.once && cursor.bookstores.rounds > 0) {
            self.audit_walk::<Bookstore, _, _>(
                &mut cursor.bookstores,
                count,
                &mut audited,
                |ids| {
                    let stores = &stores;
                    async move { stores.find_many(&ids).await }
                },
            )
            .await?;
        }
        Ok(audited)
    }

    async fn audit_walk<E, F, Fut>(
        &self,
        walk: &mut Walk,
        count: usize,
        audited: &mut Audited,
        fetch: F,
    ) -> Result<(), DatastoreError>
    where
        E: Entity,
        E::Id: FromStr,
        F: Fn(Vec<E::Id>) -> Fut,
        Fut: Future<Output = Result<Vec<E>, StoreError>>,
    {
        let (next, ids) = self
            .cache
            .scan_ids::<E>(walk.cursor, count)
            .await
            .map_err(|_| super::behind::redis_unavailable())?;
        walk.cursor = next;
        if next == 0 {
            walk.rounds += 1;
        }
        let findings = self.audit::<E, _, _>(&ids, &fetch).await?;
        audited.checked.push((E::COLLECTION, ids.len()));
        audited.findings.extend(findings);
        Ok(())
    }

    /// Compares the cached entries of `ids` with MongoDB (`fetch`); the findings a second look
    /// confirms.
    async fn audit<E, F, Fut>(
        &self,
        ids: &[E::Id],
        fetch: &F,
    ) -> Result<Vec<Finding>, DatastoreError>
    where
        E: Entity,
        F: Fn(Vec<E::Id>) -> Fut,
        Fut: Future<Output = Result<Vec<E>, StoreError>>,
    {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let first = self.look::<E, _, _>(ids, fetch).await?;
        if first.is_empty() {
            return Ok(first);
        }
        tokio::time::sleep(SECOND_LOOK_AFTER).await;
        let suspects: Vec<E::Id> = ids
            .iter()
            .copied()
            .filter(|id| first.iter().any(|f| f.id == id.to_string()))
            .collect();
        let second = self.look::<E, _, _>(&suspects, fetch).await?;
        Ok(second
            .into_iter()
            .filter(|finding| first.contains(finding))
            .collect())
    }

    /// One look: the cache, the queue's progress for pending entries, then MongoDB.
    async fn look<E, F, Fut>(
        &self,
        ids: &[E::Id],
        fetch: &F,
    ) -> Result<Vec<Finding>, DatastoreError>
    where
        E: Entity,
        F: Fn(Vec<E::Id>) -> Fut,
        Fut: Future<Output = Result<Vec<E>, StoreError>>,
    {
        let unavailable = |_| super::behind::redis_unavailable();
        let epoch = self.cache.current_epoch().await.map_err(unavailable)?;
        let cached = self
            .cache
            .stamped_entries::<E>(ids)
            .await
            .map_err(unavailable)?;
        let pending: Vec<(E::Id, Version)> = ids
            .iter()
            .zip(&cached)
            .filter_map(|(id, c)| {
                Some((
                    *id,
                    c.as_ref().filter(|c| c.stamp == PENDING)?.entry.version,
                ))
            })
            .collect();
        // Pending entries: still pending at the same version once the queue passed them?
        let mut stuck: HashMap<String, Version> = HashMap::new();
        if !pending.is_empty() && self.caught_up(E::COLLECTION).await.is_ok() {
            let pending_ids: Vec<E::Id> = pending.iter().map(|(id, _)| *id).collect();
            let again = self
                .cache
                .stamped_entries::<E>(&pending_ids)
                .await
                .map_err(unavailable)?;
            for ((id, version), now) in pending.iter().zip(again) {
                if now.is_some_and(|now| now.stamp == PENDING && now.entry.version == *version) {
                    stuck.insert(id.to_string(), *version);
                }
            }
        }
        let stored: HashMap<String, E> = fetch(ids.to_vec())
            .await?
            .into_iter()
            .map(|record| (record.id().to_string(), record))
            .collect();
        let mut findings = Vec::new();
        for (id, cached) in ids.iter().zip(&cached) {
            let id = id.to_string();
            let stored = stored.get(&id);
            let kind = match cached {
                Some(cached) if cached.stamp == PENDING => stuck
                    .contains_key(&id)
                    .then_some(Inconsistency::PendingPastDrain),
                Some(cached) if cached.stamp == epoch.as_str() => judge(cached, stored),
                // Another run's value is never served; no value, nothing to judge.
                _ => None,
            };
            if let (Some(kind), Some(cached)) = (kind, cached) {
                findings.push(Finding {
                    entity: E::COLLECTION,
                    id,
                    kind,
                    cached: cached.entry.version,
                    stored: stored.map(Entity::version),
                });
            }
        }
        Ok(findings)
    }
}

/// How a trusted, settled cached entry compares with MongoDB's record.
fn judge<E: Entity + Serialize>(cached: &Stamped<E>, stored: Option<&E>) -> Option<Inconsistency> {
    match (&cached.entry.value, stored) {
        (Some(record), Some(stored)) => match record.version().cmp(&stored.version()) {
            std::cmp::Ordering::Greater => Some(Inconsistency::CacheNewer),
            std::cmp::Ordering::Less => Some(Inconsistency::CacheOlder),
            std::cmp::Ordering::Equal => (serde_json::to_value(record).ok()
                != serde_json::to_value(stored).ok())
            .then_some(Inconsistency::ContentDiffers),
        },
        (Some(_), None) => Some(Inconsistency::CacheOnly),
        (None, Some(_)) => Some(Inconsistency::MongodbOnly),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Entry;

    fn book(version: Version, title: &str) -> Book {
        let mut book: Book = serde_json::from_value(serde_json::json!({
            "id": "5f1d7b3e9c1e4a0001a1b2c3",
            "sourceKey": "/works/OL1W",
            "title": title,
            "authors": [],
            "firstPublishYear": null,
            "subjects": [],
            "bookstoreId": null,
            "version": version,
            "updatedAt": "2026-01-01T00:00:00Z"
        }))
        .expect("a book");
        book.version = version;
        book
    }

    fn cached(entry: Entry<Book>) -> Stamped<Book> {
        Stamped {
            stamp: "run".into(),
            entry,
        }
    }

    #[test]
    fn each_disagreement_has_its_kind() {
        let present = |v, t| cached(Entry::present(v, book(v, t)));
        assert_eq!(judge(&present(2, "a"), Some(&book(2, "a"))), None);
        assert_eq!(
            judge(&present(3, "a"), Some(&book(2, "a"))),
            Some(Inconsistency::CacheNewer)
        );
        assert_eq!(
            judge(&present(1, "a"), Some(&book(2, "a"))),
            Some(Inconsistency::CacheOlder)
        );
        assert_eq!(
            judge(&present(2, "a"), Some(&book(2, "b"))),
            Some(Inconsistency::ContentDiffers)
        );
        assert_eq!(
            judge(&present(2, "a"), None),
            Some(Inconsistency::CacheOnly)
        );
        assert_eq!(
            judge(&cached(Entry::absent(3)), Some(&book(2, "a"))),
            Some(Inconsistency::MongodbOnly)
        );
        assert_eq!(judge::<Book>(&cached(Entry::absent(3)), None), None);
    }
}
