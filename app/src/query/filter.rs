//! The filter language of list queries. One definition serves twice: [`Filter::to_mongo`]
//! compiles it to a MongoDB filter, and [`Filter::matches`] evaluates it in Rust on a record's
//! stored document, so the query-result cache can tell whether a written record belongs to a
//! cached result without asking MongoDB. A property test holds the two to the same answers
//! against the real server.
//!
//! The semantics are MongoDB's, restricted to what both sides can agree on exactly: equality
//! matches a scalar field or any element of an array field, `null` also matches a missing field,
//! comparisons only compare values of the same type (integers with integers, strings with
//! strings, bytewise), and a prefix only matches strings.

use mongodb::bson::{doc, oid::ObjectId, Bson, Document};
use serde::{Deserialize, Serialize};

use crate::entity::field;

/// A value a filter compares against. Ids are kept as their hex text (which sorts like the
/// ObjectId's bytes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Scalar {
    Null,
    Int(i64),
    Str(String),
    Id(String),
}

impl Scalar {
    /// The scalar a stored BSON value is, if it is one the language knows.
    pub fn from_bson(value: &Bson) -> Option<Self> {
        match value {
            Bson::Null => Some(Self::Null),
            Bson::Int32(n) => Some(Self::Int((*n).into())),
            Bson::Int64(n) => Some(Self::Int(*n)),
            Bson::String(s) => Some(Self::Str(s.clone())),
            Bson::ObjectId(id) => Some(Self::Id(id.to_hex())),
            _ => None,
        }
    }

    pub fn to_bson(&self) -> Bson {
        match self {
            Self::Null => Bson::Null,
            Self::Int(n) => Bson::Int64(*n),
            Self::Str(s) => Bson::String(s.clone()),
            Self::Id(hex) => ObjectId::parse_str(hex).map_or(Bson::Null, Bson::ObjectId),
        }
    }

    /// A compact text form for index keys: `n`, `i42`, `s<text>`, `o<hex>`. `:` and `%` in
    /// text are percent-escaped so the form never contains the index's separator.
    pub fn token(&self) -> String {
        match self {
            Self::Null => "n".to_owned(),
            Self::Int(n) => format!("i{n}"),
            Self::Str(s) => format!("s{}", s.replace('%', "%25").replace(':', "%3A")),
            Self::Id(hex) => format!("o{hex}"),
        }
    }

    /// Same-type ordering, as MongoDB compares in a query (`None` across types).
    fn compare(&self, other: &Self) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Self::Int(a), Self::Int(b)) => Some(a.cmp(b)),
            (Self::Str(a), Self::Str(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            (Self::Id(a), Self::Id(b)) => Some(a.cmp(b)),
            (Self::Null, Self::Null) => Some(std::cmp::Ordering::Equal),
            _ => None,
        }
    }
}

/// A filter over one collection's stored documents.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Filter {
    /// Every part matches (an empty list matches everything).
    All(Vec<Filter>),
    /// Some part matches (an empty list matches nothing).
    Any(Vec<Filter>),
    Not(Box<Filter>),
    /// The field equals the value, or (for an array) has an element equal to it.
    Eq(String, Scalar),
    /// Like `Eq`, for any of the values.
    In(String, Vec<Scalar>),
    /// `gte <= field < lt` on a scalar field, comparing values of the bounds' type only.
    Range {
        field: String,
        gte: Option<Scalar>,
        lt: Option<Scalar>,
    },
    /// The string field (or an element of the array field) starts with the text.
    Prefix(String, String),
}

impl Filter {
    pub fn all() -> Self {
        Self::All(Vec::new())
    }

    /// This filter and `other`, flattening nested `All`s.
    pub fn and(self, other: Filter) -> Self {
        match (self, other) {
            (Self::All(mut a), Self::All(b)) => {
                a.extend(b);
                Self::All(a)
            }
            (Self::All(mut a), other) | (other, Self::All(mut a)) => {
                a.push(other);
                Self::All(a)
            }
            (a, b) => Self::All(vec![a, b]),
        }
    }

    /// The MongoDB filter with the same meaning.
    pub fn to_mongo(&self) -> Document {
        match self {
            Self::All(parts) if parts.is_empty() => doc! {},
            Self::All(parts) => {
                doc! { "$and": parts.iter().map(Self::to_mongo).collect::<Vec<_>>() }
            }
            // `$or` refuses an empty list; an empty `$in` matches nothing, as wanted.
            Self::Any(parts) if parts.is_empty() => doc! { field::ID: { "$in": [] } },
            Self::Any(parts) => {
                doc! { "$or": parts.iter().map(Self::to_mongo).collect::<Vec<_>>() }
            }
            Self::Not(inner) => doc! { "$nor": [inner.to_mongo()] },
            Self::Eq(field, value) => doc! { field: value.to_bson() },
            Self::In(field, values) => {
                doc! { field: { "$in": values.iter().map(Scalar::to_bson).collect::<Vec<_>>() } }
            }
            Self::Range { field, gte, lt } => {
                let mut bounds = Document::new();
                if let Some(gte) = gte {
                    bounds.insert("$gte", gte.to_bson());
                }
                if let Some(lt) = lt {
                    bounds.insert("$lt", lt.to_bson());
                }
                if bounds.is_empty() {
                    // No bound: any value of any type, but the field must exist.
                    bounds.insert("$exists", true);
                }
                doc! { field: bounds }
            }
            Self::Prefix(field, prefix) => {
                doc! { field: { "$regex": format!("^{}", escape_regex(prefix)) } }
            }
        }
    }

    /// Whether a stored document matches, exactly as MongoDB would decide.
    pub fn matches(&self, document: &Document) -> bool {
        match self {
            Self::All(parts) => parts.iter().all(|part| part.matches(document)),
            Self::Any(parts) => parts.iter().any(|part| part.matches(document)),
            Self::Not(inner) => !inner.matches(document),
            Self::Eq(field, value) => equals(document.get(field), value),
            Self::In(field, values) => values.iter().any(|v| equals(document.get(field), v)),
            Self::Range { field, gte, lt } => {
                let Some(found) = document.get(field) else {
                    return false;
                };
                if gte.is_none() && lt.is_none() {
                    return true;
                }
                // Ranges apply to scalar fields; an array never matches (the API only offers
                // ranges on scalar fields, where MongoDB's per-element rules do not arise).
                let Some(found) = Scalar::from_bson(found) else {
                    return false;
                };
                let above = gte
                    .as_ref()
                    .is_none_or(|gte| found.compare(gte).is_some_and(|o| o.is_ge()));
                let below = lt
                    .as_ref()
                    .is_none_or(|lt| found.compare(lt).is_some_and(|o| o.is_lt()));
                above && below
            }
            Self::Prefix(field, prefix) => match document.get(field) {
                Some(Bson::String(s)) => s.starts_with(prefix.as_str()),
                Some(Bson::Array(items)) => items
                    .iter()
                    .any(|item| matches!(item, Bson::String(s) if s.starts_with(prefix.as_str()))),
                _ => false,
            },
        }
    }

    /// The equality term a result is indexed under: a field every matching record has one of
    /// a few known values in. Taken from the top level (or a top-level `All`), preferring the
    /// fields in the order given. `None` when the filter has no such term.
    pub fn term(&self, fields: &[&str]) -> Option<(String, Vec<Scalar>)> {
        let candidates: Vec<&Filter> = match self {
            Self::All(parts) => parts.iter().collect(),
            other => vec![other],
        };
        fields.iter().find_map(|wanted| {
            candidates.iter().find_map(|candidate| match candidate {
                Self::Eq(field, value) if field == wanted => {
                    Some((field.clone(), vec![value.clone()]))
                }
                Self::In(field, values) if field == wanted => Some((field.clone(), values.clone())),
                _ => None,
            })
        })
    }
}

/// The values a stored field holds for indexing purposes: each element of an array, `Null` for
/// a missing field.
pub fn field_values(document: &Document, field: &str) -> Vec<Scalar> {
    match document.get(field) {
        None => vec![Scalar::Null],
        Some(Bson::Array(items)) => items.iter().filter_map(Scalar::from_bson).collect(),
        Some(value) => Scalar::from_bson(value).into_iter().collect(),
    }
}

fn equals(found: Option<&Bson>, wanted: &Scalar) -> bool {
    match (found, wanted) {
        (None, Scalar::Null) => true,
        (None, _) => false,
        (Some(Bson::Array(items)), _) => items.iter().any(|item| {
            Scalar::from_bson(item).is_some_and(|v| v.compare(wanted).is_some_and(|o| o.is_eq()))
        }),
        (Some(value), _) => {
            Scalar::from_bson(value).is_some_and(|v| v.compare(wanted).is_some_and(|o| o.is_eq()))
        }
    }
}

/// Escapes the ASCII punctuation a regular expression gives a meaning to.
fn escape_regex(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_punctuation() {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> Document {
        doc! { "title": "Dune", "authors": ["Frank Herbert"], "year": 1965, "store": Bson::Null }
    }

    #[test]
    fn equality_reaches_into_arrays_and_null_matches_missing() {
        let d = book();
        assert!(Filter::Eq("authors".into(), Scalar::Str("Frank Herbert".into())).matches(&d));
        assert!(Filter::Eq("missing".into(), Scalar::Null).matches(&d));
        assert!(Filter::Eq("store".into(), Scalar::Null).matches(&d));
        assert!(!Filter::Eq("year".into(), Scalar::Str("1965".into())).matches(&d));
    }

    #[test]
    fn ranges_compare_within_a_type_only() {
        let d = book();
        let range = |gte, lt| Filter::Range {
            field: "year".into(),
            gte,
            lt,
        };
        assert!(range(Some(Scalar::Int(1965)), Some(Scalar::Int(1966))).matches(&d));
        assert!(!range(Some(Scalar::Int(1966)), None).matches(&d));
        assert!(!range(Some(Scalar::Str("a".into())), None).matches(&d));
    }

    #[test]
    fn the_term_prefers_the_first_listed_field() {
        let filter = Filter::Eq("authors".into(), Scalar::Str("A".into()))
            .and(Filter::Eq("store".into(), Scalar::Id("ab".into())));
        let (field, values) = filter.term(&["store", "authors"]).expect("a term");
        assert_eq!(
            (field.as_str(), values),
            ("store", vec![Scalar::Id("ab".into())])
        );
        assert_eq!(Filter::all().term(&["store"]), None);
        let negated = Filter::Not(Box::new(Filter::Eq("store".into(), Scalar::Null)));
        assert_eq!(
            negated.term(&["store"]),
            None,
            "a negated equality is no term"
        );
    }

    #[test]
    fn tokens_never_contain_the_separator() {
        assert_eq!(Scalar::Str("a:b%c".into()).token(), "sa%3Ab%25c");
    }
}
