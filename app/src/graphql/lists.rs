//! Paged list queries: `books(filter, first, after)`, `bookstores(filter, first, after)` and
//! `Bookstore.books`. Filters arrive as GraphQL inputs and become the one [`Filter`] the
//! query-result cache both sends to MongoDB and evaluates in Rust. Pages are keyset pages:
//! `after` is the `endCursor` of the previous page.

use async_graphql::{
    Context, InputObject, InputType, MaybeUndefined, Object, Result, SimpleObject, Value, ID,
};

use super::{
    books::{datastore, BookObject},
    bookstores::BookstoreObject,
    error::{bad_input, datastore_error},
    loaders::{load_books_page, prefetch_books_pages, prefetch_bookstores},
};
use crate::{
    datastore::{Datastore, Page},
    domain::{BookstoreId, NameKey},
    query::{Cursor, Filter, Scalar},
};

/// The largest page a client may ask for.
pub const MAX_PAGE_SIZE: i32 = 100;
/// The page size when `first` is not given (keep equal to the `default` of the fields).
const DEFAULT_PAGE_SIZE: i32 = 20;

/// Which books to list. Every condition given must hold.
#[derive(InputObject, Default, Clone)]
pub struct BookFilter {
    /// Exactly this title.
    title: Option<String>,
    /// Titles starting with this text (case-sensitive).
    title_prefix: Option<String>,
    /// Books with this author among their authors.
    author: Option<String>,
    /// Books with this subject among their subjects.
    subject: Option<String>,
    /// Books in this bookstore; `null` for books in no bookstore.
    bookstore_id: MaybeUndefined<ID>,
    /// First published in this year or later.
    published_from: Option<i32>,
    /// First published before this year.
    published_before: Option<i32>,
}

impl BookFilter {
    fn compile(self) -> Result<Filter> {
        let mut filter = Filter::all();
        let text = |s: String| Scalar::Str(s);
        if let Some(title) = self.title {
            filter = filter.and(Filter::Eq("title".into(), text(title)));
        }
        if let Some(prefix) = self.title_prefix {
            filter = filter.and(Filter::Prefix("title".into(), prefix));
        }
        if let Some(author) = self.author {
            filter = filter.and(Filter::Eq("authors".into(), text(author)));
        }
        if let Some(subject) = self.subject {
            filter = filter.and(Filter::Eq("subjects".into(), text(subject)));
        }
        match self.bookstore_id {
            MaybeUndefined::Undefined => {}
            MaybeUndefined::Null => {
                filter = filter.and(Filter::Eq("bookstoreId".into(), Scalar::Null))
            }
            MaybeUndefined::Value(id) => {
                filter = filter.and(in_bookstore(parse_store(&id)?));
            }
        }
        if self.published_from.is_some() || self.published_before.is_some() {
            filter = filter.and(Filter::Range {
                field: "firstPublishYear".into(),
                gte: self.published_from.map(|y| Scalar::Int(y.into())),
                lt: self.published_before.map(|y| Scalar::Int(y.into())),
            });
        }
        Ok(filter)
    }
}

fn in_bookstore(store: BookstoreId) -> Filter {
    Filter::Eq("bookstoreId".into(), Scalar::Id(store.to_string()))
}

fn parse_store(id: &ID) -> Result<BookstoreId> {
    id.parse()
        .map_err(|_| bad_input(format!("bookstoreId: {:?} is not a valid id", id.as_str())))
}

/// Which bookstores to list. Every condition given must hold.
#[derive(InputObject, Default)]
pub struct BookstoreFilter {
    /// Stores in exactly this city.
    city: Option<String>,
    /// Stores whose name starts with this text, compared as names are (case, width and
    /// spacing do not matter).
    name_prefix: Option<String>,
}

impl BookstoreFilter {
    fn compile(self) -> Filter {
        let mut filter = Filter::all();
        if let Some(city) = self.city {
            filter = filter.and(Filter::Eq(
                "city".into(),
                Scalar::Str(city.trim().to_owned()),
            ));
        }
        if let Some(prefix) = self.name_prefix {
            let key = NameKey::of(&prefix);
            filter = filter.and(Filter::Prefix("nameKey".into(), key.as_str().to_owned()));
        }
        filter
    }
}

/// Where a page ends.
#[derive(SimpleObject)]
pub struct PageInfo {
    /// Whether more records follow this page.
    has_next_page: bool,
    /// Pass as `after` to read the next page; `null` on an empty page.
    end_cursor: Option<String>,
}

/// A page of books.
#[derive(SimpleObject)]
pub struct BookConnection {
    nodes: Vec<BookObject>,
    page_info: PageInfo,
}

/// A page of bookstores.
#[derive(SimpleObject)]
pub struct BookstoreConnection {
    nodes: Vec<BookstoreObject>,
    page_info: PageInfo,
}

fn page_info<T>(page: &Page<T>) -> PageInfo {
    PageInfo {
        has_next_page: page.has_next,
        end_cursor: page.end_cursor.clone(),
    }
}

fn page_args(first: i32, after: Option<String>) -> Result<(usize, Option<Cursor>)> {
    if !(1..=MAX_PAGE_SIZE).contains(&first) {
        return Err(bad_input(format!("first: between 1 and {MAX_PAGE_SIZE}")));
    }
    let after = after
        .map(|text| {
            Cursor::decode(&text).ok_or_else(|| bad_input("after: not a cursor this API gave"))
        })
        .transpose()?;
    Ok((first as usize, after))
}

/// Lists books; shared by `Query.books` and `Bookstore.books` (which batches the pages of
/// every store in a response through a DataLoader).
pub async fn books_page(
    ctx: &Context<'_>,
    filter: Filter,
    first: i32,
    after: Option<String>,
) -> Result<BookConnection> {
    let (first, after) = page_args(first, after)?;
    let spec = Datastore::books_spec(filter, first, after);
    let page = load_books_page(ctx, spec)
        .await?
        .expect("the loader answers every spec it is given");
    // The selection is `nodes { bookstore }` one level down.
    if ctx.look_ahead().field("nodes").field("bookstore").exists() {
        prefetch_bookstores(ctx, page.items.iter()).await?;
    }
    Ok(BookConnection {
        page_info: page_info(&page),
        nodes: page.items.into_iter().map(BookObject).collect(),
    })
}

#[derive(Default)]
pub struct ListQuery;

#[Object]
impl ListQuery {
    /// Books matching `filter`, ordered by title, `first` at a time (at most 100).
    async fn books(
        &self,
        ctx: &Context<'_>,
        filter: Option<BookFilter>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
    ) -> Result<BookConnection> {
        let filter = filter.unwrap_or_default().compile()?;
        books_page(ctx, filter, first, after).await
    }

    /// Bookstores matching `filter`, ordered by normalised name, `first` at a time.
    async fn bookstores(
        &self,
        ctx: &Context<'_>,
        filter: Option<BookstoreFilter>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
    ) -> Result<BookstoreConnection> {
        let (first, after) = page_args(first, after)?;
        let filter = filter.unwrap_or_default().compile();
        let page = datastore(ctx)
            .bookstores_page(filter, first, after)
            .await
            .map_err(datastore_error)?;
        prefetch_store_books(ctx, &page.items).await?;
        Ok(BookstoreConnection {
            page_info: page_info(&page),
            nodes: page.items.into_iter().map(BookstoreObject).collect(),
        })
    }
}

/// `Bookstore.books`: the store's books, through the same cached pages.
pub async fn bookstore_books(
    ctx: &Context<'_>,
    store: BookstoreId,
    filter: Option<BookFilter>,
    first: i32,
    after: Option<String>,
) -> Result<BookConnection> {
    books_page(ctx, store_filter(store, filter)?, first, after).await
}

/// A store's books matching the caller's own filter (whose `bookstoreId`, if any, is ignored).
fn store_filter(store: BookstoreId, filter: Option<BookFilter>) -> Result<Filter> {
    let mut own = filter.unwrap_or_default();
    own.bookstore_id = MaybeUndefined::Undefined;
    Ok(in_bookstore(store).and(own.compile()?))
}

/// When the selection asks for `nodes { books(...) }`, loads the books pages of every store of
/// the list in one batch up front, so each store's `books` finds its page in the request's
/// memo: one lookup for all of them, however the loader's batching window falls. Best effort:
/// arguments that do not parse are left to the field resolver to report.
async fn prefetch_store_books(
    ctx: &Context<'_>,
    stores: &[crate::domain::Bookstore],
) -> Result<()> {
    let mut specs = Vec::new();
    for field in ctx
        .look_ahead()
        .field("nodes")
        .field("books")
        .selection_fields()
    {
        let Ok(arguments) = field.arguments() else {
            continue;
        };
        let argument = |name: &str| {
            arguments
                .iter()
                .find(|(n, _)| n.as_str() == name)
                .map(|(_, value)| value.clone())
        };
        let Ok(filter) = <Option<BookFilter> as InputType>::parse(argument("filter")) else {
            continue;
        };
        let first = match argument("first") {
            Some(Value::Number(n)) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
            None => Some(DEFAULT_PAGE_SIZE),
            _ => None,
        };
        let after = match argument("after") {
            Some(Value::String(text)) => Some(Some(text)),
            None | Some(Value::Null) => Some(None),
            _ => None,
        };
        let (Some(first), Some(after)) = (first, after) else {
            continue;
        };
        let Ok((first, after)) = page_args(first, after) else {
            continue;
        };
        for store in stores {
            let Ok(filter) = store_filter(store.id, filter.clone()) else {
                continue;
            };
            specs.push(Datastore::books_spec(filter, first, after.clone()));
        }
    }
    if !specs.is_empty() {
        prefetch_books_pages(ctx, specs).await?;
    }
    Ok(())
}
