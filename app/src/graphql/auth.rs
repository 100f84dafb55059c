//! Who is calling: mutations need a bearer token, queries do not.
//!
//! The HTTP layer decides the [`Caller`] from the `Authorization` header; the
//! [`MutationsNeedToken`] extension refuses any document that contains a mutation unless the
//! caller is authenticated. Enforcing it once, on the parsed document, means a new mutation
//! cannot be added without the check.

use std::sync::Arc;

use async_graphql::{
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery},
    parser::types::{ExecutableDocument, OperationType},
    ServerError, ServerResult, Variables,
};

use super::error::{server_error, Code};

/// The caller of one request, as the HTTP layer established it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// No `Authorization` header.
    Anonymous,
    /// A bearer token that matches a configured one.
    Authenticated,
    /// An `Authorization` header that is malformed or carries an unknown token.
    Rejected,
}

pub struct MutationsNeedToken;

impl ExtensionFactory for MutationsNeedToken {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(MutationGate)
    }
}

struct MutationGate;

#[async_trait::async_trait]
impl Extension for MutationGate {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let has_mutation = document
            .operations
            .iter()
            .any(|(_, operation)| operation.node.ty == OperationType::Mutation);
        if has_mutation {
            refuse_unless_authenticated(ctx.data_opt::<Caller>().copied())?;
        }
        Ok(document)
    }
}

fn refuse_unless_authenticated(caller: Option<Caller>) -> Result<(), ServerError> {
    match caller {
        Some(Caller::Authenticated) => Ok(()),
        Some(Caller::Rejected) => Err(server_error(
            Code::Unauthenticated,
            "the bearer token is not valid",
        )),
        Some(Caller::Anonymous) | None => Err(server_error(
            Code::Unauthenticated,
            "mutations need an `Authorization: Bearer <token>` header",
        )),
    }
}
