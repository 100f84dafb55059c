//! From a search record to a [`NewBook`]: the one place the source's data is judged.
//!
//! A book needs a work key (`/works/...`) and a title; its authors, if any, must be valid names
//! and its year, if any, a plausible one. Anything else refuses the record with a
//! [`RejectReason`] that the ingest counts.
//!
//! Two bounds are applied rather than enforced, because Open Library exceeds them routinely and a
//! famous book should not be lost for it: only the first [`Book::MAX_AUTHORS`] authors (in
//! credited order) and the first [`Book::MAX_SUBJECTS`] distinct valid subjects are kept.
//! Subjects are free-form catalogue tags, so a blank or oversized one is dropped, not fatal.

use std::fmt;

use super::search::{Record, SearchDoc, Text, YearField};
use crate::domain::{Book, Label, LabelList, NewAuthor, NewBook, PublishYear, SourceKey, Title};

/// Why a record was not ingested; the summary counts records by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectReason {
    /// The record did not fit the search structs at all.
    Unreadable,
    MissingKey,
    /// Not a work key (`/works/...`), or not a valid source key.
    InvalidKey,
    MissingTitle,
    /// Blank after trimming, too long, or with control characters.
    InvalidTitle,
    InvalidAuthor,
    InvalidYear,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unreadable => "unreadable record",
            Self::MissingKey => "missing key",
            Self::InvalidKey => "invalid key",
            Self::MissingTitle => "missing title",
            Self::InvalidTitle => "invalid title",
            Self::InvalidAuthor => "invalid author",
            Self::InvalidYear => "invalid year",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused record: the reason to count, and a detail to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct InvalidRecord {
    pub reason: RejectReason,
    pub detail: String,
}

fn refuse(reason: RejectReason, detail: impl fmt::Display) -> InvalidRecord {
    InvalidRecord {
        reason,
        detail: detail.to_string(),
    }
}

/// The prefix of an Open Library work key.
const WORK_PREFIX: &str = "/works/";

impl TryFrom<SearchDoc> for NewBook {
    type Error = InvalidRecord;

    fn try_from(doc: SearchDoc) -> Result<Self, Self::Error> {
        let raw_key = doc
            .key
            .ok_or_else(|| refuse(RejectReason::MissingKey, "no key"))?;
        let source_key =
            SourceKey::parse(&raw_key).map_err(|e| refuse(RejectReason::InvalidKey, e))?;
        if !source_key.as_str().starts_with(WORK_PREFIX) {
            return Err(refuse(
                RejectReason::InvalidKey,
                format!("{raw_key:?} is not a work key"),
            ));
        }
        let title = doc
            .title
            .ok_or_else(|| refuse(RejectReason::MissingTitle, &raw_key))?;
        let title = Title::parse(&title.0).map_err(|e| refuse(RejectReason::InvalidTitle, e))?;
        let authors = doc.author_name.unwrap_or_default();
        let credited = &authors[..authors.len().min(Book::MAX_AUTHORS)];
        let author_credits = credits(credited, &doc.author_key.unwrap_or_default());
        let authors = LabelList::parse("authors", credited, Book::MAX_AUTHORS)
            .map_err(|e| refuse(RejectReason::InvalidAuthor, e))?;
        let first_publish_year = doc
            .first_publish_year
            .map(|year| parse_year(&year))
            .transpose()?;
        let subjects = first_valid_subjects(doc.subject.unwrap_or_default().iter());
        Ok(NewBook {
            source_key,
            title,
            authors,
            first_publish_year,
            subjects,
            author_credits,
        })
    }
}

/// The authors the source credits with a key: each name paired with the key at its position.
/// A pair whose key or name does not parse is left out (the name stays in the book's
/// `authors`); a key repeated keeps its first name.
fn credits(names: &[Text], keys: &[Text]) -> Vec<NewAuthor> {
    let mut credits: Vec<NewAuthor> = Vec::new();
    for (name, key) in names.iter().zip(keys) {
        let (Ok(name), Ok(source_key)) =
            (Label::parse("authors", &name.0), SourceKey::parse(&key.0))
        else {
            continue;
        };
        if credits.iter().all(|credit| credit.source_key != source_key) {
            credits.push(NewAuthor { source_key, name });
        }
    }
    credits
}

impl TryFrom<Record> for NewBook {
    type Error = InvalidRecord;

    fn try_from(record: Record) -> Result<Self, Self::Error> {
        match record {
            Record::Readable(doc) => Self::try_from(doc),
            Record::Unreadable { key, reason } => Err(refuse(
                RejectReason::Unreadable,
                format!("{}: {reason}", key.as_deref().unwrap_or("no key")),
            )),
        }
    }
}

fn parse_year(year: &YearField) -> Result<PublishYear, InvalidRecord> {
    let number = match year {
        YearField::Integer(number) => Some(*number),
        YearField::Float(number) if number.fract() == 0.0 => Some(*number as i64),
        YearField::Float(_) => None,
        YearField::Text(text) => text.trim().parse().ok(),
    };
    let number = number.ok_or_else(|| refuse(RejectReason::InvalidYear, format!("{year:?}")))?;
    PublishYear::parse(number).map_err(|e| refuse(RejectReason::InvalidYear, e))
}

/// The first [`Book::MAX_SUBJECTS`] distinct subjects that are valid labels.
fn first_valid_subjects<'a>(raw: impl Iterator<Item = &'a super::search::Text>) -> LabelList {
    let mut kept: Vec<Label> = Vec::new();
    for subject in raw {
        if kept.len() == Book::MAX_SUBJECTS {
            break;
        }
        if let Ok(label) = Label::parse("subjects", &subject.0) {
            if !kept.contains(&label) {
                kept.push(label);
            }
        }
    }
    let texts: Vec<&str> = kept.iter().map(Label::as_str).collect();
    LabelList::parse("subjects", &texts, Book::MAX_SUBJECTS)
        .expect("distinct valid labels, at most the maximum, form a valid list")
}

#[cfg(test)]
mod tests {
    use super::super::search::Text;
    use super::*;

    fn doc(key: &str, title: &str) -> SearchDoc {
        SearchDoc {
            key: Some(key.into()),
            title: Some(Text(title.into())),
            ..SearchDoc::default()
        }
    }

    fn reason(doc: SearchDoc) -> RejectReason {
        NewBook::try_from(doc).expect_err("refused").reason
    }

    fn texts(items: &[&str]) -> Vec<Text> {
        items.iter().map(|item| Text((*item).into())).collect()
    }

    #[test]
    fn a_full_record_becomes_a_book() {
        let book = NewBook::try_from(SearchDoc {
            author_name: Some(texts(&["J.R.R. Tolkien", " J.R.R.  Tolkien"])),
            first_publish_year: Some(YearField::Text("1954".into())),
            subject: Some(texts(&["Fantasy", "", "Fantasy", "Middle Earth"])),
            ..doc("/works/OL27448W", " The Lord of the Rings ")
        })
        .expect("valid");
        assert_eq!(book.source_key.as_str(), "/works/OL27448W");
        assert_eq!(book.title.as_str(), "The Lord of the Rings");
        assert_eq!(book.authors.to_strings(), ["J.R.R. Tolkien"]);
        assert_eq!(book.first_publish_year.map(PublishYear::get), Some(1954));
        assert_eq!(book.subjects.to_strings(), ["Fantasy", "Middle Earth"]);
    }

    #[test]
    fn a_record_without_authors_or_year_is_still_a_book() {
        let book = NewBook::try_from(doc("/works/OL1W", "Anonymous")).expect("valid");
        assert!(book.authors.is_empty() && book.first_publish_year.is_none());
    }

    #[test]
    fn each_flaw_is_refused_with_its_reason() {
        let no_key = SearchDoc {
            key: None,
            ..doc("", "T")
        };
        assert_eq!(reason(no_key), RejectReason::MissingKey);
        assert_eq!(reason(doc("/authors/OL1A", "T")), RejectReason::InvalidKey);
        assert_eq!(reason(doc("/works/OL 1W", "T")), RejectReason::InvalidKey);
        let no_title = SearchDoc {
            title: None,
            ..doc("/works/OL1W", "")
        };
        assert_eq!(reason(no_title), RejectReason::MissingTitle);
        assert_eq!(reason(doc("/works/OL1W", "  ")), RejectReason::InvalidTitle);
        let bad_author = SearchDoc {
            author_name: Some(texts(&["Ok", "\u{0}"])),
            ..doc("/works/OL1W", "T")
        };
        assert_eq!(reason(bad_author), RejectReason::InvalidAuthor);
        for year in [
            YearField::Integer(99_999),
            YearField::Text("unknown".into()),
            YearField::Float(1954.5),
        ] {
            let bad_year = SearchDoc {
                first_publish_year: Some(year),
                ..doc("/works/OL1W", "T")
            };
            assert_eq!(reason(bad_year), RejectReason::InvalidYear);
        }
    }

    #[test]
    fn long_author_and_subject_lists_are_cut_to_the_bounds() {
        let many: Vec<String> = (0..300).map(|n| format!("Name {n}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let book = NewBook::try_from(SearchDoc {
            author_name: Some(texts(&many)),
            subject: Some(texts(&many)),
            ..doc("/works/OL1W", "Anthology")
        })
        .expect("valid");
        assert_eq!(book.authors.iter().count(), Book::MAX_AUTHORS);
        assert_eq!(book.subjects.iter().count(), Book::MAX_SUBJECTS);
        assert_eq!(book.authors.to_strings()[0], "Name 0");
    }
}
