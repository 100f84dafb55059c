//! Errors as clients see them: every error carries `extensions.code`, mapped here and only here.
//!
//! A driver's text never reaches a client: `Unavailable` and `Internal` errors are logged once,
//! here, with their source chain, and the client gets a code and a fixed message.

use async_graphql::{ErrorExtensions, Response, ServerError};

use crate::datastore::DatastoreError;

/// The values of `extensions.code`: every code the API answers with, inside GraphQL and outside
/// it (README's error table lists each, and a test holds the two together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    NotFound,
    Conflict,
    BadUserInput,
    Unauthenticated,
    Unavailable,
    Internal,
    GraphqlParseFailed,
    GraphqlValidationFailed,
    PersistedQueryNotFound,
    QueryNotInSafelist,
    ResponseTooLarge,
    BadRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    Timeout,
}

impl Code {
    pub const ALL: [Code; 16] = [
        Code::NotFound,
        Code::Conflict,
        Code::BadUserInput,
        Code::Unauthenticated,
        Code::Unavailable,
        Code::Internal,
        Code::GraphqlParseFailed,
        Code::GraphqlValidationFailed,
        Code::PersistedQueryNotFound,
        Code::QueryNotInSafelist,
        Code::ResponseTooLarge,
        Code::BadRequest,
        Code::MethodNotAllowed,
        Code::PayloadTooLarge,
        Code::UnsupportedMediaType,
        Code::Timeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::NotFound => "NOT_FOUND",
            Code::Conflict => "CONFLICT",
            Code::BadUserInput => "BAD_USER_INPUT",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Unavailable => "UNAVAILABLE",
            Code::Internal => "INTERNAL_SERVER_ERROR",
            Code::GraphqlParseFailed => "GRAPHQL_PARSE_FAILED",
            Code::GraphqlValidationFailed => "GRAPHQL_VALIDATION_FAILED",
            Code::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            Code::QueryNotInSafelist => "QUERY_NOT_IN_SAFELIST",
            Code::ResponseTooLarge => "RESPONSE_TOO_LARGE",
            Code::BadRequest => "BAD_REQUEST",
            Code::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Code::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Code::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Code::Timeout => "TIMEOUT",
        }
    }
}

/// A resolver error with a code.
pub fn client_error(code: Code, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, extensions| {
        extensions.set("code", code.as_str());
    })
}

/// A request-level error (parse, validation, auth) with a code.
pub fn server_error(code: Code, message: &str) -> ServerError {
    let mut error = ServerError::new(message, None);
    with_code(&mut error, code);
    error
}

fn with_code(error: &mut ServerError, code: Code) {
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", code.as_str());
}

/// Maps a datastore error to what the client sees.
pub fn datastore_error(error: DatastoreError) -> async_graphql::Error {
    match &error {
        DatastoreError::NotFound { .. } => client_error(Code::NotFound, error.to_string()),
        DatastoreError::Conflict(_) => client_error(Code::Conflict, error.to_string()),
        DatastoreError::InvalidInput(_) => client_error(Code::BadUserInput, error.to_string()),
        DatastoreError::Unavailable(source) => {
            tracing::error!(error = ?source, "MongoDB unavailable");
            client_error(Code::Unavailable, error.to_string())
        }
        DatastoreError::Behind(reason) => {
            tracing::warn!(%reason, "write-behind: refused rather than answer from the past");
            client_error(Code::Unavailable, error.to_string())
        }
        DatastoreError::Internal(source) => {
            tracing::error!(error = ?source, "internal error");
            client_error(Code::Internal, "internal error")
        }
    }
}

/// Bad input in an argument: the message says which and why.
pub fn bad_input(message: impl std::fmt::Display) -> async_graphql::Error {
    client_error(Code::BadUserInput, message.to_string())
}

/// The most errors one response reports; the rest are summed up in one last error (a document
/// with a thousand unknown fields must not buy a thousand error objects).
pub const MAX_REPORTED_ERRORS: usize = 20;

/// The limits whose refusals name their settings.
#[derive(Clone, Copy)]
pub struct QueryLimits {
    pub max_depth: usize,
    pub max_complexity: usize,
}

/// A parse failure, with its code.
pub(super) fn parse_failed(mut error: ServerError) -> ServerError {
    if error
        .extensions
        .as_ref()
        .is_none_or(|e| e.get("code").is_none())
    {
        with_code(&mut error, Code::GraphqlParseFailed);
    }
    error
}

/// Validation failures (including depth and complexity limits), with their code; a refusal for
/// a limit names the limit's setting. At most [`MAX_REPORTED_ERRORS`] are reported.
pub(super) fn validation_failed(
    mut errors: Vec<ServerError>,
    limits: QueryLimits,
) -> Vec<ServerError> {
    for error in &mut errors {
        // The library's own words for its two limits, made to name our settings.
        match error.message.as_str() {
            "Query is too complex." => {
                error.message = format!(
                    "the query may cost more than {} (OPONN_MAX_QUERY_COMPLEXITY): each list \
                     field costs its selection once per record it may return",
                    limits.max_complexity
                )
            }
            "Query is nested too deep." => {
                error.message = format!(
                    "the query is nested deeper than {} levels (OPONN_MAX_QUERY_DEPTH)",
                    limits.max_depth
                )
            }
            _ => {}
        }
        with_code(error, Code::GraphqlValidationFailed);
    }
    capped(errors)
}

/// Execution errors: `BAD_USER_INPUT` for those with no code, which come from coercing
/// arguments (an explicit `null` for a non-null argument, a malformed input object), since
/// every error a resolver raises carries its code already. At most [`MAX_REPORTED_ERRORS`].
pub(super) fn execution_codes(mut response: Response) -> Response {
    for error in &mut response.errors {
        if error
            .extensions
            .as_ref()
            .is_none_or(|e| e.get("code").is_none())
        {
            with_code(error, Code::BadUserInput);
        }
    }
    response.errors = capped(std::mem::take(&mut response.errors));
    response
}

/// At most [`MAX_REPORTED_ERRORS`] errors, the last one saying how many were left out.
fn capped(mut errors: Vec<ServerError>) -> Vec<ServerError> {
    if errors.len() > MAX_REPORTED_ERRORS {
        let left_out = errors.len() - (MAX_REPORTED_ERRORS - 1);
        errors.truncate(MAX_REPORTED_ERRORS - 1);
        let code = errors[0]
            .extensions
            .as_ref()
            .and_then(|extensions| extensions.get("code"))
            .and_then(|code| match code {
                async_graphql::Value::String(code) => Some(code.clone()),
                _ => None,
            })
            .unwrap_or_else(|| Code::BadUserInput.as_str().to_owned());
        let mut summary = ServerError::new(format!("{left_out} more errors not reported"), None);
        summary
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
        errors.push(summary);
    }
    errors
}
