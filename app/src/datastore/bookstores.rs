//! Bookstores through the cache, and the relation between books and bookstores.
//!
//! A book references its store by id (`book.bookstore_id`). Without multi-document
//! transactions (the service must also run on FerretDB), the rules are checked then applied:
//! `move_book` checks the target store exists, `delete_bookstore` checks the store is empty.
//! A delete racing a move can leave a book pointing at a store that is gone; readers treat such
//! a reference as "no store" (`bookstores_for_books` answers `None`).

use futures::{stream, StreamExt, TryStreamExt};

use super::{
    behind::{self, Decision, Vet},
    books::BULK_IN_FLIGHT,
    Behind, Datastore, DatastoreError,
};
use crate::{
    cache::{Entity, Entry},
    domain::{
        Book, BookChanges, BookId, Bookstore, BookstoreChanges, BookstoreId, BookstoreName,
        NameKey, NewBookstore, Version,
    },
    entity::bookstore::name_claim,
    store::{StoreError, Written},
};

/// Who holds a bookstore name now.
enum NameHolder {
    Free,
    /// This store is named so (in its newest version).
    Held(Bookstore),
    /// This store holds the name in MongoDB (or a claim on it) but a queued rename or delete
    /// is giving it up: free once the worker persisted that change.
    Freeing(Bookstore),
}

/// Vets a write-behind bookstore's name: no other store holds it.
struct UniqueName<'a>(&'a Datastore);

impl Vet<Bookstore> for UniqueName<'_> {
    async fn vet(&self, record: &Bookstore) -> Result<(), DatastoreError> {
        let datastore = self.0;
        // Once through the queue: a store giving the name up has then given it up.
        for waited in [false, true] {
            match datastore.name_holder(record.name.key()).await? {
                NameHolder::Free => return Ok(()),
                NameHolder::Held(holder) | NameHolder::Freeing(holder)
                    if holder.id == record.id =>
                {
                    return Ok(())
                }
                NameHolder::Held(holder) => return Err(name_taken_by(&record.name, &holder)),
                NameHolder::Freeing(_) if !waited => {
                    datastore.caught_up(Bookstore::COLLECTION).await?;
                }
                NameHolder::Freeing(_) => break,
            }
        }
        Err(DatastoreError::Conflict(format!(
            "the name {:?} is taken",
            record.name.as_str()
        )))
    }
}

impl Datastore {
    pub async fn bookstore(&self, id: BookstoreId) -> Result<Option<Bookstore>, DatastoreError> {
        Ok(self.bookstores(&[id]).await?.pop().flatten())
    }

    /// Bookstores by id, in order, through the cache (one `MGET`, at most one query).
    pub async fn bookstores(
        &self,
        ids: &[BookstoreId],
    ) -> Result<Vec<Option<Bookstore>>, DatastoreError> {
        self.read_many(ids).await
    }

    /// The bookstore whose name normalises like `name`.
    pub async fn bookstore_by_name(
        &self,
        name: &BookstoreName,
    ) -> Result<Option<Bookstore>, DatastoreError> {
        if self.behind(Bookstore::COLLECTION).is_none() {
            return Ok(self.store.bookstores().find_by_name_key(name.key()).await?);
        }
        Ok(match self.name_holder(name.key()).await? {
            NameHolder::Held(store) => Some(store),
            NameHolder::Free | NameHolder::Freeing(_) => None,
        })
    }

    /// Who holds the name `key` (write-behind): a pending store's claim first, then MongoDB,
    /// each holder read again through the cache (its newest version may be named otherwise).
    /// In that order: a claim is released only once MongoDB holds its store.
    async fn name_holder(&self, key: &NameKey) -> Result<NameHolder, DatastoreError> {
        let claimed = self
            .cache
            .claim_holder::<Bookstore>(&name_claim(key))
            .await
            .map_err(|_| behind::redis_unavailable())?
            .and_then(|id| id.parse::<BookstoreId>().ok());
        let holder = match claimed {
            Some(id) => Some(id),
            None => self
                .store
                .bookstores()
                .find_by_name_key(key)
                .await?
                .map(|store| store.id),
        };
        let Some(id) = holder else {
            return Ok(NameHolder::Free);
        };
        Ok(match self.bookstore(id).await? {
            Some(store) if store.name.key() == key => NameHolder::Held(store),
            Some(store) => NameHolder::Freeing(store),
            // Deleted (pending): its MongoDB record or claim still holds the name.
            None => match self.store.bookstores().find_many(&[id]).await?.pop() {
                Some(store) => NameHolder::Freeing(store),
                None => NameHolder::Free,
            },
        })
    }

    /// For each book, the bookstore that holds it: one batched read per layer (books, then
    /// bookstores), whatever the number of books.
    #[tracing::instrument(skip_all, fields(books = book_ids.len()))]
    pub async fn bookstores_for_books(
        &self,
        book_ids: &[BookId],
    ) -> Result<Vec<Option<Bookstore>>, DatastoreError> {
        let store_ids = self.bookstore_ids_for_books(book_ids).await?;
        let wanted: Vec<BookstoreId> = store_ids.iter().flatten().copied().collect();
        let stores = self.bookstores(&wanted).await?;
        let by_id: std::collections::HashMap<BookstoreId, Bookstore> = stores
            .into_iter()
            .flatten()
            .map(|store| (store.id, store))
            .collect();
        Ok(store_ids
            .iter()
            .map(|store| by_id.get(store.as_ref()?).cloned())
            .collect())
    }

    #[tracing::instrument(skip_all, fields(name = %new.name.as_str()))]
    pub async fn create_bookstore(&self, new: NewBookstore) -> Result<Bookstore, DatastoreError> {
        if let Some(behind) = self.behind(Bookstore::COLLECTION) {
            let id = BookstoreId::generate();
            let stores = &self.store.bookstores();
            let (_, created) = self
                .write_behind_vetted(
                    behind,
                    id,
                    move |ids: Vec<BookstoreId>| async move { stores.find_many(&ids).await },
                    |current: Option<&Bookstore>, version| match current {
                        Some(_) => Err(DatastoreError::Conflict(format!(
                            "bookstore {id} already exists"
                        ))),
                        None => Ok(Decision::Put(new.clone().into_bookstore(
                            id,
                            version,
                            behind::now(),
                        ))),
                    },
                    &UniqueName(self),
                )
                .await?;
            let created = created.expect("a create leaves a record");
            self.reconcile(&[(None, Some(&created))]).await;
            return Ok(created);
        }
        let noted = self.cache.note().await;
        let record = new
            .clone()
            .into_bookstore(BookstoreId::generate(), 1, chrono::Utc::now());
        let created = match self.store.bookstores().insert(&record).await {
            Err(StoreError::Duplicate) => return Err(self.name_taken(&new.name).await),
            other => other?,
        };
        self.cache_written(&noted, &created).await;
        self.reconcile(&[(None, Some(&created))]).await;
        Ok(created)
    }

    #[tracing::instrument(skip(self, changes), fields(bookstore_id = %id))]
    pub async fn update_bookstore(
        &self,
        id: BookstoreId,
        changes: BookstoreChanges,
        expected: Option<Version>,
    ) -> Result<Bookstore, DatastoreError> {
        if changes.is_empty() {
            return Err(DatastoreError::InvalidInput(
                "the update changes nothing: give at least one field".into(),
            ));
        }
        if let Some(behind) = self.behind(Bookstore::COLLECTION) {
            let stores = &self.store.bookstores();
            let (before, after) = self
                .write_behind_vetted(
                    behind,
                    id,
                    move |ids: Vec<BookstoreId>| async move { stores.find_many(&ids).await },
                    |current: Option<&Bookstore>, version| {
                        let current = existing(current, id, expected)?;
                        Ok(Decision::Put(changes.apply(
                            current,
                            version,
                            behind::now(),
                        )))
                    },
                    &UniqueName(self),
                )
                .await?;
            let (before, after) = (
                before.expect("an update reads a record"),
                after.expect("an update leaves a record"),
            );
            self.reconcile(&[(Some(&before), Some(&after))]).await;
            return Ok(after);
        }
        let noted = self.cache.note().await;
        let written = match self.store.bookstores().update(id, &changes, expected).await {
            Err(StoreError::Duplicate) => {
                let name = changes.name.as_ref().expect("only a rename can clash");
                return Err(self.name_taken(name).await);
            }
            other => other?,
        };
        let (before, after) = written_bookstore(written, id, expected)?;
        self.cache_written(&noted, &after).await;
        self.reconcile(&[(Some(&before), Some(&after))]).await;
        Ok(after)
    }

    /// Deletes a bookstore. What happens to the books it holds is the caller's choice:
    /// refuse (a conflict while it holds any), move them to another store, or delete them.
    #[tracing::instrument(skip(self), fields(bookstore_id = %id))]
    pub async fn delete_bookstore(
        &self,
        id: BookstoreId,
        expected: Option<Version>,
        held_books: HeldBooks,
    ) -> Result<Bookstore, DatastoreError> {
        let behind = self.behind(Bookstore::COLLECTION);
        let store = match behind {
            // MongoDB may not have it yet.
            Some(_) => self.bookstore(id).await?,
            None => self.store.bookstores().find_many(&[id]).await?.pop(),
        };
        existing(store.as_ref(), id, expected)?;
        // Which books the store holds is MongoDB's to say: in write-behind mode, once it has
        // every book write acknowledged so far.
        self.caught_up(Book::COLLECTION).await?;
        match held_books {
            HeldBooks::Refuse => {
                let held = self.store.books().count_in_store(id).await?;
                if held > 0 {
                    return Err(DatastoreError::Conflict(format!(
                        "bookstore {id} still holds {held} book(s): move them to another store, \
                         or ask to move or delete them with the store"
                    )));
                }
            }
            HeldBooks::MoveTo(target) => {
                if target == id {
                    return Err(DatastoreError::InvalidInput(
                        "moveBooksTo: the store being deleted cannot receive its own books".into(),
                    ));
                }
                if self.bookstore(target).await?.is_none() {
                    return Err(DatastoreError::InvalidInput(format!(
                        "moveBooksTo: bookstore {target} does not exist"
                    )));
                }
                self.empty_store(id, Some(target)).await?;
            }
            HeldBooks::Delete => self.empty_store(id, None).await?,
        }
        if let Some(behind) = behind {
            let stores = &self.store.bookstores();
            let (deleted, _) = self
                .write_behind(
                    behind,
                    id,
                    move |ids: Vec<BookstoreId>| async move { stores.find_many(&ids).await },
                    |current: Option<&Bookstore>, _| {
                        existing(current, id, expected)?;
                        Ok(Decision::Remove)
                    },
                )
                .await?;
            let deleted = deleted.expect("a delete reads a record");
            self.reconcile(&[(Some(&deleted), None)]).await;
            return Ok(deleted);
        }
        let noted = self.cache.note().await;
        let deleted = written_bookstore(
            self.store.bookstores().delete(id, expected).await?,
            id,
            expected,
        )?;
        self.cache_deleted(&noted, &deleted).await;
        self.reconcile(&[(Some(&deleted), None)]).await;
        Ok(deleted)
    }

    /// Moves (or deletes) every book of `from`, then caches and reconciles what changed.
    async fn empty_store(
        &self,
        from: BookstoreId,
        to: Option<BookstoreId>,
    ) -> Result<(), DatastoreError> {
        if let Some(behind) = self.behind(Book::COLLECTION) {
            return self.empty_store_behind(behind, from, to).await;
        }
        let noted = self.cache.note().await;
        let changed = self.store.books().empty_store(from, to).await?;
        let entries: Vec<(BookId, Entry<Book>)> = changed
            .iter()
            .map(|(before, after)| match after {
                Some(after) => (after.id, Entry::present(after.version, after.clone())),
                None => (before.id, Entry::absent(before.version + 1)),
            })
            .collect();
        self.cache.write_through(&noted, &entries).await;
        let pairs: Vec<(Option<&Book>, Option<&Book>)> = changed
            .iter()
            .map(|(before, after)| (Some(before), after.as_ref()))
            .collect();
        self.reconcile(&pairs).await;
        Ok(())
    }

    /// Puts a book in a bookstore (`None`: in no store). The store must exist.
    /// `empty_store` written behind, book by book (a few at a time): a book moved or deleted
    /// meanwhile by another writer keeps that writer's state.
    async fn empty_store_behind(
        &self,
        behind: &Behind,
        from: BookstoreId,
        to: Option<BookstoreId>,
    ) -> Result<(), DatastoreError> {
        let held = self.store.books().ids_in_store(from).await?;
        let store = &self.store.books();
        let written: Vec<(Option<Book>, Option<Book>)> = stream::iter(held)
            .map(|id| {
                self.write_behind(
                    behind,
                    id,
                    move |ids: Vec<BookId>| async move { store.find_many(&ids).await },
                    move |current: Option<&Book>, version| {
                        Ok(match (current, to) {
                            (Some(book), Some(to)) if book.bookstore_id == Some(from) => {
                                let changes = BookChanges {
                                    bookstore_id: Some(Some(to)),
                                    ..BookChanges::default()
                                };
                                Decision::Put(changes.apply(book, version, behind::now()))
                            }
                            (Some(book), None) if book.bookstore_id == Some(from) => {
                                Decision::Remove
                            }
                            _ => Decision::Keep,
                        })
                    },
                )
            })
            .buffered(BULK_IN_FLIGHT)
            .try_collect()
            .await?;
        let changes: Vec<(Option<&Book>, Option<&Book>)> = written
            .iter()
            .filter(|(before, after)| {
                before.as_ref().map(|b| b.version) != after.as_ref().map(|a| a.version)
            })
            .map(|(before, after)| (before.as_ref(), after.as_ref()))
            .collect();
        self.reconcile(&changes).await;
        Ok(())
    }

    #[tracing::instrument(skip(self), fields(book_id = %book))]
    pub async fn move_book(
        &self,
        book: BookId,
        to: Option<BookstoreId>,
        expected: Option<Version>,
    ) -> Result<Book, DatastoreError> {
        if let Some(store) = to {
            if self.bookstore(store).await?.is_none() {
                return Err(DatastoreError::InvalidInput(format!(
                    "bookstoreId: bookstore {store} does not exist"
                )));
            }
        }
        let changes = BookChanges {
            bookstore_id: Some(to),
            ..BookChanges::default()
        };
        if let Some(behind) = self.behind(Book::COLLECTION) {
            return self
                .update_book_behind(behind, book, &changes, expected)
                .await;
        }
        let noted = self.cache.note().await;
        let written = self.store.books().update(book, &changes, expected).await?;
        let (before, after) = super::written(written, "book", book, expected)?;
        self.cache_written(&noted, &after).await;
        self.reconcile(&[(Some(&before), Some(&after))]).await;
        Ok(after)
    }

    /// The conflict for a taken name, naming the store that holds it.
    async fn name_taken(&self, name: &BookstoreName) -> DatastoreError {
        match self.store.bookstores().find_by_name_key(name.key()).await {
            Ok(Some(holder)) => name_taken_by(name, &holder),
            // The holder was renamed or deleted meanwhile: still a conflict for this write.
            _ => DatastoreError::Conflict(format!("the name {:?} is taken", name.as_str())),
        }
    }
}

fn name_taken_by(name: &BookstoreName, holder: &Bookstore) -> DatastoreError {
    DatastoreError::Conflict(format!(
        "the name {:?} is taken by bookstore {} ({:?})",
        name.as_str(),
        holder.id,
        holder.name.as_str()
    ))
}

/// The store a write found, if it exists at the version the caller expected.
fn existing(
    store: Option<&Bookstore>,
    id: BookstoreId,
    expected: Option<Version>,
) -> Result<&Bookstore, DatastoreError> {
    let Some(store) = store else {
        return Err(DatastoreError::NotFound {
            entity: "bookstore",
            id: id.to_string(),
        });
    };
    if let Some(expected) = expected.filter(|v| *v != store.version) {
        return Err(DatastoreError::Conflict(format!(
            "bookstore {id} is at version {}, not the expected {expected}",
            store.version
        )));
    }
    Ok(store)
}

/// What deleting a bookstore does with the books it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldBooks {
    /// Refuse to delete a store that holds books (`CONFLICT`).
    Refuse,
    /// Move them to this store first.
    MoveTo(BookstoreId),
    /// Delete them with the store.
    Delete,
}

fn written_bookstore<T>(
    write: Written<T>,
    id: BookstoreId,
    expected: Option<Version>,
) -> Result<T, DatastoreError> {
    super::written(write, "bookstore", id, expected)
}
