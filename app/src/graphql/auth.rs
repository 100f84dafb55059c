//! Who is calling: mutations need a bearer token, queries do not.
//!
//! The HTTP layer decides the [`Caller`] from the `Authorization` header and puts it in the
//! request's data. [`check_field`] checks it where the work happens: in the `resolve` hook of
//! every field of the mutation root (the request's one extension, [`super::checks`]),
//! immediately before that field's resolver runs.
//!
//! Why there and not on the parsed document: anything cached between a request and its
//! execution (a memo of parsed documents, persisted queries) would stand between the request and
//! a parse-time check, and a document seen once with a token would then run for everyone. A
//! per-field check at execution cannot be skipped by any cache, and covers a mutation added
//! later without anyone remembering to guard it (the schema-driven test in
//! `tests/api/auth.rs` walks the mutation root by introspection to prove it).

use async_graphql::{
    extensions::{ExtensionContext, ResolveInfo},
    ServerError, ServerResult,
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

/// Refuses a field of the mutation root unless the caller is authenticated; other fields pass.
/// Called by [`super::checks`] immediately before each field's resolver runs.
pub(super) fn check_field(ctx: &ExtensionContext<'_>, info: &ResolveInfo<'_>) -> ServerResult<()> {
    let is_mutation = ctx.schema_env.registry.mutation_type.as_deref() == Some(info.parent_type);
    if !is_mutation {
        return Ok(());
    }
    refuse_unless_authenticated(ctx.data_opt::<Caller>().copied()).map_err(|mut error| {
        error.locations = vec![info.field.name.pos];
        error
    })
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
