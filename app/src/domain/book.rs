//! Books: the record the service ingests, stores, caches and serves.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    text::{normalise, InvalidText},
    AuthorId, BookId, BookstoreId, LabelList, NewAuthor, Version,
};

/// A stored book, as every layer above the store sees it. Its serde form is what the cache
/// holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Book {
    pub id: BookId,
    /// The outside source's own key (an Open Library work key such as `/works/OL27448W`);
    /// unique, so re-ingesting a record updates it instead of duplicating it.
    pub source_key: SourceKey,
    pub title: Title,
    pub authors: LabelList,
    /// The ids of the authors the book credits, in the source's order (`authors` keeps their
    /// names as the source spelled them). Records cached before authors existed have none.
    #[serde(default)]
    pub author_ids: Vec<AuthorId>,
    pub first_publish_year: Option<PublishYear>,
    pub subjects: LabelList,
    /// The bookstore that stocks this book, if any.
    pub bookstore_id: Option<BookstoreId>,
    /// Incremented by every write; the cache never replaces a record with an older version.
    pub version: Version,
    pub updated_at: DateTime<Utc>,
}

/// A book to create: every field but those the store assigns.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBook {
    pub source_key: SourceKey,
    pub title: Title,
    pub authors: LabelList,
    pub first_publish_year: Option<PublishYear>,
    pub subjects: LabelList,
    /// The authors the source credits by key (ingest stores them, and the book lists their
    /// ids); empty when the source gave no keys.
    pub author_credits: Vec<NewAuthor>,
}

/// A partial update: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BookChanges {
    pub title: Option<Title>,
    pub authors: Option<LabelList>,
    /// The new list of author ids (replaces the old one).
    pub author_ids: Option<Vec<AuthorId>>,
    /// `Some(None)` clears the year.
    pub first_publish_year: Option<Option<PublishYear>>,
    pub subjects: Option<LabelList>,
    /// `Some(None)` takes the book out of its store (see `Datastore::move_book`).
    pub bookstore_id: Option<Option<BookstoreId>>,
}

impl BookChanges {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `book` with these changes applied, at `version` and `updated_at` (what MongoDB's update
    /// does in write-through; write-behind applies changes here, before MongoDB sees them).
    pub fn apply(&self, book: &Book, version: Version, updated_at: DateTime<Utc>) -> Book {
        let mut changed = book.clone();
        if let Some(title) = &self.title {
            changed.title = title.clone();
        }
        if let Some(authors) = &self.authors {
            changed.authors = authors.clone();
        }
        if let Some(author_ids) = &self.author_ids {
            changed.author_ids = author_ids.clone();
        }
        if let Some(year) = self.first_publish_year {
            changed.first_publish_year = year;
        }
        if let Some(subjects) = &self.subjects {
            changed.subjects = subjects.clone();
        }
        if let Some(store) = self.bookstore_id {
            changed.bookstore_id = store;
        }
        changed.version = version;
        changed.updated_at = updated_at;
        changed
    }
}

impl NewBook {
    /// Whether `book` already has this content (and is in `stock`, when given): a bulk upsert
    /// leaves it alone.
    pub fn same_content(&self, book: &Book, stock: Option<BookstoreId>) -> bool {
        stock.is_none_or(|store| book.bookstore_id == Some(store))
            && self.title == book.title
            && self.authors == book.authors
            && self.author_ids() == book.author_ids
            && self.first_publish_year == book.first_publish_year
            && self.subjects == book.subjects
    }

    /// The changes that give `book` this content (and put it in `stock`, when given).
    pub fn changes_from(&self, book: &Book, stock: Option<BookstoreId>) -> BookChanges {
        BookChanges {
            title: (self.title != book.title).then(|| self.title.clone()),
            authors: (self.authors != book.authors).then(|| self.authors.clone()),
            author_ids: (self.author_ids() != book.author_ids).then(|| self.author_ids()),
            first_publish_year: (self.first_publish_year != book.first_publish_year)
                .then_some(self.first_publish_year),
            subjects: (self.subjects != book.subjects).then(|| self.subjects.clone()),
            bookstore_id: stock
                .filter(|store| book.bookstore_id != Some(*store))
                .map(Some),
        }
    }

    /// The ids of the authors this book credits, in order.
    pub fn author_ids(&self) -> Vec<AuthorId> {
        self.author_credits.iter().map(NewAuthor::id).collect()
    }

    /// The book this creates under `id`, at `version`, in no store.
    pub fn into_book(self, id: BookId, version: Version, updated_at: DateTime<Utc>) -> Book {
        Book {
            id,
            author_ids: self.author_ids(),
            source_key: self.source_key,
            title: self.title,
            authors: self.authors,
            first_publish_year: self.first_publish_year,
            subjects: self.subjects,
            bookstore_id: None,
            version,
            updated_at,
        }
    }
}

impl Book {
    /// The most authors and subjects a book may list.
    pub const MAX_AUTHORS: usize = 50;
    pub const MAX_SUBJECTS: usize = 100;
}

/// A book title: trimmed, inner whitespace collapsed, 1 to 500 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Title(String);

impl Title {
    pub const MAX_CHARS: usize = 500;

    pub fn parse(raw: &str) -> Result<Self, InvalidText> {
        normalise("title", raw, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Title {
    type Error = InvalidText;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<Title> for String {
    fn from(title: Title) -> Self {
        title.0
    }
}

/// The outside source's key for a record: 1 to 200 characters, no whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SourceKey(String);

impl SourceKey {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, InvalidText> {
        let key = raw.trim();
        if key.is_empty() {
            return Err(InvalidText::Empty { field: "sourceKey" });
        }
        if key.chars().count() > Self::MAX_CHARS {
            return Err(InvalidText::TooLong {
                field: "sourceKey",
                max: Self::MAX_CHARS,
            });
        }
        if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidText::ControlCharacter { field: "sourceKey" });
        }
        Ok(Self(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SourceKey {
    type Error = InvalidText;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<SourceKey> for String {
    fn from(key: SourceKey) -> Self {
        key.0
    }
}

/// The year a work was first published: from 2000 BCE (-2000) to next year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i32")]
pub struct PublishYear(i32);

impl TryFrom<i64> for PublishYear {
    type Error = InvalidYear;
    fn try_from(year: i64) -> Result<Self, Self::Error> {
        Self::parse(year)
    }
}

impl From<PublishYear> for i32 {
    fn from(year: PublishYear) -> Self {
        year.0
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("firstPublishYear {0} is outside -2000..={1}")]
pub struct InvalidYear(pub i64, pub i32);

impl PublishYear {
    pub const EARLIEST: i32 = -2000;

    pub fn parse(year: i64) -> Result<Self, InvalidYear> {
        use chrono::Datelike;
        let latest = Utc::now().year() + 1;
        match i32::try_from(year) {
            Ok(y) if (Self::EARLIEST..=latest).contains(&y) => Ok(Self(y)),
            _ => Err(InvalidYear(year, latest)),
        }
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_normalised() {
        assert_eq!(
            Title::parse("  The  Hobbit ").expect("valid").as_str(),
            "The Hobbit"
        );
        assert!(Title::parse("   ").is_err());
        assert!(Title::parse(&"x".repeat(Title::MAX_CHARS + 1)).is_err());
    }

    #[test]
    fn source_keys_have_no_whitespace() {
        assert_eq!(
            SourceKey::parse(" /works/OL1W ").expect("valid").as_str(),
            "/works/OL1W"
        );
        assert!(SourceKey::parse("/works/OL 1W").is_err());
        assert!(SourceKey::parse("").is_err());
    }

    #[test]
    fn years_are_bounded() {
        assert_eq!(PublishYear::parse(1937).expect("valid").get(), 1937);
        assert!(PublishYear::parse(-2001).is_err());
        assert!(PublishYear::parse(3000).is_err());
        assert!(PublishYear::parse(i64::MAX).is_err());
    }

    #[test]
    fn empty_changes_are_detected() {
        assert!(BookChanges::default().is_empty());
        let changes = BookChanges {
            first_publish_year: Some(None),
            ..Default::default()
        };
        assert!(!changes.is_empty());
    }
}
