//! The shared test harness, and (under `tests/`) black-box end-to-end tests of the built binary.
//!
//! Tests talk to the real local stack that `scripts/stack up` starts (Redis and a MongoDB-wire
//! server on 127.0.0.1); `make test` exports where it is. Each test isolates itself with its own
//! database name and key prefix ([`unique_name`]), so tests run in parallel against one stack.
//! Outages are injected with a [`TcpProxy`] the test owns, or on a [`RedisServer`] of the test's
//! own, never by stopping shared servers. [`Environment`] and [`Server`] run the built binary;
//! [`chaos`] checks the cache's promise while faults are injected.

mod binary;
pub mod chaos;
mod moto;
mod proxy;
mod redis_server;
mod stack;

pub use binary::{last_json_line, wait_for_log, Environment, Server, SAMPLE, TOKEN};
pub use moto::Moto;
pub use proxy::TcpProxy;
pub use redis_server::RedisServer;
pub use stack::{delete_app_keys, delete_keys_with_prefix, oponn_binary, unique_name, Stack};
