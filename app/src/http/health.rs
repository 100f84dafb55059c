//! Liveness and readiness.
//!
//! * `GET /healthz` (both listeners): 200 while the process serves HTTP. The load balancer's
//!   health check: a MongoDB or Redis outage must not take every instance out while the other
//!   still answers.
//! * `GET /readyz` on the operations listener: pings MongoDB and Redis (concurrently, each
//!   under its timeout) and reports each, with latencies and error text. 200 with
//!   `"status": "ready"` when both answer; 200 with `"degraded"` when only Redis is down
//!   (everything still works, from MongoDB); 503 with `"unavailable"` when MongoDB is down
//!   (cached reads still answer, but writes and cache misses fail).
//!
//!   In write-behind mode Redis holds the writes MongoDB lacks, so the roles swap: Redis down
//!   is `unavailable` (book reads and writes fail), MongoDB down is `degraded` (mutations are
//!   still accepted; reads only MongoDB can answer wait, then fail). The body also reports the
//!   queue (`queue`: changes not persisted yet, the oldest one's age, dead letters), and the
//!   status is at least `degraded` once the oldest change is older than
//!   `OPONN_QUEUE_LAG_DEGRADED_MS` or a change was dead-lettered.
//! * `GET /readyz` on the public listener (through the load balancer, for `deployer verify`
//!   and uptime checks): the same verdict, redacted to words — `status`, `mongodb` and
//!   `redis` (`ok`/`down`), and in write-behind mode `queue` (`ok`/`lagging`/`down`) — with
//!   no error text, host or timing. It is strict: 200 only when `ready`, else 503. Anonymous
//!   clients cannot make it cost database work per request: it answers from a snapshot taken
//!   at most once per [`PUBLIC_READINESS_EVERY`], concurrent requests sharing one probe
//!   ([`Snapshot`]).

use std::time::Duration;

use axum::{
    extract::State,
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

use super::{snapshot::Snapshot, AppState};
use crate::queue::Depth;

/// How old the public `/readyz` answer may be.
pub const PUBLIC_READINESS_EVERY: Duration = Duration::from_secs(1);

/// The public `/readyz` answers of one process, shared by every request.
pub type PublicReadiness = Snapshot<Verdict>;

pub async fn healthz() -> &'static str {
    "ok"
}

/// The operations `/readyz`: a fresh probe, in detail.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let probe = Probe::run(&state).await;
    let verdict = probe.verdict(state.lag_degraded);
    (verdict.ops_status_code(), Json(probe.detail(&verdict)))
}

/// The public `/readyz`: the shared snapshot, redacted.
pub async fn public_readyz(State(state): State<AppState>) -> Response {
    let verdict = state
        .readiness
        .get_or_refresh(|| async { Probe::run(&state).await.verdict(state.lag_degraded) })
        .await;
    let status_code = match verdict.status {
        Status::Ready => StatusCode::OK,
        Status::Degraded | Status::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut response = (status_code, Json(verdict.redacted())).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// One round of pings, with everything the detailed answer shows.
struct Probe {
    mongodb: Result<Duration, String>,
    redis: Result<Duration, String>,
    /// Write-behind only.
    queue: Option<Result<Depth, String>>,
    pending_repairs: usize,
}

impl Probe {
    async fn run(state: &AppState) -> Self {
        let queue = state.datastore.queue();
        let (mongodb, redis, depth) = tokio::join!(
            state.datastore.store().ping(),
            state.datastore.cache().ping(),
            async {
                match &queue {
                    Some(queue) => Some(queue.depth().await),
                    None => None,
                }
            }
        );
        Self {
            mongodb: mongodb.map_err(|error| error.to_string()),
            redis: redis.map_err(|error| error.to_string()),
            queue: depth.map(|depth| depth.map_err(|error| error.to_string())),
            pending_repairs: state.datastore.cache().pending_repairs(),
        }
    }

    fn verdict(&self, lag_degraded: Duration) -> Verdict {
        let behind = self.queue.is_some();
        let queue = self.queue.as_ref().map(|depth| match depth {
            Ok(depth) if depth.oldest.is_some_and(|age| age > lag_degraded) || depth.dead > 0 => {
                QueueState::Lagging
            }
            Ok(_) => QueueState::Ok,
            Err(_) => QueueState::Down,
        });
        let mut status = match (self.mongodb.is_ok(), self.redis.is_ok()) {
            (true, true) => Status::Ready,
            (true, false) if !behind => Status::Degraded,
            (false, true) if behind => Status::Degraded,
            _ => Status::Unavailable,
        };
        if status == Status::Ready && queue.is_some_and(|queue| queue != QueueState::Ok) {
            status = Status::Degraded;
        }
        Verdict {
            status,
            mongodb_up: self.mongodb.is_ok(),
            redis_up: self.redis.is_ok(),
            queue,
        }
    }

    fn detail(&self, verdict: &Verdict) -> Value {
        let mut body = json!({
            "status": verdict.status.as_str(),
            "mongodb": check(&self.mongodb),
            "redis": check(&self.redis),
            "pendingCacheRepairs": self.pending_repairs,
        });
        if let Some(depth) = &self.queue {
            body["queue"] = match depth {
                Ok(depth) => json!({
                    "pending": depth.pending,
                    "oldestSeconds": depth.oldest.map(|age| age.as_secs_f64()),
                    "deadLetters": depth.dead,
                }),
                Err(error) => json!({ "error": error }),
            };
        }
        body
    }
}

fn check(result: &Result<Duration, String>) -> Value {
    match result {
        Ok(latency) => json!({ "up": true, "latencyMs": latency.as_secs_f64() * 1000.0 }),
        Err(error) => json!({ "up": false, "error": error }),
    }
}

/// What a probe concluded, without any detail a stranger should not see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    status: Status,
    mongodb_up: bool,
    redis_up: bool,
    queue: Option<QueueState>,
}

impl Verdict {
    fn ops_status_code(&self) -> StatusCode {
        match self.status {
            Status::Ready | Status::Degraded => StatusCode::OK,
            Status::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn redacted(&self) -> Value {
        let word = |up: bool| if up { "ok" } else { "down" };
        let mut body = json!({
            "status": self.status.as_str(),
            "mongodb": word(self.mongodb_up),
            "redis": word(self.redis_up),
        });
        if let Some(queue) = self.queue {
            body["queue"] = json!(queue.as_str());
        }
        body
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ready,
    Degraded,
    Unavailable,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ready => "ready",
            Status::Degraded => "degraded",
            Status::Unavailable => "unavailable",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueueState {
    Ok,
    /// The oldest change is older than `OPONN_QUEUE_LAG_DEGRADED_MS`, or one was dead-lettered.
    Lagging,
    Down,
}

impl QueueState {
    fn as_str(self) -> &'static str {
        match self {
            QueueState::Ok => "ok",
            QueueState::Lagging => "lagging",
            QueueState::Down => "down",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(mongodb: bool, redis: bool, queue: Option<Result<Depth, String>>) -> Probe {
        let result = |up: bool| match up {
            true => Ok(Duration::from_millis(2)),
            false => Err("connection refused by 10.0.3.7:6379".to_owned()),
        };
        Probe {
            mongodb: result(mongodb),
            redis: result(redis),
            queue,
            pending_repairs: 0,
        }
    }

    #[test]
    fn the_redacted_answer_names_each_component_and_nothing_else() {
        let verdict = probe(true, false, None).verdict(Duration::from_secs(30));
        assert_eq!(
            verdict.redacted(),
            json!({ "status": "degraded", "mongodb": "ok", "redis": "down" })
        );
        let detail = probe(true, false, None).detail(&verdict);
        assert!(detail["redis"]["error"]
            .as_str()
            .is_some_and(|error| error.contains("10.0.3.7")));
    }

    #[test]
    fn a_lagging_queue_degrades_and_shows_as_a_word() {
        let old = Depth {
            pending: 3,
            oldest: Some(Duration::from_secs(60)),
            dead: 0,
        };
        let verdict = probe(true, true, Some(Ok(old))).verdict(Duration::from_secs(30));
        assert_eq!(
            verdict.redacted(),
            json!({ "status": "degraded", "mongodb": "ok", "redis": "ok", "queue": "lagging" })
        );
        let down = probe(true, true, Some(Err("timeout".into()))).verdict(Duration::from_secs(30));
        assert_eq!(down.redacted()["queue"], "down");
    }

    #[test]
    fn with_write_behind_redis_down_is_unavailable_and_mongodb_down_degraded() {
        let fresh = || Some(Ok(Depth::default()));
        let lag = Duration::from_secs(30);
        assert_eq!(
            probe(true, false, fresh()).verdict(lag).status,
            Status::Unavailable
        );
        assert_eq!(
            probe(false, true, fresh()).verdict(lag).status,
            Status::Degraded
        );
        assert_eq!(
            probe(false, true, None).verdict(lag).status,
            Status::Unavailable
        );
    }
}
