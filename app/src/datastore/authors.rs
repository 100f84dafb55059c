//! Authors through the cache, and the relation between books and authors (many-to-many:
//! `book.author_ids`). Ingest writes authors through to MongoDB (also in write-behind mode:
//! the queue carries books and bookstores), in the same pass as their books, before them.

use std::collections::HashMap;

use super::{Datastore, DatastoreError};
use crate::{
    cache::Entry,
    domain::{Author, AuthorId, BookId, NewAuthor},
};

impl Datastore {
    /// The authors for `ids`, in the same order (`None` where an id does not exist): one
    /// batched read per layer.
    pub async fn authors(&self, ids: &[AuthorId]) -> Result<Vec<Option<Author>>, DatastoreError> {
        self.read_many(ids).await
    }

    /// For each book, in order, the authors it credits that exist, in its order (none for an
    /// unknown book): the books, then their authors, one batched read per layer whatever the
    /// number of books.
    #[tracing::instrument(skip_all, fields(books = book_ids.len()))]
    pub async fn authors_for_books(
        &self,
        book_ids: &[BookId],
    ) -> Result<Vec<Vec<Author>>, DatastoreError> {
        let books = self.books(book_ids).await?;
        let by_book: HashMap<BookId, Vec<AuthorId>> = books
            .into_iter()
            .flatten()
            .map(|book| (book.id, book.author_ids))
            .collect();
        let wanted: Vec<AuthorId> = by_book.values().flatten().copied().collect();
        let authors: HashMap<AuthorId, Author> = self
            .authors(&wanted)
            .await?
            .into_iter()
            .flatten()
            .map(|author| (author.id, author))
            .collect();
        Ok(book_ids
            .iter()
            .map(|book| {
                let credited = by_book.get(book).map_or(&[][..], Vec::as_slice);
                credited
                    .iter()
                    .filter_map(|id| authors.get(id).cloned())
                    .collect()
            })
            .collect())
    }

    /// Stores the authors of a batch (new ones inserted, renamed ones updated), caches what it
    /// wrote and reconciles the cached author lists it affects.
    pub async fn upsert_authors(&self, authors: &[NewAuthor]) -> Result<(), DatastoreError> {
        if authors.is_empty() {
            return Ok(());
        }
        let noted = self.cache.note().await;
        let written = self.store.authors().upsert_by_source_key(authors).await?;
        let entries: Vec<(AuthorId, Entry<Author>)> = written
            .iter()
            .map(|(_, author)| (author.id, Entry::present(author.version, author.clone())))
            .collect();
        self.cache.write_through(&noted, &entries).await;
        let changes: Vec<(Option<&Author>, Option<&Author>)> = written
            .iter()
            .map(|(before, after)| (before.as_ref(), Some(after)))
            .collect();
        self.reconcile(&changes).await;
        Ok(())
    }
}
