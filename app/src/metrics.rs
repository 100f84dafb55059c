//! Prometheus metrics, one registry per [`Metrics`] value.
//!
//! Each application instance owns its registry (no global recorder), so tests that run many
//! instances in one process can read exact counts for their own instance.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `oponn_cache_lookups_total` | entity, result=`hit`/`miss`/`bypass` | entity-cache lookups; `bypass` when Redis was unusable |
//! | `oponn_cache_fills_total` | entity, outcome=`stored`/`stale` | fills after a miss; `stale` when a newer version was already cached |
//! | `oponn_cache_errors_total` | operation | Redis calls that failed (the request carried on without the cache) |
//! | `oponn_cache_pending_repairs` | | cache writes waiting for Redis to come back |
//! | `oponn_query_cache_total` | query, outcome=`hit`/`miss`/`bypass`/`filled`/`refused`/`evicted`/`updated`/`dropped`/`stale` | cached query results: lookups, fills (`refused` when a write raced the fill; `evicted`: older results a fill pushed out of a full range), reconciliations by writes, and `stale`: a served result found out of date by the read-time check (should stay 0) |
//! | `oponn_redis_command_duration_seconds` | operation | latency of each Redis round trip |
//! | `oponn_cache_lookup_duration_seconds` | | entity-cache lookups from call to answer: a lookup that waits for a shared `MGET` (see `cache::lookups`) counts its wait, so this minus the `mget` round trip is the waiting |
//! | `oponn_mongodb_commands_total` | command, outcome | every command the MongoDB driver sent |
//! | `oponn_mongodb_command_duration_seconds` | command | latency of each MongoDB command |
//! | `oponn_worker_applied_total` | outcome=`written`/`already_newer`/`overtaken`/`removed`/`not_pending`/`carried` | queued changes a write-behind worker applied (`already_newer`: MongoDB had the version already; `overtaken`: MongoDB had a newer one, and the cache's older pending record was replaced by it; `not_pending`: the record had no pending version, a replay; `carried`: persisted from an SQS message because Redis lost the record) |
//! | `oponn_worker_retries_total` | | records a worker could not persist and kept to try again |
//! | `oponn_worker_dead_letters_total` | | queued changes moved to the dead-letter stream |
//! | `oponn_queue_depth` | | write-behind changes not acknowledged yet (sampled by the worker) |
//! | `oponn_queue_oldest_seconds` | | the age of the oldest of them |
//! | `oponn_queue_dead_letters` | | messages in the dead-letter stream |
//! | `oponn_audit_checked_total` | entity | cached records the consistency sampler compared with MongoDB |
//! | `oponn_cache_inconsistent_total` | entity, kind=`pending_past_drain`/`cache_newer`/`cache_older`/`content_differs`/`cache_only`/`mongodb_only` | disagreements between the cache and MongoDB the sampler found twice (should stay 0) |
//! | `oponn_http_requests_total` | status | HTTP responses by status class |
//! | `oponn_http_request_duration_seconds` | | HTTP request latency |

use std::sync::Arc;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

/// Latency buckets from 50 µs to 5 s: cache hits live in the first few.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// The service's metrics: a handle to one shared set of instruments, so a clone (every request
/// takes a few) costs one reference count, not one per instrument.
#[derive(Clone)]
pub struct Metrics(Arc<Instruments>);

impl std::ops::Deref for Metrics {
    type Target = Instruments;

    fn deref(&self) -> &Instruments {
        &self.0
    }
}

pub struct Instruments {
    registry: Registry,
    pub cache_lookups: IntCounterVec,
    pub cache_fills: IntCounterVec,
    pub cache_errors: IntCounterVec,
    pub cache_pending_repairs: IntGauge,
    pub query_cache: IntCounterVec,
    pub redis_duration: HistogramVec,
    pub cache_lookup_duration: Histogram,
    pub mongodb_commands: IntCounterVec,
    pub mongodb_duration: HistogramVec,
    pub http_requests: IntCounterVec,
    pub http_duration: Histogram,
    pub worker_applied: IntCounterVec,
    pub worker_retries: IntCounter,
    pub worker_dead_letters: IntCounter,
    pub queue_depth: IntGauge,
    pub queue_oldest: Gauge,
    pub queue_dead: IntGauge,
    pub audit_checked: IntCounterVec,
    pub cache_inconsistent: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let metrics = Instruments {
            cache_lookups: counter(
                "oponn_cache_lookups_total",
                "Entity-cache lookups by result",
                &["entity", "result"],
            ),
            cache_fills: counter(
                "oponn_cache_fills_total",
                "Cache fills after a miss, by outcome",
                &["entity", "outcome"],
            ),
            cache_errors: counter(
                "oponn_cache_errors_total",
                "Redis calls that failed",
                &["operation"],
            ),
            cache_pending_repairs: IntGauge::new(
                "oponn_cache_pending_repairs",
                "Cache writes waiting for Redis to come back",
            )
            .expect("static metric definition is valid"),
            query_cache: counter(
                "oponn_query_cache_total",
                "Cached query results by query and outcome",
                &["query", "outcome"],
            ),
            redis_duration: histogram(
                "oponn_redis_command_duration_seconds",
                "Latency of Redis round trips",
                &["operation"],
            ),
            cache_lookup_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "oponn_cache_lookup_duration_seconds",
                    "Entity-cache lookups from call to answer, waiting for a shared MGET included",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )
            .expect("static metric definition is valid"),
            mongodb_commands: counter(
                "oponn_mongodb_commands_total",
                "Commands sent by the MongoDB driver",
                &["command", "outcome"],
            ),
            mongodb_duration: histogram(
                "oponn_mongodb_command_duration_seconds",
                "Latency of MongoDB commands",
                &["command"],
            ),
            http_requests: counter(
                "oponn_http_requests_total",
                "HTTP responses by status class",
                &["status"],
            ),
            http_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "oponn_http_request_duration_seconds",
                    "HTTP request latency",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )
            .expect("static metric definition is valid"),
            worker_applied: counter(
                "oponn_worker_applied_total",
                "Queued write-behind changes applied, by outcome",
                &["outcome"],
            ),
            worker_retries: IntCounter::new(
                "oponn_worker_retries_total",
                "Records a worker could not persist and kept to try again",
            )
            .expect("static metric definition is valid"),
            worker_dead_letters: IntCounter::new(
                "oponn_worker_dead_letters_total",
                "Queued changes moved to the dead-letter stream",
            )
            .expect("static metric definition is valid"),
            queue_depth: IntGauge::new(
                "oponn_queue_depth",
                "Write-behind changes not acknowledged yet",
            )
            .expect("static metric definition is valid"),
            queue_oldest: Gauge::new(
                "oponn_queue_oldest_seconds",
                "Age of the oldest write-behind change not acknowledged yet",
            )
            .expect("static metric definition is valid"),
            queue_dead: IntGauge::new(
                "oponn_queue_dead_letters",
                "Messages in the write-behind dead-letter stream",
            )
            .expect("static metric definition is valid"),
            audit_checked: counter(
                "oponn_audit_checked_total",
                "Cached records the consistency sampler compared with MongoDB",
                &["entity"],
            ),
            cache_inconsistent: counter(
                "oponn_cache_inconsistent_total",
                "Disagreements between the cache and MongoDB, found twice",
                &["entity", "kind"],
            ),
            registry,
        };
        metrics.register_all();
        Self(Arc::new(metrics))
    }
}

impl Instruments {
    fn register_all(&self) {
        let collectors: [Box<dyn prometheus::core::Collector>; 19] = [
            Box::new(self.query_cache.clone()),
            Box::new(self.cache_lookups.clone()),
            Box::new(self.cache_fills.clone()),
            Box::new(self.cache_errors.clone()),
            Box::new(self.cache_pending_repairs.clone()),
            Box::new(self.redis_duration.clone()),
            Box::new(self.cache_lookup_duration.clone()),
            Box::new(self.mongodb_commands.clone()),
            Box::new(self.mongodb_duration.clone()),
            Box::new(self.http_requests.clone()),
            Box::new(self.http_duration.clone()),
            Box::new(self.worker_applied.clone()),
            Box::new(self.worker_retries.clone()),
            Box::new(self.worker_dead_letters.clone()),
            Box::new(self.queue_depth.clone()),
            Box::new(self.queue_oldest.clone()),
            Box::new(self.queue_dead.clone()),
            Box::new(self.audit_checked.clone()),
            Box::new(self.cache_inconsistent.clone()),
        ];
        for collector in collectors {
            self.registry
                .register(collector)
                .expect("each metric is registered once in a fresh registry");
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("encoding to a Vec cannot fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }

    /// How many commands named `command` the MongoDB driver has sent (any outcome).
    #[cfg(feature = "test-hooks")]
    pub fn mongodb_command_count(&self, command: &str) -> u64 {
        ["ok", "error"]
            .iter()
            .map(|outcome| {
                self.mongodb_commands
                    .with_label_values(&[command, outcome])
                    .get()
            })
            .sum()
    }

    /// How many cached query results had `outcome` (see the table above), all queries.
    #[cfg(feature = "test-hooks")]
    pub fn query_cache_count(&self, outcome: &str) -> u64 {
        use prometheus::core::Collector;
        self.query_cache
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .filter(|metric| {
                metric
                    .get_label()
                    .iter()
                    .any(|label| label.name() == "outcome" && label.value() == outcome)
            })
            .map(|metric| metric.get_counter().get_value() as u64)
            .sum()
    }

    /// How many Redis round trips requests have made (any operation, any outcome), leaving
    /// out the background trim of expired index entries, which runs on its own clock.
    #[cfg(feature = "test-hooks")]
    pub fn redis_round_trips(&self) -> u64 {
        use prometheus::core::Collector;
        self.redis_duration
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .filter(|metric| {
                !metric
                    .get_label()
                    .iter()
                    .any(|label| label.name() == "operation" && label.value() == "result_trim")
            })
            .map(|metric| metric.get_histogram().get_sample_count())
            .sum()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition is valid")
}

fn histogram(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
    .expect("static metric definition is valid")
}
