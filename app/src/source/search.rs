//! Open Library's `/search.json` response, typed as it really arrives.
//!
//! A page looks like `{"numFound": 629, "start": 0, "numFoundExact": true, "num_found": 629,
//! "q": "tolkien", "offset": null, "docs": [...]}`; a doc (a work) carries `key`
//! (`/works/OL27448W`), `title`, `author_name`, `author_key`, `first_publish_year`, `subject` and many more
//! fields this service ignores. Anything but `docs` may be missing, and inside a doc anything may
//! be: every field is optional here, and [`super::convert`] decides what a book needs.
//!
//! Leniency is deliberate and bounded: text also accepts a number (a title such as `1984` that
//! came through as one), a year also accepts numeric text (`"1954"`). A doc that still does not
//! fit becomes [`Record::Unreadable`] instead of failing its page.

use serde::{Deserialize, Deserializer};

/// One page of search results.
#[derive(Debug, Deserialize)]
pub struct SearchPage {
    /// Older responses spell it `num_found` only, newer ones both ways; either will do.
    #[serde(rename = "numFound", default)]
    num_found_camel: Option<Count>,
    #[serde(rename = "num_found", default)]
    num_found_snake: Option<Count>,
    /// Required: a body without `docs` is not a search page (an error object, say).
    pub docs: Vec<Record>,
}

impl SearchPage {
    /// How many works match the query in all (0 when the source did not say).
    pub fn num_found(&self) -> u64 {
        self.num_found_camel
            .or(self.num_found_snake)
            .map_or(0, |count| count.0)
    }
}

/// One search result: a work as the source sent it, or why it could not be read.
#[derive(Debug)]
pub enum Record {
    Readable(SearchDoc),
    Unreadable { key: Option<String>, reason: String },
}

/// A work, every field optional. Unknown fields are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct SearchDoc {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub title: Option<Text>,
    #[serde(default)]
    pub author_name: Option<Vec<Text>>,
    /// The authors' keys (`OL26320A`), in `author_name`'s order.
    #[serde(default)]
    pub author_key: Option<Vec<Text>>,
    #[serde(default)]
    pub first_publish_year: Option<YearField>,
    #[serde(default)]
    pub subject: Option<Vec<Text>>,
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        let key = value
            .get("key")
            .and_then(|key| key.as_str())
            .map(str::to_owned);
        Ok(match SearchDoc::deserialize(value) {
            Ok(doc) => Self::Readable(doc),
            Err(error) => Self::Unreadable {
                key,
                reason: error.to_string(),
            },
        })
    }
}

/// Text that may have arrived as a JSON number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Integer(i64),
            Float(f64),
        }
        Ok(Self(match Raw::deserialize(deserializer)? {
            Raw::Text(text) => text,
            Raw::Integer(number) => number.to_string(),
            Raw::Float(number) => number.to_string(),
        }))
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// `first_publish_year` as sent: a number, or text that should hold one.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum YearField {
    Integer(i64),
    Float(f64),
    Text(String),
}

/// A count that may have arrived as numeric text.
#[derive(Debug, Clone, Copy)]
struct Count(u64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(count) => Ok(Self(count)),
            Raw::Text(text) => text
                .trim()
                .parse()
                .map(Self)
                .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a count"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(json: &str) -> SearchPage {
        serde_json::from_str(json).expect("a search page")
    }

    #[test]
    fn a_real_format_page_parses_with_its_extra_fields_ignored() {
        let page = page(
            r#"{"numFound": 2, "start": 0, "numFoundExact": true, "num_found": 2,
                "q": "tolkien", "offset": null, "docs": [
                {"key": "/works/OL27448W", "type": "work", "title": "The Lord of the Rings",
                 "author_name": ["J.R.R. Tolkien"], "author_key": ["OL26320A"],
                 "first_publish_year": 1954, "edition_count": 250, "cover_i": 14625765,
                 "has_fulltext": true, "subject": ["Fantasy", "Middle Earth"]},
                {"key": "/works/OL1W", "title": "Égal à soi-même"}]}"#,
        );
        assert_eq!(page.num_found(), 2);
        let Record::Readable(doc) = &page.docs[0] else {
            panic!("readable")
        };
        assert_eq!(doc.key.as_deref(), Some("/works/OL27448W"));
        assert_eq!(doc.first_publish_year, Some(YearField::Integer(1954)));
        let Record::Readable(doc) = &page.docs[1] else {
            panic!("readable")
        };
        assert_eq!(doc.title, Some(Text("Égal à soi-même".into())));
        assert!(doc.author_name.is_none() && doc.first_publish_year.is_none());
    }

    #[test]
    fn numbers_and_text_are_taken_for_each_other_where_the_api_mixes_them() {
        let page = page(
            r#"{"num_found": "3", "docs": [
                {"key": "/works/OL2W", "title": 1984, "first_publish_year": "1949",
                 "author_name": ["George Orwell", 42]}]}"#,
        );
        assert_eq!(page.num_found(), 3);
        let Record::Readable(doc) = &page.docs[0] else {
            panic!("readable")
        };
        assert_eq!(doc.title, Some(Text("1984".into())));
        assert_eq!(doc.first_publish_year, Some(YearField::Text("1949".into())));
    }

    #[test]
    fn an_odd_record_is_kept_as_unreadable_without_failing_its_page() {
        let page = page(
            r#"{"numFound": 2, "docs": [
                {"key": "/works/OL3W", "title": {"nested": true}},
                {"key": "/works/OL4W", "title": "Fine", "author_name": null}]}"#,
        );
        assert!(
            matches!(&page.docs[0], Record::Unreadable { key: Some(key), .. } if key == "/works/OL3W")
        );
        assert!(matches!(&page.docs[1], Record::Readable(_)));
    }

    #[test]
    fn a_body_without_docs_is_not_a_page() {
        assert!(serde_json::from_str::<SearchPage>(r#"{"error": "busy"}"#).is_err());
        assert!(serde_json::from_str::<SearchPage>("<html>").is_err());
    }
}
