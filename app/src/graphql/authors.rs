//! Authors in GraphQL: `author`, `authorsForBooks`, and `Author.books`. Authors come from
//! ingest (Open Library's author keys); `updateBook(input: { authorIds })` relinks a book.

use async_graphql::{Context, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::{
    books::{datastore, parse_book_ids},
    error::{bad_input, datastore_error},
    lists::{self, BookConnection, BookFilter},
};
use crate::domain::{Author, AuthorId};

/// An author, as clients see it.
pub struct AuthorObject(pub Author);

/// An author: a person books credit, known by the outside source's author key.
#[Object(name = "Author")]
impl AuthorObject {
    /// The author's id (24 hexadecimal digits).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// The outside source's author key (an Open Library key such as `OL26320A`); unique.
    async fn source_key(&self) -> &str {
        self.0.source_key.as_str()
    }

    /// The name, as the source spells it.
    async fn name(&self) -> &str {
        self.0.name.as_str()
    }

    /// Incremented by every write.
    async fn version(&self) -> i64 {
        self.0.version
    }

    /// When the author was last written (UTC).
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }

    /// The books that credit this author, ordered by title, `first` at a time (at most 100).
    #[graphql(complexity = "super::cost::list(first, child_complexity)")]
    async fn books(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only the books that match every field given.")] filter: Option<
            BookFilter,
        >,
        #[graphql(default = 20, desc = "How many books, 1 to 100.")] first: Option<i32>,
        #[graphql(desc = "Read on after this cursor (`endCursor` or an edge's `cursor`).")]
        after: Option<String>,
    ) -> Result<BookConnection> {
        lists::author_books(ctx, self.0.id, filter, lists::page_size(first), after).await
    }
}

/// The authors one book credits: an answer of `authorsForBooks`.
#[derive(SimpleObject)]
pub struct BookAuthors {
    /// The book's id, as asked.
    book_id: ID,
    /// The authors the book credits, in its order.
    authors: Vec<AuthorObject>,
}

#[derive(Default)]
pub struct AuthorQuery;

#[Object]
impl AuthorQuery {
    /// One author by id; `null` when none has that id.
    async fn author(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The author's id.")] id: ID,
    ) -> Result<Option<AuthorObject>> {
        let id = parse_author_id(&id)?;
        let mut authors = datastore(ctx)
            .authors(&[id])
            .await
            .map_err(datastore_error)?;
        Ok(authors.pop().flatten().map(AuthorObject))
    }

    /// For each book id, in order, the authors the book credits, in its order (none for a
    /// book that does not exist). One batched read per layer, whatever the number.
    #[graphql(complexity = "super::cost::batch(book_ids.len(), child_complexity)")]
    async fn authors_for_books(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The books' ids (at most `OPONN_MAX_BATCH_IDS`, 1,000 by default).")]
        book_ids: Vec<ID>,
    ) -> Result<Vec<BookAuthors>> {
        let ids = parse_book_ids(ctx, "bookIds", &book_ids)?;
        let authors = datastore(ctx)
            .authors_for_books(&ids)
            .await
            .map_err(datastore_error)?;
        Ok(book_ids
            .into_iter()
            .zip(authors)
            .map(|(book_id, credited)| BookAuthors {
                book_id,
                authors: credited.into_iter().map(AuthorObject).collect(),
            })
            .collect())
    }
}

pub(super) fn parse_author_id(id: &ID) -> Result<AuthorId> {
    id.parse::<AuthorId>().map_err(bad_input)
}
