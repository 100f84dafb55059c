//! Paged list queries: `books(filter, first, after)`, `bookstores(filter, first, after)`,
//! `authors(filter, first, after)`, `Bookstore.books` and `Author.books`. Filters arrive as GraphQL inputs and become the one [`Filter`] the
//! query-result cache both sends to MongoDB and evaluates in Rust. Pages are keyset pages:
//! `after` is the `endCursor` of the previous page.
//!
//! Filter values pass through the same domain types as the records they match (a title filter
//! is a [`Title`], an author a [`Label`]): a value no record could hold is refused with
//! `BAD_USER_INPUT` before it reaches the cache or MongoDB. A cursor is checked against the
//! sort's types (text, then an ObjectId), since MongoDB and Rust order values of different
//! types differently and a cached page must equal what MongoDB would answer.

use async_graphql::{
    Context, InputObject, InputType, MaybeUndefined, Object, Result, SimpleObject, Value, ID,
};

use super::{
    authors::AuthorObject,
    books::{datastore, BookObject},
    bookstores::BookstoreObject,
    error::{bad_input, datastore_error},
    loaders::{load_books_page, prefetch_books_pages, prefetch_bookstores},
};
use crate::{
    datastore::{Datastore, Page},
    domain::{
        Author, AuthorId, BookId, BookstoreId, BookstoreName, InvalidText, Label, NameKey, Prefix,
        Title,
    },
    entity::{author, book, bookstore},
    query::{Cursor, Filter, Scalar},
};

/// The largest page a client may ask for.
pub const MAX_PAGE_SIZE: i32 = 100;
/// The page size when `first` is not given (keep equal to the `default` of the fields).
const DEFAULT_PAGE_SIZE: i32 = 20;

/// `first`, or the default page size when it is `null` or not given. (`first` is nullable
/// because async-graphql's cost calculation reads a variable the client left out as `null`.)
pub fn page_size(first: Option<i32>) -> i32 {
    first.unwrap_or(DEFAULT_PAGE_SIZE)
}

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
        let label = |field, value: &str| {
            Label::parse(field, value)
                .map(|label| Scalar::Str(label.as_str().to_owned()))
                .map_err(invalid)
        };
        if let Some(title) = self.title {
            let title = Title::parse(&title).map_err(|error| invalid(in_filter(error)))?;
            filter = filter.and(Filter::Eq(
                book::field::TITLE.into(),
                Scalar::Str(title.as_str().into()),
            ));
        }
        if let Some(prefix) = self.title_prefix {
            let prefix =
                Prefix::parse("filter.titlePrefix", &prefix, Title::MAX_CHARS).map_err(invalid)?;
            filter = filter.and(Filter::Prefix(
                book::field::TITLE.into(),
                prefix.into_string(),
            ));
        }
        if let Some(author) = self.author {
            filter = filter.and(Filter::Eq(
                book::field::AUTHORS.into(),
                label("filter.author", &author)?,
            ));
        }
        if let Some(subject) = self.subject {
            filter = filter.and(Filter::Eq(
                book::field::SUBJECTS.into(),
                label("filter.subject", &subject)?,
            ));
        }
        match self.bookstore_id {
            MaybeUndefined::Undefined => {}
            MaybeUndefined::Null => {
                filter = filter.and(Filter::Eq(book::field::BOOKSTORE_ID.into(), Scalar::Null))
            }
            MaybeUndefined::Value(id) => {
                filter = filter.and(in_bookstore(parse_store(&id)?));
            }
        }
        if self.published_from.is_some() || self.published_before.is_some() {
            filter = filter.and(Filter::Range {
                field: book::field::FIRST_PUBLISH_YEAR.into(),
                gte: self.published_from.map(|y| Scalar::Int(y.into())),
                lt: self.published_before.map(|y| Scalar::Int(y.into())),
            });
        }
        Ok(filter)
    }
}

fn invalid(error: InvalidText) -> async_graphql::Error {
    bad_input(error)
}

/// A domain type's error about `title`, said of the filter's field.
fn in_filter(error: InvalidText) -> InvalidText {
    match error {
        InvalidText::Empty { .. } => InvalidText::Empty {
            field: "filter.title",
        },
        InvalidText::TooLong { max, .. } => InvalidText::TooLong {
            field: "filter.title",
            max,
        },
        InvalidText::TooMany { max, .. } => InvalidText::TooMany {
            field: "filter.title",
            max,
        },
        InvalidText::ControlCharacter { .. } => InvalidText::ControlCharacter {
            field: "filter.title",
        },
        InvalidText::BidiControl { .. } => InvalidText::BidiControl {
            field: "filter.title",
        },
        InvalidText::Invisible { .. } => InvalidText::Invisible {
            field: "filter.title",
        },
    }
}

fn in_bookstore(store: BookstoreId) -> Filter {
    Filter::Eq(
        book::field::BOOKSTORE_ID.into(),
        Scalar::Id(store.to_string()),
    )
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
    fn compile(self) -> Result<Filter> {
        let mut filter = Filter::all();
        if let Some(city) = self.city {
            let city = Label::parse("filter.city", &city).map_err(invalid)?;
            filter = filter.and(Filter::Eq(
                bookstore::field::CITY.into(),
                Scalar::Str(city.as_str().to_owned()),
            ));
        }
        if let Some(prefix) = self.name_prefix {
            let prefix = Prefix::parse("filter.namePrefix", &prefix, BookstoreName::MAX_CHARS)
                .map_err(invalid)?;
            let key = NameKey::of(&prefix.into_string());
            filter = filter.and(Filter::Prefix(
                bookstore::field::NAME_KEY.into(),
                key.as_str().to_owned(),
            ));
        }
        Ok(filter)
    }
}

/// Which authors to list. Every condition given must hold.
#[derive(InputObject, Default)]
pub struct AuthorFilter {
    /// Exactly this name.
    name: Option<String>,
    /// Names starting with this text (case-sensitive).
    name_prefix: Option<String>,
}

impl AuthorFilter {
    fn compile(self) -> Result<Filter> {
        let mut filter = Filter::all();
        if let Some(name) = self.name {
            let name = Label::parse("filter.name", &name).map_err(invalid)?;
            filter = filter.and(Filter::Eq(
                author::field::NAME.into(),
                Scalar::Str(name.as_str().to_owned()),
            ));
        }
        if let Some(prefix) = self.name_prefix {
            let prefix =
                Prefix::parse("filter.namePrefix", &prefix, Label::MAX_CHARS).map_err(invalid)?;
            filter = filter.and(Filter::Prefix(
                author::field::NAME.into(),
                prefix.into_string(),
            ));
        }
        Ok(filter)
    }
}

/// Where a page starts and ends (Relay's `PageInfo`). Lists page forward only, with `first` and
/// `after`.
#[derive(SimpleObject)]
pub struct PageInfo {
    /// Whether more records follow this page.
    has_next_page: bool,
    /// Always `false`: lists page forward only (Relay allows `false` when paging with `first`).
    has_previous_page: bool,
    /// The cursor of the page's first record; `null` on an empty page.
    start_cursor: Option<String>,
    /// Pass as `after` to read the next page; `null` on an empty page.
    end_cursor: Option<String>,
}

fn page_info<T>(page: &Page<T>) -> PageInfo {
    PageInfo {
        has_next_page: page.has_next,
        has_previous_page: false,
        start_cursor: page.cursors.first().cloned(),
        end_cursor: page.end_cursor.clone(),
    }
}

/// A page of records, as `nodes` or as Relay `edges`: both are resolved from one page, so
/// asking for either (or both) reads the same records once.
pub struct Connection<T> {
    nodes: Vec<T>,
    cursors: Vec<String>,
    page_info: PageInfo,
}

impl<T> Connection<T> {
    fn of<R>(page: Page<R>, wrap: impl Fn(R) -> T) -> Self {
        Self {
            page_info: page_info(&page),
            cursors: page.cursors,
            nodes: page.items.into_iter().map(wrap).collect(),
        }
    }

    fn with_cursors(&self) -> Vec<Edge<'_, T>> {
        self.cursors
            .iter()
            .zip(&self.nodes)
            .map(|(cursor, node)| Edge { cursor, node })
            .collect()
    }
}

/// A record of a page and its cursor.
pub struct Edge<'a, T> {
    cursor: &'a str,
    node: &'a T,
}

/// A page of books.
pub type BookConnection = Connection<BookObject>;

/// A page of bookstores.
pub type BookstoreConnection = Connection<BookstoreObject>;

/// A page of authors.
pub type AuthorConnection = Connection<AuthorObject>;

/// The `Connection` and `Edge` objects of one record type, named and described.
macro_rules! connection_objects {
    (
        $node:ty, $connection:tt, $edge:tt,
        $connection_doc:tt, $nodes_doc:tt, $edges_doc:tt, $edge_doc:tt, $cursor_doc:tt, $node_doc:tt
    ) => {
        #[doc = $connection_doc]
        #[Object(name = $connection)]
        impl Connection<$node> {
            #[doc = $nodes_doc]
            async fn nodes(&self) -> &[$node] {
                &self.nodes
            }

            #[doc = $edges_doc]
            async fn edges(&self) -> Vec<Edge<'_, $node>> {
                self.with_cursors()
            }

            /// Where the page starts and ends.
            async fn page_info(&self) -> &PageInfo {
                &self.page_info
            }
        }

        #[doc = $edge_doc]
        #[Object(name = $edge)]
        impl Edge<'_, $node> {
            #[doc = $cursor_doc]
            async fn cursor(&self) -> &str {
                self.cursor
            }

            #[doc = $node_doc]
            async fn node(&self) -> &$node {
                self.node
            }
        }
    };
}

connection_objects!(
    BookObject,
    "BookConnection",
    "BookEdge",
    "A page of books.",
    "The books of the page, in order.",
    "The same books with their cursors (Relay connections).",
    "A book of a page and its cursor.",
    "Pass as `after` to read the books that follow this one.",
    "The book."
);

connection_objects!(
    BookstoreObject,
    "BookstoreConnection",
    "BookstoreEdge",
    "A page of bookstores.",
    "The bookstores of the page, in order.",
    "The same bookstores with their cursors (Relay connections).",
    "A bookstore of a page and its cursor.",
    "Pass as `after` to read the bookstores that follow this one.",
    "The bookstore."
);

connection_objects!(
    AuthorObject,
    "AuthorConnection",
    "AuthorEdge",
    "A page of authors.",
    "The authors of the page, in order.",
    "The same authors with their cursors (Relay connections).",
    "An author of a page and its cursor.",
    "Pass as `after` to read the authors that follow this one.",
    "The author."
);

/// Whether the selection asks for `field` of the records of a connection, as `nodes { field }`
/// or as `edges { node { field } }`.
fn selects_in_records(ctx: &Context<'_>, field: &str) -> bool {
    let look_ahead = ctx.look_ahead();
    look_ahead.field("nodes").field(field).exists()
        || look_ahead
            .field("edges")
            .field("node")
            .field(field)
            .exists()
}

fn page_args(first: i32, after: Option<String>) -> Result<(usize, Option<Cursor>)> {
    if !(1..=MAX_PAGE_SIZE).contains(&first) {
        return Err(bad_input(format!("first: between 1 and {MAX_PAGE_SIZE}")));
    }
    let after = after
        .map(|text| {
            Cursor::decode(&text)
                .filter(sorts_like_a_page)
                .ok_or_else(|| bad_input("after: not a cursor this API gave"))
        })
        .transpose()?;
    Ok((first as usize, after))
}

/// Whether a cursor has the types every list's sort has: text (a title, a name key) of a
/// length a record can hold, then an ObjectId. Any other type would be ordered differently by
/// MongoDB and by the cache.
fn sorts_like_a_page(cursor: &Cursor) -> bool {
    let key_fits =
        matches!(&cursor.key, Scalar::Str(text) if text.chars().count() <= Title::MAX_CHARS);
    // Canonical (lower-case) hex only: ids are compared as text, which must sort like the bytes.
    let id_fits = matches!(&cursor.id, Scalar::Id(hex)
        if hex.parse::<BookId>().is_ok_and(|id| id.to_string() == *hex));
    key_fits && id_fits
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
    if selects_in_records(ctx, "bookstore") {
        prefetch_bookstores(ctx, page.items.iter()).await?;
    }
    Ok(Connection::of(page, BookObject))
}

#[derive(Default)]
pub struct ListQuery;

#[Object]
impl ListQuery {
    /// Books matching `filter`, ordered by title, `first` at a time (at most 100).
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
        let filter = filter.unwrap_or_default().compile()?;
        books_page(ctx, filter, page_size(first), after).await
    }

    /// Bookstores matching `filter`, ordered by normalised name, `first` at a time.
    #[graphql(complexity = "super::cost::list(first, child_complexity)")]
    async fn bookstores(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only the bookstores that match every field given.")] filter: Option<
            BookstoreFilter,
        >,
        #[graphql(default = 20, desc = "How many bookstores, 1 to 100.")] first: Option<i32>,
        #[graphql(desc = "Read on after this cursor (`endCursor` or an edge's `cursor`).")]
        after: Option<String>,
    ) -> Result<BookstoreConnection> {
        let (first, after) = page_args(page_size(first), after)?;
        let filter = filter.unwrap_or_default().compile()?;
        let page = datastore(ctx)
            .bookstores_page(filter, first, after)
            .await
            .map_err(datastore_error)?;
        prefetch_store_books(ctx, &page.items).await?;
        Ok(Connection::of(page, BookstoreObject))
    }

    /// Authors matching `filter`, ordered by name, `first` at a time (at most 100).
    #[graphql(complexity = "super::cost::list(first, child_complexity)")]
    async fn authors(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only the authors that match every field given.")] filter: Option<
            AuthorFilter,
        >,
        #[graphql(default = 20, desc = "How many authors, 1 to 100.")] first: Option<i32>,
        #[graphql(desc = "Read on after this cursor (`endCursor` or an edge's `cursor`).")]
        after: Option<String>,
    ) -> Result<AuthorConnection> {
        let (first, after) = page_args(page_size(first), after)?;
        let filter = filter.unwrap_or_default().compile()?;
        let page = datastore(ctx)
            .page::<Author>(filter, first, after)
            .await
            .map_err(datastore_error)?;
        Ok(Connection::of(page, AuthorObject))
    }
}

/// `Author.books`: the books that credit the author, through the same cached pages.
pub async fn author_books(
    ctx: &Context<'_>,
    author: AuthorId,
    filter: Option<BookFilter>,
    first: i32,
    after: Option<String>,
) -> Result<BookConnection> {
    let credits = Filter::Eq(
        book::field::AUTHOR_IDS.into(),
        Scalar::Id(author.to_string()),
    );
    let filter = credits.and(filter.unwrap_or_default().compile()?);
    books_page(ctx, filter, first, after).await
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
    let look_ahead = ctx.look_ahead();
    let as_nodes = look_ahead.field("nodes").field("books");
    let as_edges = look_ahead.field("edges").field("node").field("books");
    for field in as_nodes
        .selection_fields()
        .into_iter()
        .chain(as_edges.selection_fields())
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
            None | Some(Value::Null) => Some(DEFAULT_PAGE_SIZE),
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
