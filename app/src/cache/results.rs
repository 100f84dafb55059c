//! The query-result cache in Redis: cached results, the `tables` index, and the three scripts
//! that keep results exact while records change.
//!
//! Layout (every key shares the hash tag `{<prefix>q}`, so on Redis Cluster they live in one
//! slot and each script may touch several of them atomically; entity keys stay spread out):
//!
//! | key | type | holds |
//! |-----|------|-------|
//! | `{<prefix>q}r:<digest>` | string | `<rev> <stamp> <epoch> <json>`: a [`CachedResult`] (spec, members, complete), its expiry, and the Redis run it was computed for (a result of another run is a miss, as for records) |
//! | `{<prefix>q}tables` | sorted set, all scores 0 | `<range><stamp><digest>`, one per range a result reads: a range is `<collection>:<field>=<token>:` (an equality value) or `<collection>::` (no equality term); `<stamp>` is the result's expiry, 13 digits of epoch milliseconds |
//! | `{<prefix>q}expiry` | sorted set, scored by expiry | the same members as `tables` |
//! | `{<prefix>q}gens:<collection>` | hash | range -> generation, bumped by every write that visits the range |
//! | `{<prefix>q}seen:<collection>:<id>` | string | the newest record version reconciled |
//! | `{<prefix>q}rev` | string | the counter revisions come from |
//!
//! The races, and what closes each:
//!
//! * **A fill racing a write.** A reader notes the generations of its result's ranges before
//!   it queries MongoDB; the fill script stores the result only if they are unchanged. A write
//!   bumps them after it committed, so a result computed before the write can never be stored
//!   after the write looked for results to reconcile.
//! * **Two writes reconciling one result.** A write reads the results (with their revision),
//!   computes the new ones in Rust (the filter is evaluated in Rust) and commits them only if
//!   the revision is unchanged; otherwise the result is dropped, never left half-right.
//! * **Two writes of one record arriving out of order.** Each commit records the record's
//!   version; a commit carrying an older version than one already reconciled drops every
//!   result it visited instead of applying an outdated state.
//!
//! What anonymous readers can make it hold is bounded, and so is what a write pays:
//!
//! * **Index entries expire with their results.** Each entry is also in `expiry`, scored by the
//!   result's expiry; [`Cache::trim_results`] (the repair loop, every `retry_after`, and every
//!   fill a little) removes the expired ones, so Redis returns to its size once results expire.
//! * **A range holds at most `OPONN_CACHE_RESULTS_PER_RANGE` results.** The stamp after the
//!   range makes a range's entries sort oldest first; a fill into a full range evicts the
//!   oldest. A write visits the ranges of its record's old and new values, so its cost is
//!   bounded by that number, whatever readers cached before.
//!
//! When Redis fails during a reconciliation, the visited ranges are remembered, this process
//! stops using cached results, and the repair loop drops those ranges' results once Redis
//! answers. (Another instance could serve such a result until then; the same limit as the
//! entity cache's pending repairs.)

use std::{collections::BTreeSet, time::Duration};

use redis::Script;

use super::{link::Session, Cache, CacheError, Epoch};
use crate::{
    domain::Version,
    query::{visited_ranges, CachedResult, Change, Spec, Written},
};

/// The outcome of looking a result up.
#[derive(Debug)]
pub enum ResultLookup {
    Hit(CachedResult),
    /// Not cached: compute it, then offer it to [`Cache::fill_result`] with this guard.
    Miss(FillGuard),
    /// Do not use the result cache now.
    Bypass,
}

/// The generations of a result's ranges, and the Redis run, when its computation started.
#[derive(Debug)]
pub struct FillGuard {
    generations: Vec<String>,
    epoch: Epoch,
}

impl FillGuard {
    /// The epoch noted before the result was computed: the stamp of the records it fills.
    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }
}

/// One record a write changed, and the version the write produced.
#[derive(Debug, Clone)]
pub struct Reconcile {
    pub written: Written,
    pub version: Version,
}

/// Removes at most `limit` index entries whose result expired. `tables`, `expiry`: the keys.
const TRIM_EXPIRED: &str = r"
local function trim_expired(tables, expiry, limit)
  local now = redis.call('TIME')
  now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  local expired = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, limit)
  for _, member in ipairs(expired) do
    redis.call('ZREM', tables, member)
    redis.call('ZREM', expiry, member)
  end
  return #expired
end
";

/// `KEYS[1]` result, `KEYS[2]` tables, `KEYS[3]` rev counter, `KEYS[4]` expiry, `KEYS[4+i]`
/// the gens hash of range i. `ARGV`: ttl ms, json, result key prefix, digest, per-range cap,
/// n, then n x (range, expected generation). Returns {stored (0 or 1), evicted}.
const FILL: &str = r"
local n = tonumber(ARGV[6])
for i = 1, n do
  local at = 6 + (i - 1) * 2
  local current = redis.call('HGET', KEYS[4 + i], ARGV[at + 1]) or ''
  if current ~= ARGV[at + 2] then return {0, 0} end
end
trim_expired(KEYS[2], KEYS[4], 20)
local now = redis.call('TIME')
local stamp = string.format('%013d', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[1]))
local cap, evicted = tonumber(ARGV[5]), 0
for i = 1, n do
  local range = ARGV[6 + (i - 1) * 2 + 1]
  local low, high = '[' .. range, '[' .. range .. '\255'
  local count = redis.call('ZLEXCOUNT', KEYS[2], low, high)
  if count >= cap then
    -- Oldest first: the stamp after the range orders a range's entries by expiry.
    for _, member in ipairs(redis.call('ZRANGEBYLEX', KEYS[2], low, high, 'LIMIT', 0, count - cap + 1)) do
      redis.call('DEL', ARGV[3] .. string.sub(member, #range + 14))
      redis.call('ZREM', KEYS[2], member)
      redis.call('ZREM', KEYS[4], member)
      evicted = evicted + 1
    end
  end
end
local rev = redis.call('INCR', KEYS[3])
redis.call('SET', KEYS[1], rev .. ' ' .. stamp .. ' ' .. ARGV[2], 'PX', ARGV[1])
for i = 1, n do
  local member = ARGV[6 + (i - 1) * 2 + 1] .. stamp .. ARGV[4]
  redis.call('ZADD', KEYS[2], 0, member)
  redis.call('ZADD', KEYS[4], tonumber(stamp), member)
end
return {1, evicted}
";

/// `KEYS[1]` tables, `KEYS[2]` expiry. `ARGV[1]` the most entries to remove. Returns how many
/// expired entries it removed.
const TRIM: &str = r"
return trim_expired(KEYS[1], KEYS[2], tonumber(ARGV[1]))
";

/// `KEYS[1]` tables, `KEYS[2]` the collection's gens hash, `KEYS[3]` expiry. `ARGV[1]` the
/// result key prefix, `ARGV[2..]` ranges. Bumps each range's generation and returns every live result in the
/// ranges as key, value pairs; forgets index members whose result expired.
const BEGIN: &str = r"
local out, seen = {}, {}
for i = 2, #ARGV do
  local range = ARGV[i]
  redis.call('HINCRBY', KEYS[2], range, 1)
  local members = redis.call('ZRANGEBYLEX', KEYS[1], '[' .. range, '[' .. range .. '\255')
  for _, member in ipairs(members) do
    local key = ARGV[1] .. string.sub(member, #range + 14)
    if not seen[key] then
      seen[key] = true
      local value = redis.call('GET', key)
      if value then
        out[#out + 1] = key
        out[#out + 1] = value
      else
        redis.call('ZREM', KEYS[1], member)
        redis.call('ZREM', KEYS[3], member)
      end
    end
  end
end
return out
";

/// `KEYS[1]` tables, `KEYS[2]` rev counter, `KEYS[3]` expiry. `ARGV`: seen ttl ms, n records,
/// n x (seen key, version), then per result: key, expected rev, action (`s` set, `d` drop,
/// `k` keep), value, k, k index members without their stamp (`<range><digest>`). Returns
/// {updated, dropped}.
const COMMIT: &str = r"
local i, n = 3, tonumber(ARGV[2])
local outdated = false
for r = 1, n do
  local key, version = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  local seen = tonumber(redis.call('GET', key) or '-1')
  if seen >= version then
    outdated = true
  else
    redis.call('SET', key, version, 'PX', ARGV[1])
  end
end
local updated, dropped = 0, 0
while i <= #ARGV do
  local key, expected, action, value = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local k = tonumber(ARGV[i + 4])
  local current = redis.call('GET', key)
  if current then
    local rev, stamp = string.match(current, '^(%d+) (%d+) ')
    if outdated or action == 'd' or (action == 's' and rev ~= expected) then
      redis.call('DEL', key)
      for j = 1, k do
        -- `<range><digest>` -> `<range><stamp><digest>`; a digest is 40 characters.
        local bare = ARGV[i + 4 + j]
        local member = string.sub(bare, 1, #bare - 40) .. (stamp or '') .. string.sub(bare, #bare - 39)
        redis.call('ZREM', KEYS[1], member)
        redis.call('ZREM', KEYS[3], member)
      end
      dropped = dropped + 1
    elseif action == 's' then
      local next = redis.call('INCR', KEYS[2])
      redis.call('SET', key, next .. ' ' .. stamp .. ' ' .. value, 'KEEPTTL')
      updated = updated + 1
    end
  end
  i = i + 5 + k
end
return {updated, dropped}
";

/// `KEYS[1]` tables, `KEYS[2]` expiry, `KEYS[2+i]` gens hash of range i. `ARGV[1]` the result
/// key prefix, `ARGV[1+i]` range i. Drops every result in the ranges (after a failed
/// reconciliation).
const DROP_RANGES: &str = r"
for i = 2, #ARGV do
  local range = ARGV[i]
  redis.call('HINCRBY', KEYS[i + 1], range, 1)
  local members = redis.call('ZRANGEBYLEX', KEYS[1], '[' .. range, '[' .. range .. '\255')
  for _, member in ipairs(members) do
    redis.call('DEL', ARGV[1] .. string.sub(member, #range + 14))
    redis.call('ZREM', KEYS[1], member)
    redis.call('ZREM', KEYS[2], member)
  end
end
return #ARGV - 1
";

pub(super) struct ResultScripts {
    fill: Script,
    begin: Script,
    commit: Script,
    drop_ranges: Script,
    trim: Script,
}

impl ResultScripts {
    pub(super) fn new() -> Self {
        Self {
            fill: Script::new(&format!("{TRIM_EXPIRED}{FILL}")),
            begin: Script::new(BEGIN),
            commit: Script::new(COMMIT),
            drop_ranges: Script::new(DROP_RANGES),
            trim: Script::new(&format!("{TRIM_EXPIRED}{TRIM}")),
        }
    }
}

/// How many expired index entries one trim removes at most (one short script call).
const TRIM_BATCH: usize = 500;

/// The collection a range belongs to (`books:...` -> `books`).
fn collection_of(range: &str) -> &str {
    range.split(':').next().unwrap_or(range)
}

impl Cache {
    fn tag(&self) -> String {
        format!("{{{}q}}", self.prefix)
    }

    fn result_prefix(&self) -> String {
        format!("{}r:", self.tag())
    }

    fn result_key(&self, spec: &Spec) -> String {
        format!("{}{}", self.result_prefix(), spec.digest())
    }

    fn tables_key(&self) -> String {
        format!("{}tables", self.tag())
    }

    fn expiry_key(&self) -> String {
        format!("{}expiry", self.tag())
    }

    fn gens_key(&self, collection: &str) -> String {
        format!("{}gens:{collection}", self.tag())
    }

    fn rev_key(&self) -> String {
        format!("{}rev", self.tag())
    }

    fn seen_key(&self, collection: &str, id: &str) -> String {
        format!("{}seen:{collection}:{id}", self.tag())
    }

    fn count_results(&self, query: &str, outcome: &str) {
        self.metrics
            .query_cache
            .with_label_values(&[query, outcome])
            .inc();
    }

    /// Counts a served result found out of date by the read-time check.
    pub fn count_stale_result(&self, query: &str) {
        self.count_results(query, "stale");
    }

    /// Looks a result up, reading its ranges' generations in the same round trip.
    pub async fn lookup_result(&self, spec: &Spec) -> ResultLookup {
        self.lookup_results(std::slice::from_ref(spec))
            .await
            .pop()
            .expect("one lookup per spec")
    }

    /// Looks several results up in one round trip (one pipeline), in order.
    pub async fn lookup_results(&self, specs: &[Spec]) -> Vec<ResultLookup> {
        let bypass = |this: &Self| {
            specs
                .iter()
                .map(|spec| {
                    this.count_results(&spec.name, "bypass");
                    ResultLookup::Bypass
                })
                .collect()
        };
        if specs.is_empty() {
            return Vec::new();
        }
        if !self.dirty_ranges().is_empty() {
            return bypass(self);
        }
        let ranges: Vec<Vec<String>> = specs.iter().map(Spec::ranges).collect();
        let mut pipeline = redis::pipe();
        for (spec, ranges) in specs.iter().zip(&ranges) {
            pipeline.cmd("GET").arg(self.result_key(spec));
            for range in ranges {
                pipeline
                    .cmd("HGET")
                    .arg(self.gens_key(collection_of(range)))
                    .arg(range);
            }
        }
        let looked_up = self
            .round_trip("result_lookup", |mut connection| async move {
                pipeline
                    .query_async::<Vec<Option<String>>>(&mut connection)
                    .await
            })
            .await;
        let (epoch, values) = match looked_up {
            Ok(looked_up) => looked_up,
            Err(error) => {
                if !matches!(error, CacheError::Bypassed) {
                    tracing::warn!(%error, "result lookup failed");
                }
                return bypass(self);
            }
        };
        let mut values = values.into_iter();
        specs
            .iter()
            .zip(&ranges)
            .map(|(spec, ranges)| {
                let cached = values.next().flatten().and_then(|raw| decode_result(&raw));
                let generations = values
                    .by_ref()
                    .take(ranges.len())
                    .map(Option::unwrap_or_default)
                    .collect();
                let miss = |outcome| {
                    self.count_results(&spec.name, outcome);
                    ResultLookup::Miss(FillGuard {
                        generations,
                        epoch: epoch.clone(),
                    })
                };
                match cached {
                    Some(stored) if stored.epoch != epoch.as_str() => miss("other_epoch"),
                    Some(stored) if stored.result.spec == *spec => {
                        self.count_results(&spec.name, "hit");
                        ResultLookup::Hit(stored.result)
                    }
                    _ => miss("miss"),
                }
            })
            .collect()
    }

    /// Stores a computed result, unless a write visited its ranges since `guard` was taken.
    pub async fn fill_result(&self, result: &CachedResult, guard: FillGuard) {
        let spec = &result.spec;
        let ranges = spec.ranges();
        let digest = spec.digest();
        let mut invocation = self.results.fill.prepare_invoke();
        invocation
            .key(self.result_key(spec))
            .key(self.tables_key())
            .key(self.rev_key())
            .key(self.expiry_key());
        for range in &ranges {
            invocation.key(self.gens_key(collection_of(range)));
        }
        invocation
            .arg(self.lifetimes.result_ttl.as_millis() as u64)
            .arg(stamped(&guard.epoch, result))
            .arg(self.result_prefix())
            .arg(&digest)
            .arg(self.lifetimes.results_per_range)
            .arg(ranges.len());
        for (range, generation) in ranges.iter().zip(&guard.generations) {
            invocation.arg(range).arg(generation);
        }
        let session = match self.session().await {
            Ok(session) if session.epoch == guard.epoch => session,
            Ok(_) => return self.count_results(&spec.name, "refused"),
            Err(error) => return tracing::warn!(%error, query = spec.name, "result fill failed"),
        };
        let mut connection = session.connection.clone();
        match self
            .call(
                "result_fill",
                &session,
                self.timeout,
                invocation.invoke_async::<(i64, u64)>(&mut connection),
            )
            .await
        {
            Ok((stored, evicted)) => {
                if evicted > 0 {
                    self.metrics
                        .query_cache
                        .with_label_values(&[spec.name.as_str(), "evicted"])
                        .inc_by(evicted);
                }
                match stored {
                    1 => self.count_results(&spec.name, "filled"),
                    _ => self.count_results(&spec.name, "refused"),
                }
            }
            Err(error) => tracing::warn!(%error, query = spec.name, "result fill failed"),
        }
    }

    /// Deletes a result (its index entries go lazily).
    pub async fn drop_result(&self, spec: &Spec) {
        let delete = redis::cmd("DEL").arg(self.result_key(spec)).to_owned();
        let dropped = self
            .round_trip("result_drop", |mut connection| async move {
                delete.query_async::<()>(&mut connection).await
            })
            .await;
        if let Err(error) = dropped {
            tracing::warn!(%error, query = spec.name, "result drop failed");
        }
    }

    /// Reconciles every cached result that `writes` (records of one collection, already
    /// committed to MongoDB) can affect. Never fails the write: on a Redis failure the visited
    /// ranges are dropped later by the repair loop, and cached results are not used until then.
    pub async fn reconcile(&self, collection: &str, term_fields: &[&str], writes: &[Reconcile]) {
        if writes.is_empty() {
            return;
        }
        let mut ranges: BTreeSet<String> = BTreeSet::new();
        for write in writes {
            ranges.extend(visited_ranges(
                collection,
                term_fields,
                write.written.before.as_ref(),
                write.written.after.as_ref(),
            ));
        }
        let ranges: Vec<String> = ranges.into_iter().collect();
        // Like a write-through, it waits for a slow or paused Redis rather than leaving results
        // that other instances would serve once Redis answers.
        let reconciled = self
            .within_write_timeout(|session, left| {
                let ranges = &ranges;
                async move {
                    self.try_reconcile(&session, left, collection, ranges, writes)
                        .await
                }
            })
            .await;
        if let Err(error) = reconciled {
            if !matches!(error, CacheError::Bypassed) {
                tracing::warn!(%error, collection, "result reconciliation failed; dropping the ranges when Redis answers");
            }
            self.mark_dirty(ranges);
        }
    }

    async fn try_reconcile(
        &self,
        session: &Session,
        within: Duration,
        collection: &str,
        ranges: &[String],
        writes: &[Reconcile],
    ) -> Result<(), CacheError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut connection = session.connection.clone();
        let mut begin = self.results.begin.prepare_invoke();
        begin
            .key(self.tables_key())
            .key(self.gens_key(collection))
            .key(self.expiry_key())
            .arg(self.result_prefix());
        for range in ranges {
            begin.arg(range);
        }
        let found: Vec<String> = self
            .call(
                "result_begin",
                session,
                within,
                begin.invoke_async(&mut connection),
            )
            .await?;

        let mut commit = self.results.commit.prepare_invoke();
        commit
            .key(self.tables_key())
            .key(self.rev_key())
            .key(self.expiry_key())
            .arg(self.lifetimes.result_ttl.as_millis() as u64 * 2)
            .arg(writes.len());
        for write in writes {
            commit
                .arg(self.seen_key(collection, &write.written.id.token()))
                .arg(write.version);
        }
        for pair in found.chunks_exact(2) {
            let (key, raw) = (&pair[0], &pair[1]);
            let Some(StoredResult {
                rev,
                epoch,
                mut result,
            }) = decode_result(raw)
            else {
                commit.arg(key).arg("").arg("d").arg("").arg(0);
                continue;
            };
            let mut change = Change::Unchanged;
            for write in writes {
                match result.apply(&write.written) {
                    Change::Drop => {
                        change = Change::Drop;
                        break;
                    }
                    Change::Updated => change = Change::Updated,
                    Change::Unchanged => {}
                }
            }
            let members = result.spec.index_members();
            let (action, value) = match change {
                Change::Unchanged => continue,
                // An update keeps the run the result was computed for.
                Change::Updated => ("s", format!("{epoch} {}", to_json(&result))),
                Change::Drop => ("d", String::new()),
            };
            self.count_results(
                &result.spec.name,
                if action == "s" { "updated" } else { "dropped" },
            );
            commit
                .arg(key)
                .arg(rev)
                .arg(action)
                .arg(value)
                .arg(members.len());
            for member in members {
                commit.arg(member);
            }
        }
        let _: (i64, i64) = self
            .call(
                "result_commit",
                session,
                deadline.saturating_duration_since(tokio::time::Instant::now()),
                commit.invoke_async(&mut connection),
            )
            .await?;
        Ok(())
    }

    fn dirty_ranges(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.dirty_results
            .lock()
            .expect("dirty ranges lock is never poisoned")
    }

    fn mark_dirty(&self, ranges: Vec<String>) {
        let mut dirty = self.dirty_ranges();
        dirty.extend(ranges);
        self.dirty_count.send_replace(dirty.len());
    }

    /// Drops the results of ranges whose reconciliation failed; part of the repair loop.
    pub(super) async fn repair_results(&self) {
        let ranges: Vec<String> = self.dirty_ranges().iter().cloned().collect();
        if ranges.is_empty() || !self.breaker.allows() {
            return;
        }
        let mut invocation = self.results.drop_ranges.prepare_invoke();
        invocation.key(self.tables_key()).key(self.expiry_key());
        for range in &ranges {
            invocation.key(self.gens_key(collection_of(range)));
        }
        invocation.arg(self.result_prefix());
        for range in &ranges {
            invocation.arg(range);
        }
        let dropped = self
            .round_trip("result_drop_ranges", |mut connection| async move {
                invocation.invoke_async::<i64>(&mut connection).await
            })
            .await;
        match dropped {
            Ok(_) => {
                let mut dirty = self.dirty_ranges();
                for range in &ranges {
                    dirty.remove(range);
                }
                self.dirty_count.send_replace(dirty.len());
                tracing::info!(
                    ranges = ranges.len(),
                    "results of unreconciled writes dropped"
                );
            }
            Err(error) => tracing::warn!(%error, "dropping unreconciled results failed"),
        }
    }

    /// Removes the index entries of expired results, a batch at a time, until none is left or
    /// Redis fails; part of the repair loop. Returns how many it removed.
    pub async fn trim_results(&self) -> usize {
        let mut removed = 0;
        loop {
            let mut invocation = self.results.trim.prepare_invoke();
            invocation
                .key(self.tables_key())
                .key(self.expiry_key())
                .arg(TRIM_BATCH);
            let trimmed = self
                .round_trip("result_trim", |mut connection| async move {
                    invocation.invoke_async::<usize>(&mut connection).await
                })
                .await;
            match trimmed {
                Ok((_, count)) => {
                    removed += count;
                    if count < TRIM_BATCH {
                        return removed;
                    }
                }
                Err(error) => {
                    if !matches!(error, CacheError::Bypassed) {
                        tracing::warn!(%error, "trimming expired result index entries failed");
                    }
                    return removed;
                }
            }
        }
    }

    /// Whether every failed reconciliation has been repaired.
    pub fn results_clean(&self) -> bool {
        self.dirty_ranges().is_empty()
    }

    /// Resolves once every failed reconciliation has been repaired.
    pub async fn results_repaired(&self) {
        let mut count = self.dirty_count.subscribe();
        // The sender lives as long as `self`, so the channel cannot close under us.
        let _ = count.wait_for(|dirty| *dirty == 0).await;
    }
}

/// A cached result as stored: its revision, the run it was computed for, the result.
struct StoredResult {
    rev: String,
    epoch: String,
    result: CachedResult,
}

/// `<rev> <stamp> <epoch> <json>`.
fn decode_result(raw: &str) -> Option<StoredResult> {
    let mut parts = raw.splitn(4, ' ');
    let (Some(rev), Some(_stamp), Some(epoch), Some(json)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        tracing::warn!("ignoring a malformed cached result");
        return None;
    };
    match serde_json::from_str(json) {
        Ok(result) => Some(StoredResult {
            rev: rev.to_owned(),
            epoch: epoch.to_owned(),
            result,
        }),
        Err(error) => {
            tracing::warn!(%error, "ignoring a malformed cached result");
            None
        }
    }
}

/// `<epoch> <json>`: what a fill hands the script, which puts the revision and stamp first.
fn stamped(epoch: &Epoch, result: &CachedResult) -> String {
    format!("{epoch} {}", to_json(result))
}

fn to_json(result: &CachedResult) -> String {
    serde_json::to_string(result).expect("a result serialises")
}
