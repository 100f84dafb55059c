//! `POST /graphql` executes one request; `GET /graphql` serves GraphiQL when it is switched on.
//!
//! The body is read as bytes under the size limit and parsed here rather than by an extractor,
//! so that an oversized or malformed body gets a GraphQL-shaped error with a code, and never a
//! parser's debug text. Only `application/json` bodies are executed: a browser can send
//! `text/plain` or a form across origins without asking first (a "simple" request), and a
//! GraphQL server that executed those would let any web page run queries with its visitors'
//! network position.

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, State},
    http::{
        header::{ACCEPT, CONTENT_TYPE},
        HeaderMap, HeaderValue, StatusCode,
    },
    response::{IntoResponse, Response},
};

use super::{error_response, AppState};
use crate::graphql::{per_request, RequestScope};

/// The media type of the GraphQL-over-HTTP specification, answered to clients that accept it.
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

pub async fn graphiql(State(state): State<AppState>) -> Response {
    if !state.settings.graphiql {
        return error_response(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "GraphiQL is switched off (OPONN_GRAPHIQL); POST GraphQL requests to /graphql",
        );
    }
    super::graphiql::page()
}

pub async fn execute(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !is_json(&headers) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "send the request as `Content-Type: application/json`",
        );
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                &format!(
                    "the request body is larger than {} bytes (OPONN_MAX_BODY_BYTES)",
                    state.settings.max_body_bytes
                ),
            )
        }
        Err(rejection) => {
            return error_response(
                rejection.status(),
                "BAD_REQUEST",
                "the body could not be read",
            )
        }
    };
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("the body is not a GraphQL request in JSON: {error}"),
            )
        }
    };
    let caller = state.tokens.caller(&headers);
    // Aborts whatever the request's loaders still run when this handler ends or is dropped.
    let scope = RequestScope::default();
    let request = per_request(request.data(caller), &state.datastore, &scope);
    let response = state.schema.execute(request).await;
    let body = match serde_json::to_vec(&response) {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%error, "a GraphQL response did not serialise");
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_SERVER_ERROR",
                "internal error",
            );
        }
    };
    if body.len() > state.settings.max_response_bytes {
        tracing::warn!(
            bytes = body.len(),
            "response over the size limit replaced by an error"
        );
        return error_response(
            StatusCode::OK,
            "RESPONSE_TOO_LARGE",
            &format!(
                "the response would be larger than {} bytes (OPONN_MAX_RESPONSE_BYTES): ask for fewer records or fields",
                state.settings.max_response_bytes
            ),
        );
    }
    let mut answer = (StatusCode::OK, body).into_response();
    answer.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(response_type(&headers)),
    );
    answer
}

/// Whether the request says its body is JSON (`application/json`, any parameters).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// `application/graphql-response+json` when the client lists it, else `application/json`
/// (what the GraphQL-over-HTTP specification requires for clients that accept only that).
fn response_type(headers: &HeaderMap) -> &'static str {
    let accepts_graphql = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|media| {
            media
                .split(';')
                .next()
                .is_some_and(|media| media.trim().eq_ignore_ascii_case(GRAPHQL_RESPONSE))
        });
    match accepts_graphql {
        true => GRAPHQL_RESPONSE,
        false => "application/json",
    }
}
