//! Typed identifiers: a MongoDB ObjectId tagged with the entity it names, so that a book id
//! cannot be passed where a bookstore id is expected.

use std::{fmt, marker::PhantomData, str::FromStr};

use bson::oid::ObjectId;

/// Marker types naming the entity an [`Id`] belongs to.
pub mod entity {
    #[derive(Debug)]
    pub enum Book {}
    #[derive(Debug)]
    pub enum Bookstore {}
    #[derive(Debug)]
    pub enum Author {}
}

pub type BookId = Id<entity::Book>;
pub type BookstoreId = Id<entity::Bookstore>;
pub type AuthorId = Id<entity::Author>;

/// An entity's id: 24 hexadecimal characters on the wire, an ObjectId in MongoDB.
pub struct Id<E> {
    value: ObjectId,
    entity: PhantomData<fn() -> E>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a valid id (expected 24 hexadecimal characters)")]
pub struct InvalidId(pub String);

impl<E> Id<E> {
    /// A fresh id, unique across processes.
    pub fn generate() -> Self {
        Self::from_object_id(ObjectId::new())
    }

    pub fn from_object_id(value: ObjectId) -> Self {
        Self {
            value,
            entity: PhantomData,
        }
    }

    pub fn object_id(&self) -> ObjectId {
        self.value
    }
}

impl<E> From<Id<E>> for ObjectId {
    fn from(id: Id<E>) -> Self {
        id.value
    }
}

impl<E> FromStr for Id<E> {
    type Err = InvalidId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ObjectId::parse_str(text)
            .map(Self::from_object_id)
            .map_err(|_| InvalidId(text.chars().take(64).collect()))
    }
}

impl<E> fmt::Display for Id<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.value.to_hex())
    }
}

impl<E> fmt::Debug for Id<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.value.to_hex())
    }
}

// Manual impls: deriving would require `E` itself to be Clone, Eq and Hash.
impl<E> Clone for Id<E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E> Copy for Id<E> {}
impl<E> PartialEq for Id<E> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}
impl<E> Eq for Id<E> {}
impl<E> std::hash::Hash for Id<E> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.value.hash(state)
    }
}
impl<E> PartialOrd for Id<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Id<E> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.value.cmp(&other.value)
    }
}

impl<E> serde::Serialize for Id<E> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.value.to_hex())
    }
}

impl<'de, E> serde::Deserialize<'de> for Id<E> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_round_trips_through_its_text() {
        let id = BookId::generate();
        let parsed: BookId = id.to_string().parse().expect("own text parses");
        assert_eq!(parsed, id);
    }

    #[test]
    fn malformed_ids_are_rejected() {
        for text in [
            "",
            "42",
            "zzzzzzzzzzzzzzzzzzzzzzzz",
            "65a1b2c3d4e5f6a7b8c9d0e1ff",
        ] {
            assert!(text.parse::<BookId>().is_err(), "{text:?} parsed");
        }
    }
}
