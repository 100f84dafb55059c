//! DataLoaders: field resolvers that would read one record per parent ask a loader instead,
//! which collects the ids of a whole response and reads them with one batched datastore call
//! (itself one `MGET` and at most one MongoDB query). Loaders live for one request, so their
//! memo never outlives it.
//!
//! A loader batches what its callers ask for within a short window, and under load a long list
//! can straddle two windows. List resolvers therefore prefetch: when the selection asks for a
//! related record, they load every id of the list in one call, and the per-item resolvers find
//! the records in the request's memo.
//!
//! A loader runs its batches on spawned tasks. They belong to the request: [`RequestScope`]
//! aborts them when the request ends, times out or its client goes away, so no database work
//! outlives the request that asked for it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use async_graphql::{
    dataloader::{DataLoader, HashMapCache, Loader},
    Context, Result,
};

use super::error::datastore_error;
use crate::{
    datastore::{Datastore, Page},
    domain::{Author, AuthorId, Book, Bookstore, BookstoreId},
    query::Spec,
};

/// The most ids one batched load carries; the datastore reads them with one `MGET` and one query.
const MAX_BATCH: usize = 10_000;
/// The most pages one batched page load carries.
const MAX_PAGES: usize = 1_000;

pub struct BookstoreLoader(Datastore);

/// Loads authors (`Book.authorList` of every book in a response) together.
pub struct AuthorLoader(Datastore);

/// The request's author loader, memoising what it read for the rest of the request.
type Authors = DataLoader<AuthorLoader, HashMapCache>;

impl Loader<AuthorId> for AuthorLoader {
    type Value = Author;
    type Error = async_graphql::Error;

    async fn load(&self, ids: &[AuthorId]) -> Result<HashMap<AuthorId, Author>, Self::Error> {
        let authors = self.0.authors(ids).await.map_err(datastore_error)?;
        Ok(authors
            .into_iter()
            .flatten()
            .map(|author| (author.id, author))
            .collect())
    }
}

/// The authors of `ids` that exist, in order, through the request's loader.
pub async fn load_authors(ctx: &Context<'_>, ids: &[AuthorId]) -> Result<Vec<Author>> {
    let mut found = ctx
        .data_unchecked::<Loaders>()
        .authors()
        .load_many(ids.iter().copied())
        .await?;
    Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
}

/// The request's bookstore loader, memoising what it read for the rest of the request.
type Bookstores = DataLoader<BookstoreLoader, HashMapCache>;

/// Loads pages of books (`Bookstore.books` of every store in a response) together: one result
/// lookup and one read of their books for all of them.
pub struct BookPagesLoader(Datastore);

impl Loader<Spec> for BookPagesLoader {
    type Value = Page<Book>;
    type Error = async_graphql::Error;

    async fn load(&self, specs: &[Spec]) -> Result<HashMap<Spec, Page<Book>>, Self::Error> {
        let pages = self.0.books_pages(specs).await.map_err(datastore_error)?;
        Ok(specs.iter().cloned().zip(pages).collect())
    }
}

/// The request's books-page loader, memoising what it read for the rest of the request.
type BooksPages = DataLoader<BookPagesLoader, HashMapCache>;

/// A page of books through the request's page loader.
pub async fn load_books_page(ctx: &Context<'_>, spec: Spec) -> Result<Option<Page<Book>>> {
    ctx.data_unchecked::<Loaders>()
        .books_pages()
        .load_one(spec)
        .await
}

/// Loads these pages in one batch, into the request's memo.
pub async fn prefetch_books_pages(ctx: &Context<'_>, specs: Vec<Spec>) -> Result<()> {
    ctx.data_unchecked::<Loaders>()
        .books_pages()
        .load_many(specs)
        .await?;
    Ok(())
}

impl Loader<BookstoreId> for BookstoreLoader {
    type Value = Bookstore;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        ids: &[BookstoreId],
    ) -> Result<HashMap<BookstoreId, Bookstore>, Self::Error> {
        let stores = self.0.bookstores(ids).await.map_err(datastore_error)?;
        Ok(stores
            .into_iter()
            .flatten()
            .map(|store| (store.id, store))
            .collect())
    }
}

/// The tasks one request's loaders spawned; dropping the scope aborts those still running.
/// Keep it alive exactly as long as the request's execution (a local of the handler).
#[derive(Default)]
pub struct RequestScope {
    tasks: Tasks,
}

type Tasks = Arc<Mutex<Vec<tokio::task::AbortHandle>>>;

/// A spawner for a request's loaders that registers each task with the request's scope.
fn spawner(
    tasks: Tasks,
) -> impl Fn(futures::future::BoxFuture<'static, ()>) + Send + Sync + 'static {
    move |task| {
        let handle = tokio::spawn(task).abort_handle();
        let mut tasks = tasks
            .lock()
            .expect("a request's task list is never poisoned");
        tasks.retain(|task| !task.is_finished());
        tasks.push(handle);
    }
}

impl Drop for RequestScope {
    fn drop(&mut self) {
        let tasks = std::mem::take(
            &mut *self
                .tasks
                .lock()
                .expect("a request's task list is never poisoned"),
        );
        for task in tasks {
            task.abort();
        }
    }
}

/// One request's loaders, each made when the request first needs it (most requests need
/// none: a `book(id)` reads its record directly).
struct Loaders {
    datastore: Datastore,
    tasks: Tasks,
    bookstores: OnceLock<Bookstores>,
    books_pages: OnceLock<BooksPages>,
    authors: OnceLock<Authors>,
}

impl Loaders {
    fn bookstores(&self) -> &Bookstores {
        self.bookstores.get_or_init(|| {
            DataLoader::with_cache(
                BookstoreLoader(self.datastore.clone()),
                spawner(Arc::clone(&self.tasks)),
                HashMapCache::default(),
            )
            .max_batch_size(MAX_BATCH)
        })
    }

    fn books_pages(&self) -> &BooksPages {
        self.books_pages.get_or_init(|| {
            DataLoader::with_cache(
                BookPagesLoader(self.datastore.clone()),
                spawner(Arc::clone(&self.tasks)),
                HashMapCache::default(),
            )
            .max_batch_size(MAX_PAGES)
        })
    }

    fn authors(&self) -> &Authors {
        self.authors.get_or_init(|| {
            DataLoader::with_cache(
                AuthorLoader(self.datastore.clone()),
                spawner(Arc::clone(&self.tasks)),
                HashMapCache::default(),
            )
            .max_batch_size(MAX_BATCH)
        })
    }
}

/// Adds the per-request data (the loaders, spawning within `scope`) to a request.
pub fn per_request(
    request: async_graphql::Request,
    datastore: &Datastore,
    scope: &RequestScope,
) -> async_graphql::Request {
    request.data(Loaders {
        datastore: datastore.clone(),
        tasks: Arc::clone(&scope.tasks),
        bookstores: OnceLock::new(),
        books_pages: OnceLock::new(),
        authors: OnceLock::new(),
    })
}

/// Loads the bookstores of `books` in one batch, so that resolving `bookstore` on each of them
/// costs one read per layer however long the list is. Call it when the selection asks for
/// `bookstore` (see `ctx.look_ahead()`).
pub async fn prefetch_bookstores<'a>(
    ctx: &Context<'_>,
    books: impl IntoIterator<Item = &'a Book>,
) -> Result<()> {
    let ids: Vec<BookstoreId> = books
        .into_iter()
        .filter_map(|book| book.bookstore_id)
        .collect();
    if !ids.is_empty() {
        ctx.data_unchecked::<Loaders>()
            .bookstores()
            .load_many(ids)
            .await?;
    }
    Ok(())
}

/// One bookstore through the request's loader: batched with every other load of the same
/// moment, or answered from the memo when a list resolver prefetched it.
pub async fn load_bookstore(ctx: &Context<'_>, id: BookstoreId) -> Result<Option<Bookstore>> {
    ctx.data_unchecked::<Loaders>()
        .bookstores()
        .load_one(id)
        .await
}
