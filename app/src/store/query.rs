//! Runs a cached query's spec against MongoDB: each source's filter, after the page's cursor,
//! in page order, one row more than the page so the caller knows whether more exist.

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};

use super::{bounded, Store, StoreError};
use crate::{
    entity::field,
    query::{Cursor, Source, Spec},
};

impl Store {
    /// The stored documents each source of `spec` contributes, in page order (at most
    /// `first + 1` per source). One query per source.
    pub async fn run_spec(&self, spec: &Spec) -> Result<Vec<Vec<Document>>, StoreError> {
        let mut per_source = Vec::with_capacity(spec.sources.len());
        for source in &spec.sources {
            per_source.push(
                self.run_source(source, spec.after.as_ref(), spec.first)
                    .await?,
            );
        }
        Ok(per_source)
    }

    async fn run_source(
        &self,
        source: &Source,
        after: Option<&Cursor>,
        first: Option<usize>,
    ) -> Result<Vec<Document>, StoreError> {
        let query = SourceQuery::of(source, after, first);
        let collection = self.0.database.collection::<Document>(&source.collection);
        let mut find = collection.find(query.filter).sort(query.sort);
        if let Some(limit) = query.limit {
            find = find.limit(limit);
        }
        bounded(self.0.timeout, async { find.await?.try_collect().await }).await
    }

    /// The server's `explain` (query planner) of each query [`Store::run_spec`] sends for
    /// `spec`: tests use it to prove that every list query is served by an index.
    #[cfg(feature = "test-hooks")]
    pub async fn explain_spec(&self, spec: &Spec) -> Result<Vec<Document>, StoreError> {
        let mut plans = Vec::with_capacity(spec.sources.len());
        for source in &spec.sources {
            let query = SourceQuery::of(source, spec.after.as_ref(), spec.first);
            let mut find = doc! {
                "find": &source.collection, "filter": query.filter, "sort": query.sort,
            };
            if let Some(limit) = query.limit {
                find.insert("limit", limit);
            }
            let command = doc! { "explain": find, "verbosity": "queryPlanner" };
            plans.push(bounded(self.0.timeout, self.0.database.run_command(command)).await?);
        }
        Ok(plans)
    }
}

/// The find a source of a spec sends: its filter after the cursor, in page order, one row more
/// than the page.
struct SourceQuery {
    filter: Document,
    sort: Document,
    limit: Option<i64>,
}

impl SourceQuery {
    fn of(source: &Source, after: Option<&Cursor>, first: Option<usize>) -> Self {
        let mut filter = source.filter.to_mongo();
        if let Some(cursor) = after {
            filter = doc! { "$and": [filter, after_cursor(&source.sort_field, cursor)] };
        }
        Self {
            filter,
            sort: doc! { &source.sort_field: 1, field::ID: 1 },
            limit: first.map(|first| first as i64 + 1),
        }
    }
}

/// Strictly after `cursor` in (sort field, `_id`) order.
///
/// The `$gte` on the sort field is implied by the `$or` (each branch matches only keys of the
/// cursor's type, at or after it), so it changes no answer; it is there for the planner. An
/// `$or` alone is two ranges, which a server may serve by walking the sort index from its start
/// and filtering, so that a page costs as much as every key before it (2 s a page half way
/// through a million books on the local server); with one bound on the index's first field the
/// scan starts at the cursor.
fn after_cursor(sort_field: &str, cursor: &Cursor) -> Document {
    let key: Bson = cursor.key.to_bson();
    let id: Bson = cursor.id.to_bson();
    doc! { "$and": [
        { sort_field: { "$gte": key.clone() } },
        { "$or": [
            { sort_field: { "$gt": key.clone() } },
            { sort_field: key, field::ID: { "$gt": id } },
        ] },
    ] }
}

/// Runs a bare filter on a collection (tests compare the cache with this).
#[cfg(feature = "test-hooks")]
impl Store {
    pub async fn find_matching(
        &self,
        collection: &str,
        filter: &crate::query::Filter,
    ) -> Result<Vec<Document>, StoreError> {
        let collection = self.0.database.collection::<Document>(collection);
        bounded(self.0.timeout, async {
            collection
                .find(filter.to_mongo())
                .sort(doc! { field::ID: 1 })
                .await?
                .try_collect()
                .await
        })
        .await
    }
}
