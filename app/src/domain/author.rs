//! Authors: the people books credit, keyed by the outside source's own author key (Open
//! Library's `OL26320A`). A book lists its authors' ids (`book.author_ids`, many-to-many); its
//! `authors` names stay as the source spelled them, for clients that read names only.

use bson::oid::ObjectId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AuthorId, Label, SourceKey, Version};

/// A stored author.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Author {
    pub id: AuthorId,
    /// The outside source's author key; unique.
    pub source_key: SourceKey,
    pub name: Label,
    pub version: Version,
    pub updated_at: DateTime<Utc>,
}

/// An author a book credits, as the source names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuthor {
    pub source_key: SourceKey,
    pub name: Label,
}

impl NewAuthor {
    /// The author's id: the first 12 bytes of the SHA-1 of its source key, so a book can name
    /// its authors before they are stored, and two ingests of one author agree on its id. The
    /// unique index on the source key stays the rule.
    pub fn id(&self) -> AuthorId {
        let digest = sha1_smol::Sha1::from(self.source_key.as_str())
            .digest()
            .bytes();
        let mut bytes = [0u8; 12];
        bytes.copy_from_slice(&digest[..12]);
        AuthorId::from_object_id(ObjectId::from_bytes(bytes))
    }

    /// The author this creates, at `version`.
    pub fn into_author(self, version: Version, updated_at: DateTime<Utc>) -> Author {
        Author {
            id: self.id(),
            source_key: self.source_key,
            name: self.name,
            version,
            updated_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn author(key: &str, name: &str) -> NewAuthor {
        NewAuthor {
            source_key: SourceKey::parse(key).expect("a key"),
            name: Label::parse("name", name).expect("a name"),
        }
    }

    #[test]
    fn an_authors_id_depends_on_its_source_key_only() {
        assert_eq!(author("OL1A", "Ann").id(), author("OL1A", "Ann B.").id());
        assert_ne!(author("OL1A", "Ann").id(), author("OL2A", "Ann").id());
    }
}
