//! What the `bookstores` collection does beyond the generic [`Records`]: the update document
//! of a [`BookstoreChanges`] and the lookup by normalised name. The unique index on `nameKey`
//! (declared with the entity) makes the name rule hold under concurrency: of two creates or
//! renames to the same name, MongoDB accepts one and refuses the other (`Duplicate`).

use chrono::Utc;
use mongodb::bson::{doc, DateTime};

use super::{Records, Store, StoreError, Stored, Written};
use crate::{
    domain::{Bookstore, BookstoreChanges, BookstoreId, NameKey, Version},
    entity::bookstore::field,
};

/// The operations on the `bookstores` collection.
pub type BookstoreStore = Records<Bookstore>;

impl Stored for Bookstore {
    fn records(store: &Store) -> &Records<Self> {
        store.bookstores()
    }
}

impl Records<Bookstore> {
    /// The bookstore whose normalised name is `key`.
    pub async fn find_by_name_key(&self, key: &NameKey) -> Result<Option<Bookstore>, StoreError> {
        Ok(self
            .find(doc! { field::NAME_KEY: key.as_str() })
            .await?
            .into_iter()
            .next())
    }

    /// Applies `changes` and increments the version; `Duplicate` when a rename takes a name
    /// that is in use.
    pub async fn update(
        &self,
        id: BookstoreId,
        changes: &BookstoreChanges,
        expected: Option<Version>,
    ) -> Result<Written<(Bookstore, Bookstore)>, StoreError> {
        let mut set = doc! { field::UPDATED_AT: DateTime::from_chrono(Utc::now()) };
        if let Some(name) = &changes.name {
            set.insert(field::NAME, name.as_str());
            set.insert(field::NAME_KEY, name.key().as_str());
        }
        if let Some(city) = &changes.city {
            set.insert(field::CITY, city.as_str());
        }
        let update = doc! { "$set": set, "$inc": { field::VERSION: 1_i64 } };
        self.update_conditioned(id, expected, update).await
    }
}
