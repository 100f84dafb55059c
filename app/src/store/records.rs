//! What the store does alike for every entity, read from its descriptor ([`Entity`]): find by
//! ids, insert, version-conditioned update and delete (one [`Written`] outcome), the guarded
//! writes of write-behind, and index creation. An entity's own store file (`books.rs`,
//! `bookstores.rs`) holds only what is particular to it: its update document, its lookups by
//! a unique key, its batch operations.
//!
//! Every write increments `version` in the same atomic update (or writes a version the cache
//! acknowledged, guarded by version), so the caller can cache exactly the version written.

use std::{future::IntoFuture, time::Duration};

use futures::TryStreamExt;
use mongodb::{
    bson::{doc, oid::ObjectId, Document},
    options::{IndexOptions, ReturnDocument},
    Collection, Database, IndexModel,
};

use super::{bounded, error::duplicate_positions, indexes, Store, StoreError};
use crate::{
    domain::Version,
    entity::{field, Entity, StoredDocument},
};

/// How often a version-conditioned write re-reads and tries again when other writers keep
/// getting in between, before giving up with [`StoreError::Contended`].
const WRITE_ATTEMPTS: usize = 8;

/// What a version-conditioned update or delete found, for every entity.
#[derive(Debug)]
pub enum Written<T> {
    /// Written: for an update the record before and after (the caller reconciles cached
    /// results from both), for a delete the record as it was.
    Done(T),
    NotFound,
    /// The caller expected another version; nothing was written.
    VersionMismatch {
        current: Version,
    },
}

/// What persisting a write-behind version found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persisted {
    /// MongoDB now holds the version.
    Written,
    /// MongoDB already held that version or a newer one: nothing was written (a replay, or a
    /// delivery that arrived after a newer one).
    AlreadyNewer,
}

/// An entity the store holds: where its collection's handle is.
pub trait Stored: Entity {
    fn records(store: &Store) -> &Records<Self>;
}

/// The operations on one entity's collection.
pub struct Records<E: Entity> {
    pub(super) database: Database,
    pub(super) collection: Collection<E::Document>,
    pub(super) timeout: Duration,
}

impl<E: Entity> Records<E> {
    pub(super) fn new(database: &Database, timeout: Duration) -> Self {
        Self {
            collection: database.collection(E::COLLECTION),
            database: database.clone(),
            timeout,
        }
    }

    /// Creates the indexes the descriptor declares that the collection lacks.
    pub(super) async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let wanted = E::INDEXES
            .iter()
            .map(|index| {
                let keys: Document = index
                    .keys
                    .iter()
                    .map(|key| ((*key).to_owned(), 1.into()))
                    .collect();
                let options = IndexOptions::builder()
                    .name(index.name.to_owned())
                    .unique(index.unique.then_some(true))
                    .build();
                IndexModel::builder().keys(keys).options(options).build()
            })
            .collect();
        indexes::ensure(&self.collection, wanted, indexes::timeout(self.timeout)).await
    }

    /// The records among `ids` that exist, in no particular order: one `$in` query.
    pub async fn find_many(&self, ids: &[E::Id]) -> Result<Vec<E>, StoreError> {
        let ids: Vec<ObjectId> = ids.iter().map(|&id| id.into()).collect();
        self.find(doc! { field::ID: { "$in": ids } }).await
    }

    /// The records matching `filter`.
    pub(super) async fn find(&self, filter: Document) -> Result<Vec<E>, StoreError> {
        self.find_stored(filter)
            .await?
            .into_iter()
            .map(from_stored)
            .collect()
    }

    /// The stored documents matching `filter`.
    pub(super) async fn find_stored(
        &self,
        filter: Document,
    ) -> Result<Vec<E::Document>, StoreError> {
        bounded(self.timeout, async {
            self.collection.find(filter).await?.try_collect().await
        })
        .await
    }

    /// Inserts `record` (a new record, at version 1); `Duplicate` when it takes a unique key.
    /// Returns it as stored.
    pub async fn insert(&self, record: &E) -> Result<E, StoreError> {
        let document = record.to_stored();
        bounded(self.timeout, self.collection.insert_one(&document)).await?;
        from_stored(document)
    }

    /// Inserts `documents` in one unordered bulk insert; returns the positions (ascending) a
    /// unique index refused, the others being inserted.
    pub(super) async fn insert_unordered(
        &self,
        documents: Vec<&E::Document>,
    ) -> Result<Vec<usize>, StoreError> {
        if documents.is_empty() {
            return Ok(Vec::new());
        }
        let inserted = tokio::time::timeout(
            self.timeout,
            self.collection
                .insert_many(documents)
                .ordered(false)
                .into_future(),
        )
        .await
        .map_err(|_elapsed| StoreError::TimedOut(self.timeout))?;
        let Err(error) = inserted else {
            return Ok(Vec::new());
        };
        let Some(mut refused) = duplicate_positions(&error) else {
            return Err(error.into());
        };
        refused.sort_unstable();
        Ok(refused)
    }

    /// Applies `update` (a MongoDB update document, which must increment `version`) to record
    /// `id`. It reads the record, then applies `update` only to the version it read, so that
    /// `before` is exactly the state the update replaced (the query-result cache needs both to
    /// find every result a write can affect). With `expected`, refuses any other version.
    /// Retried when another writer got in between; `Contended` if that keeps happening.
    pub(super) async fn update_conditioned(
        &self,
        id: E::Id,
        expected: Option<Version>,
        update: Document,
    ) -> Result<Written<(E, E)>, StoreError> {
        let id: ObjectId = id.into();
        for _ in 0..WRITE_ATTEMPTS {
            let found = bounded(
                self.timeout,
                self.collection.find_one(doc! { field::ID: id }),
            )
            .await?;
            let Some(before) = found else {
                return Ok(Written::NotFound);
            };
            let version = before.version();
            if expected.is_some_and(|expected| expected != version) {
                return Ok(Written::VersionMismatch { current: version });
            }
            let after = bounded(
                self.timeout,
                self.collection
                    .find_one_and_update(
                        doc! { field::ID: id, field::VERSION: version },
                        update.clone(),
                    )
                    .return_document(ReturnDocument::After),
            )
            .await?;
            if let Some(after) = after {
                return Ok(Written::Done((from_stored(before)?, from_stored(after)?)));
            }
        }
        Err(StoreError::Contended)
    }

    /// Deletes record `id` (only at `expected`, when given), returning it as it was.
    pub async fn delete(
        &self,
        id: E::Id,
        expected: Option<Version>,
    ) -> Result<Written<E>, StoreError> {
        let id: ObjectId = id.into();
        let mut filter = doc! { field::ID: id };
        if let Some(version) = expected {
            filter.insert(field::VERSION, version);
        }
        let deleted = bounded(self.timeout, self.collection.find_one_and_delete(filter)).await?;
        match deleted {
            Some(document) => Ok(Written::Done(from_stored(document)?)),
            None if expected.is_none() => Ok(Written::NotFound),
            None => self.missing_or_moved_on(id).await,
        }
    }

    /// After a delete at an expected version found nothing: whether the record is gone or
    /// at another version.
    async fn missing_or_moved_on<T>(&self, id: ObjectId) -> Result<Written<T>, StoreError> {
        let current = bounded(
            self.timeout,
            self.collection
                .clone_with_type::<Document>()
                .find_one(doc! { field::ID: id })
                .projection(doc! { field::VERSION: 1 }),
        )
        .await?;
        Ok(match current.and_then(|d| d.get_i64(field::VERSION).ok()) {
            Some(current) => Written::VersionMismatch { current },
            None => Written::NotFound,
        })
    }

    /// Persists a version of `record` the cache acknowledged (write-behind) unless MongoDB
    /// holds that version or a newer one: a replace guarded by version, or an insert when the
    /// record does not exist. Idempotent, so a change delivered twice or out of order never
    /// moves a record backwards (write-behind needs no more than at-least-once delivery).
    /// `Duplicate` when another record holds one of its unique keys.
    pub async fn persist(&self, record: &E) -> Result<Persisted, StoreError> {
        let document = record.to_stored();
        let (id, version) = (document.id(), document.version());
        for _ in 0..WRITE_ATTEMPTS {
            let replaced = bounded(
                self.timeout,
                self.collection.replace_one(
                    doc! { field::ID: id, field::VERSION: { "$lt": version } },
                    &document,
                ),
            )
            .await?;
            if replaced.matched_count == 1 {
                return Ok(Persisted::Written);
            }
            match bounded(self.timeout, self.collection.insert_one(&document)).await {
                Ok(_) => return Ok(Persisted::Written),
                Err(StoreError::Duplicate) => {
                    match bounded(
                        self.timeout,
                        self.collection.find_one(doc! { field::ID: id }),
                    )
                    .await?
                    {
                        Some(current) if current.version() >= version => {
                            return Ok(Persisted::AlreadyNewer)
                        }
                        // Inserted meanwhile at an older version: replace it.
                        Some(_) => continue,
                        // Another record holds one of this one's unique keys.
                        None => return Err(StoreError::Duplicate),
                    }
                }
                Err(error) => return Err(error),
            }
        }
        Err(StoreError::Contended)
    }

    /// Persists a delete the cache acknowledged: removes record `id` if MongoDB holds it at a
    /// version below `tombstone` (the deleted version + 1); a newer record under the same id
    /// stays.
    pub async fn remove_below(&self, id: E::Id, tombstone: Version) -> Result<(), StoreError> {
        let id: ObjectId = id.into();
        bounded(
            self.timeout,
            self.collection
                .delete_one(doc! { field::ID: id, field::VERSION: { "$lt": tombstone } }),
        )
        .await
        .map(drop)
    }
}

/// The record a stored document holds.
pub(super) fn from_stored<E: Entity>(document: E::Document) -> Result<E, StoreError> {
    E::from_stored(document).map_err(StoreError::from)
}
