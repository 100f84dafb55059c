//! The workload a run keeps up while faults are injected: writers updating a small hot set of
//! books and readers reading it three ways, through both instances alternately, each recording
//! what the checker needs on the test process's clock.
//!
//! The first half of the hot set is first given one shared author ([`prepare`]), and every write
//! to it keeps it, so the filtered list page (the query-result cache's path) returns that half.
//! Only half: a list page read from MongoDB refreshes the cached record of every book on it, so a
//! page over the whole hot set would repair a rolled-back cache with its first cold read and hide
//! the rollback from every other read, which a catalogue bigger than one page does not do.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use tokio::{sync::watch, task::JoinSet, time::MissedTickBehavior};

use super::{Ack, Read, ReadKind, Routes, INSTANCES};
use crate::TOKEN;

/// No request may take longer than this (it then counts as an error).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

const UPDATE: &str = "mutation($id: ID!, $input: UpdateBookInput!) { \
                      updateBook(id: $id, input: $input) { id version } }";
const BOOK: &str = "query($id: ID!) { book(id: $id) { id version } }";
const BOOKS_BY_IDS: &str = "query($ids: [ID!]!) { booksByIds(ids: $ids) { id version } }";
const LIST: &str = "query($author: String!) { \
                    books(filter: { author: $author }, first: 20) { nodes { id version } } }";

/// How many workers, how fast writers write, and how many requests each may send at most.
#[derive(Debug, Clone, Copy)]
pub struct WorkloadSettings {
    /// Writers over the whole hot set, each starting one write per `write_interval` (or as soon
    /// as its previous write returned, if that is later). Writes slower than reads leave a stale
    /// record in the cache time to be read before the next write replaces it, as in a
    /// read-heavy service.
    pub writers: usize,
    pub write_interval: Duration,
    /// Writers over the listed books only, back to back: many writes racing many fills and
    /// reconciliations on a few records.
    pub listed_writers: usize,
    pub readers: usize,
    pub requests_per_worker: usize,
}

impl WorkloadSettings {
    pub fn all_writers(&self) -> usize {
        self.writers + self.listed_writers
    }
}

/// What one writer writes: the first `records` hot books, one write per `interval` if any.
#[derive(Debug, Clone, Copy)]
struct Writes {
    records: usize,
    interval: Option<Duration>,
    bound: usize,
}

/// What the workload reads and writes, and where.
#[derive(Debug, Clone)]
pub struct Target {
    pub routes: Arc<Routes>,
    /// The hot set.
    pub ids: Arc<Vec<String>>,
    /// How many of `ids`, from the first, have `author` (at most 20: one list page).
    pub listed: usize,
    /// The author the listed books have.
    pub author: String,
    pub client: reqwest::Client,
}

/// Everything the workers recorded.
#[derive(Debug, Default)]
pub struct Log {
    pub acks: Vec<Ack>,
    pub reads: Vec<Read>,
    pub read_errors: Vec<String>,
    pub write_errors: Vec<String>,
}

/// A GraphQL answer with data: which instance gave it, and when its request left (never later
/// than the read it carries began).
struct Answer {
    instance: usize,
    sent: Instant,
    data: Value,
}

/// Running writers and readers.
pub struct Workload {
    stop: watch::Sender<bool>,
    reads: watch::Receiver<usize>,
    workers: JoinSet<Log>,
}

impl Target {
    pub fn new(routes: Arc<Routes>, ids: Vec<String>, listed: usize, author: &str) -> Self {
        assert!(
            listed <= ids.len().min(20),
            "the listed books fit one list page"
        );
        Self {
            routes,
            ids: Arc::new(ids),
            listed,
            author: author.to_owned(),
            client: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .expect("an HTTP client"),
        }
    }

    /// Sends one GraphQL request to instance `preferred` (or another if it is down); its
    /// answer, or why it is an error: no instance up, a transport failure, a non-200, GraphQL
    /// errors.
    async fn call(
        &self,
        preferred: usize,
        query: &str,
        variables: Value,
    ) -> Result<Answer, String> {
        let (instance, base) = self
            .routes
            .pick(preferred)
            .ok_or_else(|| "no instance is up".to_owned())?;
        let request = self
            .client
            .post(format!("{base}/graphql"))
            .bearer_auth(TOKEN)
            .json(&json!({ "query": query, "variables": variables }));
        let sent = Instant::now();
        let failed = |error: reqwest::Error| format!("instance {instance}: {error}");
        let response = request.send().await.map_err(failed)?;
        let status = response.status();
        let body: Value = response.json().await.map_err(failed)?;
        if status != 200 || body.get("errors").is_some() {
            return Err(format!("instance {instance}: HTTP {status}: {body}"));
        }
        Ok(Answer {
            instance,
            sent,
            data: body["data"].clone(),
        })
    }

    /// The listed books: the ones the list page returns.
    pub fn listed_ids(&self) -> &[String] {
        &self.ids[..self.listed]
    }

    /// Updates `id` (a listed book keeps the shared author); the acknowledged version.
    async fn write(&self, preferred: usize, id: &str, year: i64) -> Result<Ack, String> {
        let input = if self.listed_ids().iter().any(|listed| listed == id) {
            json!({ "authors": [self.author], "firstPublishYear": year })
        } else {
            json!({ "firstPublishYear": year })
        };
        let variables = json!({ "id": id, "input": input });
        let Answer { data, .. } = self.call(preferred, UPDATE, variables).await?;
        // After the whole answer arrived: never earlier than the acknowledgement.
        let at = Instant::now();
        let version = data["updateBook"]["version"]
            .as_i64()
            .ok_or_else(|| format!("no version in {data}"))?;
        Ok(Ack {
            id: id.to_owned(),
            version,
            at,
        })
    }

    /// One read of `kind` (`book(id)` reads `id`); the versions it returned.
    async fn read(&self, preferred: usize, kind: ReadKind, id: &str) -> Result<Read, String> {
        let (query, variables) = match kind {
            ReadKind::Book => (BOOK, json!({ "id": id })),
            ReadKind::BooksByIds => (BOOKS_BY_IDS, json!({ "ids": *self.ids })),
            ReadKind::List => (LIST, json!({ "author": self.author })),
        };
        let Answer {
            instance,
            sent: began,
            data,
        } = self.call(preferred, query, variables).await?;
        let records = match kind {
            ReadKind::Book => vec![data["book"].clone()],
            ReadKind::BooksByIds => data["booksByIds"].as_array().cloned().unwrap_or_default(),
            ReadKind::List => data["books"]["nodes"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        };
        let versions = records
            .iter()
            .map(|record| {
                let id = record["id"].as_str();
                let version = record["version"].as_i64();
                id.zip(version)
                    .map(|(id, version)| (id.to_owned(), version))
                    .ok_or_else(|| {
                        format!("instance {instance}: a record without id or version in {data}")
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if versions.is_empty() {
            return Err(format!("instance {instance}: no record in {data}"));
        }
        Ok(Read {
            began,
            kind,
            instance,
            versions,
        })
    }
}

/// Gives the listed books the shared author, through the instances in turn; the
/// acknowledgements.
pub async fn prepare(target: &Target) -> Vec<Ack> {
    let mut acks = Vec::new();
    for (index, id) in target.listed_ids().iter().enumerate() {
        let ack = target
            .write(index % INSTANCES, id, 1000)
            .await
            .unwrap_or_else(|error| panic!("preparing {id}: {error}"));
        acks.push(ack);
    }
    acks
}

impl Workload {
    /// Starts the writers and readers; they run until [`Workload::stop`] or their request bound.
    pub fn start(target: &Target, settings: WorkloadSettings) -> Self {
        let (stop, stopped) = watch::channel(false);
        let (read_count, reads) = watch::channel(0);
        let read_count = Arc::new(read_count);
        let mut workers = JoinSet::new();
        for writer in 0..settings.all_writers() {
            let paced = writer < settings.writers;
            let writes = Writes {
                records: if paced {
                    target.ids.len()
                } else {
                    target.listed
                },
                interval: paced.then_some(settings.write_interval),
                bound: settings.requests_per_worker,
            };
            let (target, stopped) = (target.clone(), stopped.clone());
            workers.spawn(async move { write_loop(target, writer, writes, stopped).await });
        }
        for reader in 0..settings.readers {
            let (target, stopped) = (target.clone(), stopped.clone());
            let (bound, read_count) = (settings.requests_per_worker, read_count.clone());
            workers
                .spawn(async move { read_loop(target, reader, bound, stopped, read_count).await });
        }
        Self {
            stop,
            reads,
            workers,
        }
    }

    /// Resolves once the readers have recorded `count` reads (errors not included), or never.
    pub async fn reads_reached(&self, count: usize) {
        let mut reads = self.reads.clone();
        // The sender lives in the readers; if they all ended, wait forever (callers bound it).
        if reads.wait_for(|reads| *reads >= count).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Stops every worker after its current request, and gathers what they recorded.
    pub async fn stop(mut self) -> Log {
        self.stop.send_replace(true);
        let mut log = Log::default();
        while let Some(worker) = self.workers.join_next().await {
            let worker = worker.expect("a worker does not panic");
            log.acks.extend(worker.acks);
            log.reads.extend(worker.reads);
            log.read_errors.extend(worker.read_errors);
            log.write_errors.extend(worker.write_errors);
        }
        log
    }
}

/// Writer `writer`: updates books in turn, through the instances alternately.
async fn write_loop(
    target: Target,
    writer: usize,
    writes: Writes,
    stopped: watch::Receiver<bool>,
) -> Log {
    let mut log = Log::default();
    let mut pace = writes.interval.map(tokio::time::interval);
    if let Some(pace) = &mut pace {
        pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
    }
    for request in 0..writes.bound {
        if let Some(pace) = &mut pace {
            pace.tick().await;
        }
        if *stopped.borrow() {
            break;
        }
        let id = &target.ids[spread(writer, request, writes.records)];
        // Every write changes the record; the year only varies so that it visibly does.
        let year = 1000 + (request % 1000) as i64;
        match target.write(writer + request, id, year).await {
            Ok(ack) => log.acks.push(ack),
            Err(error) => log.write_errors.push(error),
        }
    }
    log
}

/// Reader `reader`: cycles through the three kinds of read, through the instances alternately.
async fn read_loop(
    target: Target,
    reader: usize,
    bound: usize,
    stopped: watch::Receiver<bool>,
    read_count: Arc<watch::Sender<usize>>,
) -> Log {
    const KINDS: [ReadKind; 3] = [ReadKind::Book, ReadKind::BooksByIds, ReadKind::List];
    let mut log = Log::default();
    for request in 0..bound {
        if *stopped.borrow() {
            break;
        }
        let kind = KINDS[(reader + request) % KINDS.len()];
        let id = &target.ids[spread(reader, request, target.ids.len())];
        match target.read(reader + request, kind, id).await {
            Ok(read) => {
                log.reads.push(read);
                read_count.send_modify(|count| *count += 1);
            }
            Err(error) => log.read_errors.push(error),
        }
    }
    log
}

/// Which of `records` records worker `worker` picks for its `request`th request: every record
/// in turn (for 8 or 16 records, which 7 is prime to), each worker from another place.
fn spread(worker: usize, request: usize, records: usize) -> usize {
    (request * 7 + worker * 3) % records
}
