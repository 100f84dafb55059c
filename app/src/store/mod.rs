//! The MongoDB store: the only module that speaks to MongoDB.
//!
//! Every call is bounded by the configured timeout, so a MongoDB that hangs costs a request
//! one timeout and a clear `Unavailable`, never a stuck task. The driver's command events feed
//! the metrics (`oponn_mongodb_commands_total`, `oponn_mongodb_command_duration_seconds`): they
//! are the ground truth tests use to prove that a cache hit sends MongoDB nothing.
//!
//! The code needs nothing beyond the core MongoDB API (no `$lookup`, no transactions, no
//! collations), so it runs unchanged on Atlas, on `mongod` and on FerretDB.

mod authors;
mod books;
mod bookstores;
mod error;
mod indexes;
mod query;
mod records;

use std::{future::IntoFuture, sync::Arc, time::Duration};

use mongodb::{
    bson::doc,
    event::{command::CommandEvent, EventHandler},
    options::ClientOptions,
    Client, Database,
};
use secrecy::ExposeSecret;

pub use authors::AuthorStore;
pub use books::{BookStore, UpsertSummary, Upserted};
pub use bookstores::BookstoreStore;
pub use error::StoreError;
pub use records::{Persisted, Records, Stored, Written};

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
    authors: AuthorStore,
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
            books: Records::new(&database, settings.timeout),
            bookstores: Records::new(&database, settings.timeout),
            authors: Records::new(&database, settings.timeout),
            client,
            database,
            timeout: settings.timeout,
        })))
    }

    /// Creates the indexes the service relies on (idempotent; run at start-up).
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        self.books().ensure_indexes().await?;
        self.bookstores().ensure_indexes().await?;
        self.authors().ensure_indexes().await
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

    pub fn authors(&self) -> &AuthorStore {
        &self.0.authors
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
