//! oponn: a GraphQL service over MongoDB with a Redis cache in front of every MongoDB call.
//!
//! Data flows one way, and the module tree follows it:
//!
//! ```text
//! http (router, health, metrics) -> graphql (schema, resolvers) -> datastore (the cached path)
//!                                                                   |-> cache (Redis)
//!                                                                   '-> store (MongoDB)
//! ```
//!
//! * [`config`] loads and validates every setting once, from the environment.
//! * [`domain`] holds the types that carry the rules (ids, titles, versions); nothing else
//!   validates input.
//! * [`entity`] describes each entity once (collection, stored document and its MongoDB field
//!   names, sort and indexed fields, indexes); the store, both caches and the GraphQL filters
//!   read it. `docs/adding-an-entity.md` is the recipe for a new one.
//! * [`store`] is the only module that speaks to MongoDB, [`cache`] the only one that speaks to
//!   Redis about records (and [`queue`] about the write-behind stream); [`datastore`] composes
//!   them into read-through, write-through and write-behind operations and keeps the cache
//!   invariants described there. [`worker`] persists what write-behind queued.
//! * [`graphql`] is thin: it parses arguments into domain types, calls the datastore, and maps
//!   errors to `extensions.code` in one place.
//! * [`source`] is the outside API books are ingested from (Open Library); [`ingest`] pages
//!   through it, validates, and upserts through the datastore (`oponn ingest`).
//! * [`startup`] builds an [`startup::Application`] from settings; `main.rs` only wires.

pub mod cache;
pub mod catalogue;
pub mod cli;
pub mod config;
pub mod datastore;
pub mod domain;
pub mod entity;
pub mod graphql;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod query;
pub mod queue;
pub mod sample;
pub mod source;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod worker;
