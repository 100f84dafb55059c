//! What an entity is, described once: its collection, its id and version, its stored document
//! and the MongoDB name of each stored field, the field pages are ordered by, the fields cached
//! results are indexed by, and its MongoDB indexes. One [`Entity`] impl per entity, in one
//! file of this module (`book.rs`, `bookstore.rs`); the store, the entity cache, the
//! query-result cache and the GraphQL filters all read it from here.
//!
//! This layer sits below every user of the descriptor (`scripts/layers`: `datastore` ->
//! `cache` -> `store` -> `query` -> `entity` -> `domain`), and does no I/O: the stored document
//! is plain data (serde over BSON types), the store is what sends it to MongoDB.
//!
//! A field's MongoDB name is written once, in the entity's [`stored_document!`] list, which
//! declares both the document's field (`#[serde(rename = ...)]`) and its name constant
//! (`book::field::TITLE`): a filter, an index or an update that names a field that does not
//! exist fails to compile instead of silently matching nothing.

pub mod author;
pub mod book;
pub mod bookstore;

use std::{fmt::Display, hash::Hash, str::FromStr};

use bson::{oid::ObjectId, Document};
use serde::{de::DeserializeOwned, Serialize};

use crate::domain::Version;

/// An entity: a record type the store persists, the caches hold and list queries select.
pub trait Entity: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The collection name: MongoDB's collection, the cache key stem (`books` gives
    /// `books_<id>`), the query index's prefix and the metric label.
    const COLLECTION: &'static str;
    /// The field pages are ordered by (ties broken by `_id`); present on every record.
    const SORT_FIELD: &'static str;
    /// Fields whose equality terms index cached results, most selective first. `_id` allows
    /// results over given ids (`In("_id", ...)`).
    const TERM_FIELDS: &'static [&'static str];
    /// The MongoDB indexes the store creates at start-up: the unique keys, and one per list
    /// query (its filter's field, then the sort field and `_id`), so a page reads its rows only.
    const INDEXES: &'static [Index];

    type Id: Display + FromStr + Copy + Eq + Hash + Send + Sync + Into<ObjectId>;
    /// The document MongoDB stores (declared with [`stored_document!`]).
    type Document: StoredDocument;

    fn id(&self) -> Self::Id;
    fn version(&self) -> Version;

    /// Values no other record of the collection may hold (a unique index in MongoDB), as
    /// strings: a write-behind write claims them before it replies (see `cache::pending`).
    fn claims(&self) -> Vec<String> {
        Vec::new()
    }

    /// The record as MongoDB stores it.
    fn to_stored(&self) -> Self::Document;
    /// The record a stored document holds; `Corrupt` when it breaks a domain rule.
    fn from_stored(document: Self::Document) -> Result<Self, Corrupt>;

    /// The stored document as BSON (same field names and types): what query filters
    /// evaluate on.
    fn document(&self) -> Document {
        bson::to_document(&self.to_stored()).expect("a stored document serialises to BSON")
    }

    /// The record a stored BSON document holds (as a query returned it).
    fn from_document(document: Document) -> Result<Self, Corrupt> {
        let id = document
            .get_object_id(field::ID)
            .map(|id| id.to_hex())
            .unwrap_or_default();
        let stored = bson::from_document(document).map_err(|error| Corrupt {
            id,
            reason: error.to_string(),
        })?;
        Self::from_stored(stored)
    }
}

/// A stored document: what [`stored_document!`] declares.
pub trait StoredDocument:
    Serialize + DeserializeOwned + Clone + Send + Sync + Unpin + 'static
{
    fn id(&self) -> ObjectId;
    fn version(&self) -> Version;
}

/// A MongoDB index on a collection, ascending on each key, in order. The name is how start-up
/// finds that it exists already (so renaming one creates it again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Index {
    pub name: &'static str,
    pub keys: &'static [&'static str],
    pub unique: bool,
}

impl Index {
    pub const fn new(name: &'static str, keys: &'static [&'static str]) -> Self {
        Self {
            name,
            keys,
            unique: false,
        }
    }

    pub const fn unique(name: &'static str, keys: &'static [&'static str]) -> Self {
        Self {
            name,
            keys,
            unique: true,
        }
    }
}

/// A stored document that breaks a domain rule (edited by hand, or written by an older
/// version of the service).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored document {id} is invalid: {reason}")]
pub struct Corrupt {
    pub id: String,
    pub reason: String,
}

/// The MongoDB names of the fields every stored document has (the rest are each entity's own,
/// declared with [`stored_document!`]; each entity's `field` module re-exports these).
pub mod field {
    /// The record's id (an ObjectId).
    pub const ID: &str = "_id";
    /// Incremented by every write; version-conditioned writes match on it.
    pub const VERSION: &str = "version";
    /// When the record was last written.
    pub const UPDATED_AT: &str = "updatedAt";
}

/// Declares a stored document and the MongoDB name of each of its fields from one list, so
/// each name is written once: `rust_name: Type => CONSTANT = "mongoName",` gives the field
/// `rust_name` (serialised as `mongoName`) and the constant `CONSTANT = "mongoName"` in the
/// module named after `mod`. Every document also gets the fields of [`field`], first `id`
/// (`_id`, an ObjectId), last `version` (`i64`) and `updated_at` (a BSON date); the module
/// re-exports their names.
///
/// ```ignore
/// stored_document! {
///     /// A fruit as MongoDB stores it.
///     pub struct FruitDocument;
///     /// The MongoDB name of each field of a stored fruit.
///     pub mod field {
///         breed: String => BREED = "breed",
///     }
/// }
/// ```
macro_rules! stored_document {
    (
        $(#[$meta:meta])*
        pub struct $name:ident;
        $(#[$fields_meta:meta])*
        pub mod $fields:ident {
            $(
                $(#[$field_meta:meta])*
                $field:ident: $type:ty => $constant:ident = $mongo:literal,
            )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        pub struct $name {
            // The names of `entity::field`, which a unit test holds equal to these.
            #[serde(rename = "_id")]
            pub id: bson::oid::ObjectId,
            $( $(#[$field_meta])* #[serde(rename = $mongo)] pub $field: $type, )+
            #[serde(rename = "version")]
            pub version: i64,
            #[serde(rename = "updatedAt")]
            pub updated_at: bson::DateTime,
        }

        $(#[$fields_meta])*
        pub mod $fields {
            pub use $crate::entity::field::*;
            $(
                #[doc = concat!("`", $mongo, "`: the stored `", stringify!($field), "`.")]
                pub const $constant: &str = $mongo;
            )+
        }

        impl $crate::entity::StoredDocument for $name {
            fn id(&self) -> bson::oid::ObjectId {
                self.id
            }

            fn version(&self) -> $crate::domain::Version {
                self.version
            }
        }
    };
}
pub(crate) use stored_document;

#[cfg(test)]
mod tests {
    use bson::{oid::ObjectId, DateTime};

    stored_document! {
        /// A document with one field of its own.
        pub struct Probe;
        pub mod probe {
            breed: String => BREED = "breed",
        }
    }

    #[test]
    fn a_stored_document_is_named_as_its_field_constants_say() {
        let probe = Probe {
            id: ObjectId::new(),
            breed: "Gala".into(),
            version: 1,
            updated_at: DateTime::now(),
        };
        let document = bson::to_document(&probe).expect("serialises");
        let keys: Vec<&str> = document.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [probe::ID, probe::BREED, probe::VERSION, probe::UPDATED_AT]
        );
    }
}
