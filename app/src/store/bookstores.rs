//! The `bookstores` collection. A unique index on `nameKey` (the normalised name) makes the
//! name rule hold under concurrency: of two creates or renames to the same name, MongoDB
//! accepts one and refuses the other with a duplicate-key error.

use std::time::Duration;

use chrono::Utc;
use futures::TryStreamExt;
use mongodb::{
    bson::{doc, oid::ObjectId, DateTime, Document},
    options::IndexOptions,
    Collection, IndexModel,
};
use serde::{Deserialize, Serialize};

use super::{
    bounded, indexes, persist_guarded, remove_guarded, update_conditioned, Conditioned, Persisted,
    StoreError, Versioned, Written,
};
use crate::domain::{
    Bookstore, BookstoreChanges, BookstoreId, BookstoreName, Label, NameKey, NewBookstore, Version,
};

/// The collection's name: the one place it is written (the cache keys and metrics read it
/// through `CacheEntity::COLLECTION`).
pub const COLLECTION: &str = "bookstores";

/// A bookstore as stored in MongoDB.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BookstoreDocument {
    #[serde(rename = "_id")]
    id: ObjectId,
    name: String,
    name_key: String,
    city: String,
    version: i64,
    updated_at: DateTime,
}

impl From<&Bookstore> for BookstoreDocument {
    fn from(bookstore: &Bookstore) -> Self {
        Self {
            id: bookstore.id.object_id(),
            name: bookstore.name.as_str().to_owned(),
            name_key: bookstore.name.key().as_str().to_owned(),
            city: bookstore.city.as_str().to_owned(),
            version: bookstore.version,
            updated_at: DateTime::from_chrono(bookstore.updated_at),
        }
    }
}

/// The document MongoDB stores for `bookstore`: what query filters evaluate on.
pub fn stored_document(bookstore: &Bookstore) -> Document {
    mongodb::bson::to_document(&BookstoreDocument::from(bookstore))
        .expect("a bookstore serialises to BSON")
}

/// A bookstore from a stored document (as a query returned it).
pub fn from_stored(document: Document) -> Result<Bookstore, StoreError> {
    let id = document
        .get_object_id("_id")
        .map(|id| id.to_hex())
        .unwrap_or_default();
    let document: BookstoreDocument =
        mongodb::bson::from_document(document).map_err(|e| StoreError::Corrupt {
            id,
            reason: e.to_string(),
        })?;
    Bookstore::try_from(document)
}

impl Versioned for BookstoreDocument {
    fn version(&self) -> i64 {
        self.version
    }
}

impl TryFrom<BookstoreDocument> for Bookstore {
    type Error = StoreError;

    fn try_from(document: BookstoreDocument) -> Result<Self, Self::Error> {
        let corrupt = |reason: String| StoreError::Corrupt {
            id: document.id.to_hex(),
            reason,
        };
        Ok(Bookstore {
            id: BookstoreId::from_object_id(document.id),
            name: BookstoreName::parse(&document.name).map_err(|e| corrupt(e.to_string()))?,
            city: Label::parse("city", &document.city).map_err(|e| corrupt(e.to_string()))?,
            version: document.version,
            updated_at: document.updated_at.to_chrono(),
        })
    }
}

/// The operations on the `bookstores` collection.
pub struct BookstoreStore {
    collection: Collection<BookstoreDocument>,
    timeout: Duration,
}

impl BookstoreStore {
    pub(super) fn new(database: &mongodb::Database, timeout: Duration) -> Self {
        Self {
            collection: database.collection(COLLECTION),
            timeout,
        }
    }

    pub(super) async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let named = |name: &str| IndexOptions::builder().name(name.to_owned());
        let wanted = vec![
            IndexModel::builder()
                .keys(doc! { "nameKey": 1 })
                .options(named("nameKey_unique").unique(true).build())
                .build(),
            // The list queries' order (normalised name, then `_id`), alone and within a city.
            IndexModel::builder()
                .keys(doc! { "nameKey": 1, "_id": 1 })
                .options(named("nameKey_id").build())
                .build(),
            IndexModel::builder()
                .keys(doc! { "city": 1, "nameKey": 1, "_id": 1 })
                .options(named("city_nameKey_id").build())
                .build(),
        ];
        indexes::ensure(&self.collection, wanted, indexes::timeout(self.timeout)).await
    }

    /// The bookstores among `ids` that exist: one `$in` query.
    pub async fn find_many(&self, ids: &[BookstoreId]) -> Result<Vec<Bookstore>, StoreError> {
        let ids: Vec<ObjectId> = ids.iter().map(BookstoreId::object_id).collect();
        self.find(doc! { "_id": { "$in": ids } }).await
    }

    /// The bookstore whose normalised name is `key`.
    pub async fn find_by_name_key(&self, key: &NameKey) -> Result<Option<Bookstore>, StoreError> {
        Ok(self
            .find(doc! { "nameKey": key.as_str() })
            .await?
            .into_iter()
            .next())
    }

    /// Inserts a bookstore at version 1; `Duplicate` when the name is taken.
    pub async fn insert(&self, new: &NewBookstore) -> Result<Bookstore, StoreError> {
        let document = BookstoreDocument {
            id: ObjectId::new(),
            name: new.name.as_str().to_owned(),
            name_key: new.name.key().as_str().to_owned(),
            city: new.city.as_str().to_owned(),
            version: 1,
            updated_at: DateTime::from_chrono(Utc::now()),
        };
        bounded(self.timeout, self.collection.insert_one(&document)).await?;
        Bookstore::try_from(document)
    }

    /// Persists a version of `bookstore` the cache acknowledged (write-behind), unless MongoDB
    /// holds it or a newer one already; `Duplicate` when another store holds its name.
    pub async fn persist(&self, bookstore: &Bookstore) -> Result<Persisted, StoreError> {
        persist_guarded(
            &self.collection,
            bookstore.id.object_id(),
            bookstore.version,
            &BookstoreDocument::from(bookstore),
            self.timeout,
        )
        .await
    }

    /// Persists a delete the cache acknowledged: removes the store if MongoDB holds it below
    /// `tombstone`.
    pub async fn remove_below(
        &self,
        id: BookstoreId,
        tombstone: Version,
    ) -> Result<(), StoreError> {
        remove_guarded(&self.collection, id.object_id(), tombstone, self.timeout).await
    }

    /// Applies `changes` and increments the version; `Duplicate` when a rename takes a name
    /// that is in use.
    pub async fn update(
        &self,
        id: BookstoreId,
        changes: &BookstoreChanges,
        expected: Option<Version>,
    ) -> Result<Written<(Bookstore, Bookstore)>, StoreError> {
        let mut set = doc! { "updatedAt": DateTime::from_chrono(Utc::now()) };
        if let Some(name) = &changes.name {
            set.insert("name", name.as_str());
            set.insert("nameKey", name.key().as_str());
        }
        if let Some(city) = &changes.city {
            set.insert("city", city.as_str());
        }
        let update = doc! { "$set": set, "$inc": { "version": 1_i64 } };
        let updated = update_conditioned(
            &self.collection,
            id.object_id(),
            expected,
            update,
            self.timeout,
        )
        .await?;
        Ok(match updated {
            Conditioned::Updated { before, after } => {
                Written::Done((Bookstore::try_from(before)?, Bookstore::try_from(after)?))
            }
            Conditioned::NotFound => Written::NotFound,
            Conditioned::VersionMismatch { current } => Written::VersionMismatch { current },
        })
    }

    /// Deletes a bookstore (only at `expected`, when given), returning it as it was.
    pub async fn delete(
        &self,
        id: BookstoreId,
        expected: Option<Version>,
    ) -> Result<Written<Bookstore>, StoreError> {
        let mut filter = doc! { "_id": id.object_id() };
        if let Some(version) = expected {
            filter.insert("version", version);
        }
        let deleted = bounded(self.timeout, self.collection.find_one_and_delete(filter)).await?;
        match deleted {
            Some(document) => Ok(Written::Done(Bookstore::try_from(document)?)),
            None => self.missing_or_moved_on(id, expected).await,
        }
    }

    async fn missing_or_moved_on<T>(
        &self,
        id: BookstoreId,
        expected: Option<Version>,
    ) -> Result<Written<T>, StoreError> {
        if expected.is_none() {
            return Ok(Written::NotFound);
        }
        let current = bounded(
            self.timeout,
            self.collection
                .clone_with_type::<Document>()
                .find_one(doc! { "_id": id.object_id() })
                .projection(doc! { "version": 1 }),
        )
        .await?;
        Ok(match current.and_then(|d| d.get_i64("version").ok()) {
            Some(current) => Written::VersionMismatch { current },
            None => Written::NotFound,
        })
    }

    async fn find(&self, filter: Document) -> Result<Vec<Bookstore>, StoreError> {
        let documents: Vec<BookstoreDocument> = bounded(self.timeout, async {
            self.collection.find(filter).await?.try_collect().await
        })
        .await?;
        documents.into_iter().map(Bookstore::try_from).collect()
    }
}
