//! Where the local stack is, and per-test names in it.

use std::path::PathBuf;

/// The servers `scripts/stack up` started, as `make test` exports them.
#[derive(Debug, Clone)]
pub struct Stack {
    pub redis_url: String,
    pub mongodb_uri: String,
}

impl Stack {
    /// Reads `REDIS_URL` and `MONGODB_URI`; panics with the fix if they are missing.
    pub fn from_env() -> Self {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!(
                    "{name} is not set: run the tests with `make test`, or first \
                     `scripts/stack up && eval \"$(scripts/stack env)\"`"
                )
            })
        };
        Self {
            redis_url: var("REDIS_URL"),
            mongodb_uri: var("MONGODB_URI"),
        }
    }

    /// `host:port` of the Redis server.
    pub fn redis_address(&self) -> String {
        address_of(&self.redis_url)
    }

    /// `host:port` of the MongoDB server.
    pub fn mongodb_address(&self) -> String {
        address_of(&self.mongodb_uri)
    }
}

/// `host:port` from a `scheme://host:port/...` URL without credentials.
fn address_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host_port = rest.split(['/', '?']).next().unwrap_or(rest);
    host_port.rsplit('@').next().unwrap_or(host_port).to_owned()
}

/// A name no other test uses: `<prefix>_<12 hex digits>`.
pub fn unique_name(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

/// Deletes every key that starts with `prefix` (SCAN, not KEYS, so a busy Redis is not blocked).
/// Deletes every key an app with key prefix `prefix` writes: entity keys (`<prefix>...`) and
/// the query-result cache's hash-tagged keys (`{<prefix>q}...`).
pub async fn delete_app_keys(redis_url: &str, prefix: &str) -> redis::RedisResult<()> {
    delete_keys_with_prefix(redis_url, prefix).await?;
    delete_keys_with_prefix(redis_url, &format!("{{{prefix}q}}")).await
}

pub async fn delete_keys_with_prefix(redis_url: &str, prefix: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open(redis_url)?;
    // A benchmark's prefix can hold a million keys, and Redis may be rewriting its append-only
    // file meanwhile: the client's default response timeout (500 ms) is too short for that.
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(std::time::Duration::from_secs(30)));
    let mut connection = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut connection)
            .await?;
        if !keys.is_empty() {
            // UNLINK frees the values off Redis's main thread.
            redis::cmd("UNLINK")
                .arg(&keys)
                .query_async::<()>(&mut connection)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// The `oponn` binary the end-to-end tests run: `OPONN_BIN`, else the workspace's debug build.
pub fn oponn_binary() -> PathBuf {
    if let Ok(path) = std::env::var("OPONN_BIN") {
        return PathBuf::from(path);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let binary = target.join("debug/oponn");
    assert!(
        binary.exists(),
        "{} does not exist: build it first (`cargo build -p oponn`) or set OPONN_BIN",
        binary.display()
    );
    binary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_from_urls() {
        assert_eq!(address_of("redis://127.0.0.1:6390"), "127.0.0.1:6390");
        assert_eq!(
            address_of("mongodb://127.0.0.1:27027/?directConnection=true"),
            "127.0.0.1:27027"
        );
        assert_eq!(address_of("redis://user:pw@127.0.0.1:1/0"), "127.0.0.1:1");
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("t"), unique_name("t"));
    }
}
