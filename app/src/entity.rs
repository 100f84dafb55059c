//! What a stored entity is to the layers above the store: its collection, its id, its version
//! and its unique values. Below the query-result cache and the entity cache, which both read
//! it, so the layers depend top to bottom (`datastore` -> `cache` -> `query` -> `entity`).

use std::fmt::Display;

use serde::{de::DeserializeOwned, Serialize};

use crate::domain::Version;

/// A record type the caches can hold: describing an entity here is all the entity cache, the
/// query-result cache and the datastore's read-through need.
pub trait CacheEntity: Serialize + DeserializeOwned + Clone + Send + Sync {
    /// The collection name: the key stem (`books` gives `books_<id>`) and the metric label.
    const COLLECTION: &'static str;
    type Id: Display + std::str::FromStr + Copy + Eq + std::hash::Hash + Send + Sync;

    fn id(&self) -> Self::Id;
    fn version(&self) -> Version;

    /// Values no other record of the collection may hold (a unique index in MongoDB), as
    /// strings: a write-behind write claims them before it replies (see `cache::pending`).
    fn claims(&self) -> Vec<String> {
        Vec::new()
    }
}
