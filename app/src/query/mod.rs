//! Cached query results, independent of Redis and MongoDB: what a result is, how it is keyed
//! and indexed, and how one written record changes it.
//!
//! A result is *normalised*: it holds the members of a page (collection, id, sort key), never
//! copies of the records. Records are read through the entity cache, which is versioned, so a
//! result can never serve an outdated copy of a record; what a write can make wrong is only
//! *membership and order*, and that is what [`CachedResult::apply`] reconciles:
//!
//! | the written record            | the result is complete (no record beyond its end) | the result is a full page with more beyond |
//! |-------------------------------|-------------------------------------|-------------------------------------------|
//! | matches, sorts inside         | insert or move it                   | insert or move it, then drop the last member if over the page size |
//! | matches, sorts past the end   | (cannot happen: complete)           | a member moving out: drop the result (its successor is unknown); otherwise no change |
//! | no longer matches, or deleted | remove it                           | a member leaving: drop the result; a record from beyond the end leaving: drop it too (whether more remain is unknown); otherwise no change |
//!
//! "Drop" deletes the cached result; the next read recomputes it from MongoDB. Keyset pages
//! (`after` a cursor, ordered by a sort field then `_id`) make insertion exact: a page's range
//! is fixed by its cursor, so a record either sorts into it or not, whatever else changed.

pub mod filter;

use std::cmp::Ordering;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use mongodb::bson::Document;
use serde::{Deserialize, Serialize};

pub use self::filter::{Filter, Scalar};
use crate::entity::{field, Entity};

/// One collection a query reads, with its filter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Source {
    pub collection: String,
    pub filter: Filter,
    /// The field pages are ordered by in this collection.
    pub sort_field: String,
    /// Fields whose equality terms may index this source (from the entity's description).
    pub term_fields: Vec<String>,
    /// A field each member carries a copy of (for results that answer with a relation, such
    /// as a book's bookstore id); reconciled like membership.
    pub project: Option<String>,
}

impl Source {
    pub fn of<E: Entity>(filter: Filter) -> Self {
        Self {
            collection: E::COLLECTION.to_owned(),
            filter,
            sort_field: E::SORT_FIELD.to_owned(),
            term_fields: E::TERM_FIELDS.iter().map(|f| (*f).to_owned()).collect(),
            project: None,
        }
    }

    pub fn projecting(mut self, field: &str) -> Self {
        self.project = Some(field.to_owned());
        self
    }

    /// The index entries of this source: one per value of its equality term, or one with no
    /// term. Each is `<collection>:<field>=<token>:` or `<collection>::`.
    pub fn ranges(&self) -> Vec<String> {
        let fields: Vec<&str> = self.term_fields.iter().map(String::as_str).collect();
        match self.filter.term(&fields) {
            Some((field, values)) => values
                .iter()
                .map(|value| term_range(&self.collection, &field, value))
                .collect(),
            None => vec![untermed_range(&self.collection)],
        }
    }
}

/// The index range of results on `collection` with the equality term `field = value`.
pub fn term_range(collection: &str, field: &str, value: &Scalar) -> String {
    format!("{collection}:{field}={}:", value.token())
}

/// The index range of results on `collection` with no equality term.
pub fn untermed_range(collection: &str) -> String {
    format!("{collection}::")
}

/// Where a page starts: strictly after this sort value and id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cursor {
    pub key: Scalar,
    pub id: Scalar,
}

impl Cursor {
    /// The opaque text clients pass back as `after`.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).expect("a cursor serialises"))
    }

    pub fn decode(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// A query, completely: what a cached result is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Spec {
    /// The query's name (for humans reading Redis; also part of the key).
    pub name: String,
    pub sources: Vec<Source>,
    pub after: Option<Cursor>,
    /// The page size; `None` for an unpaged result (every match).
    pub first: Option<usize>,
}

impl Spec {
    /// A stable digest of the whole spec: the result's key.
    pub fn digest(&self) -> String {
        let canonical = serde_json::to_vec(self).expect("a spec serialises");
        sha1_smol::Sha1::from(canonical).digest().to_string()
    }

    /// Every index entry of the result: `<range><digest>`.
    pub fn index_members(&self) -> Vec<String> {
        let digest = self.digest();
        self.ranges()
            .into_iter()
            .map(|range| format!("{range}{digest}"))
            .collect()
    }

    pub fn ranges(&self) -> Vec<String> {
        let mut ranges: Vec<String> = self.sources.iter().flat_map(Source::ranges).collect();
        ranges.sort();
        ranges.dedup();
        ranges
    }

    /// Whether a record with this sort position lies after the page's cursor.
    fn after_cursor(&self, position: &Position) -> bool {
        self.after
            .as_ref()
            .is_none_or(|cursor| position.cmp_to(&cursor.key, &cursor.id) == Ordering::Greater)
    }
}

/// One member of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Index into the spec's sources.
    pub source: usize,
    pub id: Scalar,
    pub key: Scalar,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<Scalar>,
}

impl Member {
    fn position(&self) -> Position {
        Position {
            key: self.key.clone(),
            id: self.id.clone(),
        }
    }

    /// The cursor that starts the page after this member.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            key: self.key.clone(),
            id: self.id.clone(),
        }
    }
}

/// A sort position: the sort field's value, then the id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    key: Scalar,
    id: Scalar,
}

impl Position {
    fn cmp_to(&self, key: &Scalar, id: &Scalar) -> Ordering {
        sort_order(&self.key, key).then_with(|| self.id.cmp(id))
    }
}

/// MongoDB's ascending order for the values a sort field holds: nulls first, then numbers,
/// then strings (bytewise), then ids.
fn sort_order(a: &Scalar, b: &Scalar) -> Ordering {
    fn rank(s: &Scalar) -> u8 {
        match s {
            Scalar::Null => 0,
            Scalar::Int(_) => 1,
            Scalar::Str(_) => 2,
            Scalar::Id(_) => 3,
        }
    }
    match (a, b) {
        (Scalar::Str(x), Scalar::Str(y)) => x.as_bytes().cmp(y.as_bytes()),
        _ => rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)),
    }
}

/// A cached result: the spec it answers, its members in order, and whether it holds every
/// match after its cursor (`complete`) or a full page with more beyond.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedResult {
    pub spec: Spec,
    pub members: Vec<Member>,
    pub complete: bool,
}

/// What one written record does to a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The result is still exact as it is.
    Unchanged,
    /// The result was changed in place and is exact.
    Updated,
    /// The result cannot be made exact: delete it.
    Drop,
}

/// One record a write changed: its collection, id, and stored document before and after the
/// write (`None` before a create, after a delete).
#[derive(Debug, Clone)]
pub struct Written {
    pub collection: String,
    pub id: Scalar,
    pub before: Option<Document>,
    pub after: Option<Document>,
}

impl CachedResult {
    /// Builds a result from the documents MongoDB returned for each source (each sorted, at
    /// most `first + 1` per source, after the cursor): merged, cut to the page size.
    pub fn from_documents(spec: Spec, per_source: Vec<Vec<Document>>) -> Self {
        let mut members: Vec<Member> = per_source
            .into_iter()
            .enumerate()
            .flat_map(|(source, documents)| {
                let spec = &spec;
                documents
                    .into_iter()
                    .filter_map(move |document| member_of(spec, source, &document))
            })
            .collect();
        members.sort_by(|a, b| a.position().cmp_to(&b.key, &b.id));
        let complete = spec.first.is_none_or(|first| members.len() <= first);
        if let Some(first) = spec.first {
            members.truncate(first);
        }
        Self {
            spec,
            members,
            complete,
        }
    }

    /// Whether the members are still exactly what these stored records (one per member, in
    /// order, `None` where a record is gone) make: each matches its source's filter at the
    /// member's sort position.
    pub fn describes(&self, documents: &[Option<Document>]) -> bool {
        self.members.len() == documents.len()
            && self
                .members
                .iter()
                .zip(documents)
                .all(|(member, document)| {
                    document
                        .as_ref()
                        .and_then(|document| member_of(&self.spec, member.source, document))
                        .is_some_and(|fresh| fresh == *member)
                })
    }

    /// Reconciles the result with one written record (see the module's table).
    pub fn apply(&mut self, written: &Written) -> Change {
        let Some(source) = self
            .spec
            .sources
            .iter()
            .position(|s| s.collection == written.collection)
        else {
            return Change::Unchanged;
        };
        let current = self
            .members
            .iter()
            .position(|m| m.source == source && m.id == written.id);
        let entering = written.after.as_ref().and_then(|document| {
            let member = member_of(&self.spec, source, document)?;
            self.spec.after_cursor(&member.position()).then_some(member)
        });

        match (current, entering) {
            (None, None) => {
                // Not a member and not one now. If it matched after the cursor before, it was
                // one of the records beyond a full page; with it gone, whether any remain (the
                // page's "has next") is unknown.
                let was_beyond = !self.complete
                    && written.before.as_ref().is_some_and(|document| {
                        member_of(&self.spec, source, document)
                            .is_some_and(|member| self.spec.after_cursor(&member.position()))
                    });
                if was_beyond {
                    Change::Drop
                } else {
                    Change::Unchanged
                }
            }
            (Some(index), None) => {
                // A member leaves. Exact only when nothing lies beyond the page.
                if !self.complete {
                    return Change::Drop;
                }
                self.members.remove(index);
                Change::Updated
            }
            (current, Some(member)) => {
                if current.is_some_and(|index| self.members[index] == member) {
                    return Change::Unchanged;
                }
                if let Some(index) = current {
                    self.members.remove(index);
                }
                let position = member.position();
                // In a full page, a position is known to be inside only if it sorts before the
                // last remaining member (with none left, nothing is known).
                let beyond_last = !self.complete
                    && self.members.last().is_none_or(|last| {
                        position.cmp_to(&last.key, &last.id) == Ordering::Greater
                    });
                if beyond_last {
                    // It sorts past a full page's end: outside the page. If it was a member,
                    // the page lost one and its successor is unknown.
                    return if current.is_some() {
                        Change::Drop
                    } else {
                        Change::Unchanged
                    };
                }
                let at = self.members.partition_point(|m| {
                    m.position().cmp_to(&member.key, &member.id) == Ordering::Less
                });
                self.members.insert(at, member);
                if let Some(first) = self.spec.first {
                    if self.members.len() > first {
                        self.members.truncate(first);
                        self.complete = false;
                    }
                }
                Change::Updated
            }
        }
    }
}

/// The member a stored document makes in `source` of `spec`, if it matches the filter.
fn member_of(spec: &Spec, source: usize, document: &Document) -> Option<Member> {
    let described = &spec.sources[source];
    if !described.filter.matches(document) {
        return None;
    }
    let id = Scalar::from_bson(document.get(field::ID)?)?;
    let key = document
        .get(&described.sort_field)
        .and_then(Scalar::from_bson)
        .unwrap_or(Scalar::Null);
    let project = described.project.as_ref().map(|field| {
        document
            .get(field)
            .and_then(Scalar::from_bson)
            .unwrap_or(Scalar::Null)
    });
    Some(Member {
        source,
        id,
        key,
        project,
    })
}

/// The index ranges a write of one record must visit: results with no equality term, and
/// for each term field the values the record held before and after the write.
pub fn visited_ranges(
    collection: &str,
    term_fields: &[&str],
    before: Option<&Document>,
    after: Option<&Document>,
) -> Vec<String> {
    let mut ranges = vec![untermed_range(collection)];
    for field in term_fields {
        for document in [before, after].into_iter().flatten() {
            for value in filter::field_values(document, field) {
                ranges.push(term_range(collection, field, &value));
            }
        }
    }
    ranges.sort();
    ranges.dedup();
    ranges
}

#[cfg(test)]
mod tests;
