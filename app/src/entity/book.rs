//! Books, described: the `books` collection, the stored document, the page order (`title`),
//! the fields cached results are indexed by, and the MongoDB indexes.

use bson::{oid::ObjectId, DateTime};
use chrono::Utc;

use super::{stored_document, Corrupt, Entity, Index};
use crate::domain::{
    AuthorId, Book, BookId, BookstoreId, LabelList, NewBook, PublishYear, SourceKey, Title, Version,
};

stored_document! {
    /// A book as MongoDB stores it.
    pub struct BookDocument;
    /// The MongoDB name of each field of a stored book.
    pub mod field {
        source_key: String => SOURCE_KEY = "sourceKey",
        title: String => TITLE = "title",
        #[serde(default)]
        authors: Vec<String> => AUTHORS = "authors",
        #[serde(default)]
        author_ids: Vec<ObjectId> => AUTHOR_IDS = "authorIds",
        #[serde(default, skip_serializing_if = "Option::is_none")]
        first_publish_year: Option<i32> => FIRST_PUBLISH_YEAR = "firstPublishYear",
        #[serde(default)]
        subjects: Vec<String> => SUBJECTS = "subjects",
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bookstore_id: Option<ObjectId> => BOOKSTORE_ID = "bookstoreId",
    }
}

impl Entity for Book {
    const COLLECTION: &'static str = "books";
    const SORT_FIELD: &'static str = field::TITLE;
    const TERM_FIELDS: &'static [&'static str] = &[
        field::ID,
        field::BOOKSTORE_ID,
        field::AUTHOR_IDS,
        field::AUTHORS,
    ];
    const INDEXES: &'static [Index] = &[
        Index::unique("sourceKey_unique", &[field::SOURCE_KEY]),
        Index::new("title_id", &[field::TITLE, field::ID]),
        Index::new(
            "authors_title_id",
            &[field::AUTHORS, field::TITLE, field::ID],
        ),
        Index::new(
            "authorIds_title_id",
            &[field::AUTHOR_IDS, field::TITLE, field::ID],
        ),
        Index::new(
            "subjects_title_id",
            &[field::SUBJECTS, field::TITLE, field::ID],
        ),
        Index::new(
            "bookstoreId_title_id",
            &[field::BOOKSTORE_ID, field::TITLE, field::ID],
        ),
    ];

    type Id = BookId;
    type Document = BookDocument;

    fn id(&self) -> BookId {
        self.id
    }

    fn version(&self) -> Version {
        self.version
    }

    fn to_stored(&self) -> BookDocument {
        BookDocument {
            id: self.id.object_id(),
            source_key: self.source_key.as_str().to_owned(),
            title: self.title.as_str().to_owned(),
            authors: self.authors.to_strings(),
            author_ids: self.author_ids.iter().map(AuthorId::object_id).collect(),
            first_publish_year: self.first_publish_year.map(PublishYear::get),
            subjects: self.subjects.to_strings(),
            bookstore_id: self.bookstore_id.map(|id| id.object_id()),
            version: self.version,
            updated_at: DateTime::from_chrono(self.updated_at),
        }
    }

    fn from_stored(document: BookDocument) -> Result<Self, Corrupt> {
        let corrupt = |error: &dyn std::fmt::Display| Corrupt {
            id: document.id.to_hex(),
            reason: error.to_string(),
        };
        Ok(Book {
            id: BookId::from_object_id(document.id),
            source_key: SourceKey::parse(&document.source_key).map_err(|e| corrupt(&e))?,
            title: Title::parse(&document.title).map_err(|e| corrupt(&e))?,
            authors: LabelList::parse("authors", &document.authors, Book::MAX_AUTHORS)
                .map_err(|e| corrupt(&e))?,
            author_ids: document
                .author_ids
                .iter()
                .map(|&id| AuthorId::from_object_id(id))
                .collect(),
            first_publish_year: document
                .first_publish_year
                .map(|year| PublishYear::parse(year.into()))
                .transpose()
                .map_err(|e| corrupt(&e))?,
            subjects: LabelList::parse("subjects", &document.subjects, Book::MAX_SUBJECTS)
                .map_err(|e| corrupt(&e))?,
            bookstore_id: document.bookstore_id.map(BookstoreId::from_object_id),
            version: document.version,
            updated_at: document.updated_at.to_chrono(),
        })
    }
}

impl BookDocument {
    /// The document of a new book: `id`, at `version`, in no store, written now.
    pub fn new(id: ObjectId, book: &NewBook, version: Version) -> Self {
        Self {
            id,
            source_key: book.source_key.as_str().to_owned(),
            title: book.title.as_str().to_owned(),
            authors: book.authors.to_strings(),
            author_ids: book.author_ids().iter().map(AuthorId::object_id).collect(),
            first_publish_year: book.first_publish_year.map(PublishYear::get),
            subjects: book.subjects.to_strings(),
            bookstore_id: None,
            version,
            updated_at: DateTime::from_chrono(Utc::now()),
        }
    }
}
