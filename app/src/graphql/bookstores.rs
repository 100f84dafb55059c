//! Bookstores in GraphQL: `bookstore`, `bookstoreByName`, `bookstoresForBooks`, and the
//! `createBookstore`, `updateBookstore`, `deleteBookstore`, `moveBook` mutations.

use async_graphql::{Context, InputObject, Object, Result, ID};
use chrono::{DateTime, Utc};

use super::{
    books::{datastore, parse_book_ids, parse_id, BookObject},
    error::{bad_input, datastore_error},
    lists::{self, BookConnection, BookFilter},
};
use crate::datastore::HeldBooks;
use crate::domain::{Bookstore, BookstoreChanges, BookstoreId, BookstoreName, Label, NewBookstore};

/// A bookstore, as clients see it.
pub struct BookstoreObject(pub Bookstore);

/// A bookstore: a named shop in a city that stocks books.
#[Object(name = "Bookstore")]
impl BookstoreObject {
    /// The bookstore's id (24 hexadecimal digits).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// The name as it was given; unique after normalisation (case, width, accents' encoding,
    /// spacing), so "Powell's  Books" and "powell's books" are one name.
    async fn name(&self) -> &str {
        self.0.name.as_str()
    }

    /// The city the store is in.
    async fn city(&self) -> &str {
        self.0.city.as_str()
    }

    /// Incremented by every write; pass it as `expectedVersion` to update safely.
    async fn version(&self) -> i64 {
        self.0.version
    }

    /// When the bookstore was last written (UTC).
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }

    /// The books this store holds, ordered by title, `first` at a time (at most 100).
    #[graphql(complexity = "super::cost::list(first, child_complexity)")]
    async fn books(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only the books that match (its `bookstoreId` is ignored).")]
        filter: Option<BookFilter>,
        #[graphql(default = 20, desc = "How many books, 1 to 100.")] first: Option<i32>,
        #[graphql(desc = "Read on after this cursor (`endCursor` or an edge's `cursor`).")]
        after: Option<String>,
    ) -> Result<BookConnection> {
        lists::bookstore_books(ctx, self.0.id, filter, lists::page_size(first), after).await
    }
}

#[derive(Default)]
pub struct BookstoreQuery;

#[Object]
impl BookstoreQuery {
    /// One bookstore by id; `null` when none has that id.
    async fn bookstore(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The bookstore's id.")] id: ID,
    ) -> Result<Option<BookstoreObject>> {
        let id = parse_bookstore_id(&id)?;
        let store = datastore(ctx)
            .bookstore(id)
            .await
            .map_err(datastore_error)?;
        Ok(store.map(BookstoreObject))
    }

    /// The bookstore whose name matches after normalisation; `null` when none does.
    async fn bookstore_by_name(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The name, in any case, width or spacing.")] name: String,
    ) -> Result<Option<BookstoreObject>> {
        let name = BookstoreName::parse(&name).map_err(bad_input)?;
        let store = datastore(ctx)
            .bookstore_by_name(&name)
            .await
            .map_err(datastore_error)?;
        Ok(store.map(BookstoreObject))
    }

    /// For each book id, in order, the bookstore that holds the book (`null` for a book that
    /// does not exist or is in no store). One batched read per layer, whatever the number.
    #[graphql(complexity = "super::cost::batch(book_ids.len(), child_complexity)")]
    async fn bookstores_for_books(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The books' ids (at most `OPONN_MAX_BATCH_IDS`, 1,000 by default).")]
        book_ids: Vec<ID>,
    ) -> Result<Vec<Option<BookstoreObject>>> {
        let ids = parse_book_ids(ctx, "bookIds", &book_ids)?;
        let stores = datastore(ctx)
            .bookstores_for_books(&ids)
            .await
            .map_err(datastore_error)?;
        Ok(stores.into_iter().map(|s| s.map(BookstoreObject)).collect())
    }
}

/// A bookstore to create.
#[derive(InputObject)]
struct CreateBookstoreInput {
    /// The name (1 to 200 characters), unique after normalisation.
    name: String,
    /// The city.
    city: String,
}

/// Fields to change; omitted fields stay as they are.
#[derive(InputObject)]
struct UpdateBookstoreInput {
    /// A new name, unique after normalisation.
    name: Option<String>,
    /// A new city.
    city: Option<String>,
}

#[derive(Default)]
pub struct BookstoreMutation;

#[Object]
impl BookstoreMutation {
    /// Creates a bookstore. `CONFLICT`, naming the holder, when the name is taken.
    async fn create_bookstore(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The bookstore to create.")] input: CreateBookstoreInput,
    ) -> Result<BookstoreObject> {
        let new = NewBookstore {
            name: BookstoreName::parse(&input.name).map_err(bad_input)?,
            city: Label::parse("city", &input.city).map_err(bad_input)?,
        };
        let store = datastore(ctx)
            .create_bookstore(new)
            .await
            .map_err(datastore_error)?;
        Ok(BookstoreObject(store))
    }

    /// Renames or relocates a bookstore; a rename obeys the same uniqueness rule.
    async fn update_bookstore(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The bookstore's id.")] id: ID,
        #[graphql(desc = "The fields to change.")] input: UpdateBookstoreInput,
        #[graphql(desc = "Change the bookstore only if it is still at this version.")]
        expected_version: Option<i64>,
    ) -> Result<BookstoreObject> {
        let id = parse_bookstore_id(&id)?;
        let changes = BookstoreChanges {
            name: input
                .name
                .as_deref()
                .map(BookstoreName::parse)
                .transpose()
                .map_err(bad_input)?,
            city: input
                .city
                .as_deref()
                .map(|c| Label::parse("city", c))
                .transpose()
                .map_err(bad_input)?,
        };
        let store = datastore(ctx)
            .update_bookstore(id, changes, expected_version)
            .await
            .map_err(datastore_error)?;
        Ok(BookstoreObject(store))
    }

    /// Deletes a bookstore and returns it as it was. While it holds books this is a
    /// `CONFLICT`, unless `moveBooksTo` names a store to move them to or `deleteBooks` is true.
    async fn delete_bookstore(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The bookstore's id.")] id: ID,
        #[graphql(desc = "Delete the bookstore only if it is still at this version.")]
        expected_version: Option<i64>,
        #[graphql(desc = "Move the store's books to this store first.")] move_books_to: Option<ID>,
        #[graphql(desc = "Delete the store's books with it.")] delete_books: Option<bool>,
    ) -> Result<BookstoreObject> {
        let id = parse_bookstore_id(&id)?;
        let held = match (move_books_to, delete_books.unwrap_or(false)) {
            (Some(_), true) => {
                return Err(bad_input("give moveBooksTo or deleteBooks, not both"));
            }
            (Some(target), false) => HeldBooks::MoveTo(parse_bookstore_id(&target)?),
            (None, true) => HeldBooks::Delete,
            (None, false) => HeldBooks::Refuse,
        };
        let store = datastore(ctx)
            .delete_bookstore(id, expected_version, held)
            .await
            .map_err(datastore_error)?;
        Ok(BookstoreObject(store))
    }

    /// Puts a book in a bookstore, or in none with `bookstoreId: null`. The store must exist.
    async fn move_book(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The book's id.")] book_id: ID,
        #[graphql(desc = "The bookstore to put it in; `null` for none.")] bookstore_id: Option<ID>,
        #[graphql(desc = "Move the book only if it is still at this version.")]
        expected_version: Option<i64>,
    ) -> Result<BookObject> {
        let book = parse_id(&book_id)?;
        let to = bookstore_id.as_ref().map(parse_bookstore_id).transpose()?;
        let moved = datastore(ctx)
            .move_book(book, to, expected_version)
            .await
            .map_err(datastore_error)?;
        Ok(BookObject(moved))
    }
}

fn parse_bookstore_id(id: &ID) -> Result<BookstoreId> {
    id.parse::<BookstoreId>().map_err(bad_input)
}
