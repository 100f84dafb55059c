//! Pending records: the cache as the system of record while a write waits in the queue
//! (write-behind, see `crate::queue`).
//!
//! A write-behind mutation stores its new version as `"<version> pending <json|->"`: no TTL (it
//! must outlive any backlog), trusted by every Redis run (it is the only copy until the worker
//! persisted it; an epoch would make a restart from the append-only file forget acknowledged
//! writes), and never replaced by a fill of the same version. The worker reads pending
//! records, persists them to MongoDB, then settles each: the same value, stamped with the run
//! that answers and given the record's TTL, so from then on it is an ordinary cached record.
//!
//! Two scripts, each on one key:
//!
//! * `write_pending` allocates the version: it stores version n+1 only if the trusted value in
//!   Redis is still at n (a pending value, or a value of the answering run; anything else is a
//!   copy the run cannot vouch for and MongoDB was read instead). Two writers that read n both
//!   try n+1; one stores, the other sees the key moved and reads again. In the same step it
//!   appends the change to the queue's stream, so a change is queued exactly when its pending
//!   value is stored: no change points at a write that never landed (a worker that read it
//!   first would acknowledge it as a no-op and lose the write), and no pending value lacks its
//!   change (none would ever persist it). Two keys in one script: the stream and the records
//!   must live on one Redis node (a Redis Cluster would need the stream sharded by slot).
//!   With the SQS queue, which no Redis script can reach, the same script records the change
//!   in the sorted set `<prefix>queued` instead (`ZADD`, scored with Redis's `TIME` in ms), in
//!   the same step; the writer sends it to SQS afterwards (`crate::queue::sqs`).
//! * `settle_pending` turns `"<n> pending ..."` into an ordinary entry, and does nothing if the
//!   key moved on to a newer pending version meanwhile (that one has its own queued change).

use redis::Script;

use super::{entry::PENDING, Cache, CacheEntity, CacheError, Entry, Epoch};
use crate::{domain::Version, queue::Appends};

/// `KEYS[1]` the key, `KEYS[2]` the queue's stream (or its `queued` set). `ARGV[1]` the version
/// the writer read (0 for never written), `ARGV[2]` the epoch it noted, `ARGV[3]` the encoded
/// pending value, `ARGV[4]` the collection, `ARGV[5]` the id, `ARGV[6]` the new version.
/// Stores the value and records the change in one step ([`APPEND`] or [`INDEX`]). Returns `{1}`
/// when stored (also when the value is already exactly this one: a retried call, which records
/// nothing again), `{0, <version>}` when the trusted value is at another version.
const WRITE_PENDING: &str = r"
local current = redis.call('GET', KEYS[1])
if current == ARGV[3] then
  return {1}
end
if current then
  local version, stamp = string.match(current, '^(%-?%d+) (%S+) ')
  if version and (stamp == 'pending' or stamp == ARGV[2]) and tonumber(version) ~= tonumber(ARGV[1]) then
    return {0, tonumber(version)}
  end
end
";

/// The end of [`WRITE_PENDING`] for a Redis stream: the change is the entry.
const APPEND: &str = r"
redis.call('XADD', KEYS[2], '*', 'c', ARGV[4], 'i', ARGV[5], 'v', ARGV[6])
redis.call('SET', KEYS[1], ARGV[3])
return {1}
";

/// The end of [`WRITE_PENDING`] for SQS: `<collection>:<id>:<version>` scored with Redis's
/// time in ms, so a barrier's mark (also Redis's time) orders against it.
const INDEX: &str = r"
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[2], ms, ARGV[4] .. ':' .. ARGV[5] .. ':' .. ARGV[6])
redis.call('SET', KEYS[1], ARGV[3])
return {1}
";

/// `KEYS[1]` the key. `ARGV[1]` the persisted version, `ARGV[2]` the epoch to stamp,
/// `ARGV[3]` a record's TTL in ms, `ARGV[4]` a tombstone's. Returns 1 when settled, 0 when
/// the key no longer holds that pending version.
const SETTLE_PENDING: &str = r"
local current = redis.call('GET', KEYS[1])
local prefix = ARGV[1] .. ' pending '
if not current or string.sub(current, 1, #prefix) ~= prefix then
  return 0
end
local body = string.sub(current, #prefix + 1)
local ttl = ARGV[3]
if body == '-' then ttl = ARGV[4] end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. body, 'PX', ttl)
return 1
";

pub(super) struct PendingScripts {
    append: Script,
    index: Script,
    settle: Script,
}

impl PendingScripts {
    pub(super) fn new() -> Self {
        Self {
            append: Script::new(&format!("{WRITE_PENDING}{APPEND}")),
            index: Script::new(&format!("{WRITE_PENDING}{INDEX}")),
            settle: Script::new(SETTLE_PENDING),
        }
    }
}

/// What the cache holds for a record a change points at.
#[derive(Debug, Clone, PartialEq)]
pub enum Held<E> {
    /// A pending version: the worker persists it.
    Pending(Entry<E>),
    /// An ordinary entry at this version: MongoDB held this version when it was cached.
    Cached(Version),
    /// Nothing (expired, or lost by Redis), or a value that does not decode.
    Missing,
}

/// What [`Cache::write_pending`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pended {
    Stored,
    /// The record is no longer at the version the writer read: read it again.
    Moved {
        current: Version,
    },
}

/// What Redis says about the ability to hold pending records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durability {
    /// `maxmemory_policy` of `INFO memory`.
    pub eviction_policy: String,
    /// `aof_enabled` of `INFO persistence`.
    pub append_only: bool,
}

impl Durability {
    /// Why pending records are not safe in this Redis, if they are not: a policy that may
    /// evict keys without a TTL would drop acknowledged writes.
    pub fn refusal(&self) -> Option<String> {
        self.eviction_policy.starts_with("allkeys-").then(|| {
            format!(
                "Redis evicts keys without a TTL (maxmemory-policy {}): write-behind would lose \
                 queued writes under memory pressure; use noeviction or a volatile-* policy",
                self.eviction_policy
            )
        })
    }
}

impl Cache {
    /// Stores `entry` (version n+1 of record `id`, or its tombstone) as pending and records its
    /// change where `appends` says, if the record is still at `read` (n) in Redis; `noted` is
    /// the epoch noted before the record was read.
    /// Waits for a slow Redis like a write-through; fails if Redis cannot take it (the
    /// mutation must then fail: nothing else holds the write).
    pub async fn write_pending<E: CacheEntity>(
        &self,
        noted: &Epoch,
        id: &E::Id,
        read: Version,
        entry: &Entry<E>,
        appends: Appends<'_>,
    ) -> Result<Pended, CacheError> {
        let key = self.key::<E>(id);
        let value = entry.encode(&Epoch::pending());
        let id = id.to_string();
        let stored = self
            .within_write_timeout(|session, left| {
                let (script, target) = match appends {
                    Appends::Stream(stream) => (&self.pending.append, stream),
                    Appends::Index(set) => (&self.pending.index, set),
                };
                let mut invocation = script.prepare_invoke();
                invocation
                    .key(&key)
                    .key(target)
                    .arg(read)
                    .arg(noted.as_str())
                    .arg(&value)
                    .arg(E::COLLECTION)
                    .arg(&id)
                    .arg(entry.version);
                async move {
                    let mut connection = session.connection.clone();
                    self.call(
                        "write_pending",
                        &session,
                        left,
                        invocation.invoke_async::<Vec<i64>>(&mut connection),
                    )
                    .await
                }
            })
            .await?;
        Ok(match stored.as_slice() {
            [1] => Pended::Stored,
            [_, current] => Pended::Moved { current: *current },
            other => unreachable!("write_pending answers {{1}} or {{0, version}}, not {other:?}"),
        })
    }

    /// The pending entry of each id (`None` where the record is not pending).
    pub async fn pending_entries<E: CacheEntity>(
        &self,
        ids: &[E::Id],
    ) -> Result<Vec<Option<Entry<E>>>, CacheError> {
        Ok(self
            .held_entries::<E>(ids)
            .await?
            .into_iter()
            .map(|held| match held {
                Held::Pending(entry) => Some(entry),
                _ => None,
            })
            .collect())
    }

    /// What the cache holds for each id, in one `MGET` (a value that does not decode is
    /// `Missing`).
    pub async fn held_entries<E: CacheEntity>(
        &self,
        ids: &[E::Id],
    ) -> Result<Vec<Held<E>>, CacheError> {
        Ok(self
            .stamped_entries::<E>(ids)
            .await?
            .into_iter()
            .map(|stored| match stored {
                Some(stored) if stored.stamp == PENDING => Held::Pending(stored.entry),
                Some(stored) => Held::Cached(stored.entry.version),
                None => Held::Missing,
            })
            .collect())
    }

    /// Turns the pending entry of `id` at `version` into an ordinary cached entry, now that
    /// MongoDB holds it. `false` if the key holds something else (a newer pending version).
    pub async fn settle_pending<E: CacheEntity>(
        &self,
        id: &E::Id,
        version: Version,
    ) -> Result<bool, CacheError> {
        let session = self.direct_session().await?;
        let mut invocation = self.pending.settle.prepare_invoke();
        invocation
            .key(self.key::<E>(id))
            .arg(version)
            .arg(session.epoch.as_str())
            .arg(self.lifetimes.record_ttl.as_millis() as u64)
            .arg(self.lifetimes.tombstone_ttl.as_millis() as u64);
        let mut connection = session.connection.clone();
        let settled: i64 = self
            .call(
                "settle_pending",
                &session,
                self.timeout,
                invocation.invoke_async(&mut connection),
            )
            .await?;
        Ok(settled == 1)
    }

    /// Whether this Redis can hold pending records safely (see [`Durability::refusal`]).
    pub async fn durability(&self) -> Result<Durability, CacheError> {
        let info = redis::cmd("INFO")
            .arg("memory")
            .arg("persistence")
            .to_owned();
        let (_, info): (_, String) = self.direct("info", info).await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
                .unwrap_or_default()
                .to_owned()
        };
        Ok(Durability {
            eviction_policy: field("maxmemory_policy"),
            append_only: field("aof_enabled") == "1",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_policies_that_evict_keys_without_ttl_are_refused() {
        let durability = |policy: &str| Durability {
            eviction_policy: policy.into(),
            append_only: true,
        };
        for safe in ["noeviction", "volatile-lru", "volatile-ttl", "volatile-lfu"] {
            assert_eq!(durability(safe).refusal(), None, "{safe}");
        }
        for unsafe_policy in ["allkeys-lru", "allkeys-lfu", "allkeys-random"] {
            assert!(
                durability(unsafe_policy).refusal().is_some(),
                "{unsafe_policy}"
            );
        }
    }
}
