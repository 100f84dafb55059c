//! Settings: every knob of the service, loaded and validated once at start-up.
//!
//! Nothing else in the crate reads environment variables. [`Settings::from_env`] reads the
//! process environment; [`Settings::from_lookup`] takes any lookup function, which is how tests
//! build settings without touching global state.

use std::{net::SocketAddr, str::FromStr, time::Duration};

use secrecy::{ExposeSecret, SecretString};

/// Everything the service needs to run. Built by [`Settings::from_env`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// `OPONN_LISTEN`: the address the public HTTP server (GraphQL, `/healthz`) binds.
    pub listen: SocketAddr,
    /// `OPONN_OPS_LISTEN`: the address of the operations server (`/metrics`, `/readyz`), which
    /// the load balancer does not route to.
    pub ops_listen: SocketAddr,
    pub mongodb: MongoSettings,
    pub redis: RedisSettings,
    pub cache: CacheSettings,
    pub http: HttpSettings,
    /// `OPONN_API_TOKENS`: comma-separated bearer tokens that may run mutations.
    pub api_tokens: Vec<SecretString>,
    pub log: LogSettings,
    pub source: SourceSettings,
    pub writes: WriteSettings,
}

/// How mutations reach MongoDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// MongoDB first, then the cache: the mutation replies once MongoDB committed.
    Through,
    /// The cache and the queue first: the mutation replies once Redis holds the new version
    /// and the queue its intent; `oponn worker` persists it to MongoDB later.
    Behind,
}

impl FromStr for WriteMode {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "through" => Ok(Self::Through),
            "behind" => Ok(Self::Behind),
            other => Err(format!("expected `through` or `behind`, got {other:?}")),
        }
    }
}

/// Which queue write-behind uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueKind {
    /// A Redis stream next to the pending records (`crate::queue::streams`).
    Redis,
    /// An SQS FIFO queue (`crate::queue::sqs`).
    Sqs(SqsSettings),
}

/// The SQS queues of `OPONN_QUEUE=sqs`. The endpoint, region and credentials come from the
/// AWS SDK's own chain (`AWS_REGION`, `AWS_ENDPOINT_URL`, the task role, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsSettings {
    /// `OPONN_SQS_QUEUE_URL`: the FIFO queue of changes.
    pub queue_url: String,
    /// `OPONN_SQS_DEAD_LETTER_URL`: the FIFO queue of changes no worker could apply.
    pub dead_letter_url: String,
}

#[derive(Debug, Clone)]
pub struct WriteSettings {
    /// `OPONN_WRITE_MODE`: `through` (the default) or `behind` (see README, "Write-behind").
    pub mode: WriteMode,
    /// `OPONN_QUEUE`: `redis` (the default) or `sqs`, with `OPONN_SQS_QUEUE_URL` and
    /// `OPONN_SQS_DEAD_LETTER_URL`.
    pub queue: QueueKind,
    /// `OPONN_QUEUE_STREAM`: the Redis stream of queued writes (after `OPONN_KEY_PREFIX`).
    pub stream: String,
    /// `OPONN_WORKER_BATCH`: the most queued writes a worker takes at once.
    pub batch: usize,
    /// `OPONN_WORKER_CLAIM_IDLE_MS`: a queued write delivered to a worker that has not
    /// acknowledged it for this long is taken over by another (its worker is presumed dead).
    pub claim_idle: Duration,
    /// `OPONN_WORKER_MAX_DELIVERIES`: a queued write this many workers began applying without
    /// success goes to the dead letters, so that it cannot block the others.
    pub max_deliveries: u32,
    /// `OPONN_WORKER_DRAIN_MS`: how long a worker told to stop (SIGTERM) keeps applying what
    /// it holds.
    pub drain: Duration,
    /// `OPONN_QUEUE_BARRIER_MS`: how long a read that only MongoDB can answer (a list page
    /// the query-result cache lacks) waits for the worker to persist the writes acknowledged
    /// before it; past this it fails with `UNAVAILABLE` rather than answer from the past.
    pub barrier: Duration,
    /// `OPONN_QUEUE_LAG_DEGRADED_MS`: `/readyz` says `degraded` once the oldest change not yet
    /// persisted is older than this.
    pub lag_degraded: Duration,
}

#[derive(Debug, Clone)]
pub struct MongoSettings {
    /// `MONGODB_URI` (secret: it may carry credentials).
    pub uri: SecretString,
    /// `MONGODB_DATABASE`.
    pub database: String,
    /// `OPONN_MONGODB_TIMEOUT_MS`: server selection, connect and per-operation timeout.
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `REDIS_URL` (secret: it may carry a password); `rediss://` for TLS.
    pub url: SecretString,
    /// `OPONN_REDIS_CA_FILE`: a PEM file of the CA to trust for `rediss://` instead of the
    /// public roots (a self-managed Redis with a private CA); read when the client is built.
    pub ca_file: Option<std::path::PathBuf>,
    /// `OPONN_REDIS_TIMEOUT_MS`: connect and per-command timeout.
    pub timeout: Duration,
    /// `OPONN_REDIS_WRITE_TIMEOUT_MS`: how long a mutation waits for Redis to take its cache
    /// write (reconnecting as needed) before it replies with the write pending repair. A
    /// Redis that refuses connections is not waited for.
    pub write_timeout: Duration,
    /// `OPONN_REDIS_RETRY_AFTER_MS`: after a Redis failure, how long the cache is bypassed
    /// before Redis is tried again (so a dead Redis costs one timeout, not one per request).
    pub retry_after: Duration,
}

#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// `OPONN_KEY_PREFIX`: prepended to every key, for a Redis shared between services.
    pub key_prefix: String,
    /// `OPONN_CACHE_TTL_SECS`: lifetime of a cached record.
    pub record_ttl: Duration,
    /// `OPONN_CACHE_NEGATIVE_TTL_SECS`: lifetime of a cached "no such id".
    pub negative_ttl: Duration,
    /// `OPONN_CACHE_TOMBSTONE_TTL_SECS`: lifetime of the marker a delete leaves behind. It must
    /// outlive any request that could still be holding the deleted record (see `datastore`).
    pub tombstone_ttl: Duration,
    /// `OPONN_CACHE_RESULT_TTL_SECS`: lifetime of a cached query result (writes keep results
    /// exact; the lifetime only bounds memory and the damage of a crash mid-write).
    pub result_ttl: Duration,
    /// `OPONN_CACHE_RESULTS_PER_RANGE`: the most cached results that read one equality value
    /// (or none); a fill past it evicts the oldest. A write's reconciliation cost is bounded
    /// by it, whatever anonymous readers cached.
    pub results_per_range: usize,
    /// `OPONN_AUDIT_EVERY_MS`: how often `serve`'s consistency sampler compares a few cached
    /// records with MongoDB (`0`: never).
    pub audit_every: Duration,
    /// `OPONN_AUDIT_SAMPLE`: about how many cached records of each entity one sample compares.
    pub audit_sample: usize,
    /// `OPONN_CACHE_SETTLE_MS`: how long a one-shot command (`oponn ingest`, `oponn seed`)
    /// retries the cache writes Redis missed before it exits non-zero (see `Cache::settle`).
    pub settle: Duration,
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// `OPONN_REQUEST_TIMEOUT_MS`: a request still running after this gets 503.
    pub request_timeout: Duration,
    /// `OPONN_MAX_BODY_BYTES`: larger request bodies get 413.
    pub max_body_bytes: usize,
    /// `OPONN_MAX_QUERY_DEPTH`.
    pub max_query_depth: usize,
    /// `OPONN_MAX_QUERY_COMPLEXITY`: the most a query may cost; a list field costs its
    /// selection once per record it may return, so nested lists multiply.
    pub max_query_complexity: usize,
    /// `OPONN_MAX_QUERY_ALIASES`: the most aliases one document may use.
    pub max_query_aliases: usize,
    /// `OPONN_MAX_RESPONSE_BYTES`: a response larger than this is replaced by an error.
    pub max_response_bytes: usize,
    /// `OPONN_MAX_BATCH_IDS`: the most ids one `booksByIds` call may ask for.
    pub max_batch_ids: usize,
    /// `OPONN_GRAPHIQL`: serve GraphiQL on `GET /graphql` (development; off in production).
    pub graphiql: bool,
    /// `OPONN_INTROSPECTION`: answer `__schema` and `__type` (development; off in production,
    /// where clients use the checked-in `schema.graphql`).
    pub introspection: bool,
    /// `OPONN_SAFELIST`: a JSON file of `{ "<sha256 of the text>": "<document>" }`; when set,
    /// only those documents run (see `graphql::persisted`).
    pub safelist: Option<std::path::PathBuf>,
}

/// The outside API books are ingested from (Open Library's search API), and how politely.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// `OPONN_SOURCE_URL`: the API's base URL; `/search.json` is appended.
    pub base_url: reqwest::Url,
    /// `OPONN_SOURCE_USER_AGENT`: Open Library asks clients to name themselves and a contact.
    pub user_agent: String,
    /// `OPONN_SOURCE_TIMEOUT_MS`: a request still unanswered after this is retried.
    pub timeout: Duration,
    /// `OPONN_SOURCE_CONCURRENCY`: the most requests in flight at once (at least 1).
    pub concurrency: usize,
    /// `OPONN_SOURCE_RATE_PER_SEC`: the most requests started per second, retries included;
    /// `0` means no limit (only for a local server).
    pub rate_per_second: f64,
    /// `OPONN_SOURCE_RETRIES`: retries of one page after a timeout, a 429 or a 5xx.
    pub retries: u32,
    /// `OPONN_SOURCE_BACKOFF_MS`: the first retry's delay; it doubles with each retry.
    pub backoff: Duration,
    /// `OPONN_SOURCE_MAX_BACKOFF_MS`: the longest wait before a retry. A `Retry-After` asking
    /// for longer fails the page instead of stalling the run.
    pub max_backoff: Duration,
    /// `OPONN_SOURCE_PAGE_SIZE`: books per page (Open Library's `limit`), 1 to 1000.
    pub page_size: usize,
}

impl SourceSettings {
    pub const MAX_PAGE_SIZE: usize = 1000;
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    /// `RUST_LOG`: a tracing filter directive.
    pub filter: String,
    /// `OPONN_LOG_FORMAT`: `json`, `pretty`, or `auto` (JSON unless stdout is a terminal).
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Auto,
    Json,
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "auto" => Ok(Self::Auto),
            "json" => Ok(Self::Json),
            "pretty" => Ok(Self::Pretty),
            other => Err(format!("expected auto, json or pretty, got {other:?}")),
        }
    }
}

/// A setting that is missing or does not parse; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Settings {
    /// Loads settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Loads settings from any lookup function (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars(&lookup);
        let settings = Settings {
            listen: vars.parsed("OPONN_LISTEN", "127.0.0.1:8080")?,
            ops_listen: vars.parsed("OPONN_OPS_LISTEN", "127.0.0.1:9090")?,
            mongodb: MongoSettings {
                uri: vars.secret("MONGODB_URI")?,
                database: vars.parsed("MONGODB_DATABASE", "oponn")?,
                timeout: vars.millis("OPONN_MONGODB_TIMEOUT_MS", 5_000)?,
            },
            redis: RedisSettings {
                url: vars.secret("REDIS_URL")?,
                ca_file: vars.optional("OPONN_REDIS_CA_FILE").map(Into::into),
                timeout: vars.millis("OPONN_REDIS_TIMEOUT_MS", 500)?,
                write_timeout: vars.millis("OPONN_REDIS_WRITE_TIMEOUT_MS", 5_000)?,
                retry_after: vars.millis("OPONN_REDIS_RETRY_AFTER_MS", 1_000)?,
            },
            cache: CacheSettings {
                key_prefix: vars.parsed("OPONN_KEY_PREFIX", "")?,
                record_ttl: vars.seconds("OPONN_CACHE_TTL_SECS", 3_600)?,
                negative_ttl: vars.seconds("OPONN_CACHE_NEGATIVE_TTL_SECS", 10)?,
                tombstone_ttl: vars.seconds("OPONN_CACHE_TOMBSTONE_TTL_SECS", 120)?,
                result_ttl: vars.seconds("OPONN_CACHE_RESULT_TTL_SECS", 300)?,
                results_per_range: vars.parsed("OPONN_CACHE_RESULTS_PER_RANGE", "100")?,
                settle: vars.millis("OPONN_CACHE_SETTLE_MS", 10_000)?,
                audit_every: vars.millis("OPONN_AUDIT_EVERY_MS", 10_000)?,
                audit_sample: vars.parsed("OPONN_AUDIT_SAMPLE", "100")?,
            },
            http: HttpSettings {
                request_timeout: vars.millis("OPONN_REQUEST_TIMEOUT_MS", 10_000)?,
                max_body_bytes: vars.parsed("OPONN_MAX_BODY_BYTES", "65536")?,
                max_query_depth: vars.parsed("OPONN_MAX_QUERY_DEPTH", "10")?,
                max_query_complexity: vars.parsed("OPONN_MAX_QUERY_COMPLEXITY", "5000")?,
                max_query_aliases: vars.parsed("OPONN_MAX_QUERY_ALIASES", "30")?,
                max_response_bytes: vars.parsed("OPONN_MAX_RESPONSE_BYTES", "4194304")?,
                max_batch_ids: vars.parsed("OPONN_MAX_BATCH_IDS", "1000")?,
                graphiql: vars.parsed("OPONN_GRAPHIQL", "true")?,
                introspection: vars.parsed("OPONN_INTROSPECTION", "true")?,
                safelist: vars.optional("OPONN_SAFELIST").map(Into::into),
            },
            api_tokens: vars
                .optional("OPONN_API_TOKENS")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|token| !token.is_empty())
                .map(|token| SecretString::from(token.to_owned()))
                .collect(),
            log: LogSettings {
                filter: vars.parsed("RUST_LOG", "info")?,
                format: vars.parsed("OPONN_LOG_FORMAT", "auto")?,
            },
            source: SourceSettings {
                base_url: vars.parsed("OPONN_SOURCE_URL", "https://openlibrary.org")?,
                user_agent: vars.parsed("OPONN_SOURCE_USER_AGENT", DEFAULT_USER_AGENT)?,
                timeout: vars.millis("OPONN_SOURCE_TIMEOUT_MS", 15_000)?,
                concurrency: vars.parsed("OPONN_SOURCE_CONCURRENCY", "2")?,
                rate_per_second: vars.parsed("OPONN_SOURCE_RATE_PER_SEC", "1")?,
                retries: vars.parsed("OPONN_SOURCE_RETRIES", "4")?,
                backoff: vars.millis("OPONN_SOURCE_BACKOFF_MS", 1_000)?,
                max_backoff: vars.millis("OPONN_SOURCE_MAX_BACKOFF_MS", 60_000)?,
                page_size: vars.parsed("OPONN_SOURCE_PAGE_SIZE", "100")?,
            },
            writes: WriteSettings {
                mode: vars.parsed("OPONN_WRITE_MODE", "through")?,
                queue: queue_kind(&vars)?,
                stream: vars.parsed("OPONN_QUEUE_STREAM", "writes")?,
                batch: vars.parsed("OPONN_WORKER_BATCH", "256")?,
                claim_idle: vars.millis("OPONN_WORKER_CLAIM_IDLE_MS", 15_000)?,
                max_deliveries: vars.parsed("OPONN_WORKER_MAX_DELIVERIES", "5")?,
                drain: vars.millis("OPONN_WORKER_DRAIN_MS", 10_000)?,
                barrier: vars.millis("OPONN_QUEUE_BARRIER_MS", 3_000)?,
                lag_degraded: vars.millis("OPONN_QUEUE_LAG_DEGRADED_MS", 30_000)?,
            },
        };
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        // A delete's tombstone is what stops a request that read the record before the delete
        // from caching it again afterwards; it must outlive every such request.
        if self.cache.tombstone_ttl <= self.http.request_timeout {
            return Err(ConfigError(
                "OPONN_CACHE_TOMBSTONE_TTL_SECS must be longer than OPONN_REQUEST_TIMEOUT_MS"
                    .into(),
            ));
        }
        self.source.validate()?;
        if self.writes.batch == 0 || self.writes.max_deliveries == 0 {
            return Err(ConfigError(
                "OPONN_WORKER_BATCH and OPONN_WORKER_MAX_DELIVERIES must be at least 1".into(),
            ));
        }
        if self.api_tokens.iter().any(|t| t.expose_secret().len() < 16) {
            return Err(ConfigError(
                "OPONN_API_TOKENS: every token must be at least 16 characters".into(),
            ));
        }
        Ok(())
    }
}

/// Names the service to Open Library; deployments should add a contact (see README).
const DEFAULT_USER_AGENT: &str = concat!(
    "oponn/",
    env!("CARGO_PKG_VERSION"),
    " (book ingest of a GraphQL service template)"
);

impl SourceSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(self.base_url.scheme(), "http" | "https") {
            return Err(ConfigError(format!(
                "OPONN_SOURCE_URL must be an http or https URL, got {}",
                self.base_url
            )));
        }
        if self.concurrency == 0 {
            return Err(ConfigError(
                "OPONN_SOURCE_CONCURRENCY must be at least 1".into(),
            ));
        }
        if !self.rate_per_second.is_finite() || self.rate_per_second < 0.0 {
            return Err(ConfigError(
                "OPONN_SOURCE_RATE_PER_SEC must be a number, 0 or more".into(),
            ));
        }
        if !(1..=Self::MAX_PAGE_SIZE).contains(&self.page_size) {
            return Err(ConfigError(format!(
                "OPONN_SOURCE_PAGE_SIZE must be between 1 and {}",
                Self::MAX_PAGE_SIZE
            )));
        }
        if self.backoff > self.max_backoff {
            return Err(ConfigError(
                "OPONN_SOURCE_BACKOFF_MS must not exceed OPONN_SOURCE_MAX_BACKOFF_MS".into(),
            ));
        }
        Ok(())
    }
}

/// `OPONN_QUEUE` and, for SQS, the two queue URLs it needs.
fn queue_kind(vars: &Vars<'_>) -> Result<QueueKind, ConfigError> {
    let kind = vars.optional("OPONN_QUEUE");
    match kind.as_deref().unwrap_or("redis") {
        "redis" => Ok(QueueKind::Redis),
        "sqs" => {
            let url = |name: &str| {
                vars.optional(name)
                    .ok_or_else(|| ConfigError(format!("{name} is required with OPONN_QUEUE=sqs")))
            };
            let queue_url = url("OPONN_SQS_QUEUE_URL")?;
            let dead_letter_url = url("OPONN_SQS_DEAD_LETTER_URL")?;
            for (name, value) in [
                ("OPONN_SQS_QUEUE_URL", &queue_url),
                ("OPONN_SQS_DEAD_LETTER_URL", &dead_letter_url),
            ] {
                if !value.ends_with(".fifo") {
                    return Err(ConfigError(format!(
                        "{name} must name a FIFO queue (its name ends in .fifo), got {value:?}"
                    )));
                }
            }
            Ok(QueueKind::Sqs(SqsSettings {
                queue_url,
                dead_letter_url,
            }))
        }
        other => Err(ConfigError(format!(
            "OPONN_QUEUE={other:?} is not valid: expected `redis` or `sqs`"
        ))),
    }
}

/// Typed access to one lookup function, with errors that name the variable.
struct Vars<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Vars<'_> {
    fn optional(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|value| !value.is_empty())
    }

    fn secret(&self, name: &str) -> Result<SecretString, ConfigError> {
        self.optional(name)
            .map(SecretString::from)
            .ok_or_else(|| ConfigError(format!("{name} is not set")))
    }

    fn parsed<T>(&self, name: &str, default: &str) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        let raw = self.optional(name).unwrap_or_else(|| default.to_owned());
        raw.parse()
            .map_err(|err| ConfigError(format!("{name}={raw:?} is not valid: {err}")))
    }

    fn millis(&self, name: &str, default: u64) -> Result<Duration, ConfigError> {
        self.parsed::<u64>(name, &default.to_string())
            .map(Duration::from_millis)
    }

    fn seconds(&self, name: &str, default: u64) -> Result<Duration, ConfigError> {
        self.parsed::<u64>(name, &default.to_string())
            .map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut map: HashMap<String, String> = HashMap::from([
            ("MONGODB_URI".into(), "mongodb://127.0.0.1:1".into()),
            ("REDIS_URL".into(), "redis://127.0.0.1:1".into()),
        ]);
        for (key, value) in pairs {
            map.insert((*key).into(), (*value).into());
        }
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_apply_when_only_the_urls_are_set() {
        let settings = settings(&[]).expect("defaults are valid");
        assert_eq!(settings.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.mongodb.database, "oponn");
        assert_eq!(settings.cache.key_prefix, "");
        assert!(settings.api_tokens.is_empty());
    }

    #[test]
    fn a_missing_url_is_named_in_the_error() {
        let err = Settings::from_lookup(|_| None).unwrap_err();
        assert!(err.to_string().contains("MONGODB_URI"), "{err}");
    }

    #[test]
    fn a_bad_number_is_named_in_the_error() {
        let err = settings(&[("OPONN_CACHE_TTL_SECS", "soon")]).unwrap_err();
        assert!(err.to_string().contains("OPONN_CACHE_TTL_SECS"), "{err}");
    }

    #[test]
    fn tokens_are_split_on_commas_and_trimmed() {
        let settings = settings(&[("OPONN_API_TOKENS", " aaaaaaaaaaaaaaaa , bbbbbbbbbbbbbbbb,")])
            .expect("valid tokens");
        let tokens: Vec<_> = settings
            .api_tokens
            .iter()
            .map(|t| t.expose_secret().to_owned())
            .collect();
        assert_eq!(tokens, ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"]);
    }

    #[test]
    fn short_tokens_are_rejected() {
        assert!(settings(&[("OPONN_API_TOKENS", "short")]).is_err());
    }

    #[test]
    fn a_tombstone_shorter_than_a_request_is_rejected() {
        let err = settings(&[
            ("OPONN_CACHE_TOMBSTONE_TTL_SECS", "5"),
            ("OPONN_REQUEST_TIMEOUT_MS", "10000"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("TOMBSTONE"), "{err}");
    }

    #[test]
    fn the_source_defaults_to_open_library_one_request_a_second() {
        let source = settings(&[]).expect("defaults are valid").source;
        assert_eq!(source.base_url.as_str(), "https://openlibrary.org/");
        assert_eq!(source.rate_per_second, 1.0);
        assert!(source.user_agent.starts_with("oponn/"));
    }

    #[test]
    fn unusable_source_settings_are_rejected() {
        for (name, value) in [
            ("OPONN_SOURCE_URL", "ftp://example.org"),
            ("OPONN_SOURCE_URL", "not a url"),
            ("OPONN_SOURCE_CONCURRENCY", "0"),
            ("OPONN_SOURCE_RATE_PER_SEC", "-1"),
            ("OPONN_SOURCE_PAGE_SIZE", "1001"),
            ("OPONN_SOURCE_BACKOFF_MS", "120000"),
        ] {
            let err = settings(&[(name, value)]).unwrap_err();
            assert!(err.to_string().contains(name), "{name}={value}: {err}");
        }
    }

    #[test]
    fn the_queue_is_redis_unless_sqs_is_asked_for_with_both_fifo_urls() {
        let defaults = settings(&[]).expect("valid");
        assert_eq!(defaults.writes.queue, QueueKind::Redis);
        let queue = "http://127.0.0.1:5000/123456789012/oponn-writes.fifo";
        let dead = "http://127.0.0.1:5000/123456789012/oponn-writes-dead.fifo";
        let sqs = settings(&[
            ("OPONN_QUEUE", "sqs"),
            ("OPONN_SQS_QUEUE_URL", queue),
            ("OPONN_SQS_DEAD_LETTER_URL", dead),
        ])
        .expect("valid");
        assert_eq!(
            sqs.writes.queue,
            QueueKind::Sqs(SqsSettings {
                queue_url: queue.into(),
                dead_letter_url: dead.into(),
            })
        );
        let missing = settings(&[("OPONN_QUEUE", "sqs"), ("OPONN_SQS_QUEUE_URL", queue)])
            .expect_err("no dead-letter queue");
        assert!(
            missing.to_string().contains("OPONN_SQS_DEAD_LETTER_URL"),
            "{missing}"
        );
        let standard = settings(&[
            ("OPONN_QUEUE", "sqs"),
            ("OPONN_SQS_QUEUE_URL", "http://127.0.0.1:5000/1/writes"),
            ("OPONN_SQS_DEAD_LETTER_URL", dead),
        ])
        .expect_err("not FIFO");
        assert!(standard.to_string().contains("FIFO"), "{standard}");
        assert!(settings(&[("OPONN_QUEUE", "kafka")]).is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let settings = settings(&[("OPONN_API_TOKENS", "supersecrettoken123")]).expect("valid");
        let printed = format!("{settings:?}");
        assert!(!printed.contains("supersecrettoken123"));
        assert!(!printed.contains("mongodb://127.0.0.1:1"));
    }
}
