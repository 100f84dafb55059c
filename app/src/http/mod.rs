//! The HTTP surface: `POST /graphql`, GraphiQL on `GET /graphql`, `/healthz`, `/readyz`,
//! `/metrics`. Every request gets an `x-request-id` (kept if the client sent one), a span, a
//! timeout and a bounded body.

mod auth;
mod graphql;
mod health;
mod observe;

use std::{sync::Arc, time::Duration};

use axum::{
    extract::DefaultBodyLimit,
    http::{HeaderName, StatusCode},
    routing::get,
    Router,
};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

pub use auth::Tokens;

use crate::{config::HttpSettings, datastore::Datastore, graphql::AppSchema, metrics::Metrics};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub schema: AppSchema,
    pub datastore: Datastore,
    pub metrics: Metrics,
    pub tokens: Arc<Tokens>,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState, settings: &HttpSettings) -> Router {
    let graphql_routes = Router::new()
        .route("/graphql", get(graphql::graphiql).post(graphql::execute))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes));
    Router::new()
        .merge(graphql_routes)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(observe::metrics))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            observe::count_requests,
        ))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(observe::request_span))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(CatchPanicLayer::new())
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    timeout_or_default(settings.request_timeout),
                )),
        )
        .with_state(state)
}

fn timeout_or_default(timeout: Duration) -> Duration {
    if timeout.is_zero() {
        Duration::from_secs(10)
    } else {
        timeout
    }
}
