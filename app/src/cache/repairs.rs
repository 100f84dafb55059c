//! Cache writes that could not reach Redis, kept until they can.
//!
//! Invariant 1 (read-your-writes) needs the cache to hold at least the version a mutation
//! committed. When Redis fails during a write-through, the older cached version would otherwise
//! resurface once Redis answers again. So the write is kept here (the newest version per key),
//! reads of a pending key bypass the cache, and a background task re-applies the writes through
//! the same compare-and-set as soon as Redis answers. Limits: the pending set lives in this
//! process; another instance that can still reach Redis may serve the older version until the
//! repair lands or the record's TTL expires.

use std::{collections::HashMap, sync::Mutex};

use tokio::sync::watch;

use crate::domain::Version;

/// One versioned cache write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct VersionedWrite {
    pub key: String,
    pub version: Version,
    pub value: String,
    pub ttl_ms: u64,
}

pub(super) struct Repairs {
    pending: Mutex<HashMap<String, VersionedWrite>>,
    count: watch::Sender<usize>,
}

impl Repairs {
    pub(super) fn new() -> Self {
        Self {
            pending: Mutex::new(HashMap::new()),
            count: watch::Sender::new(0),
        }
    }

    /// Keeps `writes`, each replacing a pending write for its key unless that one is newer.
    pub(super) fn record(&self, writes: &[VersionedWrite]) {
        let mut pending = self.lock();
        for write in writes {
            let newer_pending = pending
                .get(&write.key)
                .is_some_and(|existing| existing.version > write.version);
            if !newer_pending {
                pending.insert(write.key.clone(), write.clone());
            }
        }
        self.count.send_replace(pending.len());
    }

    pub(super) fn contains(&self, key: &str) -> bool {
        self.lock().contains_key(key)
    }

    pub(super) fn snapshot(&self) -> Vec<VersionedWrite> {
        self.lock().values().cloned().collect()
    }

    /// Forgets the writes that reached Redis, unless a newer write for the key arrived since.
    pub(super) fn settle(&self, applied: &[VersionedWrite]) {
        let mut pending = self.lock();
        for write in applied {
            if pending.get(&write.key) == Some(write) {
                pending.remove(&write.key);
            }
        }
        self.count.send_replace(pending.len());
    }

    pub(super) fn len(&self) -> usize {
        *self.count.borrow()
    }

    /// Resolves once no write is pending.
    pub(super) async fn drained(&self) {
        let mut count = self.count.subscribe();
        // The sender lives as long as `self`, so the channel cannot close under us.
        let _ = count.wait_for(|pending| *pending == 0).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VersionedWrite>> {
        self.pending.lock().expect("repairs lock is never poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(key: &str, version: Version) -> VersionedWrite {
        VersionedWrite {
            key: key.into(),
            version,
            value: format!("{version} -"),
            ttl_ms: 1_000,
        }
    }

    #[test]
    fn the_newest_pending_write_per_key_wins() {
        let repairs = Repairs::new();
        repairs.record(&[write("a", 3)]);
        repairs.record(&[write("a", 2)]);
        assert_eq!(repairs.snapshot(), [write("a", 3)]);
        repairs.record(&[write("a", 4)]);
        assert_eq!(repairs.snapshot(), [write("a", 4)]);
    }

    #[test]
    fn settling_an_outdated_write_keeps_the_newer_one() {
        let repairs = Repairs::new();
        repairs.record(&[write("a", 1), write("b", 1)]);
        let applied = repairs.snapshot();
        repairs.record(&[write("a", 2)]);
        repairs.settle(&applied);
        assert_eq!(repairs.snapshot(), [write("a", 2)]);
        assert!(repairs.contains("a"));
        assert!(!repairs.contains("b"));
    }

    #[tokio::test]
    async fn drained_resolves_when_the_last_write_settles() {
        let repairs = std::sync::Arc::new(Repairs::new());
        repairs.record(&[write("a", 1)]);
        let waiter = tokio::spawn({
            let repairs = repairs.clone();
            async move { repairs.drained().await }
        });
        repairs.settle(&repairs.snapshot());
        waiter.await.expect("drained resolves");
        assert_eq!(repairs.len(), 0);
    }
}
