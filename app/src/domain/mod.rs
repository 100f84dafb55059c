//! Domain types: the values the rest of the service may hold.
//!
//! Parse, don't validate: constructors normalise and reject bad input, so code that holds a
//! [`BookId`] or a [`Title`] never re-checks it. Storage documents (`store`) and GraphQL types
//! (`graphql`) are separate structs converted explicitly to and from these.

mod author;
mod book;
mod bookstore;
mod ids;
mod text;

pub use author::{Author, NewAuthor};
pub use book::{Book, BookChanges, NewBook, PublishYear, SourceKey, Title};
pub use bookstore::{Bookstore, BookstoreChanges, BookstoreName, NameKey, NewBookstore};
pub use ids::{entity, AuthorId, BookId, BookstoreId, Id, InvalidId};
pub use text::{InvalidText, Label, LabelList, Prefix};

/// Every write increments a record's version; the cache orders records by it.
pub type Version = i64;
