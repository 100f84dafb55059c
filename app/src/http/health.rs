//! Liveness and readiness.
//!
//! * `GET /healthz`: 200 while the process serves HTTP. The load balancer's health check: a
//!   MongoDB outage must not take every instance out while cached reads still work.
//! * `GET /readyz`: pings MongoDB and Redis (concurrently, each under its timeout) and reports
//!   each. 200 with `"status": "ready"` when both answer; 200 with `"degraded"` when only Redis
//!   is down (everything still works, from MongoDB); 503 with `"unavailable"` when MongoDB is
//!   down (cached reads still answer, but writes and cache misses fail).
//!
//!   In write-behind mode Redis holds the writes MongoDB lacks, so the roles swap: Redis down
//!   is `unavailable` (book reads and writes fail), MongoDB down is `degraded` (mutations are
//!   still accepted; reads only MongoDB can answer wait, then fail). The body also reports the
//!   queue (`queue`: changes not persisted yet, the oldest one's age, dead letters), and the
//!   status is at least `degraded` once the oldest change is older than
//!   `OPONN_QUEUE_LAG_DEGRADED_MS` or a change was dead-lettered.

use std::time::Duration;

use axum::{extract::State, http::StatusCode, Json};
use serde_json::{json, Value};

use super::AppState;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
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
    let behind = queue.is_some();
    let (mut status_code, mut status) = match (&mongodb, &redis) {
        (Ok(_), Ok(_)) => (StatusCode::OK, "ready"),
        (Ok(_), Err(_)) if !behind => (StatusCode::OK, "degraded"),
        (Err(_), Ok(_)) if behind => (StatusCode::OK, "degraded"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    let mut body = json!({
        "mongodb": check(mongodb),
        "redis": check(redis),
        "pendingCacheRepairs": state.datastore.cache().pending_repairs(),
    });
    if let Some(depth) = depth {
        let lagging = match &depth {
            Ok(depth) => depth.oldest.is_some_and(|age| age > state.lag_degraded) || depth.dead > 0,
            Err(_) => true,
        };
        if lagging && status == "ready" {
            status = "degraded";
            status_code = StatusCode::OK;
        }
        body["queue"] = match depth {
            Ok(depth) => json!({
                "pending": depth.pending,
                "oldestSeconds": depth.oldest.map(|age| age.as_secs_f64()),
                "deadLetters": depth.dead,
            }),
            Err(error) => json!({ "error": error.to_string() }),
        };
    }
    body["status"] = json!(status);
    (status_code, Json(body))
}

fn check<E: std::fmt::Display>(result: Result<Duration, E>) -> Value {
    match result {
        Ok(latency) => json!({ "up": true, "latencyMs": latency.as_secs_f64() * 1000.0 }),
        Err(error) => json!({ "up": false, "error": error.to_string() }),
    }
}
