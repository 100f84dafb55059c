//! The read-through path, once for every entity: look every id up in one `MGET`, read the
//! misses from MongoDB in one query, fill them in one pipeline, answer in the order asked.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
};

use super::{Datastore, DatastoreError};
use crate::{
    cache::{Entity, Entry, Epoch, Lookup},
    store::{StoreError, Stored},
};

impl Datastore {
    /// The records of entity `E` for `ids`, in the same order (`None` where an id does not
    /// exist): [`Datastore::read_through`] over the entity's collection.
    pub async fn read_many<E: Stored>(
        &self,
        ids: &[E::Id],
    ) -> Result<Vec<Option<E>>, DatastoreError> {
        let records = E::records(&self.store);
        self.read_through(
            ids,
            |missing| async move { records.find_many(&missing).await },
        )
        .await
    }

    /// The records for `ids`, in the same order (`None` where an id does not exist). `fetch`
    /// reads the given ids from MongoDB in one query.
    pub(super) async fn read_through<E, F, Fut>(
        &self,
        ids: &[E::Id],
        fetch: F,
    ) -> Result<Vec<Option<E>>, DatastoreError>
    where
        E: Entity,
        F: FnOnce(Vec<E::Id>) -> Fut,
        Fut: Future<Output = Result<Vec<E>, StoreError>>,
    {
        let mut seen = HashSet::new();
        let unique: Vec<E::Id> = ids.iter().copied().filter(|id| seen.insert(*id)).collect();
        if unique.is_empty() {
            return Ok(Vec::new());
        }

        let mut found: HashMap<E::Id, Option<E>> = HashMap::with_capacity(unique.len());
        let mut to_read = Vec::new();
        let mut to_fill = HashSet::new();
        let lookups = self.cache.get_many::<E>(&unique).await;
        for (id, lookup) in unique.iter().zip(lookups) {
            match lookup {
                Lookup::Hit(entry) => {
                    found.insert(*id, entry.value);
                }
                Lookup::Miss => {
                    to_read.push(*id);
                    to_fill.insert(*id);
                }
                // In write-behind mode MongoDB may lack acknowledged writes that only Redis has.
                Lookup::Bypass if self.behind(E::COLLECTION).is_some() => {
                    return Err(super::behind::redis_unavailable())
                }
                Lookup::Bypass => to_read.push(*id),
            }
        }

        if !to_read.is_empty() {
            // Noted before MongoDB is read: the fills carry it (see `cache::link`).
            let noted = self.cache.note().await;
            let mut read: HashMap<E::Id, E> = fetch(to_read.clone())
                .await?
                .into_iter()
                .map(|record| (record.id(), record))
                .collect();
            self.checkpoints.before_fill().await;
            let fills: Vec<(E::Id, Entry<E>)> = to_read
                .iter()
                .filter(|id| to_fill.contains(id))
                .map(|id| match read.get(id) {
                    Some(record) => (*id, Entry::present(record.version(), record.clone())),
                    // Version 0: any real record, whenever it is written, outranks it.
                    None => (*id, Entry::absent(0)),
                })
                .collect();
            self.cache.fill_many(&noted, &fills).await;
            for id in to_read {
                found.insert(id, read.remove(&id));
            }
        }
        Ok(ids
            .iter()
            .map(|id| found.get(id).cloned().flatten())
            .collect())
    }

    /// Caches a record a committed write produced; `noted` before the write.
    pub(super) async fn cache_written<E: Entity>(&self, noted: &Epoch, record: &E) {
        self.cache
            .write_through(
                noted,
                &[(
                    record.id(),
                    Entry::present(record.version(), record.clone()),
                )],
            )
            .await;
    }

    /// Caches the tombstone of a deleted record: its last version + 1, so that a read that
    /// fetched the record before the delete cannot cache it again.
    pub(super) async fn cache_deleted<E: Entity>(&self, noted: &Epoch, record: &E) {
        self.cache
            .write_through(
                noted,
                &[(record.id(), Entry::<E>::absent(record.version() + 1))],
            )
            .await;
    }
}
