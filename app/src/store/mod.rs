//! The MongoDB store: the only module that speaks to MongoDB.
//!
//! Every call is bounded by the configured timeout, so a MongoDB that hangs costs a request
//! one timeout and a clear `Unavailable`, never a stuck task. The driver's command events feed
//! the metrics (`oponn_mongodb_commands_total`, `oponn_mongodb_command_duration_seconds`): they
//! are the ground truth tests use to prove that a cache hit sends MongoDB nothing.
//!
//! The code needs nothing beyond the core MongoDB API (no `$lookup`, no transactions, no
//! collations), so it runs unchanged on Atlas, on `mongod` and on FerretDB.

mod books;
mod bookstores;
mod error;
mod indexes;
mod query;

use std::{future::IntoFuture, sync::Arc, time::Duration};

use mongodb::{
    bson::doc,
    event::{command::CommandEvent, EventHandler},
    options::ClientOptions,
    Client, Database,
};
use secrecy::ExposeSecret;

pub use books::{BookStore, UpsertSummary, Upserted, COLLECTION as BOOKS};

/// Stored documents of each entity: what query filters evaluate on.
pub mod documents {
    pub use super::books::{from_stored as book, stored_document as of_book};
    pub use super::bookstores::{from_stored as bookstore, stored_document as of_bookstore};
}
pub use bookstores::{BookstoreStore, COLLECTION as BOOKSTORES};

/// What a version-conditioned update or delete found, for every entity.
#[derive(Debug)]
pub enum Written<T> {
    /// Written: for an update the record before and after (the caller reconciles cached
    /// results from both), for a delete the record as it was.
    Done(T),
    NotFound,
    /// The caller expected another version; nothing was written.
    VersionMismatch {
        current: crate::domain::Version,
    },
}
pub use error::StoreError;

/// How often a version-conditioned write re-reads and tries again when other writers keep
/// getting in between, before giving up with [`StoreError::Contended`].
const WRITE_ATTEMPTS: usize = 8;

use crate::{config::MongoSettings, metrics::Metrics};

/// A handle on the service's MongoDB database. Cheap to clone: one reference count (a read
/// takes a clone per request, and the driver's handles copy names and options when cloned).
#[derive(Clone)]
pub struct Store(Arc<Handles>);

struct Handles {
    client: Client,
    database: Database,
    timeout: Duration,
    books: BookStore,
    bookstores: BookstoreStore,
}

impl Store {
    /// Builds the client. Connections are made lazily, so this succeeds while MongoDB is down;
    /// use [`Store::ping`] to check it.
    pub async fn connect(settings: &MongoSettings, metrics: &Metrics) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(settings.uri.expose_secret())
            .await
            .map_err(|err| StoreError::Unavailable(Some(err)))?;
        options.app_name = Some("oponn".into());
        options.server_selection_timeout = Some(settings.timeout);
        options.connect_timeout = Some(settings.timeout);
        options.command_event_handler = Some(command_metrics(metrics.clone()));
        let client = Client::with_options(options)?;
        let database = client.database(&settings.database);
        Ok(Self(Arc::new(Handles {
            books: BookStore::new(database.clone(), settings.timeout),
            bookstores: BookstoreStore::new(&database, settings.timeout),
            client,
            database,
            timeout: settings.timeout,
        })))
    }

    /// Creates the indexes the service relies on (idempotent; run at start-up).
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        self.books().ensure_indexes().await?;
        self.bookstores().ensure_indexes().await
    }

    /// One round trip to MongoDB; returns its latency.
    pub async fn ping(&self) -> Result<Duration, StoreError> {
        let started = tokio::time::Instant::now();
        self.bounded(self.0.database.run_command(doc! { "ping": 1 }))
            .await?;
        Ok(started.elapsed())
    }

    /// Drops the whole database (tests use their own database each).
    #[cfg(feature = "test-hooks")]
    pub async fn drop_database(&self) -> Result<(), StoreError> {
        self.bounded(self.0.database.drop()).await
    }

    pub fn books(&self) -> &BookStore {
        &self.0.books
    }

    pub fn bookstores(&self) -> &BookstoreStore {
        &self.0.bookstores
    }

    /// Closes the connection pool.
    pub async fn shutdown(self) {
        self.0.client.clone().shutdown().await;
    }

    async fn bounded<T>(
        &self,
        call: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<T, StoreError> {
        bounded(self.0.timeout, call).await
    }
}

/// A stored document that carries its record's version.
trait Versioned {
    fn version(&self) -> i64;
}

/// What a version-conditioned update found.
enum Conditioned<D> {
    Updated { before: D, after: D },
    NotFound,
    VersionMismatch { current: i64 },
}

/// Reads the document, then applies `update` only to the version it read, so that `before`
/// is exactly the state the update replaced (the query-result cache needs both to find every
/// result a write can affect). With `expected`, refuses any other version. Retried when another
/// writer got in between; `Contended` if that keeps happening.
async fn update_conditioned<D>(
    collection: &mongodb::Collection<D>,
    id: mongodb::bson::oid::ObjectId,
    expected: Option<i64>,
    update: mongodb::bson::Document,
    timeout: Duration,
) -> Result<Conditioned<D>, StoreError>
where
    D: Versioned + serde::de::DeserializeOwned + Send + Sync,
{
    for _ in 0..WRITE_ATTEMPTS {
        let Some(before) = bounded(timeout, collection.find_one(doc! { "_id": id })).await? else {
            return Ok(Conditioned::NotFound);
        };
        let version = before.version();
        if expected.is_some_and(|expected| expected != version) {
            return Ok(Conditioned::VersionMismatch { current: version });
        }
        let after = bounded(
            timeout,
            collection
                .find_one_and_update(doc! { "_id": id, "version": version }, update.clone())
                .return_document(mongodb::options::ReturnDocument::After),
        )
        .await?;
        if let Some(after) = after {
            return Ok(Conditioned::Updated { before, after });
        }
    }
    Err(StoreError::Contended)
}

/// What persisting a write-behind version found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persisted {
    /// MongoDB now holds the version.
    Written,
    /// MongoDB already held that version or a newer one: nothing was written (a replay, or a
    /// delivery that arrived after a newer one).
    AlreadyNewer,
}

/// Writes `document` (version `version` of record `id`, acknowledged by the cache) unless
/// MongoDB holds that version or a newer one: a replace guarded by version, or an insert when
/// the record does not exist. Idempotent, so a change delivered twice or out of order never
/// moves a record backwards (write-behind needs no more than at-least-once delivery).
async fn persist_guarded<D>(
    collection: &mongodb::Collection<D>,
    id: mongodb::bson::oid::ObjectId,
    version: i64,
    document: &D,
    timeout: Duration,
) -> Result<Persisted, StoreError>
where
    D: Versioned + serde::Serialize + serde::de::DeserializeOwned + Send + Sync,
{
    for _ in 0..WRITE_ATTEMPTS {
        let replaced = bounded(
            timeout,
            collection.replace_one(doc! { "_id": id, "version": { "$lt": version } }, document),
        )
        .await?;
        if replaced.matched_count == 1 {
            return Ok(Persisted::Written);
        }
        match bounded(timeout, collection.insert_one(document)).await {
            Ok(_) => return Ok(Persisted::Written),
            Err(StoreError::Duplicate) => {
                match bounded(timeout, collection.find_one(doc! { "_id": id })).await? {
                    Some(current) if current.version() >= version => {
                        return Ok(Persisted::AlreadyNewer)
                    }
                    // Inserted meanwhile at an older version: replace it.
                    Some(_) => continue,
                    // Another record holds one of this one's unique keys.
                    None => return Err(StoreError::Duplicate),
                }
            }
            Err(error) => return Err(error),
        }
    }
    Err(StoreError::Contended)
}

/// Deletes record `id` if MongoDB holds it at a version below `tombstone` (the deleted
/// version + 1); a newer record under the same id stays.
async fn remove_guarded<D>(
    collection: &mongodb::Collection<D>,
    id: mongodb::bson::oid::ObjectId,
    tombstone: i64,
    timeout: Duration,
) -> Result<(), StoreError>
where
    D: Send + Sync,
{
    bounded(
        timeout,
        collection.delete_one(doc! { "_id": id, "version": { "$lt": tombstone } }),
    )
    .await
    .map(|_| ())
}

/// Runs one driver call under the store's timeout, mapping driver errors to [`StoreError`].
async fn bounded<T>(
    timeout: Duration,
    call: impl IntoFuture<Output = mongodb::error::Result<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(StoreError::from),
        Err(_elapsed) => Err(StoreError::TimedOut(timeout)),
    }
}

/// Counts every command the driver sends, with its latency, into `metrics`.
fn command_metrics(metrics: Metrics) -> EventHandler<CommandEvent> {
    EventHandler::callback(move |event: CommandEvent| {
        let (command, outcome, duration) = match &event {
            CommandEvent::Started(_) => return,
            CommandEvent::Succeeded(ok) => (&ok.command_name, "ok", ok.duration),
            CommandEvent::Failed(failed) => (&failed.command_name, "error", failed.duration),
            _ => return,
        };
        metrics
            .mongodb_commands
            .with_label_values(&[command.as_str(), outcome])
            .inc();
        metrics
            .mongodb_duration
            .with_label_values(&[command.as_str()])
            .observe(duration.as_secs_f64());
    })
}
