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
//!
//! **Claims: unique values only MongoDB could check.** A record can hold values no other record
//! may hold (a bookstore's normalised name: [`Entity::claims`]). MongoDB's unique index
//! checks them when a write reaches it, which in write-behind is after the reply. So a pending
//! write also *claims* its record's values: `<prefix>claim_<collection>_<value>` holds the id
//! of the record that claimed it, and `<prefix>claims_<collection>_<id>` the claims a record
//! holds. `write_pending` takes them in the same step as the record, and refuses (`Claimed`)
//! when another record holds one. A claim lasts while its record is pending (no TTL):
//! `settle_pending` releases the record's claims in the step that settles it (MongoDB then
//! holds the value, where a writer reads it), and the worker releases them on its other paths
//! (`release_claims`, which does nothing while the record is pending).
//!
//! A writer first reads MongoDB for a holder of the value, then claims it. Between the two, a
//! worker may persist another record's claim and release it: the value moved from the claims to
//! MongoDB behind the writer's back. So every release bumps the generation `<prefix>claims`,
//! the writer reads it before MongoDB, and `write_pending` refuses (`Recheck`) when it moved.

use redis::Script;

use super::{entry::PENDING, Cache, CacheError, Entity, Entry, Epoch};
use crate::{domain::Version, queue::Appends};

/// `KEYS[1]` the key, `KEYS[2]` the queue's stream (or its `queued` set); with claims, `KEYS[3]`
/// the claims' generation, `KEYS[4]` the record's set of claims, `KEYS[5..]` the claims.
/// `ARGV[1]` the version the writer read (0 for never written), `ARGV[2]` the epoch it noted,
/// `ARGV[3]` the encoded pending value, `ARGV[4]` the collection, `ARGV[5]` the id, `ARGV[6]`
/// the new version, `ARGV[7]` the claims' generation the writer read.
/// Stores the value, takes its claims and records the change in one step ([`APPEND`] or
/// [`INDEX`]). Returns `{1}` when stored (also when the value is already exactly this one: a
/// retried call, which records nothing again), `{0, <version>}` when the trusted value is at
/// another version, `{2}` when the generation moved, `{3}` when another record holds a claim.
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
if #KEYS > 2 then
  if (redis.call('GET', KEYS[3]) or '0') ~= ARGV[7] then
    return {2}
  end
  for i = 5, #KEYS do
    local holder = redis.call('GET', KEYS[i])
    if holder and holder ~= ARGV[5] then
      return {3}
    end
  end
  for i = 5, #KEYS do
    redis.call('SET', KEYS[i], ARGV[5])
    redis.call('SADD', KEYS[4], KEYS[i])
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

/// Releases the claims of record `ARGV[1]`: `KEYS[2]` its set of claims, `KEYS[3]` the
/// generation, bumped when a claim is released. A claim another record took since is kept.
const RELEASE: &str = r"
local released = 0
for _, claim in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('GET', claim) == ARGV[1] then
    redis.call('DEL', claim)
    released = released + 1
  end
end
redis.call('DEL', KEYS[2])
if released > 0 then
  redis.call('INCR', KEYS[3])
end
";

/// `KEYS[1]` the key, then as [`RELEASE`]. `ARGV[1]` the id, `ARGV[2]` the persisted version,
/// `ARGV[3]` the epoch to stamp, `ARGV[4]` a record's TTL in ms, `ARGV[5]` a tombstone's.
/// Returns 1 when settled (and its claims released), 0 when the key no longer holds that
/// pending version.
const SETTLE_PENDING: &str = r"
local current = redis.call('GET', KEYS[1])
local prefix = ARGV[2] .. ' pending '
if not current or string.sub(current, 1, #prefix) ~= prefix then
  return 0
end
local body = string.sub(current, #prefix + 1)
local ttl = ARGV[4]
if body == '-' then ttl = ARGV[5] end
redis.call('SET', KEYS[1], ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. body, 'PX', ttl)
";

/// `KEYS` and `ARGV[1]` as [`RELEASE`], `KEYS[1]` the record's key: releases the claims of a
/// record that is not pending (returns 0 and keeps them while it is).
const RELEASE_CLAIMS: &str = r"
local current = redis.call('GET', KEYS[1])
if current and string.match(current, '^%-?%d+ pending ') then
  return 0
end
";

pub(super) struct PendingScripts {
    append: Script,
    index: Script,
    settle: Script,
    release: Script,
}

impl PendingScripts {
    pub(super) fn new() -> Self {
        Self {
            append: Script::new(&format!("{WRITE_PENDING}{APPEND}")),
            index: Script::new(&format!("{WRITE_PENDING}{INDEX}")),
            settle: Script::new(&format!("{SETTLE_PENDING}{RELEASE}return 1")),
            release: Script::new(&format!("{RELEASE_CLAIMS}{RELEASE}return 1")),
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
    /// Another record holds one of the record's claims: nothing was stored.
    Claimed,
    /// A claim was released since the writer read the generation (a value may have moved
    /// from the claims to MongoDB): check MongoDB again.
    Recheck,
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
    /// the epoch noted before the record was read. A record with claims takes them too, if
    /// the claims' generation is still `generation` (read before MongoDB was checked for
    /// holders; required then).
    /// Waits for a slow Redis like a write-through; fails if Redis cannot take it (the
    /// mutation must then fail: nothing else holds the write).
    pub async fn write_pending<E: Entity>(
        &self,
        noted: &Epoch,
        id: &E::Id,
        read: Version,
        entry: &Entry<E>,
        appends: Appends<'_>,
        generation: Option<u64>,
    ) -> Result<Pended, CacheError> {
        let key = self.key::<E>(id);
        let value = entry.encode(&Epoch::pending());
        let claims: Vec<String> = entry
            .value
            .as_ref()
            .map(|record| {
                record
                    .claims()
                    .iter()
                    .map(|claim| self.claim_key::<E>(claim))
                    .collect()
            })
            .unwrap_or_default();
        let claiming = if claims.is_empty() {
            None
        } else {
            Some((
                self.claims_set::<E>(id),
                generation.expect("a record with claims is written with the claims' generation"),
            ))
        };
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
                if let Some((set, generation)) = &claiming {
                    invocation
                        .key(self.claims_generation_key())
                        .key(set)
                        .arg(generation);
                    for claim in &claims {
                        invocation.key(claim);
                    }
                }
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
            [2] => Pended::Recheck,
            [3] => Pended::Claimed,
            [_, current] => Pended::Moved { current: *current },
            other => unreachable!(
                "write_pending answers {{1}}, {{2}}, {{3}} or {{0, version}}, not {other:?}"
            ),
        })
    }

    /// The pending entry of each id (`None` where the record is not pending).
    pub async fn pending_entries<E: Entity>(
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
    pub async fn held_entries<E: Entity>(&self, ids: &[E::Id]) -> Result<Vec<Held<E>>, CacheError> {
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
    pub async fn settle_pending<E: Entity>(
        &self,
        id: &E::Id,
        version: Version,
    ) -> Result<bool, CacheError> {
        let session = self.direct_session().await?;
        let mut invocation = self.pending.settle.prepare_invoke();
        invocation
            .key(self.key::<E>(id))
            .key(self.claims_set::<E>(id))
            .key(self.claims_generation_key())
            .arg(id.to_string())
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

    /// Releases the claims of record `id` unless it is pending (see the module's doc).
    pub async fn release_claims<E: Entity>(&self, id: &E::Id) -> Result<(), CacheError> {
        let session = self.direct_session().await?;
        let mut invocation = self.pending.release.prepare_invoke();
        invocation
            .key(self.key::<E>(id))
            .key(self.claims_set::<E>(id))
            .key(self.claims_generation_key())
            .arg(id.to_string());
        let mut connection = session.connection.clone();
        let _: i64 = self
            .call(
                "release_claims",
                &session,
                self.timeout,
                invocation.invoke_async(&mut connection),
            )
            .await?;
        Ok(())
    }

    /// Counts one more attempt at applying each change (by [`crate::queue::Change::member`])
    /// and returns the counts, in one pipeline: how many workers began applying it. Unlike a
    /// queue's delivery count, a worker that dies before it begins does not count.
    pub async fn count_attempts(&self, members: &[String]) -> Result<Vec<u64>, CacheError> {
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.attempts_key();
        let mut pipeline = redis::pipe();
        for member in members {
            pipeline.cmd("HINCRBY").arg(&key).arg(member).arg(1);
        }
        let session = self.direct_session().await?;
        let mut connection = session.connection.clone();
        self.call(
            "count_attempts",
            &session,
            self.timeout,
            pipeline.query_async(&mut connection),
        )
        .await
    }

    /// Forgets the attempts of changes that were applied or dead-lettered.
    pub async fn forget_attempts(&self, members: &[String]) -> Result<(), CacheError> {
        if members.is_empty() {
            return Ok(());
        }
        let forget = redis::cmd("HDEL")
            .arg(self.attempts_key())
            .arg(members)
            .to_owned();
        let (_, _): (_, u64) = self.direct("forget_attempts", forget).await?;
        Ok(())
    }

    fn attempts_key(&self) -> String {
        format!("{}attempts", self.prefix)
    }

    /// The claims' generation: read it before looking for a claim's holder in MongoDB, and
    /// give it to [`Cache::write_pending`].
    pub async fn claims_generation(&self) -> Result<u64, CacheError> {
        let get = redis::cmd("GET")
            .arg(self.claims_generation_key())
            .to_owned();
        let (_, generation): (_, Option<u64>) = self.direct("claims_generation", get).await?;
        Ok(generation.unwrap_or(0))
    }

    /// The id of the record holding `claim` (of `E`'s claims), if a pending record does.
    pub async fn claim_holder<E: Entity>(&self, claim: &str) -> Result<Option<String>, CacheError> {
        let get = redis::cmd("GET").arg(self.claim_key::<E>(claim)).to_owned();
        let (_, holder): (_, Option<String>) = self.direct("claim_holder", get).await?;
        Ok(holder)
    }

    fn claim_key<E: Entity>(&self, claim: &str) -> String {
        format!("{}claim_{}_{claim}", self.prefix, E::COLLECTION)
    }

    fn claims_set<E: Entity>(&self, id: &E::Id) -> String {
        format!("{}claims_{}_{id}", self.prefix, E::COLLECTION)
    }

    fn claims_generation_key(&self) -> String {
        format!("{}claims", self.prefix)
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
