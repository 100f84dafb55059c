//! List queries through the query-result cache, and the reconciliation every write runs.
//!
//! A page is served from its cached result (its members, in order) plus the entity cache (the
//! records themselves). Before serving, the members are checked against the records just read:
//! each must still match the filter at its sort position. Reconciliation on write is what keeps
//! that true; the check is a safety net whose failures are counted (`stale`) and must stay at
//! zero, which the randomized model test asserts.

use std::collections::HashMap;

use futures::{stream, StreamExt, TryStreamExt};
use mongodb::bson::Document;

use super::{Datastore, DatastoreError};
use crate::{
    cache::{
        results::{FillGuard, Reconcile, ResultLookup},
        Entity, Entry,
    },
    domain::{Book, BookId, Bookstore, BookstoreId},
    entity::{book, field},
    query::{CachedResult, Cursor, Filter, Scalar, Source, Spec, Written},
    store::{StoreError, Stored},
};

/// One page of a list query.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Each item's cursor, in the same order: pass one as `after` to read on from that item.
    pub cursors: Vec<String>,
    /// Whether records exist after the last item.
    pub has_next: bool,
    /// The cursor of the last item: pass it as `after` for the next page.
    pub end_cursor: Option<String>,
}

/// The id of entity `E` a result member names, if it is one.
fn parse_id<E: Entity>(id: &Scalar) -> Option<E::Id> {
    match id {
        Scalar::Id(hex) => hex.parse().ok(),
        _ => None,
    }
}

impl Datastore {
    /// The query behind a page of `E` matching `filter`, in the entity's sort order (its
    /// `SORT_FIELD`, then `_id`): what [`Datastore::page`] caches and sends.
    pub fn page_spec<E: Entity>(filter: Filter, first: usize, after: Option<Cursor>) -> Spec {
        Spec {
            name: E::COLLECTION.to_owned(),
            sources: vec![Source::of::<E>(filter)],
            after,
            first: Some(first),
        }
    }

    /// A page of `E` matching `filter`, in the entity's sort order.
    pub async fn page<E: Stored>(
        &self,
        filter: Filter,
        first: usize,
        after: Option<Cursor>,
    ) -> Result<Page<E>, DatastoreError> {
        let spec = Self::page_spec::<E>(filter, first, after);
        Ok(self.pages(&[spec]).await?.pop().expect("one page per spec"))
    }

    /// The query behind a page of books matching `filter`, ordered by title then id.
    pub fn books_spec(filter: Filter, first: usize, after: Option<Cursor>) -> Spec {
        Self::page_spec::<Book>(filter, first, after)
    }

    /// A page of books matching `filter`, ordered by title then id.
    pub async fn books_page(
        &self,
        filter: Filter,
        first: usize,
        after: Option<Cursor>,
    ) -> Result<Page<Book>, DatastoreError> {
        self.page(filter, first, after).await
    }

    /// Several pages of books (from [`Datastore::books_spec`]) at the cost of one: one result
    /// lookup and one read of their books for every page that is cached, a query for each that
    /// is not.
    pub async fn books_pages(&self, specs: &[Spec]) -> Result<Vec<Page<Book>>, DatastoreError> {
        self.pages(specs).await
    }

    /// The spec of a page of bookstores: what [`Datastore::bookstores_page`] caches and sends.
    pub fn bookstores_spec(filter: Filter, first: usize, after: Option<Cursor>) -> Spec {
        Self::page_spec::<Bookstore>(filter, first, after)
    }

    /// A page of bookstores matching `filter`, ordered by normalised name.
    pub async fn bookstores_page(
        &self,
        filter: Filter,
        first: usize,
        after: Option<Cursor>,
    ) -> Result<Page<Bookstore>, DatastoreError> {
        self.page(filter, first, after).await
    }

    /// Pages of `E` (from [`Datastore::page_spec`]) at the cost of one: one result lookup and
    /// one read of their records for every page that is cached, a query for each that is not.
    pub async fn pages<E: Stored>(&self, specs: &[Spec]) -> Result<Vec<Page<E>>, DatastoreError> {
        let lookups = self.cache.lookup_results(specs).await;
        // Every member of every cached page, read through the entity cache at once.
        let ids: Vec<E::Id> = lookups
            .iter()
            .filter_map(|lookup| match lookup {
                ResultLookup::Hit(result) => Some(result),
                _ => None,
            })
            .flat_map(|result| result.members.iter().filter_map(|m| parse_id::<E>(&m.id)))
            .collect();
        let records: HashMap<E::Id, E> = self
            .read_many::<E>(&ids)
            .await?
            .into_iter()
            .flatten()
            .map(|record| (record.id(), record))
            .collect();

        // Cached pages are answered here; the rest are computed below, a few at a time.
        let mut answered: Vec<Answer<E>> = Vec::with_capacity(specs.len());
        for (spec, lookup) in specs.iter().zip(lookups) {
            let guard = match lookup {
                ResultLookup::Hit(result) => {
                    let members: Vec<Option<E>> = result
                        .members
                        .iter()
                        .map(|m| parse_id::<E>(&m.id).and_then(|id| records.get(&id).cloned()))
                        .collect();
                    let documents: Vec<Option<Document>> = members
                        .iter()
                        .map(|r| r.as_ref().map(Entity::document))
                        .collect();
                    if result.describes(&documents) {
                        answered.push(Answer::Cached(page_of(&result, members)));
                        continue;
                    }
                    tracing::warn!(
                        query = spec.name,
                        "a cached result no longer matched its records; dropped"
                    );
                    self.cache.count_stale_result(&spec.name);
                    self.cache.drop_result(spec).await;
                    None
                }
                ResultLookup::Miss(guard) => Some(guard),
                ResultLookup::Bypass => None,
            };
            answered.push(Answer::Cold(spec.clone(), guard));
        }
        // Cold pages run concurrently, at most COLD_PAGES_IN_FLIGHT at once, in order; the
        // request's deadline bounds them all (dropping this future cancels them).
        stream::iter(answered)
            .map(|page| async move {
                match page {
                    Answer::Cached(page) => Ok(page),
                    Answer::Cold(spec, guard) => self.compute_page(spec, guard).await,
                }
            })
            .buffered(COLD_PAGES_IN_FLIGHT)
            .try_collect()
            .await
    }

    /// Runs a page's query on MongoDB, caches its records and (given a guard) the result.
    async fn compute_page<E: Stored>(
        &self,
        spec: Spec,
        guard: Option<FillGuard>,
    ) -> Result<Page<E>, DatastoreError> {
        let noted = match &guard {
            Some(guard) => guard.epoch().clone(),
            None => self.cache.note().await,
        };
        self.caught_up(E::COLLECTION).await?;
        let per_source = self.store.run_spec(&spec).await?;
        let mut stored: HashMap<Scalar, Document> = per_source
            .iter()
            .flatten()
            .filter_map(|d| Some((Scalar::from_bson(d.get(field::ID)?)?, d.clone())))
            .collect();
        let result = CachedResult::from_documents(spec, per_source);
        let items = result
            .members
            .iter()
            .map(|m| {
                let record = stored.remove(&m.id).map(E::from_document).transpose();
                record.map_err(StoreError::from)
            })
            .collect::<Result<Vec<Option<E>>, _>>()?;
        let entries: Vec<(E::Id, Entry<E>)> = items
            .iter()
            .flatten()
            .map(|r| (r.id(), Entry::present(r.version(), r.clone())))
            .collect();
        self.cache.fill_many(&noted, &entries).await;
        if let Some(guard) = guard {
            self.checkpoints.before_result_fill().await;
            self.cache.fill_result(&result, guard).await;
        }
        Ok(page_of(&result, items))
    }

    /// For each book id, in order, the id of the bookstore that holds it (`None` for a book
    /// in no store, or no book). A cached result over exactly these ids, projecting each
    /// book's `bookstoreId`, so a warm call reads no book at all.
    pub(super) async fn bookstore_ids_for_books(
        &self,
        book_ids: &[BookId],
    ) -> Result<Vec<Option<BookstoreId>>, DatastoreError> {
        let mut ids: Vec<Scalar> = book_ids
            .iter()
            .map(|id| Scalar::Id(id.to_string()))
            .collect();
        ids.sort();
        ids.dedup();
        let spec = Spec {
            name: "bookstoresForBooks".to_owned(),
            sources: vec![Source::of::<Book>(Filter::In(field::ID.into(), ids))
                .projecting(book::field::BOOKSTORE_ID)],
            after: None,
            first: None,
        };
        let result = match self.cache.lookup_result(&spec).await {
            ResultLookup::Hit(result) => result,
            lookup => {
                self.caught_up(Book::COLLECTION).await?;
                let per_source = self.store.run_spec(&spec).await?;
                let result = CachedResult::from_documents(spec, per_source);
                if let ResultLookup::Miss(guard) = lookup {
                    self.cache.fill_result(&result, guard).await;
                }
                result
            }
        };
        let store_of: HashMap<&Scalar, Option<BookstoreId>> = result
            .members
            .iter()
            .map(|m| {
                let store = m.project.as_ref().and_then(parse_id::<Bookstore>);
                (&m.id, store)
            })
            .collect();
        Ok(book_ids
            .iter()
            .map(|id| store_of.get(&Scalar::Id(id.to_string())).copied().flatten())
            .collect())
    }

    /// Reconciles cached results with committed writes of one entity: each pair is the
    /// record before and after the write (`None` before a create, after a delete).
    pub(super) async fn reconcile<E: Entity>(&self, changes: &[(Option<&E>, Option<&E>)]) {
        let writes: Vec<Reconcile> = changes
            .iter()
            .filter_map(|(before, after)| {
                let record = after.or(*before)?;
                Some(Reconcile {
                    written: Written {
                        collection: E::COLLECTION.to_owned(),
                        id: Scalar::Id(record.id().to_string()),
                        before: before.map(Entity::document),
                        after: after.map(Entity::document),
                    },
                    // A delete is versioned like its tombstone: one past the last version.
                    version: after.map_or_else(|| record.version() + 1, |a| a.version()),
                })
            })
            .collect();
        self.cache
            .reconcile(E::COLLECTION, E::TERM_FIELDS, &writes)
            .await;
    }
}

/// How many cold pages of one request query MongoDB at once.
const COLD_PAGES_IN_FLIGHT: usize = 4;

/// A page of a batch: answered from the cache, or still to compute (with its fill guard).
enum Answer<E> {
    Cached(Page<E>),
    Cold(Spec, Option<FillGuard>),
}

/// The page of `result`, given the record of each of its members (`None`: gone since).
fn page_of<T>(result: &CachedResult, records: Vec<Option<T>>) -> Page<T> {
    let (cursors, items) = result
        .members
        .iter()
        .zip(records)
        .filter_map(|(member, record)| Some((member.cursor().encode(), record?)))
        .unzip();
    Page {
        items,
        cursors,
        has_next: !result.complete,
        end_cursor: result.members.last().map(|m| m.cursor().encode()),
    }
}
