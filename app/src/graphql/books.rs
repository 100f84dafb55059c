//! Books in GraphQL: `book`, `booksByIds`, `createBook`, `updateBook`, `deleteBook`.

use async_graphql::{Context, InputObject, MaybeUndefined, Object, Result, ID};
use chrono::{DateTime, Utc};

use super::{
    authors::AuthorObject,
    bookstores::BookstoreObject,
    error::{bad_input, datastore_error},
    loaders::{load_authors, load_bookstore, prefetch_bookstores},
    Limits,
};
use crate::{
    datastore::Datastore,
    domain::{
        AuthorId, Book, BookChanges, BookId, LabelList, NewBook, PublishYear, SourceKey, Title,
    },
};

/// A book, as clients see it.
pub struct BookObject(pub Book);

/// A book: a work of the outside catalogue, stocked by at most one bookstore.
#[Object(name = "Book")]
impl BookObject {
    /// The book's id (24 hexadecimal digits).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// The outside source's key (an Open Library work key such as `/works/OL27448W`).
    async fn source_key(&self) -> &str {
        self.0.source_key.as_str()
    }

    /// The title.
    async fn title(&self) -> &str {
        self.0.title.as_str()
    }

    /// The authors' names, in the source's order.
    async fn authors(&self) -> Vec<&str> {
        self.0.authors.iter().map(|label| label.as_str()).collect()
    }

    /// The year the work was first published, when known.
    async fn first_publish_year(&self) -> Option<i32> {
        self.0.first_publish_year.map(PublishYear::get)
    }

    /// The subjects the source files the work under.
    async fn subjects(&self) -> Vec<&str> {
        self.0.subjects.iter().map(|label| label.as_str()).collect()
    }

    /// The id of the bookstore that stocks this book, if any.
    async fn bookstore_id(&self) -> Option<ID> {
        self.0.bookstore_id.map(|id| ID(id.to_string()))
    }

    /// The authors the book credits, in its order (an id with no author is left out).
    /// Batched: the authors of every book in a response are read together.
    async fn author_list(&self, ctx: &Context<'_>) -> Result<Vec<AuthorObject>> {
        let authors = load_authors(ctx, &self.0.author_ids).await?;
        Ok(authors.into_iter().map(AuthorObject).collect())
    }

    /// The bookstore that stocks this book, if any. Batched: the bookstores of every book in
    /// a response are read together.
    async fn bookstore(&self, ctx: &Context<'_>) -> Result<Option<BookstoreObject>> {
        let Some(id) = self.0.bookstore_id else {
            return Ok(None);
        };
        Ok(load_bookstore(ctx, id).await?.map(BookstoreObject))
    }

    /// Incremented by every write; pass it as `expectedVersion` to update safely.
    async fn version(&self) -> i64 {
        self.0.version
    }

    /// When the book was last written (UTC).
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

#[derive(Default)]
pub struct BookQuery;

#[Object]
impl BookQuery {
    /// One book by id; `null` when no book has that id.
    async fn book(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The book's id.")] id: ID,
    ) -> Result<Option<BookObject>> {
        let id = parse_id(&id)?;
        let book = datastore(ctx).book(id).await.map_err(datastore_error)?;
        Ok(book.map(BookObject))
    }

    /// Books by id, in the order given; `null` for ids with no book. One cache round trip and
    /// at most one database query, whatever the number of ids.
    #[graphql(complexity = "super::cost::batch(ids.len(), child_complexity)")]
    async fn books_by_ids(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The books' ids (at most `OPONN_MAX_BATCH_IDS`, 1,000 by default).")]
        ids: Vec<ID>,
    ) -> Result<Vec<Option<BookObject>>> {
        let ids = parse_book_ids(ctx, "ids", &ids)?;
        let books = datastore(ctx).books(&ids).await.map_err(datastore_error)?;
        if ctx.look_ahead().field("bookstore").exists() {
            prefetch_bookstores(ctx, books.iter().flatten()).await?;
        }
        Ok(books.into_iter().map(|book| book.map(BookObject)).collect())
    }
}

/// A book to create.
#[derive(InputObject)]
struct CreateBookInput {
    /// The outside source's key; unique.
    source_key: String,
    /// The title (1 to 500 characters).
    title: String,
    /// The authors' names.
    #[graphql(default)]
    authors: Vec<String>,
    /// The year the work was first published.
    first_publish_year: Option<i32>,
    /// The subjects the work is filed under.
    #[graphql(default)]
    subjects: Vec<String>,
}

/// Fields to change; omitted fields stay as they are, `firstPublishYear: null` clears it.
#[derive(InputObject)]
struct UpdateBookInput {
    /// A new title.
    title: Option<String>,
    /// The new list of authors (replaces the old one).
    authors: Option<Vec<String>>,
    /// The new list of author ids, in credit order (replaces the old one; `authorList`
    /// leaves out an id with no author).
    author_ids: Option<Vec<ID>>,
    /// A new year of first publication; `null` clears it.
    first_publish_year: MaybeUndefined<i32>,
    /// The new list of subjects (replaces the old one).
    subjects: Option<Vec<String>>,
}

impl TryFrom<CreateBookInput> for NewBook {
    type Error = async_graphql::Error;

    fn try_from(input: CreateBookInput) -> Result<Self> {
        Ok(NewBook {
            source_key: SourceKey::parse(&input.source_key).map_err(bad_input)?,
            title: Title::parse(&input.title).map_err(bad_input)?,
            authors: LabelList::parse("authors", &input.authors, Book::MAX_AUTHORS)
                .map_err(bad_input)?,
            first_publish_year: input
                .first_publish_year
                .map(|year| PublishYear::parse(year.into()))
                .transpose()
                .map_err(bad_input)?,
            subjects: LabelList::parse("subjects", &input.subjects, Book::MAX_SUBJECTS)
                .map_err(bad_input)?,
            author_credits: Vec::new(),
        })
    }
}

impl TryFrom<UpdateBookInput> for BookChanges {
    type Error = async_graphql::Error;

    fn try_from(input: UpdateBookInput) -> Result<Self> {
        Ok(BookChanges {
            title: input
                .title
                .map(|title| Title::parse(&title))
                .transpose()
                .map_err(bad_input)?,
            authors: input
                .authors
                .map(|authors| LabelList::parse("authors", &authors, Book::MAX_AUTHORS))
                .transpose()
                .map_err(bad_input)?,
            author_ids: input
                .author_ids
                .map(|ids| parse_author_ids(&ids))
                .transpose()?,
            first_publish_year: match input.first_publish_year {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(year) => {
                    Some(Some(PublishYear::parse(year.into()).map_err(bad_input)?))
                }
            },
            subjects: input
                .subjects
                .map(|subjects| LabelList::parse("subjects", &subjects, Book::MAX_SUBJECTS))
                .transpose()
                .map_err(bad_input)?,
            // Moving between stores is `moveBook`'s job.
            bookstore_id: None,
        })
    }
}

#[derive(Default)]
pub struct BookMutation;

#[Object]
impl BookMutation {
    /// Creates a book at version 1. `CONFLICT` if a book has the same `sourceKey`.
    async fn create_book(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The book to create.")] input: CreateBookInput,
    ) -> Result<BookObject> {
        let new = NewBook::try_from(input)?;
        let book = datastore(ctx)
            .create_book(new)
            .await
            .map_err(datastore_error)?;
        Ok(BookObject(book))
    }

    /// Changes a book. With `expectedVersion`, only if the book is still at that version
    /// (`CONFLICT` otherwise).
    async fn update_book(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The book's id.")] id: ID,
        #[graphql(desc = "The fields to change.")] input: UpdateBookInput,
        #[graphql(desc = "Change the book only if it is still at this version.")]
        expected_version: Option<i64>,
    ) -> Result<BookObject> {
        let id = parse_id(&id)?;
        let changes = BookChanges::try_from(input)?;
        let book = datastore(ctx)
            .update_book(id, changes, expected_version)
            .await
            .map_err(datastore_error)?;
        Ok(BookObject(book))
    }

    /// Deletes a book and returns it as it was. `NOT_FOUND` for an unknown id.
    async fn delete_book(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The book's id.")] id: ID,
    ) -> Result<BookObject> {
        let id = parse_id(&id)?;
        let book = datastore(ctx)
            .delete_book(id)
            .await
            .map_err(datastore_error)?;
        Ok(BookObject(book))
    }
}

fn parse_author_ids(ids: &[ID]) -> Result<Vec<AuthorId>> {
    if ids.len() > Book::MAX_AUTHORS {
        return Err(bad_input(format!(
            "authorIds: at most {} ids",
            Book::MAX_AUTHORS
        )));
    }
    ids.iter()
        .map(|id| id.parse::<AuthorId>().map_err(bad_input))
        .collect()
}

/// Book ids of a batched argument (`argument`), at most `OPONN_MAX_BATCH_IDS` of them.
pub(super) fn parse_book_ids(ctx: &Context<'_>, argument: &str, ids: &[ID]) -> Result<Vec<BookId>> {
    let limit = ctx.data_unchecked::<Limits>().max_batch_ids;
    if ids.len() > limit {
        return Err(bad_input(format!(
            "{argument}: at most {limit} ids per call"
        )));
    }
    ids.iter().map(parse_id).collect()
}

pub(super) fn parse_id(id: &ID) -> Result<BookId> {
    id.parse::<BookId>().map_err(bad_input)
}

pub(super) fn datastore<'a>(ctx: &Context<'a>) -> &'a Datastore {
    ctx.data_unchecked::<Datastore>()
}
