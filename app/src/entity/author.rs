//! Authors, described: the `authors` collection, the stored document (unique `sourceKey`), the
//! page order (`name`), and the MongoDB indexes.

use bson::DateTime;

use super::{stored_document, Corrupt, Entity, Index};
use crate::domain::{Author, AuthorId, Label, SourceKey, Version};

stored_document! {
    /// An author as MongoDB stores it.
    pub struct AuthorDocument;
    /// The MongoDB name of each field of a stored author.
    pub mod field {
        source_key: String => SOURCE_KEY = "sourceKey",
        name: String => NAME = "name",
    }
}

impl Entity for Author {
    const COLLECTION: &'static str = "authors";
    const SORT_FIELD: &'static str = field::NAME;
    const TERM_FIELDS: &'static [&'static str] = &[field::ID];
    const INDEXES: &'static [Index] = &[
        Index::unique("sourceKey_unique", &[field::SOURCE_KEY]),
        Index::new("name_id", &[field::NAME, field::ID]),
    ];

    type Id = AuthorId;
    type Document = AuthorDocument;

    fn id(&self) -> AuthorId {
        self.id
    }

    fn version(&self) -> Version {
        self.version
    }

    fn to_stored(&self) -> AuthorDocument {
        AuthorDocument {
            id: self.id.object_id(),
            source_key: self.source_key.as_str().to_owned(),
            name: self.name.as_str().to_owned(),
            version: self.version,
            updated_at: DateTime::from_chrono(self.updated_at),
        }
    }

    fn from_stored(document: AuthorDocument) -> Result<Self, Corrupt> {
        let corrupt = |error: &dyn std::fmt::Display| Corrupt {
            id: document.id.to_hex(),
            reason: error.to_string(),
        };
        Ok(Author {
            id: AuthorId::from_object_id(document.id),
            source_key: SourceKey::parse(&document.source_key).map_err(|e| corrupt(&e))?,
            name: Label::parse("name", &document.name).map_err(|e| corrupt(&e))?,
            version: document.version,
            updated_at: document.updated_at.to_chrono(),
        })
    }
}
