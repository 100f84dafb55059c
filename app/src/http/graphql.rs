//! `POST /graphql` executes one request; `GET /graphql` serves GraphiQL.
//!
//! The body is read as bytes under the size limit and parsed here rather than by an extractor,
//! so that an oversized or malformed body gets a GraphQL-shaped error with a code, and never a
//! parser's debug text.

use async_graphql::http::GraphiQLSource;
use async_graphql_axum::GraphQLResponse;
use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, State},
    http::{HeaderMap, StatusCode},
    response::{Html, IntoResponse, Response},
    Json,
};
use serde_json::json;

use super::AppState;

pub async fn graphiql() -> Html<String> {
    Html(GraphiQLSource::build().endpoint("/graphql").finish())
}

pub async fn execute(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return request_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "the request body is larger than the limit",
            )
        }
        Err(rejection) => {
            return request_error(rejection.status(), "BAD_REQUEST", &rejection.body_text())
        }
    };
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("the body is not a GraphQL request in JSON: {error}"),
            )
        }
    };
    let caller = state.tokens.caller(&headers);
    let request = crate::graphql::per_request(request.data(caller), &state.datastore);
    let response = state.schema.execute(request).await;
    GraphQLResponse::from(response).into_response()
}

/// An error before GraphQL execution, in the GraphQL response shape.
fn request_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, Json(body)).into_response()
}
