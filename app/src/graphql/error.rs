//! Errors as clients see them: every error carries `extensions.code`, mapped here and only here.
//!
//! A driver's text never reaches a client: `Unavailable` and `Internal` errors are logged once,
//! here, with their source chain, and the client gets a code and a fixed message.

use std::sync::Arc;

use async_graphql::{
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextValidation,
    },
    parser::types::ExecutableDocument,
    ErrorExtensions, Response, ServerError, ServerResult, ValidationResult, Variables,
};

use crate::datastore::DatastoreError;

/// The values of `extensions.code`.
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
}

impl Code {
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

/// Gives parse and validation failures (including depth and complexity limits) a code, and
/// `BAD_USER_INPUT` to execution errors that have none: those come from coercing arguments
/// (an explicit `null` for a non-null argument, a malformed input object), since every error a
/// resolver raises carries its code already.
pub struct RequestErrorCodes;

impl ExtensionFactory for RequestErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RequestErrorCodesExtension)
    }
}

struct RequestErrorCodesExtension;

#[async_trait::async_trait]
impl Extension for RequestErrorCodesExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables).await.map_err(|mut error| {
            if error
                .extensions
                .as_ref()
                .is_none_or(|e| e.get("code").is_none())
            {
                with_code(&mut error, Code::GraphqlParseFailed);
            }
            error
        })
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let mut response = next.run(ctx, operation_name).await;
        for error in &mut response.errors {
            if error
                .extensions
                .as_ref()
                .is_none_or(|e| e.get("code").is_none())
            {
                with_code(error, Code::BadUserInput);
            }
        }
        response
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|mut errors| {
            for error in &mut errors {
                with_code(error, Code::GraphqlValidationFailed);
            }
            errors
        })
    }
}
