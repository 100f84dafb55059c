//! Request spans and request metrics, and the `/metrics` endpoint.

use axum::{
    body::Body,
    extract::{Request, State},
    http::header::CONTENT_TYPE,
    middleware::Next,
    response::{IntoResponse, Response},
};
use tokio::time::Instant;
use tracing::Span;

use crate::metrics::Metrics;

pub async fn metrics(State(state): State<super::AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// Counts responses by status class and observes latency.
pub async fn count_requests(
    State(metrics): State<Metrics>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    let class = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics.http_requests.with_label_values(&[class]).inc();
    metrics
        .http_duration
        .observe(started.elapsed().as_secs_f64());
    response
}

/// One span per request, carrying its id.
pub fn request_span(request: &Request<Body>) -> Span {
    let request_id = request
        .headers()
        .get(&super::REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id,
    )
}
