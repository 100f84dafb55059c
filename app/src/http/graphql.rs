//! `/graphql` over HTTP, as the GraphQL-over-HTTP specification describes it.
//!
//! * `POST` with `Content-Type: application/json` runs any operation. Other media types are
//!   refused with 415: a browser can send `text/plain` or a form across origins without asking
//!   first, and a server that executed those would let any web page run queries with its
//!   visitors' network position.
//! * `GET` with `query`, `variables`, `operationName` and `extensions` in the URL runs queries
//!   only (a mutation is 405 with `Allow: POST`); a browser asking for `text/html` without a
//!   query gets GraphiQL, when it is switched on.
//! * Both take automatic persisted queries ([`crate::graphql::persisted`]).
//! * The answer is `application/graphql-response+json` to clients that accept it, with 400 for
//!   a request that fails before execution (parse, validation, unknown persisted query), and
//!   `application/json` otherwise, always with 200. A request error has no `data` entry.
//!
//! The body is read as bytes under the size limit and parsed here rather than by an extractor,
//! so that an oversized or malformed body gets a GraphQL-shaped error with a code, and never a
//! parser's debug text.

use async_graphql::{
    parser::{parse_query, types::OperationType},
    Request,
};
use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, RawQuery, State},
    http::{
        header::{ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_TYPE},
        HeaderMap, HeaderValue, StatusCode,
    },
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{error_response, AppState};
use crate::graphql::{
    error::Code,
    per_request,
    persisted::{Persisted, PersistedError},
    RequestScope,
};

/// The media type of the GraphQL-over-HTTP specification.
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// Codes of errors raised before execution: the request was not run.
const REQUEST_ERRORS: &[Code] = &[
    Code::GraphqlParseFailed,
    Code::GraphqlValidationFailed,
    Code::PersistedQueryNotFound,
    Code::BadRequest,
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    if query.is_empty() {
        if !accepts(&headers, "text/html") {
            return error_response(
                StatusCode::BAD_REQUEST,
                Code::BadRequest,
                "GET /graphql needs a `query` parameter (or a persisted query's hash in `extensions`)",
            );
        }
        if !state.settings.graphiql {
            return error_response(
                StatusCode::NOT_FOUND,
                Code::NotFound,
                "GraphiQL is switched off (OPONN_GRAPHIQL); send GraphQL requests to /graphql",
            );
        }
        return super::graphiql::page();
    }
    let request = match async_graphql::http::parse_query_string(&query) {
        Ok(request) => request,
        Err(error) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                Code::BadRequest,
                &format!("the URL is not a GraphQL request: {error}"),
            )
        }
    };
    run(&state, &headers, request, Method::Get).await
}

pub async fn post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !is_json(&headers) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::UnsupportedMediaType,
            "send the request as `Content-Type: application/json`",
        );
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                Code::PayloadTooLarge,
                &format!(
                    "the request body is larger than {} bytes (OPONN_MAX_BODY_BYTES)",
                    state.settings.max_body_bytes
                ),
            )
        }
        Err(rejection) => {
            return error_response(
                rejection.status(),
                Code::BadRequest,
                "the body could not be read",
            )
        }
    };
    let request: Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                Code::BadRequest,
                &format!("the body is not a GraphQL request in JSON: {error}"),
            )
        }
    };
    run(&state, &headers, request, Method::Post).await
}

async fn run(
    state: &AppState,
    headers: &HeaderMap,
    mut request: Request,
    method: Method,
) -> Response {
    let media = response_type(headers);
    let persisted = match state.persisted.resolve(&mut request) {
        Ok(persisted) => persisted,
        Err(PersistedError::NotFound) => {
            return request_error(
                media,
                Code::PersistedQueryNotFound,
                "PersistedQueryNotFound",
            )
        }
        Err(error @ PersistedError::NotInSafelist) => {
            return request_error(media, Code::QueryNotInSafelist, &error.to_string())
        }
        Err(error) => return request_error(media, Code::BadRequest, &error.to_string()),
    };
    if method == Method::Get && is_mutation(&request) {
        let mut response = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            Code::MethodNotAllowed,
            "mutations are sent with POST",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let text = request.query.clone();
    let caller = state.tokens.caller(headers);
    // Aborts whatever the request's loaders still run when this handler ends or is dropped.
    let scope = RequestScope::default();
    let request = per_request(request.data(caller), &state.datastore, &scope);
    let mut response = state.schema.execute(request).await;
    // Errors raised while choosing the operation ("Operation name required", an unknown
    // operation name) come before any extension hook that gives codes: they are bad requests.
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", Code::BadRequest.as_str());
        }
    }

    let failed_before_running = response.data == async_graphql::Value::Null
        && response.errors.iter().any(|error| {
            error
                .extensions
                .as_ref()
                .and_then(|extensions| extensions.get("code"))
                .is_some_and(|code| {
                    matches!(code, async_graphql::Value::String(code) if REQUEST_ERRORS.iter().any(|request| request.as_str() == code.as_str()))
                })
        });
    if let Persisted::Register(key) = persisted {
        if !failed_before_running {
            state.persisted.register(key, &text);
        }
    }
    let body = match failed_before_running {
        // A request error has no `data` entry (GraphQL spec, "Response Format").
        true => serde_json::to_vec(&json!({ "errors": response.errors })),
        false => serde_json::to_vec(&response),
    };
    let body = match body {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%error, "a GraphQL response did not serialise");
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                Code::Internal,
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
            Code::ResponseTooLarge,
            &format!(
                "the response would be larger than {} bytes (OPONN_MAX_RESPONSE_BYTES): ask for fewer records or fields",
                state.settings.max_response_bytes
            ),
        );
    }
    let status = match (failed_before_running, media) {
        (true, GRAPHQL_RESPONSE) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    let mut answer = (status, body).into_response();
    let answer_headers = answer.headers_mut();
    answer_headers.insert(CONTENT_TYPE, HeaderValue::from_static(media));
    if method == Method::Get {
        // Answers change with every write, and read-your-writes holds only for a client that
        // asks the service: shared caches may keep a GET answer but must revalidate it.
        answer_headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    answer
}

/// A request error in the chosen media type: 400 for `application/graphql-response+json`, 200
/// for `application/json`, and no `data` entry either way.
fn request_error(media: &'static str, code: Code, message: &str) -> Response {
    let status = match media {
        GRAPHQL_RESPONSE => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    let mut response = error_response(status, code, message);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(media));
    response
}

/// Whether the operation the request would run is a mutation (a document that does not parse
/// is left for execution to report).
fn is_mutation(request: &Request) -> bool {
    let Ok(document) = parse_query(&request.query) else {
        return false;
    };
    let wanted = request.operation_name.as_deref();
    document.operations.iter().any(|(name, operation)| {
        let selected = match wanted {
            Some(wanted) => name.is_some_and(|name| name.as_str() == wanted),
            None => true,
        };
        selected && operation.node.ty == OperationType::Mutation
    })
}

/// Whether the request says its body is JSON (`application/json`, any parameters).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether the `Accept` header lists `media` (parameters and quality ignored).
fn accepts(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|listed| {
            listed
                .split(';')
                .next()
                .is_some_and(|listed| listed.trim().eq_ignore_ascii_case(media))
        })
}

/// `application/graphql-response+json` when the client lists it, else `application/json`
/// (what the specification requires for clients that accept only that, or say nothing).
fn response_type(headers: &HeaderMap) -> &'static str {
    match accepts(headers, GRAPHQL_RESPONSE) {
        true => GRAPHQL_RESPONSE,
        false => "application/json",
    }
}
