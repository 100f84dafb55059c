//! The versioned compare-and-set that keeps stale records out of the cache (invariant 2).
//!
//! The race it closes: a reader misses, reads version n from MongoDB and is delayed; a writer
//! commits n+1 and caches it; the reader then caches n. With a plain `SET` the cache would
//! serve n until the TTL ran out. This script replaces a cached value only when the incoming
//! version is at least the cached one, and Redis runs a script atomically, so no interleaving
//! of readers and writers can move a key backwards. It touches one key, so it runs unchanged
//! on Redis Cluster.

use redis::Script;

/// `KEYS[1]`: the key. `ARGV[1]`: the incoming version. `ARGV[2]`: the encoded entry.
/// `ARGV[3]`: its TTL in milliseconds. Returns 1 when stored, 0 when a newer version is cached
/// or the same version is pending (write-behind: a pending record never gets a TTL from a fill).
const SOURCE: &str = r"
local current = redis.call('GET', KEYS[1])
if current then
  local cached, stamp = string.match(current, '^(%-?%d+) (%S+) ')
  cached = tonumber(cached)
  if cached and (cached > tonumber(ARGV[1]) or (cached == tonumber(ARGV[1]) and stamp == 'pending')) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
";

pub fn set_if_not_older() -> Script {
    Script::new(SOURCE)
}
