//! What the `books` collection does beyond the generic [`Records`] (find, insert, conditioned
//! update and delete, write-behind's guarded writes): the update document of a
//! [`BookChanges`], the source key (unique, and the seed of a book's id), the relation to
//! bookstores (the books a store holds, emptying a store), and the batch upsert of ingest
//! (`upsert.rs`).

mod upsert;

use std::collections::HashMap;

use chrono::Utc;
use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};

use super::{bounded, records::from_stored, Records, Store, StoreError, Stored, Written};
use crate::{
    domain::{Book, BookChanges, BookId, BookstoreId, SourceKey, Version},
    entity::{
        book::{field, BookDocument},
        Entity,
    },
};

pub use upsert::{UpsertSummary, Upserted};

/// The operations on the `books` collection.
pub type BookStore = Records<Book>;

impl Stored for Book {
    fn records(store: &Store) -> &Records<Self> {
        store.books()
    }
}

/// The `_id` of the book with this source key: the first 12 bytes of its SHA-1. Deriving it
/// lets a batch upsert find the existing records of a batch by `_id` (the primary key on every
/// server, where a `sourceKey` lookup may scan) and makes two ingests of one work agree on its id.
/// The unique index on `sourceKey` stays the rule.
fn id_for(source_key: &SourceKey) -> ObjectId {
    let digest = sha1_smol::Sha1::from(source_key.as_str()).digest().bytes();
    let mut bytes = [0u8; 12];
    bytes.copy_from_slice(&digest[..12]);
    ObjectId::from_bytes(bytes)
}

impl Records<Book> {
    /// Applies `changes` (only to version `expected`, when given) and increments the version;
    /// returns the record before and after (see [`Records::update_conditioned`]).
    pub async fn update(
        &self,
        id: BookId,
        changes: &BookChanges,
        expected: Option<Version>,
    ) -> Result<Written<(Book, Book)>, StoreError> {
        self.update_conditioned(id, expected, update_document(changes))
            .await
    }

    /// The id a new book with this source key gets (see `id_for`).
    pub fn id_for(source_key: &SourceKey) -> BookId {
        BookId::from_object_id(id_for(source_key))
    }

    /// The book with this source key, if any (by the unique index).
    pub async fn find_by_source_key(&self, key: &SourceKey) -> Result<Option<Book>, StoreError> {
        Ok(self
            .find(doc! { field::SOURCE_KEY: key.as_str() })
            .await?
            .pop())
    }

    /// The ids of the books in `bookstore`.
    pub async fn ids_in_store(&self, bookstore: BookstoreId) -> Result<Vec<BookId>, StoreError> {
        let held = doc! { field::BOOKSTORE_ID: bookstore.object_id() };
        Ok(self
            .find_ids(held)
            .await?
            .into_iter()
            .map(BookId::from_object_id)
            .collect())
    }

    /// How many books `bookstore` holds.
    pub async fn count_in_store(&self, bookstore: BookstoreId) -> Result<u64, StoreError> {
        bounded(
            self.timeout,
            self.collection
                .count_documents(doc! { field::BOOKSTORE_ID: bookstore.object_id() }),
        )
        .await
    }

    /// Moves every book of `from` to `to` (`None`: deletes them instead), returning each book
    /// this call changed, before and after. Two round trips besides reading the books: one
    /// bulk write, one read back. A book another writer changed meanwhile keeps that writer's
    /// state and is not returned.
    pub async fn empty_store(
        &self,
        from: BookstoreId,
        to: Option<BookstoreId>,
    ) -> Result<Vec<(Book, Option<Book>)>, StoreError> {
        let held = self
            .find_stored(doc! { field::BOOKSTORE_ID: from.object_id() })
            .await?;
        let ids: Vec<ObjectId> = held.iter().map(|d| d.id).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Only books still in `from`, each at the version read: a concurrent write wins.
        let still_held = |document: &BookDocument| {
            doc! {
                field::ID: document.id,
                field::VERSION: document.version,
                field::BOOKSTORE_ID: from.object_id(),
            }
        };
        let Some(to) = to else {
            let deletes: Vec<Document> = held
                .iter()
                .map(|d| doc! { "q": still_held(d), "limit": 1 })
                .collect();
            self.bulk("delete", deletes).await?;
            let remaining = self.find_ids(doc! { field::ID: { "$in": &ids } }).await?;
            return held
                .into_iter()
                .filter(|d| !remaining.contains(&d.id))
                .map(|d| Ok((from_stored(d)?, None)))
                .collect();
        };
        let changes = BookChanges {
            bookstore_id: Some(Some(to)),
            ..BookChanges::default()
        };
        let update = update_document(&changes);
        let updates: Vec<Document> = held
            .iter()
            .map(|d| doc! { "q": still_held(d), "u": update.clone() })
            .collect();
        self.bulk("update", updates).await?;
        let after: HashMap<ObjectId, BookDocument> = self
            .find_stored(doc! { field::ID: { "$in": &ids } })
            .await?
            .into_iter()
            .map(|d| (d.id, d))
            .collect();
        held.into_iter()
            .filter_map(|before| {
                let after = after.get(&before.id)?;
                let ours = after.version == before.version + 1
                    && after.bookstore_id == Some(to.object_id());
                ours.then(|| Ok((from_stored(before)?, Some(from_stored(after.clone())?))))
            })
            .collect()
    }

    /// The ids of the books matching `filter` (reading nothing else).
    async fn find_ids(&self, filter: Document) -> Result<Vec<ObjectId>, StoreError> {
        let found: Vec<Document> = bounded(self.timeout, async {
            futures::TryStreamExt::try_collect(
                self.collection
                    .clone_with_type::<Document>()
                    .find(filter)
                    .projection(doc! { field::ID: 1 })
                    .await?,
            )
            .await
        })
        .await?;
        Ok(found
            .iter()
            .filter_map(|d| d.get_object_id(field::ID).ok())
            .collect())
    }

    /// Sends one unordered bulk `update` or `delete` command with `statements`.
    async fn bulk(&self, kind: &str, statements: Vec<Document>) -> Result<(), StoreError> {
        let statements_field = format!("{kind}s");
        let command = doc! {
            kind: Book::COLLECTION, statements_field: statements, "ordered": false,
        };
        bounded(self.timeout, self.database.run_command(command))
            .await
            .map(drop)
    }
}

/// The `$set`/`$inc` update for `changes`: the version moves with every write.
fn update_document(changes: &BookChanges) -> Document {
    let mut set = doc! { field::UPDATED_AT: DateTime::from_chrono(Utc::now()) };
    let mut unset = Document::new();
    if let Some(title) = &changes.title {
        set.insert(field::TITLE, title.as_str());
    }
    if let Some(authors) = &changes.authors {
        set.insert(field::AUTHORS, authors.to_strings());
    }
    if let Some(author_ids) = &changes.author_ids {
        let ids: Vec<ObjectId> = author_ids.iter().map(|id| id.object_id()).collect();
        set.insert(field::AUTHOR_IDS, ids);
    }
    match changes.first_publish_year {
        Some(Some(year)) => {
            set.insert(field::FIRST_PUBLISH_YEAR, year.get());
        }
        Some(None) => {
            unset.insert(field::FIRST_PUBLISH_YEAR, Bson::Null);
        }
        None => {}
    }
    if let Some(subjects) = &changes.subjects {
        set.insert(field::SUBJECTS, subjects.to_strings());
    }
    match changes.bookstore_id {
        Some(Some(bookstore)) => {
            set.insert(field::BOOKSTORE_ID, bookstore.object_id());
        }
        Some(None) => {
            unset.insert(field::BOOKSTORE_ID, Bson::Null);
        }
        None => {}
    }
    let mut update = doc! { "$set": set, "$inc": { field::VERSION: 1_i64 } };
    if !unset.is_empty() {
        update.insert("$unset", unset);
    }
    update
}
