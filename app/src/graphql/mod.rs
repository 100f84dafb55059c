//! The GraphQL API: a schema merged from one query and one mutation root per concept.
//!
//! Resolvers are thin: they parse arguments into domain types, call the [`Datastore`], and map
//! its errors through [`error`]. Mutations need a bearer token, checked on every mutation field as
//! it executes ([`auth`]); queries are public. The request-level rules run in one extension
//! ([`checks`]).
//! Depth, complexity and batch sizes are bounded by settings.

pub mod auth;
mod authors;
mod books;
mod bookstores;
mod budget;
mod checks;
mod cost;
pub mod error;
mod lists;
mod loaders;
mod parsed;
pub mod persisted;

use async_graphql::{EmptySubscription, MergedObject, Schema};

use crate::{config::HttpSettings, datastore::Datastore};

pub use auth::Caller;
pub use loaders::{per_request, RequestScope};

/// Everything a client can read: books, bookstores and authors by id, by name, and in filtered
/// pages.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    books::BookQuery,
    bookstores::BookstoreQuery,
    authors::AuthorQuery,
    lists::ListQuery,
);

/// Every change a client can make; each needs a bearer token (`Authorization: Bearer ...`).
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(books::BookMutation, bookstores::BookstoreMutation);

pub type AppSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// Bounds the resolvers enforce themselves (the schema enforces depth and complexity).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_batch_ids: usize,
}

/// The schema the server executes.
pub fn build_schema(datastore: Datastore, settings: &HttpSettings) -> AppSchema {
    let schema = Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        EmptySubscription,
    )
    .data(datastore)
    .data(Limits {
        max_batch_ids: settings.max_batch_ids,
    })
    .limit_depth(settings.max_query_depth)
    .limit_complexity(settings.max_query_complexity)
    // The only extension (see `checks` for why one): parse and validation memo, alias limit,
    // error codes, and the token check on every mutation field.
    .extension(checks::Checks {
        limits: error::QueryLimits {
            max_depth: settings.max_query_depth,
            max_complexity: settings.max_query_complexity,
        },
        max_aliases: settings.max_query_aliases,
        memo: parsed::ParsedQueries::default(),
    });
    match settings.introspection {
        true => schema.finish(),
        false => schema.disable_introspection().finish(),
    }
}

/// The schema in SDL, as checked in at `schema.graphql`.
pub fn sdl() -> String {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        EmptySubscription,
    )
    .finish()
    .sdl()
}

#[cfg(test)]
mod tests {
    /// CI fails when the schema drifts from the checked-in SDL; `make schema` refreshes it.
    #[test]
    fn the_checked_in_schema_matches_the_code() {
        let checked_in = include_str!("../../../schema.graphql");
        assert!(
            checked_in == super::sdl(),
            "schema.graphql is out of date: run `make schema` and commit the result"
        );
    }
}
