//! Bookstores, described: the `bookstores` collection, the stored document (with `nameKey`, the
//! normalised name a unique index holds unique), the page order (`nameKey`), the fields cached
//! results are indexed by, and the MongoDB indexes.

use bson::DateTime;

use super::{stored_document, Corrupt, Entity, Index};
use crate::domain::{Bookstore, BookstoreId, BookstoreName, Label, Version};

stored_document! {
    /// A bookstore as MongoDB stores it.
    pub struct BookstoreDocument;
    /// The MongoDB name of each field of a stored bookstore.
    pub mod field {
        name: String => NAME = "name",
        name_key: String => NAME_KEY = "nameKey",
        city: String => CITY = "city",
    }
}

impl Entity for Bookstore {
    const COLLECTION: &'static str = "bookstores";
    const SORT_FIELD: &'static str = field::NAME_KEY;
    const TERM_FIELDS: &'static [&'static str] = &[field::ID, field::CITY];
    const INDEXES: &'static [Index] = &[
        // Makes the name rule hold under concurrency: of two creates or renames to one name,
        // MongoDB accepts one and refuses the other with a duplicate-key error.
        Index::unique("nameKey_unique", &[field::NAME_KEY]),
        // The list queries' order (normalised name, then `_id`), alone and within a city.
        Index::new("nameKey_id", &[field::NAME_KEY, field::ID]),
        Index::new(
            "city_nameKey_id",
            &[field::CITY, field::NAME_KEY, field::ID],
        ),
    ];

    type Id = BookstoreId;
    type Document = BookstoreDocument;

    fn id(&self) -> BookstoreId {
        self.id
    }

    fn version(&self) -> Version {
        self.version
    }

    /// Its normalised name: unique among bookstores.
    fn claims(&self) -> Vec<String> {
        vec![name_claim(self.name.key())]
    }

    fn to_stored(&self) -> BookstoreDocument {
        BookstoreDocument {
            id: self.id.object_id(),
            name: self.name.as_str().to_owned(),
            name_key: self.name.key().as_str().to_owned(),
            city: self.city.as_str().to_owned(),
            version: self.version,
            updated_at: DateTime::from_chrono(self.updated_at),
        }
    }

    fn from_stored(document: BookstoreDocument) -> Result<Self, Corrupt> {
        let corrupt = |error: &dyn std::fmt::Display| Corrupt {
            id: document.id.to_hex(),
            reason: error.to_string(),
        };
        Ok(Bookstore {
            id: BookstoreId::from_object_id(document.id),
            name: BookstoreName::parse(&document.name).map_err(|e| corrupt(&e))?,
            city: Label::parse("city", &document.city).map_err(|e| corrupt(&e))?,
            version: document.version,
            updated_at: document.updated_at.to_chrono(),
        })
    }
}

/// The claim a bookstore holds on its normalised name while a write-behind write is pending.
pub fn name_claim(key: &crate::domain::NameKey) -> String {
    format!("name:{}", key.as_str())
}
