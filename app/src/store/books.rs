//! The `books` collection: documents, indexes and the operations the datastore composes.
//!
//! Every write sets `updatedAt` and increments `version` in the same atomic update, and returns
//! the document as written, so the caller can put exactly that version in the cache.

use std::{collections::HashMap, time::Duration};

use chrono::Utc;
use futures::TryStreamExt;
use mongodb::{
    bson::{doc, oid::ObjectId, Bson, DateTime, Document},
    options::{IndexOptions, ReturnDocument},
    Collection, Database, IndexModel,
};
use serde::{Deserialize, Serialize};

use super::{bounded, indexes, StoreError};
use crate::domain::{
    Book, BookChanges, BookId, BookstoreId, LabelList, NewBook, PublishYear, SourceKey, Title,
    Version,
};

const COLLECTION: &str = "books";

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
#[derive(Debug)]
pub enum UpdateOutcome {
    Updated(Book),
    NotFound,
    /// The caller expected another version; nothing was written.
    VersionMismatch {
        current: Version,
    },
}

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
    pub written: Vec<Book>,
    pub ids: Vec<BookId>,
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
            IndexModel::builder()
                .keys(doc! { "bookstoreId": 1 })
                .options(named("bookstoreId").build())
                .build(),
        ];
        indexes::ensure(&self.collection, wanted, self.timeout).await
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
        let document = BookDocument::new(ObjectId::new(), book, 1);
        bounded(self.timeout, self.collection.insert_one(&document)).await?;
        Book::try_from(document)
    }

    /// Applies `changes` and increments the version, atomically; with `expected` set, only if
    /// the stored version is still that one.
    pub async fn update(
        &self,
        id: BookId,
        changes: &BookChanges,
        expected: Option<Version>,
    ) -> Result<UpdateOutcome, StoreError> {
        let mut filter = doc! { "_id": id.object_id() };
        if let Some(version) = expected {
            filter.insert("version", version);
        }
        let update = update_document(changes);
        let updated = bounded(
            self.timeout,
            self.collection
                .find_one_and_update(filter, update)
                .return_document(ReturnDocument::After),
        )
        .await?;
        match updated {
            Some(document) => Ok(UpdateOutcome::Updated(Book::try_from(document)?)),
            None if expected.is_none() => Ok(UpdateOutcome::NotFound),
            None => Ok(match self.current_version(id).await? {
                Some(current) => UpdateOutcome::VersionMismatch { current },
                None => UpdateOutcome::NotFound,
            }),
        }
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
    /// nothing. Three round trips per batch whatever its size: read the existing records, one
    /// unordered bulk write, read back what was written.
    pub async fn upsert_by_source_key(&self, books: &[NewBook]) -> Result<Upserted, StoreError> {
        let keys: Vec<&str> = books.iter().map(|b| b.source_key.as_str()).collect();
        let existing: HashMap<String, BookDocument> = bounded(self.timeout, async {
            self.collection
                .find(doc! { "sourceKey": { "$in": &keys } })
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?
        .into_iter()
        .map(|document| (document.source_key.clone(), document))
        .collect();

        let mut summary = UpsertSummary::default();
        let mut statements = Vec::new();
        for book in books {
            let statement = match existing.get(book.source_key.as_str()) {
                None => {
                    summary.inserted += 1;
                    let document = BookDocument::new(ObjectId::new(), book, 1);
                    doc! {
                        "q": { "sourceKey": book.source_key.as_str() },
                        "u": { "$setOnInsert": mongodb::bson::to_document(&document)
                            .map_err(|e| StoreError::Corrupt { id: document.id.to_hex(), reason: e.to_string() })? },
                        "upsert": true,
                    }
                }
                Some(current) if same_content(current, book) => {
                    summary.unchanged += 1;
                    continue;
                }
                Some(current) => {
                    summary.changed += 1;
                    doc! {
                        // Matching the version read above makes a concurrent writer win
                        // rather than be overwritten with stale content.
                        "q": { "_id": current.id, "version": current.version },
                        "u": update_document(&changes_from(book)),
                    }
                }
            };
            statements.push(statement);
        }
        let ids_of = |written: &[Book]| -> Vec<BookId> {
            books
                .iter()
                .filter_map(|book| {
                    let key = book.source_key.as_str();
                    written
                        .iter()
                        .find(|w| w.source_key.as_str() == key)
                        .map(|w| w.id)
                        .or_else(|| existing.get(key).map(|d| BookId::from_object_id(d.id)))
                })
                .collect()
        };
        if statements.is_empty() {
            let ids = ids_of(&[]);
            return Ok(Upserted {
                summary,
                written: Vec::new(),
                ids,
            });
        }
        let command = doc! {
            "update": COLLECTION,
            "updates": statements,
            "ordered": false,
        };
        bounded(self.timeout, self.database.run_command(command)).await?;

        let written_keys: Vec<&str> = books
            .iter()
            .filter(|book| {
                existing
                    .get(book.source_key.as_str())
                    .is_none_or(|current| !same_content(current, book))
            })
            .map(|book| book.source_key.as_str())
            .collect();
        let written: Vec<BookDocument> = bounded(self.timeout, async {
            self.collection
                .find(doc! { "sourceKey": { "$in": written_keys } })
                .await?
                .try_collect()
                .await
        })
        .await?;
        let written = written
            .into_iter()
            .map(Book::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let ids = ids_of(&written);
        Ok(Upserted {
            summary,
            written,
            ids,
        })
    }

    async fn current_version(&self, id: BookId) -> Result<Option<Version>, StoreError> {
        let found = bounded(
            self.timeout,
            self.collection
                .clone_with_type::<Document>()
                .find_one(doc! { "_id": id.object_id() })
                .projection(doc! { "version": 1 }),
        )
        .await?;
        Ok(found.and_then(|document| document.get_i64("version").ok()))
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
    let mut update = doc! { "$set": set, "$inc": { "version": 1_i64 } };
    if !unset.is_empty() {
        update.insert("$unset", unset);
    }
    update
}

fn changes_from(book: &NewBook) -> BookChanges {
    BookChanges {
        title: Some(book.title.clone()),
        authors: Some(book.authors.clone()),
        first_publish_year: Some(book.first_publish_year),
        subjects: Some(book.subjects.clone()),
    }
}

fn same_content(current: &BookDocument, book: &NewBook) -> bool {
    current.title == book.title.as_str()
        && current.authors == book.authors.to_strings()
        && current.first_publish_year == book.first_publish_year.map(PublishYear::get)
        && current.subjects == book.subjects.to_strings()
}
