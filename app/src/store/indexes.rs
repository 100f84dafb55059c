//! Creating indexes at start-up, idempotently.
//!
//! Existing indexes are listed first and only the missing ones are created: FerretDB v1.24
//! drops the connection on a `createIndexes` that names an existing index. A collection that
//! does not exist yet has no indexes (MongoDB answers `NamespaceNotFound`, code 26).

use std::time::Duration;

use mongodb::{error::ErrorKind, Collection, IndexModel};

use super::{bounded, StoreError};

const NAMESPACE_NOT_FOUND: i32 = 26;

/// Index creation runs once, at start-up, and may take a while on a busy server (creating the
/// collection too): it gets at least this long, whatever the per-request timeout.
const AT_LEAST: Duration = Duration::from_secs(30);

/// The timeout of index creation for a store whose per-operation timeout is `timeout`.
pub(super) fn timeout(timeout: Duration) -> Duration {
    timeout.max(AT_LEAST)
}

/// Creates the indexes of `wanted` (each must be named) that `collection` lacks.
pub(super) async fn ensure<T: Send + Sync>(
    collection: &Collection<T>,
    wanted: Vec<IndexModel>,
    timeout: Duration,
) -> Result<(), StoreError> {
    let existing = bounded(timeout, async {
        match collection.list_index_names().await {
            Err(error) if is_namespace_not_found(&error) => Ok(Vec::new()),
            listed => listed,
        }
    })
    .await?;
    let missing: Vec<IndexModel> = wanted
        .into_iter()
        .filter(|index| {
            let name = index.options.as_ref().and_then(|o| o.name.as_ref());
            name.is_none_or(|name| !existing.contains(name))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    bounded(timeout, collection.create_indexes(missing))
        .await
        .map(drop)
}

fn is_namespace_not_found(error: &mongodb::error::Error) -> bool {
    matches!(error.kind.as_ref(), ErrorKind::Command(command) if command.code == NAMESPACE_NOT_FOUND)
}
