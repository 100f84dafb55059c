//! The `books` collection: documents, indexes and the operations the datastore composes.
//!
//! Every write sets `updatedAt` and increments `version` in the same atomic update, and returns
//! the document as written, so the caller can put exactly that version in the cache.

use std::{collections::HashMap, future::IntoFuture, time::Duration};

use chrono::Utc;
use futures::TryStreamExt;
use mongodb::{
    bson::{doc, oid::ObjectId, Bson, DateTime, Document},
    options::IndexOptions,
    Collection, Database, IndexModel,
};
use serde::{Deserialize, Serialize};

use super::{
    bounded, error::duplicate_positions, indexes, persist_guarded, remove_guarded,
    update_conditioned, Conditioned, Persisted, StoreError, Versioned, Written,
};
use crate::domain::{
    Book, BookChanges, BookId, BookstoreId, LabelList, NewBook, PublishYear, SourceKey, Title,
    Version,
};

/// The collection's name: the one place it is written (the cache keys and metrics read it
/// through `CacheEntity::COLLECTION`).
pub const COLLECTION: &str = "books";

/// A book as stored in MongoDB.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BookDocument {
    #[serde(rename = "_id")]
    id: ObjectId,
    source_key: String,
    title: String,
    #[serde(default)]
    authors: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    first_publish_year: Option<i32>,
    #[serde(default)]
    subjects: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bookstore_id: Option<ObjectId>,
    version: i64,
    updated_at: DateTime,
}

impl Versioned for BookDocument {
    fn version(&self) -> i64 {
        self.version
    }
}

impl BookDocument {
    fn new(id: ObjectId, book: &NewBook, version: Version) -> Self {
        Self {
            id,
            source_key: book.source_key.as_str().to_owned(),
            title: book.title.as_str().to_owned(),
            authors: book.authors.to_strings(),
            first_publish_year: book.first_publish_year.map(PublishYear::get),
            subjects: book.subjects.to_strings(),
            bookstore_id: None,
            version,
            updated_at: DateTime::from_chrono(Utc::now()),
        }
    }
}

impl From<&Book> for BookDocument {
    fn from(book: &Book) -> Self {
        Self {
            id: book.id.object_id(),
            source_key: book.source_key.as_str().to_owned(),
            title: book.title.as_str().to_owned(),
            authors: book.authors.to_strings(),
            first_publish_year: book.first_publish_year.map(PublishYear::get),
            subjects: book.subjects.to_strings(),
            bookstore_id: book.bookstore_id.map(|id| id.object_id()),
            version: book.version,
            updated_at: DateTime::from_chrono(book.updated_at),
        }
    }
}

/// The document MongoDB stores for `book`: what query filters evaluate on.
pub fn stored_document(book: &Book) -> Document {
    mongodb::bson::to_document(&BookDocument::from(book)).expect("a book serialises to BSON")
}

/// A book from a stored document (as a query returned it).
pub fn from_stored(document: Document) -> Result<Book, StoreError> {
    let id = document
        .get_object_id("_id")
        .map(|id| id.to_hex())
        .unwrap_or_default();
    let document: BookDocument =
        mongodb::bson::from_document(document).map_err(|e| StoreError::Corrupt {
            id,
            reason: e.to_string(),
        })?;
    Book::try_from(document)
}

impl TryFrom<BookDocument> for Book {
    type Error = StoreError;

    fn try_from(document: BookDocument) -> Result<Self, Self::Error> {
        let id = document.id.to_hex();
        let corrupt = |reason: String| StoreError::Corrupt {
            id: id.clone(),
            reason,
        };
        Ok(Book {
            id: BookId::from_object_id(document.id),
            source_key: SourceKey::parse(&document.source_key)
                .map_err(|e| corrupt(e.to_string()))?,
            title: Title::parse(&document.title).map_err(|e| corrupt(e.to_string()))?,
            authors: LabelList::parse("authors", &document.authors, Book::MAX_AUTHORS)
                .map_err(|e| corrupt(e.to_string()))?,
            first_publish_year: document
                .first_publish_year
                .map(|year| PublishYear::parse(year.into()))
                .transpose()
                .map_err(|e| corrupt(e.to_string()))?,
            subjects: LabelList::parse("subjects", &document.subjects, Book::MAX_SUBJECTS)
                .map_err(|e| corrupt(e.to_string()))?,
            bookstore_id: document.bookstore_id.map(BookstoreId::from_object_id),
            version: document.version,
            updated_at: document.updated_at.to_chrono(),
        })
    }
}

/// What an update found.
/// What a batch upsert by source key did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UpsertSummary {
    pub inserted: usize,
    pub changed: usize,
    pub unchanged: usize,
}

/// The result of a batch upsert: the counts, the records it wrote (for the cache), and the id
/// of every record of the batch, in batch order.
#[derive(Debug, Default)]
pub struct Upserted {
    pub summary: UpsertSummary,
    /// Each record written, with the record it replaced (`None` for an insert).
    pub written: Vec<(Option<Book>, Book)>,
    pub ids: Vec<BookId>,
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

/// How a batch upsert finds the records that exist already.
#[derive(Debug, Clone, Copy)]
enum Lookup {
    /// By the ids derived from the batch's source keys (fast).
    DerivedId,
    /// By source key: also finds records stored under other ids.
    SourceKey,
}

/// One pass of a batch upsert; `lost_races` are the batch positions whose key turned out to
/// exist (inserted by another writer, or earlier in the same batch) and need another pass.
#[derive(Default)]
struct UpsertPass {
    summary: UpsertSummary,
    written: Vec<(Option<Book>, Book)>,
    ids_by_key: HashMap<String, BookId>,
    lost_races: Vec<usize>,
}

/// The operations on the `books` collection.
pub struct BookStore {
    database: Database,
    collection: Collection<BookDocument>,
    timeout: Duration,
}

impl BookStore {
    pub(super) fn new(database: Database, timeout: Duration) -> Self {
        Self {
            collection: database.collection(COLLECTION),
            database,
            timeout,
        }
    }

    pub(super) async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let named = |name: &str| IndexOptions::builder().name(name.to_owned());
        let wanted = vec![
            IndexModel::builder()
                .keys(doc! { "sourceKey": 1 })
                .options(named("sourceKey_unique").unique(true).build())
                .build(),
            // One index per list query the API offers, each serving the query's filter and its
            // order (title, then `_id`): a page reads its rows and nothing else.
            IndexModel::builder()
                .keys(doc! { "title": 1, "_id": 1 })
                .options(named("title_id").build())
                .build(),
            IndexModel::builder()
                .keys(doc! { "authors": 1, "title": 1, "_id": 1 })
                .options(named("authors_title_id").build())
                .build(),
            IndexModel::builder()
                .keys(doc! { "subjects": 1, "title": 1, "_id": 1 })
                .options(named("subjects_title_id").build())
                .build(),
            IndexModel::builder()
                .keys(doc! { "bookstoreId": 1, "title": 1, "_id": 1 })
                .options(named("bookstoreId_title_id").build())
                .build(),
        ];
        indexes::ensure(&self.collection, wanted, indexes::timeout(self.timeout)).await
    }

    /// The books among `ids` that exist, in no particular order: one `$in` query.
    pub async fn find_many(&self, ids: &[BookId]) -> Result<Vec<Book>, StoreError> {
        let ids: Vec<ObjectId> = ids.iter().map(BookId::object_id).collect();
        let documents: Vec<BookDocument> = bounded(self.timeout, async {
            self.collection
                .find(doc! { "_id": { "$in": ids } })
                .await?
                .try_collect()
                .await
        })
        .await?;
        documents.into_iter().map(Book::try_from).collect()
    }

    /// Inserts a new book at version 1.
    pub async fn insert(&self, book: &NewBook) -> Result<Book, StoreError> {
        let document = BookDocument::new(id_for(&book.source_key), book, 1);
        bounded(self.timeout, self.collection.insert_one(&document)).await?;
        Book::try_from(document)
    }

    /// Applies `changes` (only to version `expected`, when given) and increments the version;
    /// returns the record before and after (see `update_conditioned`).
    pub async fn update(
        &self,
        id: BookId,
        changes: &BookChanges,
        expected: Option<Version>,
    ) -> Result<Written<(Book, Book)>, StoreError> {
        let update = update_document(changes);
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
                Written::Done((Book::try_from(before)?, Book::try_from(after)?))
            }
            Conditioned::NotFound => Written::NotFound,
            Conditioned::VersionMismatch { current } => Written::VersionMismatch { current },
        })
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
        let held: Vec<BookDocument> = bounded(self.timeout, async {
            self.collection
                .find(doc! { "bookstoreId": from.object_id() })
                .await?
                .try_collect()
                .await
        })
        .await?;
        let ids: Vec<ObjectId> = held.iter().map(|d| d.id).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Only books still in `from`, each at the version read: a concurrent write wins.
        let still_held = |document: &BookDocument| {
            doc! {
                "_id": document.id, "version": document.version, "bookstoreId": from.object_id(),
            }
        };
        let Some(to) = to else {
            let filters: Vec<Document> = held.iter().map(still_held).collect();
            let deletes: Vec<Document> = filters
                .into_iter()
                .map(|q| doc! { "q": q, "limit": 1 })
                .collect();
            let command = doc! { "delete": COLLECTION, "deletes": deletes, "ordered": false };
            bounded(self.timeout, self.database.run_command(command)).await?;
            let remaining: Vec<ObjectId> = self.find_ids(&ids).await?;
            return held
                .into_iter()
                .filter(|d| !remaining.contains(&d.id))
                .map(|d| Ok((Book::try_from(d)?, None)))
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
        let command = doc! { "update": COLLECTION, "updates": updates, "ordered": false };
        bounded(self.timeout, self.database.run_command(command)).await?;
        let after: HashMap<ObjectId, BookDocument> = bounded(self.timeout, async {
            self.collection
                .find(doc! { "_id": { "$in": &ids } })
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?
        .into_iter()
        .map(|d| (d.id, d))
        .collect();
        held.into_iter()
            .filter_map(|before| {
                let after = after.get(&before.id)?;
                let ours = after.version == before.version + 1
                    && after.bookstore_id == Some(to.object_id());
                ours.then(|| {
                    Ok((
                        Book::try_from(before)?,
                        Some(Book::try_from(after.clone())?),
                    ))
                })
            })
            .collect()
    }

    async fn find_ids(&self, ids: &[ObjectId]) -> Result<Vec<ObjectId>, StoreError> {
        let found: Vec<Document> = bounded(self.timeout, async {
            self.collection
                .clone_with_type::<Document>()
                .find(doc! { "_id": { "$in": ids } })
                .projection(doc! { "_id": 1 })
                .await?
                .try_collect()
                .await
        })
        .await?;
        Ok(found
            .iter()
            .filter_map(|d| d.get_object_id("_id").ok())
            .collect())
    }

    /// How many books `bookstore` holds.
    /// The ids of the books in `bookstore`.
    pub async fn ids_in_store(&self, bookstore: BookstoreId) -> Result<Vec<BookId>, StoreError> {
        let documents: Vec<Document> = bounded(self.timeout, async {
            self.database
                .collection::<Document>(COLLECTION)
                .find(doc! { "bookstoreId": bookstore.object_id() })
                .projection(doc! { "_id": 1 })
                .await?
                .try_collect()
                .await
        })
        .await?;
        Ok(documents
            .iter()
            .filter_map(|document| document.get_object_id("_id").ok())
            .map(BookId::from_object_id)
            .collect())
    }

    pub async fn count_in_store(&self, bookstore: BookstoreId) -> Result<u64, StoreError> {
        bounded(
            self.timeout,
            self.collection
                .count_documents(doc! { "bookstoreId": bookstore.object_id() }),
        )
        .await
    }

    /// The id a new book with this source key gets (see `id_for`).
    pub fn id_for(source_key: &SourceKey) -> BookId {
        BookId::from_object_id(id_for(source_key))
    }

    /// The book with this source key, if any (by the unique index).
    pub async fn find_by_source_key(&self, key: &SourceKey) -> Result<Option<Book>, StoreError> {
        bounded(
            self.timeout,
            self.collection.find_one(doc! { "sourceKey": key.as_str() }),
        )
        .await?
        .map(Book::try_from)
        .transpose()
    }

    /// Persists a version of `book` the cache acknowledged (write-behind), unless MongoDB holds
    /// it or a newer one already.
    pub async fn persist(&self, book: &Book) -> Result<Persisted, StoreError> {
        persist_guarded(
            &self.collection,
            book.id.object_id(),
            book.version,
            &BookDocument::from(book),
            self.timeout,
        )
        .await
    }

    /// Persists a delete the cache acknowledged: removes the book if MongoDB holds it below
    /// `tombstone`.
    pub async fn remove_below(&self, id: BookId, tombstone: Version) -> Result<(), StoreError> {
        remove_guarded(&self.collection, id.object_id(), tombstone, self.timeout).await
    }

    /// Deletes a book, returning it as it was.
    pub async fn delete(&self, id: BookId) -> Result<Option<Book>, StoreError> {
        let deleted = bounded(
            self.timeout,
            self.collection
                .find_one_and_delete(doc! { "_id": id.object_id() }),
        )
        .await?;
        deleted.map(Book::try_from).transpose()
    }

    /// Inserts the books whose source key is new and updates those whose content changed,
    /// leaving unchanged ones (and their versions) alone: re-running the same batch writes
    /// nothing. A handful of round trips per batch whatever its size: read the existing records,
    /// one unordered bulk insert, one unordered bulk update keyed by `_id`, read back what was
    /// written. A key another writer inserted between our read and our insert is retried once,
    /// as an update.
    ///
    /// With `stock`, every book of the batch is also put in that bookstore, in the same write.
    pub async fn upsert_by_source_key(
        &self,
        books: &[NewBook],
        stock: Option<BookstoreId>,
    ) -> Result<Upserted, StoreError> {
        // Insert first: a new book costs one bulk insert and no lookup (a lookup of a batch
        // may scan the collection on some servers). The unique indexes refuse those that exist.
        let mut upserted = self.insert_new(books, stock).await?;
        let mut rest: Vec<NewBook> = upserted
            .lost_races
            .drain(..)
            .map(|i| books[i].clone())
            .collect();
        // Then compare and update what exists: by derived id, then by source key for what
        // that did not find (a record stored under another id, a race).
        for by in [Lookup::DerivedId, Lookup::SourceKey] {
            if rest.is_empty() {
                break;
            }
            let pass = self.upsert_once(&rest, stock, by).await?;
            upserted.summary.inserted += pass.summary.inserted;
            upserted.summary.changed += pass.summary.changed;
            upserted.summary.unchanged += pass.summary.unchanged;
            upserted.written.extend(pass.written);
            upserted.ids_by_key.extend(pass.ids_by_key);
            rest = pass.lost_races.iter().map(|&i| rest[i].clone()).collect();
        }
        if !rest.is_empty() {
            return Err(StoreError::Duplicate);
        }
        let ids = books
            .iter()
            .filter_map(|book| upserted.ids_by_key.get(book.source_key.as_str()).copied())
            .collect();
        Ok(Upserted {
            summary: upserted.summary,
            written: upserted.written,
            ids,
        })
    }

    /// Inserts every book of the batch (the first occurrence of each key) in one unordered bulk
    /// insert; `lost_races` are the batch positions that were refused or repeated.
    async fn insert_new(
        &self,
        books: &[NewBook],
        stock: Option<BookstoreId>,
    ) -> Result<UpsertPass, StoreError> {
        let mut pass = UpsertPass::default();
        let mut inserts: Vec<(usize, BookDocument)> = Vec::new();
        for (index, book) in books.iter().enumerate() {
            let key = book.source_key.as_str();
            if pass.ids_by_key.contains_key(key) {
                pass.lost_races.push(index);
                continue;
            }
            let mut document = BookDocument::new(id_for(&book.source_key), book, 1);
            document.bookstore_id = stock.map(|store| store.object_id());
            pass.ids_by_key
                .insert(key.to_owned(), BookId::from_object_id(document.id));
            inserts.push((index, document));
        }
        if inserts.is_empty() {
            return Ok(pass);
        }
        let inserted = tokio::time::timeout(
            self.timeout,
            self.collection
                .insert_many(inserts.iter().map(|(_, document)| document))
                .ordered(false)
                .into_future(),
        )
        .await
        .map_err(|_elapsed| StoreError::TimedOut(self.timeout))?;
        if let Err(error) = inserted {
            let Some(mut refused) = duplicate_positions(&error) else {
                return Err(error.into());
            };
            refused.sort_unstable();
            for position in refused.iter().rev() {
                let (index, document) = inserts.remove(*position);
                pass.lost_races.push(index);
                pass.ids_by_key.remove(document.source_key.as_str());
            }
        }
        pass.lost_races.sort_unstable();
        pass.summary.inserted = inserts.len();
        for (_, document) in inserts {
            pass.written.push((None, Book::try_from(document)?));
        }
        Ok(pass)
    }

    async fn upsert_once(
        &self,
        books: &[NewBook],
        stock: Option<BookstoreId>,
        by: Lookup,
    ) -> Result<UpsertPass, StoreError> {
        let filter = match by {
            Lookup::DerivedId => {
                let ids: Vec<ObjectId> = books.iter().map(|b| id_for(&b.source_key)).collect();
                doc! { "_id": { "$in": ids } }
            }
            Lookup::SourceKey => {
                let keys: Vec<&str> = books.iter().map(|b| b.source_key.as_str()).collect();
                doc! { "sourceKey": { "$in": keys } }
            }
        };
        let existing: HashMap<String, BookDocument> = bounded(self.timeout, async {
            self.collection
                .find(filter)
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?
        .into_iter()
        .map(|document| (document.source_key.clone(), document))
        .collect();

        let mut pass = UpsertPass::default();
        let mut inserts: Vec<(usize, BookDocument)> = Vec::new();
        let mut updates = Vec::new();
        for (index, book) in books.iter().enumerate() {
            let key = book.source_key.as_str();
            match existing.get(key) {
                // A key twice in one batch: the first occurrence is inserted, the second
                // goes round again as an update.
                None if pass.ids_by_key.contains_key(key) => pass.lost_races.push(index),
                None => {
                    let mut document = BookDocument::new(id_for(&book.source_key), book, 1);
                    document.bookstore_id = stock.map(|store| store.object_id());
                    pass.ids_by_key
                        .insert(key.to_owned(), BookId::from_object_id(document.id));
                    inserts.push((index, document));
                }
                Some(current) => {
                    pass.ids_by_key
                        .insert(key.to_owned(), BookId::from_object_id(current.id));
                    if same_content(current, book, stock) {
                        pass.summary.unchanged += 1;
                    } else {
                        pass.summary.changed += 1;
                        updates.push(doc! {
                            // Matching the version read above makes a concurrent writer win
                            // rather than be overwritten with stale content.
                            "q": { "_id": current.id, "version": current.version },
                            "u": update_document(&changes_from(book, stock)),
                        });
                    }
                }
            }
        }
        pass.summary.inserted = inserts.len();
        // Only updated records are read back: an inserted one is exactly the document sent.
        let updated_ids: Vec<ObjectId> = updates
            .iter()
            .filter_map(|u| u.get_document("q").ok()?.get_object_id("_id").ok())
            .collect();

        if !inserts.is_empty() {
            let documents = inserts.iter().map(|(_, document)| document);
            let inserted = tokio::time::timeout(
                self.timeout,
                self.collection
                    .insert_many(documents)
                    .ordered(false)
                    .into_future(),
            )
            .await
            .map_err(|_elapsed| StoreError::TimedOut(self.timeout))?;
            if let Err(error) = inserted {
                let Some(mut lost) = duplicate_positions(&error) else {
                    return Err(error.into());
                };
                lost.sort_unstable();
                pass.summary.inserted -= lost.len();
                for position in lost.iter().rev() {
                    let (index, document) = inserts.remove(*position);
                    pass.lost_races.push(index);
                    pass.ids_by_key.remove(document.source_key.as_str());
                }
            }
            for (_, document) in inserts {
                pass.written.push((None, Book::try_from(document)?));
            }
        }
        if !updates.is_empty() {
            let command = doc! { "update": COLLECTION, "updates": updates, "ordered": false };
            bounded(self.timeout, self.database.run_command(command)).await?;
            let written: Vec<BookDocument> = bounded(self.timeout, async {
                self.collection
                    .find(doc! { "_id": { "$in": updated_ids } })
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
            let mut replaced: HashMap<ObjectId, BookDocument> = existing
                .into_values()
                .map(|document| (document.id, document))
                .collect();
            for after in written {
                let before = replaced.remove(&after.id).map(Book::try_from).transpose()?;
                pass.written.push((before, Book::try_from(after)?));
            }
        }
        Ok(pass)
    }
}

/// The `$set`/`$inc` update for `changes`: the version moves with every write.
fn update_document(changes: &BookChanges) -> Document {
    let mut set = doc! { "updatedAt": DateTime::from_chrono(Utc::now()) };
    let mut unset = Document::new();
    if let Some(title) = &changes.title {
        set.insert("title", title.as_str());
    }
    if let Some(authors) = &changes.authors {
        set.insert("authors", authors.to_strings());
    }
    match changes.first_publish_year {
        Some(Some(year)) => {
            set.insert("firstPublishYear", year.get());
        }
        Some(None) => {
            unset.insert("firstPublishYear", Bson::Null);
        }
        None => {}
    }
    if let Some(subjects) = &changes.subjects {
        set.insert("subjects", subjects.to_strings());
    }
    match changes.bookstore_id {
        Some(Some(bookstore)) => {
            set.insert("bookstoreId", bookstore.object_id());
        }
        Some(None) => {
            unset.insert("bookstoreId", Bson::Null);
        }
        None => {}
    }
    let mut update = doc! { "$set": set, "$inc": { "version": 1_i64 } };
    if !unset.is_empty() {
        update.insert("$unset", unset);
    }
    update
}

/// The update that makes a stored book say what `book` says (and, given `stock`, puts it in
/// that store).
fn changes_from(book: &NewBook, stock: Option<BookstoreId>) -> BookChanges {
    BookChanges {
        title: Some(book.title.clone()),
        authors: Some(book.authors.clone()),
        first_publish_year: Some(book.first_publish_year),
        subjects: Some(book.subjects.clone()),
        bookstore_id: stock.map(Some),
    }
}

fn same_content(current: &BookDocument, book: &NewBook, stock: Option<BookstoreId>) -> bool {
    stock.is_none_or(|store| current.bookstore_id == Some(store.object_id()))
        && current.title == book.title.as_str()
        && current.authors == book.authors.to_strings()
        && current.first_publish_year == book.first_publish_year.map(PublishYear::get)
        && current.subjects == book.subjects.to_strings()
}
