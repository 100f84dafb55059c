//! What the `authors` collection does beyond the generic [`Records`]: the batch upsert of
//! ingest. An author's id derives from its source key ([`NewAuthor::id`]), so a batch finds
//! the authors that exist by `_id`, and books can list their authors' ids before the authors
//! are written.

use std::collections::HashMap;

use chrono::Utc;
use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};

use super::{records::from_stored, Records, Store, StoreError, Stored};
use crate::{
    domain::{Author, NewAuthor},
    entity::{author::field, Entity},
};

/// The operations on the `authors` collection.
pub type AuthorStore = Records<Author>;

impl Stored for Author {
    fn records(store: &Store) -> &Records<Self> {
        store.authors()
    }
}

impl Records<Author> {
    /// Inserts the authors that are new and renames those whose name changed, leaving the
    /// rest (and their versions) alone; returns each author written, with the record it
    /// replaced (`None` for an insert). Round trips: one read by `_id`, one unordered bulk
    /// insert, one unordered bulk update conditioned on the version read, one read back. An
    /// author another writer inserted or changed meanwhile keeps that writer's state.
    pub async fn upsert_by_source_key(
        &self,
        authors: &[NewAuthor],
    ) -> Result<Vec<(Option<Author>, Author)>, StoreError> {
        let mut batch: HashMap<ObjectId, &NewAuthor> = HashMap::new();
        for author in authors {
            batch.entry(author.id().object_id()).or_insert(author);
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<ObjectId> = batch.keys().copied().collect();
        let existing: HashMap<ObjectId, Author> = self
            .find(doc! { field::ID: { "$in": &ids } })
            .await?
            .into_iter()
            .map(|author| (author.id.object_id(), author))
            .collect();
        let mut written = self.insert_missing(&batch, &existing).await?;
        let renames: Vec<Document> = existing
            .values()
            .filter_map(|current| {
                let new = batch.get(&current.id.object_id())?;
                (new.name != current.name).then(|| {
                    doc! {
                        "q": { field::ID: current.id.object_id(), field::VERSION: current.version },
                        "u": {
                            "$set": {
                                field::NAME: new.name.as_str(),
                                field::UPDATED_AT: DateTime::from_chrono(Utc::now()),
                            },
                            "$inc": { field::VERSION: 1_i64 },
                        },
                    }
                })
            })
            .collect();
        if renames.is_empty() {
            return Ok(written);
        }
        let renamed: Vec<ObjectId> = renames
            .iter()
            .filter_map(|u| u.get_document("q").ok()?.get_object_id(field::ID).ok())
            .collect();
        let command = doc! { "update": Author::COLLECTION, "updates": renames, "ordered": false };
        super::bounded(self.timeout, self.database.run_command(command)).await?;
        for after in self.find(doc! { field::ID: { "$in": renamed } }).await? {
            let Some(before) = existing.get(&after.id.object_id()) else {
                continue;
            };
            if after.version == before.version + 1 {
                written.push((Some(before.clone()), after));
            }
        }
        Ok(written)
    }

    /// Inserts the authors of `batch` that `existing` lacks, in one unordered bulk insert; an
    /// author another writer inserted first is left to that writer.
    async fn insert_missing(
        &self,
        batch: &HashMap<ObjectId, &NewAuthor>,
        existing: &HashMap<ObjectId, Author>,
    ) -> Result<Vec<(Option<Author>, Author)>, StoreError> {
        let mut inserts: Vec<_> = batch
            .iter()
            .filter(|(id, _)| !existing.contains_key(id))
            .map(|(_, new)| (*new).clone().into_author(1, Utc::now()).to_stored())
            .collect();
        let refused = self.insert_unordered(inserts.iter().collect()).await?;
        for position in refused.iter().rev() {
            inserts.remove(*position);
        }
        inserts
            .into_iter()
            .map(|document| Ok((None, from_stored(document)?)))
            .collect()
    }
}
