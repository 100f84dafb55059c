//! Liveness and readiness.
//!
//! * `GET /healthz`: 200 while the process serves HTTP. The load balancer's health check: a
//!   MongoDB outage must not take every instance out while cached reads still work.
//! * `GET /readyz`: pings MongoDB and Redis (concurrently, each under its timeout) and reports
//!   each. 200 with `"status": "ready"` when both answer; 200 with `"degraded"` when only Redis
//!   is down (everything still works, from MongoDB); 503 with `"unavailable"` when MongoDB is
//!   down (cached reads still answer, but writes and cache misses fail).

use std::time::Duration;

use axum::{extract::State, http::StatusCode, Json};
use serde_json::{json, Value};

use super::AppState;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (mongodb, redis) = tokio::join!(
        state.datastore.store().ping(),
        state.datastore.cache().ping()
    );
    let (status_code, status) = match (&mongodb, &redis) {
        (Ok(_), Ok(_)) => (StatusCode::OK, "ready"),
        (Ok(_), Err(_)) => (StatusCode::OK, "degraded"),
        (Err(_), _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    let body = json!({
        "status": status,
        "mongodb": check(mongodb),
        "redis": check(redis),
        "pendingCacheRepairs": state.datastore.cache().pending_repairs(),
    });
    (status_code, Json(body))
}

fn check<E: std::fmt::Display>(result: Result<Duration, E>) -> Value {
    match result {
        Ok(latency) => json!({ "up": true, "latencyMs": latency.as_secs_f64() * 1000.0 }),
        Err(error) => json!({ "up": false, "error": error.to_string() }),
    }
}
