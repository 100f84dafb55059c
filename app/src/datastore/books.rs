//! Books through the cache: batched read-through and versioned write-through.

use futures::{stream, StreamExt, TryStreamExt};

use super::{
    behind::{self, Decision},
    Behind, Datastore, DatastoreError,
};
use crate::{
    cache::{Entity, Entry},
    domain::{Book, BookChanges, BookId, BookstoreId, NewAuthor, NewBook, Version},
    store::{BookStore, StoreError, UpsertSummary},
};

impl Datastore {
    /// One book, or `None` if it does not exist.
    pub async fn book(&self, id: BookId) -> Result<Option<Book>, DatastoreError> {
        Ok(self.books(&[id]).await?.pop().flatten())
    }

    /// The books for `ids`, in the same order (`None` where an id does not exist). One Redis
    /// round trip for the lookups, and for the misses one MongoDB query and one fill pipeline,
    /// whatever the number of ids.
    #[tracing::instrument(skip_all, fields(ids = ids.len()))]
    pub async fn books(&self, ids: &[BookId]) -> Result<Vec<Option<Book>>, DatastoreError> {
        self.read_many(ids).await
    }

    /// Creates a book at version 1 and caches it.
    #[tracing::instrument(skip_all, fields(source_key = %new.source_key.as_str()))]
    pub async fn create_book(&self, new: NewBook) -> Result<Book, DatastoreError> {
        if let Some(behind) = self.behind(Book::COLLECTION) {
            return self.create_book_behind(behind, new).await;
        }
        let noted = self.cache.note().await;
        let id = BookStore::id_for(&new.source_key);
        let new = new.into_book(id, 1, chrono::Utc::now());
        let book = match self.store.books().insert(&new).await {
            Err(StoreError::Duplicate) => {
                return Err(DatastoreError::Conflict(format!(
                    "a book with sourceKey {:?} already exists",
                    new.source_key.as_str()
                )))
            }
            other => other?,
        };
        self.cache_written(&noted, &book).await;
        self.reconcile(&[(None, Some(&book))]).await;
        Ok(book)
    }

    /// Applies `changes` (only if the book is still at `expected`, when given), then caches
    /// the new version.
    #[tracing::instrument(skip(self, changes), fields(book_id = %id))]
    pub async fn update_book(
        &self,
        id: BookId,
        changes: BookChanges,
        expected: Option<Version>,
    ) -> Result<Book, DatastoreError> {
        if changes.is_empty() {
            return Err(DatastoreError::InvalidInput(
                "the update changes nothing: give at least one field".into(),
            ));
        }
        if let Some(behind) = self.behind(Book::COLLECTION) {
            return self
                .update_book_behind(behind, id, &changes, expected)
                .await;
        }
        let noted = self.cache.note().await;
        let written = self.store.books().update(id, &changes, expected).await?;
        let (before, after) = super::written(written, "book", id, expected)?;
        self.cache_written(&noted, &after).await;
        self.reconcile(&[(Some(&before), Some(&after))]).await;
        Ok(after)
    }

    /// Deletes a book and leaves a tombstone in the cache, so that a read that fetched the
    /// book before the delete cannot cache it again.
    #[tracing::instrument(skip(self), fields(book_id = %id))]
    pub async fn delete_book(&self, id: BookId) -> Result<Book, DatastoreError> {
        if let Some(behind) = self.behind(Book::COLLECTION) {
            return self.delete_book_behind(behind, id).await;
        }
        let noted = self.cache.note().await;
        let deleted = self.store.books().delete(id, None).await?;
        let book = super::written(deleted, "book", id, None)?;
        self.cache_deleted(&noted, &book).await;
        self.reconcile(&[(Some(&book), None)]).await;
        Ok(book)
    }

    /// Upserts a batch by source key (see `store::BookStore::upsert_by_source_key`) and caches
    /// every record it wrote, in one pipeline. The authors the batch credits are upserted
    /// first, in the same pass (see [`Datastore::upsert_authors`]); the counts are the books'.
    /// Returns the counts and every id of the batch, in batch order.
    #[tracing::instrument(skip_all, fields(books = books.len()))]
    pub async fn upsert_books(
        &self,
        books: &[NewBook],
    ) -> Result<(UpsertSummary, Vec<BookId>), DatastoreError> {
        self.upsert_books_into(books, None).await
    }

    /// Like [`Datastore::upsert_books`], also stocking every book in `store` (in the same
    /// write: a book whose content and store are unchanged is not written).
    pub async fn upsert_books_into(
        &self,
        books: &[NewBook],
        store: Option<BookstoreId>,
    ) -> Result<(UpsertSummary, Vec<BookId>), DatastoreError> {
        let credits: Vec<NewAuthor> = books
            .iter()
            .flat_map(|book| book.author_credits.iter().cloned())
            .collect();
        self.upsert_authors(&credits).await?;
        if let Some(behind) = self.behind(Book::COLLECTION) {
            return self.upsert_books_behind(behind, books, store).await;
        }
        let noted = self.cache.note().await;
        let upserted = self
            .store
            .books()
            .upsert_by_source_key(books, store)
            .await?;
        let entries: Vec<(BookId, Entry<Book>)> = upserted
            .written
            .iter()
            .map(|(_, book)| (book.id, Entry::present(book.version, book.clone())))
            .collect();
        self.cache.write_through(&noted, &entries).await;
        // Reconcile the writes this batch made; a record another writer changed meanwhile is
        // that writer's to reconcile.
        let changes: Vec<(Option<&Book>, Option<&Book>)> = upserted
            .written
            .iter()
            .filter(|(before, after)| {
                before
                    .as_ref()
                    .is_none_or(|b| after.version == b.version + 1)
            })
            .map(|(before, after)| (before.as_ref(), Some(after)))
            .collect();
        self.reconcile(&changes).await;
        Ok((upserted.summary, upserted.ids))
    }
}

/// Book mutations in write-behind mode (see [`super::behind`]).
impl Datastore {
    async fn create_book_behind(
        &self,
        behind: &Behind,
        new: NewBook,
    ) -> Result<Book, DatastoreError> {
        let id = BookStore::id_for(&new.source_key);
        let conflict = || {
            DatastoreError::Conflict(format!(
                "a book with sourceKey {:?} already exists",
                new.source_key.as_str()
            ))
        };
        // A record stored under another id (before ids were derived from the key) holds the
        // key too; only MongoDB's index knows it.
        if let Some(holder) = self
            .store
            .books()
            .find_by_source_key(&new.source_key)
            .await?
        {
            if holder.id != id {
                return Err(conflict());
            }
        }
        let books = &self.store.books();
        let (_, created) = self
            .write_behind(
                behind,
                id,
                move |ids: Vec<BookId>| async move { books.find_many(&ids).await },
                |current: Option<&Book>, version| match current {
                    Some(_) => Err(conflict()),
                    None => Ok(Decision::Put(new.clone().into_book(
                        id,
                        version,
                        behind::now(),
                    ))),
                },
            )
            .await?;
        let created = created.expect("a create leaves a record");
        self.reconcile(&[(None, Some(&created))]).await;
        Ok(created)
    }

    /// The bulk upsert written behind, record by record (a few at a time), so that a mutation
    /// of the same book at the same moment is ordered by the cache like any other: inserts the
    /// books whose source key is new, updates those whose content (or store) changed, leaves
    /// the others alone.
    async fn upsert_books_behind(
        &self,
        behind: &Behind,
        books: &[NewBook],
        stock: Option<BookstoreId>,
    ) -> Result<(UpsertSummary, Vec<BookId>), DatastoreError> {
        let store = &self.store.books();
        let written: Vec<(BookId, Option<Book>, Option<Book>)> = stream::iter(books)
            .map(|new| async move {
                let id = BookStore::id_for(&new.source_key);
                let (before, after) = self
                    .write_behind(
                        behind,
                        id,
                        move |ids: Vec<BookId>| async move { store.find_many(&ids).await },
                        |current: Option<&Book>, version| {
                            Ok(match current {
                                None => {
                                    let mut book =
                                        new.clone().into_book(id, version, behind::now());
                                    book.bookstore_id = stock;
                                    Decision::Put(book)
                                }
                                Some(current) if new.same_content(current, stock) => Decision::Keep,
                                Some(current) => {
                                    let changes = new.changes_from(current, stock);
                                    Decision::Put(changes.apply(current, version, behind::now()))
                                }
                            })
                        },
                    )
                    .await?;
                Ok::<_, DatastoreError>((id, before, after))
            })
            .buffered(BULK_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut summary = UpsertSummary::default();
        let mut changes = Vec::new();
        for (_, before, after) in &written {
            match (before, after) {
                (None, Some(_)) => summary.inserted += 1,
                (Some(b), Some(a)) if a.version == b.version => summary.unchanged += 1,
                _ => summary.changed += 1,
            }
            if before.as_ref().map(|b| b.version) != after.as_ref().map(|a| a.version) {
                changes.push((before.as_ref(), after.as_ref()));
            }
        }
        self.reconcile(&changes).await;
        Ok((summary, written.iter().map(|(id, _, _)| *id).collect()))
    }

    pub(super) async fn update_book_behind(
        &self,
        behind: &Behind,
        id: BookId,
        changes: &BookChanges,
        expected: Option<Version>,
    ) -> Result<Book, DatastoreError> {
        let books = &self.store.books();
        let (before, after) = self
            .write_behind(
                behind,
                id,
                move |ids: Vec<BookId>| async move { books.find_many(&ids).await },
                |current: Option<&Book>, version| {
                    let current = current.ok_or_else(|| not_found(id))?;
                    if let Some(expected) = expected.filter(|e| *e != current.version) {
                        return Err(DatastoreError::Conflict(format!(
                            "book {id} is at version {}, not the expected {expected}",
                            current.version
                        )));
                    }
                    Ok(Decision::Put(changes.apply(
                        current,
                        version,
                        behind::now(),
                    )))
                },
            )
            .await?;
        let after = after.expect("an update leaves a record");
        self.reconcile(&[(before.as_ref(), Some(&after))]).await;
        Ok(after)
    }

    async fn delete_book_behind(
        &self,
        behind: &Behind,
        id: BookId,
    ) -> Result<Book, DatastoreError> {
        let books = &self.store.books();
        let (before, _) = self
            .write_behind(
                behind,
                id,
                move |ids: Vec<BookId>| async move { books.find_many(&ids).await },
                |current: Option<&Book>, _| match current {
                    Some(_) => Ok(Decision::Remove),
                    None => Err(not_found(id)),
                },
            )
            .await?;
        let deleted = before.expect("a delete had a record");
        self.reconcile(&[(Some(&deleted), None)]).await;
        Ok(deleted)
    }
}

/// How many books a bulk write written behind has in flight at once.
pub(super) const BULK_IN_FLIGHT: usize = 32;

fn not_found(id: BookId) -> DatastoreError {
    DatastoreError::NotFound {
        entity: "book",
        id: id.to_string(),
    }
}
