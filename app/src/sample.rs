//! The bundled sample: a JSON array of books, so `make run` has data without any network.

use serde::Deserialize;

use crate::domain::{Book, LabelList, NewBook, PublishYear, SourceKey, Title};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SampleBook {
    source_key: String,
    title: String,
    #[serde(default)]
    authors: Vec<String>,
    first_publish_year: Option<i64>,
    #[serde(default)]
    subjects: Vec<String>,
}

impl TryFrom<SampleBook> for NewBook {
    type Error = anyhow::Error;

    fn try_from(book: SampleBook) -> anyhow::Result<Self> {
        Ok(NewBook {
            source_key: SourceKey::parse(&book.source_key)?,
            title: Title::parse(&book.title)?,
            authors: LabelList::parse("authors", &book.authors, Book::MAX_AUTHORS)?,
            first_publish_year: book
                .first_publish_year
                .map(PublishYear::parse)
                .transpose()?,
            subjects: LabelList::parse("subjects", &book.subjects, Book::MAX_SUBJECTS)?,
            author_credits: Vec::new(),
        })
    }
}

/// Parses a sample file; any invalid record fails the whole file (it ships with the repo).
pub fn parse(text: &str) -> anyhow::Result<Vec<NewBook>> {
    let books: Vec<SampleBook> = serde_json::from_str(text)?;
    books.into_iter().map(NewBook::try_from).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bundled_sample_parses() {
        let books = super::parse(include_str!("../sample/books.json")).expect("sample is valid");
        assert!(books.len() >= 20, "only {} books", books.len());
    }
}
