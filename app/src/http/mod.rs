//! The HTTP surface, on two listeners:
//!
//! * the public one (`OPONN_LISTEN`, behind the load balancer): `/graphql` (POST, and GET for
//!   queries and GraphiQL), `/healthz` (the load balancer's check), and a redacted `/readyz`
//!   (a word per dependency, from a snapshot at most a second old: see `health`);
//! * the operations one (`OPONN_OPS_LISTEN`, reached from inside the network only): `/metrics`,
//!   the detailed `/readyz` and `/healthz`. The load balancer routes nothing to it, so what it
//!   reveals (error text, latencies, counters) is not on the internet.
//!
//! Every request gets a request id (the client's `x-request-id` when it is a short token of
//! safe characters, else a fresh one), a span, a deadline and a bounded body; every response
//! carries the usual security headers; every error, including 404, 405, a timeout and a panic,
//! is GraphQL-shaped with `extensions.code`. The request metrics sit outside the deadline and
//! the panic handler so that the 5xx those produce are counted.

mod auth;
mod graphiql;
mod graphql;
mod health;
mod observe;
mod snapshot;

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{DefaultBodyLimit, Request, State},
    http::{header, HeaderName, HeaderValue, Method, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::json;
use tower::ServiceBuilder;
use tower_http::{catch_panic::CatchPanicLayer, trace::TraceLayer};

pub use auth::Tokens;
pub use health::{PublicReadiness, PUBLIC_READINESS_EVERY};

use crate::{
    config::HttpSettings,
    datastore::Datastore,
    graphql::{error::Code, persisted::PersistedQueries, AppSchema},
    metrics::Metrics,
};

/// What every handler can reach: a handle on one [`Shared`], so that the clone axum makes for
/// each extractor of each request costs one reference count.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub schema: AppSchema,
    pub datastore: Datastore,
    pub metrics: Metrics,
    pub tokens: Arc<Tokens>,
    pub settings: Arc<HttpSettings>,
    pub persisted: PersistedQueries,
    /// Write-behind: `/readyz` says `degraded` once the oldest queued change is older.
    pub lag_degraded: Duration,
    /// The public `/readyz` answer, shared by every request of the process.
    pub readiness: Arc<PublicReadiness>,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The public router: GraphQL, `/healthz` and the redacted `/readyz`.
pub fn router(state: AppState) -> Router {
    let graphql = get(graphql::get)
        .post(graphql::post)
        .fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes));
    let routes = Router::new()
        .route("/graphql", graphql)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::public_readyz));
    with_layers(routes, state)
}

/// The operations router: `/metrics`, `/readyz`, `/healthz`.
pub fn ops_router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/metrics", get(observe::metrics))
        .route("/readyz", get(health::readyz))
        .route("/healthz", get(health::healthz));
    with_layers(routes, state)
}

/// The operations server of a process that serves no GraphQL (`oponn worker`): `/metrics`
/// and `/healthz`.
pub async fn worker_ops(listener: tokio::net::TcpListener, metrics: crate::metrics::Metrics) {
    let routes = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { metrics.render() }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    if let Err(error) = axum::serve(listener, routes).await {
        tracing::error!(%error, "the operations server stopped");
    }
}

fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
    let deadline = timeout_or_default(state.settings.request_timeout);
    routes
        .fallback(not_found)
        .layer(
            // Outermost first: each layer sees what the ones below it produce.
            ServiceBuilder::new()
                .layer(middleware::from_fn(request_id))
                .layer(TraceLayer::new_for_http().make_span_with(observe::request_span))
                .layer(middleware::from_fn_with_state(
                    state.metrics.clone(),
                    observe::count_requests,
                ))
                .layer(middleware::from_fn(security_headers))
                .layer(CatchPanicLayer::custom(panicked))
                .layer(middleware::from_fn_with_state(deadline, within_deadline)),
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

/// An error outside GraphQL execution, in the GraphQL response shape.
pub(crate) fn error_response(status: StatusCode, code: Code, message: &str) -> Response {
    let body =
        json!({ "errors": [{ "message": message, "extensions": { "code": code.as_str() } }] });
    (status, Json(body)).into_response()
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, Code::NotFound, "no such path")
}

async fn method_not_allowed() -> Response {
    let mut response = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        Code::MethodNotAllowed,
        "use POST for any operation, GET for queries",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
    response
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    // The panic itself was printed by the panic hook, with its location.
    tracing::error!("a request handler panicked");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        Code::Internal,
        "internal error",
    )
}

/// Ends a request that runs past its deadline. Dropping the handler's future cancels its
/// work: its MongoDB and Redis calls, and the loader tasks its request scope owns.
async fn within_deadline(
    State(deadline): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                deadline_ms = deadline.as_millis() as u64,
                "request cancelled at its deadline"
            );
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                Code::Timeout,
                &format!(
                    "the request ran longer than {} ms (OPONN_REQUEST_TIMEOUT_MS) and was cancelled",
                    deadline.as_millis()
                ),
            )
        }
    }
}

/// Keeps the client's `x-request-id` only if it is 1 to 64 characters of `[A-Za-z0-9._-]`
/// (so it can go into logs and back into a header verbatim), otherwise makes one; the
/// response carries the id used.
async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .filter(|value| is_safe_request_id(value.as_bytes()))
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .expect("a UUID is a valid header value")
        });
    request.headers_mut().insert(REQUEST_ID, id.clone());
    let mut response = next.run(request).await;
    response.headers_mut().insert(REQUEST_ID, id);
    response
}

fn is_safe_request_id(id: &[u8]) -> bool {
    (1..=64).contains(&id.len())
        && id
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
}

/// Headers every response carries unless its handler set them: no MIME sniffing, no framing,
/// no caching of answers that may depend on a token, no referrer, and a content security
/// policy that lets a JSON answer load nothing (GraphiQL's page sets its own).
async fn security_headers(request: Request, next: Next) -> Response {
    let is_get = request.method() == Method::GET;
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let defaults = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ];
    for (name, value) in defaults {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    if !is_get {
        headers
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::is_safe_request_id;

    #[test]
    fn only_short_tokens_of_safe_characters_are_kept_as_request_ids() {
        assert!(is_safe_request_id(b"3f2a-9c_1.b"));
        assert!(!is_safe_request_id(b""));
        assert!(!is_safe_request_id(b"<script>alert(1)</script>"));
        assert!(!is_safe_request_id(b"a b"));
        assert!(!is_safe_request_id("é".as_bytes()));
        assert!(!is_safe_request_id(&[b'a'; 65]));
    }
}
