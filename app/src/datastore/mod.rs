//! The `Datastore` (the brief's name): the cached path every resolver goes through.
//!
//! Reads are read-through: Redis first, MongoDB only for what Redis lacks, then a fill. Writes
//! are write-through: MongoDB first, and only once it has committed, the cache. Both sides of
//! the cache carry the record's version and go through the cache's compare-and-set, which is
//! what makes the two invariants below hold whatever the interleaving:
//!
//! 1. **Read-your-writes.** A mutation replies only after MongoDB committed version n and the
//!    cache holds n or newer (or, if Redis failed, after a pending repair makes this process
//!    skip the cache for that key until n is in Redis). A later read sees n or newer.
//! 2. **No stale fill.** A reader that read version n from MongoDB before a writer committed
//!    n+1 fills with n; the compare-and-set refuses it because n+1 (or the delete's tombstone)
//!    is already cached. Write-through always writes, even when the key was not cached, so
//!    there is always a newer version in place for a late fill to lose against.
//!
//! In write-behind mode (`OPONN_WRITE_MODE=behind`) book mutations reply before MongoDB has the
//! write instead; [`behind`] says how the same two invariants hold there.
//!
//! [`Checkpoints`] lets a test stop a reader between its MongoDB read and its fill, which is
//! how the second invariant is proven rather than hoped for.

mod audit;
mod authors;
mod behind;
mod books;
mod bookstores;
#[cfg(feature = "test-hooks")]
mod checkpoint;
/// The service's build (no `test-hooks`): no pause points; passing one is an empty `async fn`.
#[cfg(not(feature = "test-hooks"))]
mod checkpoint {
    #[derive(Default)]
    pub struct Checkpoints;

    impl Checkpoints {
        pub(super) async fn before_fill(&self) {}

        pub(super) async fn before_result_fill(&self) {}
    }
}
mod error;
mod queries;
mod read_through;

use std::sync::Arc;

pub use audit::{AuditCursor, Audited, Finding, Inconsistency};
pub use behind::Behind;
pub use bookstores::HeldBooks;
pub use checkpoint::Checkpoints;
#[cfg(feature = "test-hooks")]
pub use checkpoint::PauseHandle;
pub use error::DatastoreError;
pub use queries::Page;

use crate::{cache::Cache, store::Store};

/// The service's data access: MongoDB behind the Redis entity cache. Cheap to clone.
#[derive(Clone)]
pub struct Datastore {
    store: Store,
    cache: Arc<Cache>,
    checkpoints: Arc<Checkpoints>,
    /// The queue, in write-behind mode (see [`behind`]).
    behind: Option<Arc<Behind>>,
}

impl Datastore {
    pub fn new(store: Store, cache: Arc<Cache>) -> Self {
        Self {
            store,
            cache,
            checkpoints: Arc::default(),
            behind: None,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// The pause points tests use to force interleavings.
    #[cfg(feature = "test-hooks")]
    pub fn checkpoints(&self) -> &Checkpoints {
        &self.checkpoints
    }
}

/// A conditioned write's outcome as the API answers it: the record(s) written, `NOT_FOUND`, or
/// a `CONFLICT` naming the version found.
fn written<T>(
    write: crate::store::Written<T>,
    entity: &'static str,
    id: impl std::fmt::Display,
    expected: Option<crate::domain::Version>,
) -> Result<T, DatastoreError> {
    match write {
        crate::store::Written::Done(done) => Ok(done),
        crate::store::Written::NotFound => Err(DatastoreError::NotFound {
            entity,
            id: id.to_string(),
        }),
        crate::store::Written::VersionMismatch { current } => {
            Err(DatastoreError::Conflict(format!(
                "{entity} {id} is at version {current}, not the expected {}",
                expected.unwrap_or_default()
            )))
        }
    }
}
