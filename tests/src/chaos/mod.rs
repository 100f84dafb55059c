//! A harness that checks the cache's promise from outside, with real processes, while faults
//! are injected with real signals: no interleaving of readers and writers leaves a record older
//! than an acknowledged write in the cache, so a read that began after version *n* of a record
//! was acknowledged returns version *n* or newer.
//!
//! A run ([`Deployment`]) owns a `redis-server` ([`crate::RedisServer`]), a database on the shared
//! MongoDB seeded with the sample, and two `oponn serve` instances on both. A [`Workload`] of
//! writers and readers goes through both instances while the test kills, stops or rolls back
//! Redis or kills an instance; the [`History`] of acknowledged writes then finds every read that
//! returned an older version than one acknowledged before it began. After the fault, each
//! instance must serve what MongoDB holds. `tests/tests/chaos.rs` scripts the faults.

mod deployment;
mod history;
mod workload;

pub use deployment::{Deployment, FinalState, Routes, INSTANCES};
pub use history::{Ack, History, Read, ReadKind, StaleRead};
pub use workload::{prepare, Log, Target, Workload, WorkloadSettings};
