//! Ingest's batch upsert by source key: insert the books that are new, update those whose
//! content changed, leave the rest (and their versions) alone, in a handful of round trips
//! whatever the batch's size.

use std::collections::HashMap;

use mongodb::bson::{doc, oid::ObjectId};

use super::{field, id_for, update_document};
use crate::{
    domain::{AuthorId, Book, BookChanges, BookId, BookstoreId, NewBook, PublishYear},
    entity::book::BookDocument,
    store::{records::from_stored, Records, StoreError},
};

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

impl UpsertPass {
    /// Adds book `index` of the batch to `inserts` as a new document (in `stock`, if given).
    fn insert(
        &mut self,
        inserts: &mut Vec<(usize, BookDocument)>,
        index: usize,
        book: &NewBook,
        stock: Option<BookstoreId>,
    ) {
        let mut document = BookDocument::new(id_for(&book.source_key), book, 1);
        document.bookstore_id = stock.map(|store| store.object_id());
        self.ids_by_key.insert(
            book.source_key.as_str().to_owned(),
            BookId::from_object_id(document.id),
        );
        inserts.push((index, document));
    }
}

impl Records<Book> {
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
            if pass.ids_by_key.contains_key(book.source_key.as_str()) {
                pass.lost_races.push(index);
                continue;
            }
            pass.insert(&mut inserts, index, book, stock);
        }
        self.insert_batch(inserts, &mut pass).await?;
        pass.lost_races.sort_unstable();
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
                doc! { field::ID: { "$in": ids } }
            }
            Lookup::SourceKey => {
                let keys: Vec<&str> = books.iter().map(|b| b.source_key.as_str()).collect();
                doc! { field::SOURCE_KEY: { "$in": keys } }
            }
        };
        let existing: HashMap<String, BookDocument> = self
            .find_stored(filter)
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
                None => pass.insert(&mut inserts, index, book, stock),
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
                            "q": { field::ID: current.id, field::VERSION: current.version },
                            "u": update_document(&changes_from(book, stock)),
                        });
                    }
                }
            }
        }
        // Only updated records are read back: an inserted one is exactly the document sent.
        let updated_ids: Vec<ObjectId> = updates
            .iter()
            .filter_map(|u| u.get_document("q").ok()?.get_object_id(field::ID).ok())
            .collect();
        self.insert_batch(inserts, &mut pass).await?;
        if !updates.is_empty() {
            self.bulk("update", updates).await?;
            let written = self
                .find_stored(doc! { field::ID: { "$in": updated_ids } })
                .await?;
            let mut replaced: HashMap<ObjectId, BookDocument> = existing
                .into_values()
                .map(|document| (document.id, document))
                .collect();
            for after in written {
                let before = replaced.remove(&after.id).map(from_stored).transpose()?;
                pass.written.push((before, from_stored(after)?));
            }
        }
        Ok(pass)
    }

    /// Inserts `inserts` in one unordered bulk insert. Those a unique index refused go back to
    /// `pass.lost_races` (for another pass); the rest count as inserted and written.
    async fn insert_batch(
        &self,
        mut inserts: Vec<(usize, BookDocument)>,
        pass: &mut UpsertPass,
    ) -> Result<(), StoreError> {
        let documents = inserts.iter().map(|(_, document)| document).collect();
        let refused = self.insert_unordered(documents).await?;
        for position in refused.iter().rev() {
            let (index, document) = inserts.remove(*position);
            pass.lost_races.push(index);
            pass.ids_by_key.remove(document.source_key.as_str());
        }
        pass.summary.inserted += inserts.len();
        for (_, document) in inserts {
            pass.written.push((None, from_stored(document)?));
        }
        Ok(())
    }
}

/// The update that makes a stored book say what `book` says (and, given `stock`, puts it in
/// that store).
fn changes_from(book: &NewBook, stock: Option<BookstoreId>) -> BookChanges {
    BookChanges {
        title: Some(book.title.clone()),
        authors: Some(book.authors.clone()),
        author_ids: Some(book.author_ids()),
        first_publish_year: Some(book.first_publish_year),
        subjects: Some(book.subjects.clone()),
        bookstore_id: stock.map(Some),
    }
}

fn same_content(current: &BookDocument, book: &NewBook, stock: Option<BookstoreId>) -> bool {
    stock.is_none_or(|store| current.bookstore_id == Some(store.object_id()))
        && current.title == book.title.as_str()
        && current.authors == book.authors.to_strings()
        && current.author_ids == object_ids(&book.author_ids())
        && current.first_publish_year == book.first_publish_year.map(PublishYear::get)
        && current.subjects == book.subjects.to_strings()
}

fn object_ids(ids: &[AuthorId]) -> Vec<ObjectId> {
    ids.iter().map(AuthorId::object_id).collect()
}
