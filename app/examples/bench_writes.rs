//! `make bench-writes`: `updateBook` written through and written behind, over HTTP against
//! release builds of `oponn serve` and `oponn worker` on the local stack, in one run:
//!
//! 1. **through**: `oponn serve` in write-through mode. `BENCH_MUTATIONS` (3,000) calls on
//!    distinct books, `BENCH_CONCURRENCY` (16) in flight: p50, p99, mutations/s.
//! 2. **behind, no worker**: the same against `oponn serve` with `OPONN_WRITE_MODE=behind` and
//!    no worker anywhere, so a call costs only its acknowledgement (a pending record and a
//!    queued change in Redis). Then `oponn worker` starts on the backlog: changes persisted per
//!    second, from the worker's "started" log line until the stream's consumer group `workers`
//!    has nothing pending and nothing undelivered (`XINFO GROUPS`: pending 0, lag 0).
//! 3. **behind, worker running**: the same calls with an `oponn worker` running alongside:
//!    p50, p99, mutations/s, the backlog left when the last call returned, how long the worker
//!    took to catch up, and the changes persisted per second from the first call to caught up.
//!
//! Every phase starts from the same state: no key under the benchmark's prefix, the books it
//! writes read once through `booksByIds` (a warm entity cache, as a hot catalogue has), then
//! `BENCH_WARMUP` (200) unmeasured calls on other books of the phase. After each behind phase
//! MongoDB must hold every book at the version its call returned and the dead-letter stream
//! must be empty, or the run fails: a drained queue is a persisted one.
//!
//! The catalogue (`oponn seed --generate`, `BENCH_BOOKS` books, 10,000 by default, over 50
//! stores) lives in its own database, `bench_writes_<books>`, seeded once and kept for later
//! runs; the keys under `bench-writes:` are deleted when the run ends.
//!
//! Run by `scripts/bench-writes`, which builds the release binaries and passes `BENCH_OPONN`
//! (the `oponn` binary), `BENCH_WORK` (the servers' logs, and the ids of the processes this
//! benchmark started, for the script to stop if the benchmark dies) and `BENCH_COMMIT`. Needs
//! MONGODB_URI and REDIS_URL. Loopback only.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "it prints its figures"
)]

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context;
use futures::{stream, StreamExt, TryStreamExt};
use mongodb::bson::{doc, oid::ObjectId, Bson, Document};
use redis::{aio::MultiplexedConnection, streams::StreamInfoGroupsReply};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

const TOKEN: &str = "bench-token-0123456789abcdef";
const PREFIX: &str = "bench-writes:";
/// `<prefix>` + `OPONN_QUEUE_STREAM`'s default.
const STREAM: &str = "bench-writes:writes";
const STORES: usize = 50;
/// Ids per `booksByIds` call when warming the cache.
const WARM_BATCH: usize = 100;
/// How often the queue is read while waiting for the worker.
const POLL: Duration = Duration::from_millis(10);
/// How long a process may take to log that it is ready.
const START_WITHIN: Duration = Duration::from_secs(60);
/// How long a process may take to exit after SIGTERM.
const STOP_WITHIN: Duration = Duration::from_secs(30);
/// How long the seeding of a missing catalogue may take.
const SEED_WITHIN: Duration = Duration::from_secs(1_800);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const UPDATE: &str = "mutation($id: ID!, $title: String!) { updateBook(id: $id, input: { title: $title }) { id version } }";

/// What the benchmark was asked to do, from the environment.
struct Config {
    oponn: PathBuf,
    work: PathBuf,
    commit: String,
    mongodb_uri: String,
    redis_url: String,
    books: usize,
    mutations: usize,
    warmup: usize,
    concurrency: usize,
    drain_within: Duration,
}

impl Config {
    fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
        let number = |name: &str, default: usize| -> anyhow::Result<usize> {
            match std::env::var(name) {
                Ok(value) => value
                    .trim()
                    .parse()
                    .with_context(|| format!("{name}={value:?} is not a number")),
                Err(_) => Ok(default),
            }
        };
        let config = Self {
            oponn: var("BENCH_OPONN")?.into(),
            work: var("BENCH_WORK")?.into(),
            commit: std::env::var("BENCH_COMMIT").unwrap_or_else(|_| "unknown".into()),
            mongodb_uri: var("MONGODB_URI")?,
            redis_url: var("REDIS_URL")?,
            books: number("BENCH_BOOKS", 10_000)?,
            mutations: number("BENCH_MUTATIONS", 3_000)?,
            warmup: number("BENCH_WARMUP", 200)?,
            concurrency: number("BENCH_CONCURRENCY", 16)?.max(1),
            drain_within: Duration::from_secs(number("BENCH_DRAIN_TIMEOUT_SECS", 600)? as u64),
        };
        anyhow::ensure!(
            config.mutations > 0 && config.warmup + config.mutations <= config.books,
            "BENCH_WARMUP + BENCH_MUTATIONS must be between 1 and BENCH_BOOKS: a phase writes \
             each book once"
        );
        Ok(config)
    }

    fn database(&self) -> String {
        format!("bench_writes_{}", self.books)
    }
}

fn say(message: impl std::fmt::Display) {
    eprintln!("[bench-writes] {message}");
}

/// The `oponn` processes this benchmark started, by id, listed in `<work>/children` so that
/// the script can stop them if the benchmark itself is killed.
struct Processes {
    list: PathBuf,
    running: Vec<u32>,
}

/// One started `oponn` process; its output goes to a log file.
struct Process {
    child: Child,
    pid: u32,
    name: String,
    log: PathBuf,
}

impl Processes {
    fn new(work: &Path) -> anyhow::Result<Self> {
        let processes = Self {
            list: work.join("children"),
            running: Vec::new(),
        };
        processes.write()?;
        Ok(processes)
    }

    fn write(&self) -> anyhow::Result<()> {
        let lines: String = self.running.iter().map(|pid| format!("{pid}\n")).collect();
        std::fs::write(&self.list, lines).with_context(|| format!("{}", self.list.display()))
    }

    /// Starts `oponn <args>` with only the benchmark's settings and `extra`.
    fn start(
        &mut self,
        config: &Config,
        name: &str,
        args: &[&str],
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Process> {
        let log = config.work.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).with_context(|| format!("{}", log.display()))?;
        let mut command = Command::new(&config.oponn);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DO_NOT_TRACK", "1")
            .env("MONGODB_URI", &config.mongodb_uri)
            .env("REDIS_URL", &config.redis_url)
            .env("MONGODB_DATABASE", config.database())
            .env("OPONN_KEY_PREFIX", PREFIX)
            .env("OPONN_API_TOKENS", TOKEN)
            .env("OPONN_LISTEN", "127.0.0.1:0")
            .env("OPONN_OPS_LISTEN", "127.0.0.1:0")
            .env("OPONN_LOG_FORMAT", "json")
            // Warnings, and the lines that say a process is ready; nothing per request.
            .env("RUST_LOG", "warn,oponn::startup=info,oponn::worker=info")
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", config.oponn.display()))?;
        let pid = child.id().context("a process just started has an id")?;
        self.running.push(pid);
        self.write()?;
        Ok(Process {
            child,
            pid,
            name: name.to_owned(),
            log,
        })
    }

    /// SIGTERM, then waits for the exit (a worker finishes what it holds first); SIGKILL
    /// after [`STOP_WITHIN`].
    async fn stop(&mut self, mut process: Process) -> anyhow::Result<()> {
        if process.child.try_wait()?.is_none() {
            Command::new("kill")
                .args(["-TERM", &process.pid.to_string()])
                .status()
                .await?;
            if tokio::time::timeout(STOP_WITHIN, process.child.wait())
                .await
                .is_err()
            {
                say(format!(
                    "{} did not stop within {STOP_WITHIN:?}; killing it",
                    process.name
                ));
                process.child.kill().await?;
            }
        }
        self.running.retain(|running| *running != process.pid);
        self.write()
    }
}

impl Process {
    /// Waits until the process logs `message`, and returns that line.
    async fn ready(&mut self, message: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + START_WITHIN;
        loop {
            if let Some(line) = self.logged(message)? {
                return Ok(line);
            }
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!(
                    "{} exited ({status}); see {}",
                    self.name,
                    self.log.display()
                );
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} did not log {message:?} within {START_WITHIN:?}; see {}",
                self.name,
                self.log.display()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The first JSON log line whose message is `message`, if there is one yet.
    fn logged(&self, message: &str) -> anyhow::Result<Option<Value>> {
        let text = std::fs::read_to_string(&self.log)?;
        Ok(text
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line["message"] == message))
    }

    /// `http://<address>` from a log line's `field`.
    fn address(line: &Value, field: &str) -> anyhow::Result<String> {
        let address = line[field].as_str().context("no address in the log line")?;
        Ok(format!("http://{address}"))
    }
}

/// A GraphQL client with the bearer token.
struct Client {
    http: reqwest::Client,
    url: String,
}

impl Client {
    fn new(base: &str) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()?,
            url: format!("{base}/graphql"),
        })
    }

    async fn graphql(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let response: Value = self
            .http
            .post(&self.url)
            .bearer_auth(TOKEN)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await?
            .json()
            .await?;
        if let Some(errors) = response.get("errors") {
            anyhow::bail!("GraphQL errors: {errors}");
        }
        Ok(response["data"].clone())
    }

    /// Reads `ids` once, so that the entity cache holds them.
    async fn warm(&self, ids: &[String], concurrency: usize) -> anyhow::Result<()> {
        stream::iter(ids.chunks(WARM_BATCH))
            .map(|batch| {
                self.graphql(
                    "query($ids: [ID!]!) { booksByIds(ids: $ids) { id version } }",
                    json!({ "ids": batch }),
                )
            })
            .buffer_unordered(concurrency)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }

    /// One `updateBook` per id, `concurrency` in flight; fails on the first error.
    async fn update_all(
        &self,
        ids: &[String],
        run: &str,
        concurrency: usize,
    ) -> anyhow::Result<Calls> {
        let started = Instant::now();
        let answers: Vec<(Duration, String, i64)> = stream::iter(ids.iter().enumerate())
            .map(|(n, id)| async move {
                let title = format!("Bench write {run} {n}");
                let sent = Instant::now();
                let data = self
                    .graphql(UPDATE, json!({ "id": id, "title": title }))
                    .await?;
                let version = data["updateBook"]["version"]
                    .as_i64()
                    .context("updateBook returned no version")?;
                anyhow::Ok((sent.elapsed(), id.clone(), version))
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        let elapsed = started.elapsed();
        let (latencies, versions) = answers
            .into_iter()
            .map(|(latency, id, version)| (latency, (id, version)))
            .unzip();
        Ok(Calls {
            latencies,
            elapsed,
            versions,
        })
    }
}

/// The measured calls of one phase.
struct Calls {
    latencies: Vec<Duration>,
    elapsed: Duration,
    /// Each book written, and the version its call returned.
    versions: Vec<(String, i64)>,
}

/// One row of the table.
struct Row {
    label: String,
    per_second: f64,
    p50: f64,
    p99: f64,
}

impl Row {
    fn of(label: &str, calls: &Calls) -> Self {
        let (p50, p99) = percentiles(calls.latencies.clone());
        Self {
            label: label.to_owned(),
            per_second: calls.latencies.len() as f64 / calls.elapsed.as_secs_f64(),
            p50,
            p99,
        }
    }
}

/// p50 and p99 of `durations`, in milliseconds (nearest rank).
fn percentiles(mut durations: Vec<Duration>) -> (f64, f64) {
    durations.sort();
    let at = |q: f64| {
        let index = ((durations.len() as f64 * q).ceil() as usize).clamp(1, durations.len()) - 1;
        durations[index].as_secs_f64() * 1000.0
    };
    (at(0.50), at(0.99))
}

/// The write-behind stream as its consumer group `workers` sees it.
#[derive(Debug, Default)]
struct QueueState {
    /// Entries in the stream (the worker trims acknowledged ones).
    length: u64,
    /// Delivered to a worker, not acknowledged.
    pending: u64,
    /// Not delivered yet (`None`: Redis cannot tell).
    lag: Option<u64>,
    last_delivered: String,
    last_entry: Option<String>,
    /// Entries in the dead-letter stream.
    dead: u64,
}

impl QueueState {
    /// Every change delivered and acknowledged.
    fn drained(&self) -> bool {
        let delivered = match (self.lag, &self.last_entry) {
            (Some(lag), _) => lag == 0,
            (None, None) => true,
            (None, Some(last)) => position(&self.last_delivered) >= position(last),
        };
        self.pending == 0 && delivered
    }

    /// Changes not persisted yet.
    fn backlog(&self) -> u64 {
        self.pending + self.lag.unwrap_or(0)
    }
}

/// A stream entry id (`<ms>-<seq>`), ordered as Redis orders them.
fn position(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

async fn queue_state(redis: &mut MultiplexedConnection) -> anyhow::Result<QueueState> {
    let (exists, length, dead, last): (bool, u64, u64, redis::streams::StreamRangeReply) =
        redis::pipe()
            .exists(STREAM)
            .xlen(STREAM)
            .xlen(format!("{STREAM}:dead"))
            .xrevrange_count(STREAM, "+", "-", 1)
            .query_async(redis)
            .await?;
    let mut state = QueueState {
        length,
        dead,
        last_entry: last.ids.into_iter().next().map(|entry| entry.id),
        last_delivered: "0-0".to_owned(),
        ..QueueState::default()
    };
    if !exists {
        return Ok(state);
    }
    let groups: StreamInfoGroupsReply = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(STREAM)
        .query_async(redis)
        .await?;
    match groups
        .groups
        .into_iter()
        .find(|group| group.name == "workers")
    {
        Some(group) => {
            state.pending = group.pending as u64;
            state.lag = group.lag.map(|lag| lag as u64);
            state.last_delivered = group.last_delivered_id;
        }
        // No group: nothing was ever delivered.
        None => state.lag = Some(length),
    }
    Ok(state)
}

/// Polls the queue until it is drained; returns when that was seen, or fails past `within`.
async fn wait_drained(
    redis: &mut MultiplexedConnection,
    within: Duration,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + within;
    loop {
        let state = queue_state(redis).await?;
        if state.drained() {
            return Ok(Instant::now());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the worker did not drain the queue within {within:?} (BENCH_DRAIN_TIMEOUT_SECS): {state:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The books' ids, `BENCH_BOOKS` of them seeded first if the database holds another number.
async fn catalogue(
    config: &Config,
    processes: &mut Processes,
    mongodb: &mongodb::Database,
) -> anyhow::Result<Vec<String>> {
    let books = mongodb.collection::<Document>("books");
    let stored = books.count_documents(doc! {}).await? as usize;
    if stored != config.books {
        say(format!(
            "seeding {} books over {STORES} stores into {} (once; kept for later runs)",
            config.books,
            config.database()
        ));
        let generate = config.books.to_string();
        let stores = STORES.to_string();
        let mut seed = processes.start(
            config,
            "seed",
            &["seed", "--generate", &generate, "--stores", &stores],
            &[("RUST_LOG", "info"), ("OPONN_MONGODB_TIMEOUT_MS", "60000")],
        )?;
        let status = tokio::time::timeout(SEED_WITHIN, seed.child.wait())
            .await
            .context("oponn seed took too long")??;
        processes.stop(seed).await?;
        anyhow::ensure!(
            status.success(),
            "oponn seed failed; see its log in {}",
            config.work.display()
        );
    }
    let mut ids: Vec<String> = books
        .find(doc! {})
        .projection(doc! { "_id": 1 })
        .await?
        .try_collect::<Vec<_>>()
        .await?
        .iter()
        .filter_map(|document| document.get_object_id("_id").ok().map(|id| id.to_hex()))
        .collect();
    anyhow::ensure!(
        ids.len() == config.books,
        "{} holds {} books",
        config.database(),
        ids.len()
    );
    ids.sort();
    fastrand::seed(7);
    fastrand::shuffle(&mut ids);
    Ok(ids)
}

/// Fails unless MongoDB holds every book of `versions` at that version (or newer).
async fn check_persisted(
    mongodb: &mongodb::Database,
    versions: &[(String, i64)],
) -> anyhow::Result<()> {
    let books = mongodb.collection::<Document>("books");
    let mut behind = 0;
    for chunk in versions.chunks(500) {
        let ids: Vec<ObjectId> = chunk
            .iter()
            .map(|(id, _)| ObjectId::parse_str(id))
            .collect::<Result<_, _>>()?;
        let stored: Vec<Document> = books
            .find(doc! { "_id": { "$in": ids } })
            .projection(doc! { "version": 1 })
            .await?
            .try_collect()
            .await?;
        for (id, version) in chunk {
            let persisted = stored
                .iter()
                .find(|document| {
                    document
                        .get_object_id("_id")
                        .is_ok_and(|d| d.to_hex() == *id)
                })
                .and_then(|document| match document.get("version") {
                    Some(Bson::Int64(version)) => Some(*version),
                    Some(Bson::Int32(version)) => Some(i64::from(*version)),
                    _ => None,
                });
            if persisted.is_none_or(|persisted| persisted < *version) {
                behind += 1;
            }
        }
    }
    anyhow::ensure!(
        behind == 0,
        "{behind} of {} books are not in MongoDB at the version their call returned",
        versions.len()
    );
    Ok(())
}

/// Everything the phases share.
struct Bench {
    config: Config,
    processes: Processes,
    mongodb: mongodb::Database,
    redis: MultiplexedConnection,
    ids: Vec<String>,
    /// Tells this run's titles from earlier runs' (an unchanged title might not be a write).
    run: String,
}

/// What the behind phase with a worker running saw besides its calls.
struct Sustained {
    backlog: u64,
    catch_up: Duration,
    persisted_per_second: f64,
}

/// What draining the backlog of the behind phase without a worker saw.
struct Drain {
    changes: u64,
    elapsed: Duration,
}

impl Bench {
    /// The books phase `phase` writes: its warm-up ones, then its measured ones.
    fn books(&self, phase: usize) -> (Vec<String>, Vec<String>) {
        let per_phase = self.config.warmup + self.config.mutations;
        let books: Vec<String> = (0..per_phase)
            .map(|n| self.ids[(phase * per_phase + n) % self.ids.len()].clone())
            .collect();
        let (warmup, measured) = books.split_at(self.config.warmup);
        (warmup.to_vec(), measured.to_vec())
    }

    /// Starts `oponn serve` in `mode` on an empty key prefix, warms the cache with the phase's
    /// books and makes the warm-up calls.
    async fn serve(&mut self, mode: &str, phase: usize) -> anyhow::Result<(Process, Client)> {
        let mut server = self.processes.start(
            &self.config,
            &format!("serve-{mode}-{phase}"),
            &["serve"],
            &[("OPONN_WRITE_MODE", mode)],
        )?;
        let serving = server.ready("serving").await?;
        let client = Client::new(&Process::address(&serving, "address")?)?;
        let (warmup, measured) = self.books(phase);
        let concurrency = self.config.concurrency;
        client.warm(&warmup, concurrency).await?;
        client.warm(&measured, concurrency).await?;
        client
            .update_all(&warmup, &format!("{} warm-up", self.run), concurrency)
            .await?;
        Ok((server, client))
    }

    /// Starts `oponn worker`; returns it once it logged that it started taking changes.
    async fn worker(&mut self, name: &str) -> anyhow::Result<(Process, Instant)> {
        let mut worker = self.processes.start(
            &self.config,
            name,
            &["worker"],
            &[("OPONN_WRITE_MODE", "behind")],
        )?;
        worker.ready("write-behind worker started").await?;
        Ok((worker, Instant::now()))
    }

    async fn clear_keys(&self) -> anyhow::Result<()> {
        oponn_tests::delete_app_keys(&self.config.redis_url, PREFIX).await?;
        Ok(())
    }

    async fn through(&mut self) -> anyhow::Result<Row> {
        self.clear_keys().await?;
        let (server, client) = self.serve("through", 0).await?;
        let (_, measured) = self.books(0);
        let calls = client
            .update_all(&measured, &self.run, self.config.concurrency)
            .await?;
        self.processes.stop(server).await?;
        Ok(Row::of("through", &calls))
    }

    /// Behind with no worker, then a worker on the backlog.
    async fn behind_then_drain(&mut self) -> anyhow::Result<(Row, Drain)> {
        self.clear_keys().await?;
        let (server, client) = self.serve("behind", 1).await?;
        let (_, measured) = self.books(1);
        let calls = client
            .update_all(&measured, &self.run, self.config.concurrency)
            .await?;
        self.processes.stop(server).await?;

        let queued = queue_state(&mut self.redis).await?;
        let expected = (self.config.warmup + self.config.mutations) as u64;
        anyhow::ensure!(
            queued.length == expected && queued.backlog() == expected,
            "expected {expected} queued changes and no worker's progress, found {queued:?}"
        );
        say(format!(
            "draining {expected} queued changes with oponn worker"
        ));
        let (worker, started) = self.worker("worker-drain").await?;
        let drained = wait_drained(&mut self.redis, self.config.drain_within).await?;
        self.processes.stop(worker).await?;
        self.check(&calls).await?;
        Ok((
            Row::of("behind, no worker (acknowledgement)", &calls),
            Drain {
                changes: expected,
                elapsed: drained - started,
            },
        ))
    }

    /// Behind with a worker running all along.
    async fn behind_with_worker(&mut self) -> anyhow::Result<(Row, Sustained)> {
        self.clear_keys().await?;
        let (worker, _) = self.worker("worker-sustained").await?;
        let (server, client) = self.serve("behind", 2).await?;
        wait_drained(&mut self.redis, self.config.drain_within).await?;
        let (_, measured) = self.books(2);
        let started = Instant::now();
        let calls = client
            .update_all(&measured, &self.run, self.config.concurrency)
            .await?;
        let replied = Instant::now();
        let backlog = queue_state(&mut self.redis).await?.backlog();
        let drained = wait_drained(&mut self.redis, self.config.drain_within).await?;
        self.processes.stop(server).await?;
        self.processes.stop(worker).await?;
        self.check(&calls).await?;
        let sustained = Sustained {
            backlog,
            catch_up: drained - replied,
            persisted_per_second: measured.len() as f64 / (drained - started).as_secs_f64(),
        };
        Ok((Row::of("behind, worker running", &calls), sustained))
    }

    /// MongoDB holds what the calls were told, and nothing was dead-lettered.
    async fn check(&mut self, calls: &Calls) -> anyhow::Result<()> {
        check_persisted(&self.mongodb, &calls.versions).await?;
        let dead = queue_state(&mut self.redis).await?.dead;
        anyhow::ensure!(
            dead == 0,
            "{dead} changes were dead-lettered; see {STREAM}:dead"
        );
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    std::fs::create_dir_all(&config.work)?;
    let mut processes = Processes::new(&config.work)?;
    let mongodb = mongodb::Client::with_uri_str(&config.mongodb_uri)
        .await?
        .database(&config.database());
    let redis = redis::Client::open(config.redis_url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let ids = catalogue(&config, &mut processes, &mongodb).await?;
    let run = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let mut bench = Bench {
        config,
        processes,
        mongodb,
        redis,
        ids,
        run,
    };
    let (mutations, concurrency) = (bench.config.mutations, bench.config.concurrency);
    say(format!(
        "through: {mutations} updateBook calls, {concurrency} in flight"
    ));
    let through = bench.through().await?;
    say(format!(
        "behind, no worker: {mutations} updateBook calls, {concurrency} in flight"
    ));
    let (behind, drain) = bench.behind_then_drain().await?;
    say(format!(
        "behind, worker running: {mutations} updateBook calls, {concurrency} in flight"
    ));
    let (with_worker, sustained) = bench.behind_with_worker().await?;
    bench.clear_keys().await?;
    print_report(
        &bench.config,
        &[&through, &behind, &with_worker],
        &drain,
        &sustained,
    );
    Ok(())
}

fn print_report(config: &Config, rows: &[&Row], drain: &Drain, sustained: &Sustained) {
    println!(
        "\nbench-writes at {}: {} books ({}), updateBook over HTTP, {} calls per mode after {} \
         warm-up, {} in flight, warm entity cache",
        config.commit,
        config.books,
        config.database(),
        config.mutations,
        config.warmup,
        config.concurrency
    );
    println!("| mode | mutations/s | p50 ms | p99 ms |\n|---|---:|---:|---:|");
    for row in rows {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} |",
            row.label, row.per_second, row.p50, row.p99
        );
    }
    let seconds = drain.elapsed.as_secs_f64();
    println!(
        "\nworker apply rate, draining a backlog of {} changes: {:.0} changes/s ({seconds:.2} s)",
        drain.changes,
        drain.changes as f64 / seconds
    );
    println!(
        "behind with a worker running: {} changes unpersisted when the last call returned, caught \
         up {:.2} s later; {:.0} changes persisted/s from the first call to caught up",
        sustained.backlog,
        sustained.catch_up.as_secs_f64(),
        sustained.persisted_per_second
    );
    let (through, behind, with_worker) = (rows[0], rows[1], rows[2]);
    println!(
        "behind p99 / through p99 = {:.2} without a worker, {:.2} with one (aim: <= 0.33)",
        behind.p99 / through.p99,
        with_worker.p99 / through.p99
    );
}
