//! `TestApp::spawn()`: one running service per test, isolated by database name and key prefix,
//! optionally behind fault proxies, cleaned up when dropped.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use oponn::{
    cache::{Entry, Lookup},
    config::{Settings, SourceSettings},
    datastore::{Datastore, DatastoreError, PauseHandle},
    domain::{Book, BookId, BookstoreId, LabelList, NewBook, SourceKey, Title},
    ingest::{self, Failed, Progress, Request, Scope, Summary},
    metrics::Metrics,
    source::OpenLibrary,
    startup::Application,
    store::BookStore,
};
use oponn_tests::{delete_app_keys, unique_name, Stack, TcpProxy};
use serde_json::{json, Value};
use tokio::{sync::oneshot, task::JoinHandle};

pub const TOKEN: &str = "test-token-0123456789abcdef";

pub struct TestApp {
    pub address: String,
    /// The operations server: `/metrics`, `/readyz`.
    pub ops_address: String,
    pub datastore: Datastore,
    pub metrics: Metrics,
    pub database: String,
    pub key_prefix: String,
    /// The Redis of the test's own, when it has one (`Options::redis_url`).
    pub own_redis: Option<String>,
    pub redis_proxy: Option<TcpProxy>,
    pub mongo_proxy: Option<TcpProxy>,
    stack: Stack,
    settings: Settings,
    /// The extra settings it was spawned with (siblings get them too).
    extra_settings: Vec<(&'static str, String)>,
    client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// How to spawn a [`TestApp`]; `Default` is an isolated app talking straight to the stack.
#[derive(Default)]
pub struct Options {
    /// Put a cuttable proxy between the app and Redis.
    pub proxy_redis: bool,
    /// Put a cuttable proxy between the app and MongoDB.
    pub proxy_mongo: bool,
    /// Share another app's database and key prefix (for multi-instance tests).
    pub share_with: Option<(String, String)>,
    /// Talk to this Redis (a test's own [`oponn_tests::RedisServer`]) instead of the stack's.
    pub redis_url: Option<String>,
    /// Extra settings, as environment variables.
    pub settings: Vec<(&'static str, String)>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(options: Options) -> Self {
        let stack = Stack::from_env();
        let (database, key_prefix) = options
            .share_with
            .clone()
            .unwrap_or_else(|| (unique_name("test"), format!("{}:", unique_name("test"))));
        let redis_proxy = match options.proxy_redis {
            true => Some(proxy_to(&stack.redis_address()).await),
            false => None,
        };
        let mongo_proxy = match options.proxy_mongo {
            true => Some(proxy_to(&stack.mongodb_address()).await),
            false => None,
        };
        let own_redis = options.redis_url.clone();
        let redis_url = match (&redis_proxy, &own_redis) {
            (Some(proxy), _) => format!("redis://{}", proxy.address()),
            (None, Some(url)) => url.clone(),
            (None, None) => stack.redis_url.clone(),
        };
        let mongodb_uri = mongo_proxy.as_ref().map_or(stack.mongodb_uri.clone(), |p| {
            format!("mongodb://{}/?directConnection=true", p.address())
        });

        let mut vars: HashMap<&str, String> = HashMap::from([
            ("OPONN_LISTEN", "127.0.0.1:0".to_owned()),
            ("OPONN_OPS_LISTEN", "127.0.0.1:0".to_owned()),
            ("MONGODB_URI", mongodb_uri),
            ("MONGODB_DATABASE", database.clone()),
            ("REDIS_URL", redis_url),
            ("OPONN_KEY_PREFIX", key_prefix.clone()),
            ("OPONN_API_TOKENS", TOKEN.to_owned()),
            // Generous for a shared FerretDB under a parallel suite; outage tests pay it per cut call.
            ("OPONN_MONGODB_TIMEOUT_MS", "3000".to_owned()),
            ("OPONN_REDIS_TIMEOUT_MS", "300".to_owned()),
            ("OPONN_REDIS_RETRY_AFTER_MS", "100".to_owned()),
        ]);
        let extra_settings = options.settings.clone();
        vars.extend(options.settings);
        let settings =
            Settings::from_lookup(|name| vars.get(name).cloned()).expect("valid test settings");

        let app = Application::build(settings.clone())
            .await
            .expect("the app builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let ops_address = format!("http://127.0.0.1:{}", app.ops_port());
        let datastore = app.datastore().clone();
        let metrics = app.metrics().clone();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        Self {
            address,
            ops_address,
            datastore,
            metrics,
            database,
            key_prefix,
            own_redis,
            redis_proxy,
            mongo_proxy,
            stack,
            settings,
            extra_settings,
            client: reqwest::Client::new(),
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    /// Signals shutdown, as SIGTERM would, and returns the server task to await.
    pub fn begin_shutdown(&mut self) -> JoinHandle<anyhow::Result<()>> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.server.take().expect("the server is running")
    }

    /// Another instance on the same database and key prefix.
    pub async fn spawn_sibling(&self) -> Self {
        Self::spawn_with(Options {
            share_with: Some((self.database.clone(), self.key_prefix.clone())),
            redis_url: self.own_redis.clone(),
            settings: self.extra_settings.clone(),
            ..Options::default()
        })
        .await
    }

    /// Runs a GraphQL request with the test token; asserts HTTP 200 and returns the body.
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        self.graphql_as(Some(&format!("Bearer {TOKEN}")), query, variables)
            .await
    }

    /// Runs a GraphQL request with the given `Authorization` header (or none).
    pub async fn graphql_as(
        &self,
        authorization: Option<&str>,
        query: &str,
        variables: Value,
    ) -> Value {
        let mut request = self
            .client
            .post(format!("{}/graphql", self.address))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.expect("the server answers");
        assert_eq!(response.status(), 200, "GraphQL over HTTP answers 200");
        response.json().await.expect("a JSON body")
    }

    /// POSTs a raw body to `/graphql`.
    pub async fn post_graphql_body(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(format!("{}/graphql", self.address))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the server answers")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.get_from(&self.address, path, None).await
    }

    /// GETs a path as a browser would (`Accept: text/html`).
    pub async fn get_page(&self, path: &str) -> reqwest::Response {
        self.get_from(&self.address, path, Some("text/html,application/xhtml+xml"))
            .await
    }

    /// GETs a path of the operations server (`/metrics`, `/readyz`).
    pub async fn get_ops(&self, path: &str) -> reqwest::Response {
        self.get_from(&self.ops_address, path, None).await
    }

    async fn get_from(&self, base: &str, path: &str, accept: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(format!("{base}{path}"));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        request.send().await.expect("the server answers")
    }

    /// Creates a book through the API and returns it as JSON.
    pub async fn create_book(&self, source_key: &str, title: &str) -> Value {
        let body = self
            .graphql(
                "mutation($input: CreateBookInput!) { createBook(input: $input) { id title version } }",
                json!({ "input": { "sourceKey": source_key, "title": title, "authors": ["A. Author"] } }),
            )
            .await;
        assert_no_errors(&body);
        body["data"]["createBook"].clone()
    }

    /// Inserts a book straight into MongoDB, bypassing the cache.
    pub async fn insert_uncached(&self, title: &str) -> Book {
        let new = new_book(&unique_name("/works/OL"), title);
        let id = BookStore::id_for(&new.source_key);
        let book = new.into_book(id, 1, chrono::Utc::now());
        self.datastore
            .store()
            .books()
            .insert(&book)
            .await
            .expect("MongoDB insert")
    }

    /// Starts a read of book `id` and returns once it has read MongoDB and stopped before its
    /// fill: the pause to resume, and the read to await.
    pub async fn reader_paused_before_fill(
        &self,
        id: BookId,
    ) -> (
        PauseHandle,
        JoinHandle<Result<Option<Book>, DatastoreError>>,
    ) {
        let mut pause = self.datastore.checkpoints().pause_before_fill();
        let reader = tokio::spawn({
            let datastore = self.datastore.clone();
            async move { datastore.book(id).await }
        });
        pause.reached().await;
        (pause, reader)
    }

    /// The version of book `id` this app serves (through its cache); the book must exist.
    pub async fn served_version(&self, id: BookId) -> i64 {
        let book = self.datastore.book(id).await.expect("a read");
        book.expect("the book exists").version
    }

    /// The raw value Redis holds under a book's key (not through the app's cache).
    pub async fn stored_entry(&self, id: impl std::fmt::Display) -> Option<String> {
        redis::cmd("GET")
            .arg(format!("{}books_{id}", self.key_prefix))
            .query_async(&mut self.redis().await)
            .await
            .expect("GET")
    }

    /// What the cache holds for a book, read directly.
    pub async fn cached(&self, id: BookId) -> Option<Entry<Book>> {
        match self.datastore.cache().get_many::<Book>(&[id]).await.pop() {
            Some(Lookup::Hit(entry)) => Some(entry),
            _ => None,
        }
    }

    /// Every document of `collection`, read directly.
    async fn documents_in(&self, collection: &str) -> Vec<mongodb::bson::Document> {
        use futures::TryStreamExt;
        self.mongodb()
            .await
            .collection::<mongodb::bson::Document>(collection)
            .find(mongodb::bson::doc! {})
            .await
            .expect("find")
            .try_collect()
            .await
            .expect("documents")
    }

    /// This test's database, through a client of its own (not the app's, nor its proxies).
    pub async fn mongodb(&self) -> mongodb::Database {
        mongodb::Client::with_uri_str(&self.stack.mongodb_uri)
            .await
            .expect("a MongoDB client")
            .database(&self.database)
    }

    /// How many books MongoDB holds in this test's database (read directly, not through the app).
    pub async fn count_books(&self) -> u64 {
        self.mongodb()
            .await
            .collection::<mongodb::bson::Document>("books")
            .count_documents(mongodb::bson::doc! {})
            .await
            .expect("count")
    }

    /// Every book in MongoDB, keyed by source key (read directly, not through the app).
    pub async fn books_in_mongodb(&self) -> BTreeMap<String, mongodb::bson::Document> {
        self.documents_in("books")
            .await
            .into_iter()
            .map(|document| {
                let key = document
                    .get_str("sourceKey")
                    .expect("a sourceKey")
                    .to_owned();
                (key, document)
            })
            .collect()
    }

    /// Everything this app has stored, read directly: every document of every collection of its
    /// database, and every key (with its value as `DUMP` gives it) under its key prefixes. Two
    /// equal digests mean nothing was written in between.
    pub async fn digest(&self) -> Vec<String> {
        let database = self.mongodb().await;
        let mut lines = Vec::new();
        let mut collections = database.list_collection_names().await.expect("collections");
        collections.sort();
        for name in collections {
            let mut documents: Vec<String> = self
                .documents_in(&name)
                .await
                .iter()
                .map(|document| format!("mongodb {name} {document}"))
                .collect();
            documents.sort();
            lines.extend(documents);
        }
        let redis = redis::Client::open(self.stack.redis_url.as_str()).expect("a Redis client");
        let mut connection = redis
            .get_multiplexed_async_connection()
            .await
            .expect("a Redis connection");
        for pattern in [
            format!("{}*", self.key_prefix),
            format!("{{{}q}}*", self.key_prefix),
        ] {
            let mut keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query_async(&mut connection)
                .await
                .expect("KEYS");
            keys.sort();
            for key in keys {
                let value: Option<Vec<u8>> = redis::cmd("DUMP")
                    .arg(&key)
                    .query_async(&mut connection)
                    .await
                    .expect("DUMP");
                lines.push(format!("redis {key} {value:?}"));
            }
        }
        lines
    }

    /// A connection to the stack's Redis (not through any proxy), for reading what the app
    /// stored.
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.own_redis.as_deref().unwrap_or(&self.stack.redis_url))
            .expect("a Redis client")
            .get_multiplexed_async_connection()
            .await
            .expect("a Redis connection")
    }

    /// Pings Redis until this app's cache reaches it again after an outage (its old connection
    /// fails once, the next one is new), at most 20 times.
    pub async fn reconnect_redis(&self) {
        for _ in 0..20 {
            if self.datastore.cache().ping().await.is_ok() {
                return;
            }
        }
        panic!("the app does not reach Redis again");
    }

    /// The key of the query-result cache's key named `name` (`tables`, `expiry`...).
    pub fn result_cache_key(&self, name: &str) -> String {
        format!("{{{}q}}{name}", self.key_prefix)
    }

    /// One of the extra settings the app was spawned with.
    pub fn setting(&self, name: &str) -> String {
        self.extra_settings
            .iter()
            .find(|(setting, _)| *setting == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| panic!("the app was spawned without {name}"))
    }

    /// A write-behind worker on this app's Redis, database and proxies (the app must run with
    /// `OPONN_WRITE_MODE=behind`); it stops, draining, when the handle is stopped or dropped.
    pub async fn spawn_worker(&self) -> WorkerHandle {
        let queue = oponn::startup::open_queue(&self.settings, self.datastore.cache())
            .await
            .expect("the queue opens");
        let metrics = Metrics::new();
        let worker = oponn::worker::Worker::new(
            queue,
            self.datastore.cache().clone(),
            self.datastore.store().clone(),
            self.settings.writes.clone(),
            metrics.clone(),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            worker
                .run(async move {
                    let _ = stopped.await;
                })
                .await
        });
        WorkerHandle {
            metrics,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Resolves once MongoDB holds every write acknowledged so far (write-behind: once a
    /// worker persisted them; books and bookstores share the queue), within
    /// `OPONN_QUEUE_BARRIER_MS`.
    pub async fn persisted(&self) {
        self.datastore
            .caught_up("books")
            .await
            .expect("the worker catches up");
    }

    /// A datastore on this app's database, key prefix and proxies, without the server's
    /// background repair loop: what a one-shot command such as `oponn ingest` has.
    pub async fn one_shot_datastore(&self) -> Datastore {
        oponn::startup::connect(&self.settings, &Metrics::new())
            .await
            .expect("a datastore")
    }

    /// Runs an ingest from the source at `source` into this app's datastore, as `oponn ingest`
    /// does, with log lines instead of a progress bar.
    pub async fn ingest(
        &self,
        source: &SourceSettings,
        query: &str,
        scope: Scope,
    ) -> Result<Summary, Failed> {
        self.ingest_into(source, query, scope, None).await
    }

    /// Like [`TestApp::ingest`], stocking the books in `bookstore`.
    pub async fn ingest_into(
        &self,
        source: &SourceSettings,
        query: &str,
        scope: Scope,
        bookstore: Option<BookstoreId>,
    ) -> Result<Summary, Failed> {
        let client = OpenLibrary::new(source).expect("a source client");
        let request = Request {
            query: query.to_owned(),
            scope,
            bookstore,
        };
        ingest::run(&client, &self.datastore, &request, &Progress::Log).await
    }

    /// Every `find` command the app's MongoDB driver has sent.
    pub fn mongo_finds(&self) -> u64 {
        self.metrics.mongodb_command_count("find")
    }

    pub fn redis_round_trips(&self) -> u64 {
        self.metrics.redis_round_trips()
    }
}

/// A running write-behind worker (see [`TestApp::spawn_worker`]).
pub struct WorkerHandle {
    pub metrics: Metrics,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Stops the worker as SIGTERM would, and waits until it has drained.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("the worker ends cleanly");
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
        let (stack, database, prefix) = (
            self.stack.clone(),
            self.database.clone(),
            self.key_prefix.clone(),
        );
        // Drop cannot be async: clean up on a thread with a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for cleanup");
            runtime.block_on(async {
                if let Ok(client) = mongodb::Client::with_uri_str(&stack.mongodb_uri).await {
                    let _ = client.database(&database).drop().await;
                }
                let _ = delete_app_keys(&stack.redis_url, &prefix).await;
            });
        });
        let _ = cleanup.join();
    }
}

async fn proxy_to(upstream: &str) -> TcpProxy {
    TcpProxy::start(upstream).await.expect("the proxy starts")
}

/// Source settings for a local test server: no pace, 1 ms backoff, pages of 10.
pub fn source_settings(base_url: &str) -> SourceSettings {
    SourceSettings {
        base_url: base_url.parse().expect("a valid URL"),
        user_agent: "oponn-tests".to_owned(),
        timeout: Duration::from_secs(5),
        concurrency: 2,
        rate_per_second: 0.0,
        retries: 3,
        backoff: Duration::from_millis(1),
        max_backoff: Duration::from_secs(2),
        page_size: 10,
    }
}

pub fn new_book(source_key: &str, title: &str) -> NewBook {
    NewBook {
        source_key: SourceKey::parse(source_key).expect("valid key"),
        title: Title::parse(title).expect("valid title"),
        authors: LabelList::parse("authors", &["A. Author"], 10).expect("valid authors"),
        first_publish_year: None,
        subjects: LabelList::default(),
        author_credits: Vec::new(),
    }
}

/// Asserts that `query` (taking the variable `ids`) costs the same round trips for each of
/// `sizes` first ids: started cold, one MongoDB `find` per layer and a Redis lookup and fill
/// per layer; warm, the same answer from one `MGET` per layer and no `find`.
pub async fn assert_batched_per_layer(
    app: &TestApp,
    query: &str,
    field: &str,
    ids: &[String],
    sizes: &[usize],
) {
    for &n in sizes {
        // Start every size cold: forget every record cached so far.
        delete_app_keys(&Stack::from_env().redis_url, &app.key_prefix)
            .await
            .expect("flush this test's keys");
        let ids = &ids[..n];
        let (finds, trips) = (app.mongo_finds(), app.redis_round_trips());
        let cold = app.graphql(query, json!({ "ids": ids })).await;
        assert_no_errors(&cold);
        assert_eq!(cold["data"][field].as_array().unwrap().len(), n);
        assert_eq!(app.mongo_finds() - finds, 2, "n={n}: one query per layer");
        assert_eq!(
            app.redis_round_trips() - trips,
            4,
            "n={n}: lookup and fill per layer"
        );

        let (finds, trips) = (app.mongo_finds(), app.redis_round_trips());
        let warm = app.graphql(query, json!({ "ids": ids })).await;
        assert_eq!(warm, cold);
        assert_eq!(
            app.mongo_finds() - finds,
            0,
            "n={n}: warm reads stay in Redis"
        );
        assert_eq!(
            app.redis_round_trips() - trips,
            2,
            "n={n}: one MGET per layer"
        );
    }
}

/// `extensions.code` of the first error.
pub fn error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error with a code, got {body}"))
}

pub fn assert_no_errors(body: &Value) {
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
}

pub fn book_id(value: &Value) -> BookId {
    value["id"]
        .as_str()
        .expect("an id")
        .parse()
        .expect("a valid id")
}

/// 12 hex digits no other call returns: for names and keys that must not collide.
pub fn unique_suffix() -> String {
    unique_name("x")[2..].to_owned()
}
