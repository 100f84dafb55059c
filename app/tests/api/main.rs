//! Integration tests: the real router on 127.0.0.1:0 against the real Redis and MongoDB of the
//! local stack, one database and one key prefix per test (see `helpers::TestApp`).
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and figures are printed"
)]

mod audit;
mod auth;
mod authors;
mod behind;
mod behind_sqs;
mod books;
mod bookstores;
mod cache;
mod error_codes;
mod explain;
mod faults;
mod filters;
mod fruit;
mod helpers;
mod hostile;
mod http;
mod ingest;
mod invariants;
mod limits;
mod model;
mod over_http;
mod queries;
mod redis_runs;
mod schema_walk;
mod settings_docs;
mod tls;
