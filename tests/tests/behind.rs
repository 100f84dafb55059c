//! Write-behind crash tests on real processes: two `oponn serve` instances in
//! `OPONN_WRITE_MODE=behind` take a stream of mutations (`updateBook`, and one in eight an
//! `updateBookstore` renaming a store to one of a few names, so name claims race too) while
//! `oponn worker` processes are SIGKILLed at random points and started again (and, in one run,
//! Redis is SIGKILLed and restarted from its append-only file). Once the mutations are over, a
//! worker drains the queue; then MongoDB must equal the cache record for record and version for
//! version, and hold every acknowledged write: for each book and store, a version at least as
//! new as the newest acknowledged one, with that write's content when they are the same
//! version; no name claim may be left; and `oponn audit-cache` must find nothing.
//!
//! The three runs are repeated with the SQS queue (`OPONN_QUEUE=sqs`) on a moto server: there
//! the queue drains once Redis's `queued` set is empty. moto takes about 10 sends a second
//! here, so that run is left out of `make test` (`#[ignore]`) and run by `make crash-behind`.
//!
//! `OPONN_BEHIND_WRITES` sets how many mutations must be acknowledged per run: 2,000 by default
//! (in `make test`), 10,000 in `make crash-behind`; `OPONN_BEHIND_SQS_WRITES` the same for the
//! SQS run (1,000).
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and figures are printed"
)]

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use futures::future::join_all;
use mongodb::bson::{doc, Document};
use oponn_tests::{Environment, Moto, RedisServer, Server, TOKEN};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Child,
};

/// Settings of every process of a run: write-behind, a worker that takes over a dead worker's
/// changes after half a second, and a mutation that waits for Redis through its restart.
const BEHIND: [(&str, &str); 6] = [
    ("OPONN_WRITE_MODE", "behind"),
    ("OPONN_WORKER_CLAIM_IDLE_MS", "500"),
    ("OPONN_REDIS_TIMEOUT_MS", "300"),
    ("OPONN_REDIS_RETRY_AFTER_MS", "100"),
    ("OPONN_REDIS_WRITE_TIMEOUT_MS", "5000"),
    ("OPONN_QUEUE_BARRIER_MS", "10000"),
];
const INSTANCES: usize = 2;
/// Concurrent writers.
const WRITERS: usize = 16;
/// How long the queue may take to drain once the mutations are over.
const DRAIN_BOUND: Duration = Duration::from_secs(60);

const UPDATE: &str = "mutation($id: ID!, $title: String!) { updateBook(id: $id, input: { title: $title }) { version title } }";
const RENAME: &str = "mutation($id: ID!, $name: String!) { updateBookstore(id: $id, input: { name: $name }) { version name } }";
/// One mutation in this many renames a store.
const RENAME_EVERY: u64 = 8;
/// The names renames choose from.
const NAMES: u64 = 5;
/// The stores renames go to.
const STORES: usize = 4;
const CREATE_STORE: &str = "mutation($name: String!) { createBookstore(input: { name: $name, city: \"Crashville\" }) { id } }";

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_at_random_points_loses_no_acknowledged_write() {
    run(Faults {
        workers: 1,
        restart_redis: false,
        sqs: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_racing_while_killed_lose_no_acknowledged_write() {
    run(Faults {
        workers: 2,
        restart_redis: false,
        sqs: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_restarted_from_its_append_only_file_loses_no_acknowledged_write() {
    run(Faults {
        workers: 1,
        restart_redis: true,
        sqs: false,
    })
    .await;
}

/// It found that a worker holding more than it could apply within the visibility timeout let
/// its messages come back to other workers until their receive counts sent them to the dead
/// letters, leaving their records pending (a receive now takes one batch of 10 at most).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "slow on moto (about 10 sends a second): make crash-behind runs it"]
async fn on_sqs_a_worker_killed_at_random_points_loses_no_acknowledged_write() {
    run(Faults {
        workers: 1,
        restart_redis: false,
        sqs: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "slow on moto (about 10 sends a second): make crash-behind runs it"]
async fn on_sqs_two_workers_racing_while_killed_lose_no_acknowledged_write() {
    run(Faults {
        workers: 2,
        restart_redis: false,
        sqs: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "slow on moto (about 10 sends a second): make crash-behind runs it"]
async fn on_sqs_redis_restarted_from_its_append_only_file_loses_no_acknowledged_write() {
    run(Faults {
        workers: 1,
        restart_redis: true,
        sqs: true,
    })
    .await;
}

#[derive(Debug, Clone, Copy)]
struct Faults {
    workers: usize,
    restart_redis: bool,
    /// The SQS queue (on moto) instead of the Redis stream.
    sqs: bool,
}

/// The settings of every process of a run: [`BEHIND`], and with SQS the queue's and the AWS
/// SDK's (the commands start from an empty environment).
async fn settings(faults: Faults) -> Vec<(String, String)> {
    let mut settings: Vec<(String, String)> = BEHIND
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    if faults.sqs {
        let moto = Moto::shared();
        let name = oponn_tests::unique_name("crash").replace('_', "-");
        let (queue, dead) = moto.fifo_queues(&name).await;
        settings.extend([
            ("OPONN_QUEUE".to_owned(), "sqs".to_owned()),
            ("OPONN_SQS_QUEUE_URL".to_owned(), queue),
            ("OPONN_SQS_DEAD_LETTER_URL".to_owned(), dead),
        ]);
        settings.extend(
            moto.env()
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value)),
        );
    }
    settings
}

/// One acknowledged mutation.
#[derive(Debug, Clone)]
struct Acknowledged {
    collection: &'static str,
    id: String,
    version: i64,
    /// The book's title or the store's name it wrote.
    value: String,
}

async fn run(faults: Faults) {
    let (variable, default) = match faults.sqs {
        true => ("OPONN_BEHIND_SQS_WRITES", 1_000u64),
        false => ("OPONN_BEHIND_WRITES", 2_000u64),
    };
    let target = std::env::var(variable)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default);
    let mut redis = RedisServer::start_durable().await;
    let environment = Environment::with_redis("behind", &redis.url());
    environment.seed().await;
    let books = environment.sample_ids().await;
    let settings = settings(faults).await;

    let mut instances = Vec::new();
    for _ in 0..INSTANCES {
        let mut command = environment.command(&["serve"]);
        command.envs(settings.clone());
        let mut server = Server::spawn(command).await;
        server.discard_logs();
        instances.push(server);
    }
    let bases: Arc<Vec<String>> = Arc::new(instances.iter().map(|s| s.base.clone()).collect());
    let mut stores = Vec::new();
    for n in 0..STORES {
        stores.push(create_store(&bases[0], &format!("Crash store {n}")).await);
    }
    let stores = Arc::new(stores);
    let mut workers: Vec<Child> = Vec::new();
    for _ in 0..faults.workers {
        workers.push(start_worker(&environment, &settings).await);
    }

    let started = Instant::now();
    let acknowledged = Arc::new(Mutex::new(Vec::<Acknowledged>::new()));
    let refused = Arc::new(Mutex::new(HashMap::<String, u64>::new()));
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let writers = (0..WRITERS).map(|writer| {
        let (books, stores, bases, acknowledged, refused, next, done) = (
            books.clone(),
            stores.clone(),
            bases.clone(),
            acknowledged.clone(),
            refused.clone(),
            next.clone(),
            done.clone(),
        );
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            // Bounded: at most three attempts per acknowledged write wanted.
            while !done.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= 3 * target {
                    break;
                }
                let base = &bases[n as usize % bases.len()];
                let (collection, id, value) = if n % RENAME_EVERY == 0 {
                    let store = &stores[(n / RENAME_EVERY) as usize % stores.len()];
                    ("bookstores", store, format!("Crash pool {}", n % NAMES))
                } else {
                    let book = &books[(n as usize * 7 + writer) % books.len()];
                    ("books", book, format!("write {n}"))
                };
                match write(&client, base, collection, id, &value).await {
                    Ok(version) => {
                        let mut acknowledged = acknowledged.lock().expect("lock");
                        acknowledged.push(Acknowledged {
                            collection,
                            id: id.clone(),
                            version,
                            value,
                        });
                        if acknowledged.len() as u64 >= target {
                            done.store(true, Ordering::Relaxed);
                        }
                    }
                    Err(code) => *refused.lock().expect("lock").entry(code).or_default() += 1,
                }
            }
        })
    });
    let writers = tokio::spawn(join_all(writers));

    // Faults until the writers are done: a worker SIGKILLed every 100 to 400 ms and started
    // again at once; Redis crashed and restarted once, a third of the way in.
    let mut kills = 0;
    let mut redis_restarted = false;
    while !writers.is_finished() {
        tokio::time::sleep(Duration::from_millis(100 + fastrand::u64(0..300))).await;
        let victim = fastrand::usize(0..workers.len());
        let mut dead = std::mem::replace(
            &mut workers[victim],
            start_worker(&environment, &settings).await,
        );
        dead.start_kill().expect("SIGKILL is sent");
        dead.wait().await.expect("the worker exits");
        kills += 1;
        let written = acknowledged.lock().expect("lock").len() as u64;
        if faults.restart_redis && !redis_restarted && written >= target / 3 {
            redis.crash_and_restart().await;
            redis_restarted = true;
        }
    }
    writers.await.expect("writers");
    let elapsed = started.elapsed();
    let acknowledged = acknowledged.lock().expect("lock").clone();
    let refused = refused.lock().expect("lock").clone();
    assert!(
        acknowledged.len() as u64 >= target,
        "only {} of {target} writes were acknowledged (refused: {refused:?})",
        acknowledged.len()
    );
    assert!(kills > 0, "no worker was killed");

    let drained = drain(&redis, &environment.prefix, faults.sqs).await;
    let (checked, mut differences) =
        compare(&redis, &environment, "books", &books, &acknowledged).await;
    let (stores_checked, store_differences) =
        compare(&redis, &environment, "bookstores", &stores, &acknowledged).await;
    differences.extend(store_differences);
    let claims: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}claim_*", environment.prefix))
        .query_async(&mut redis.connection().await)
        .await
        .expect("KEYS");
    assert!(claims.is_empty(), "claims left after the drain: {claims:?}");
    let renames = acknowledged
        .iter()
        .filter(|write| write.collection == "bookstores")
        .count();
    if faults.sqs {
        let dead = dead_letters(&settings).await;
        assert!(dead.is_empty(), "dead letters: {dead:#?}\n{differences:#?}");
    }
    println!(
        "write-behind crash run ({faults:?}): {} writes acknowledged ({renames} store renames) in \
         {:.1} s, refused {refused:?}, {kills} worker kills, redis restarted: {redis_restarted}, \
         queue drained in {:.1} s, {checked} books and {stores_checked} stores compared",
        acknowledged.len(),
        elapsed.as_secs_f64(),
        drained.as_secs_f64(),
    );
    assert!(differences.is_empty(), "{differences:#?}");
    // The service's own audit agrees.
    let mut audit = environment.command(&["audit-cache"]);
    audit.envs(settings.clone());
    let audited = audit.output().await.expect("audit-cache runs");
    assert!(
        audited.status.success(),
        "oponn audit-cache found disagreements: {}",
        String::from_utf8_lossy(&audited.stdout)
    );
    for mut worker in workers {
        let _ = worker.start_kill();
    }
}

/// `updateBook` (a new title) or `updateBookstore` (a new name) through `base`: the version
/// it acknowledged, or the error code.
async fn write(
    client: &reqwest::Client,
    base: &str,
    collection: &str,
    id: &str,
    value: &str,
) -> Result<i64, String> {
    let field = field_of(collection);
    let (query, mutation) = match collection {
        "books" => (UPDATE, "updateBook"),
        _ => (RENAME, "updateBookstore"),
    };
    let variables = json!({ "id": id, field: value });
    let response = client
        .post(format!("{base}/graphql"))
        .bearer_auth(TOKEN)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .map_err(|_| "no answer".to_owned())?;
    let body: Value = response.json().await.map_err(|_| "not JSON".to_owned())?;
    match body["data"][mutation]["version"].as_i64() {
        Some(version) => {
            assert_eq!(body["data"][mutation][field], value, "{body}");
            Ok(version)
        }
        None => Err(body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or("no code")
            .to_owned()),
    }
}

/// A store created through `base`: its id.
async fn create_store(base: &str, name: &str) -> String {
    let body: Value = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .bearer_auth(TOKEN)
        .json(&json!({ "query": CREATE_STORE, "variables": { "name": name } }))
        .send()
        .await
        .expect("an answer")
        .json()
        .await
        .expect("JSON");
    body["data"]["createBookstore"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

/// `oponn worker` in `environment`, once it has started; its logs are read and dropped. Like a
/// supervisor, starts it again (up to 10 times, waiting longer each time) when it exits before
/// it started (Redis still loading its append-only file, moto too slow to answer), saying why.
async fn start_worker(environment: &Environment, settings: &[(String, String)]) -> Child {
    let mut pause = Duration::from_millis(100);
    for _ in 0..10 {
        let mut command = environment.command(&["worker"]);
        command.envs(settings.iter().cloned());
        let mut child = command.spawn().expect("the worker starts");
        let mut logs = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let started = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = logs.next_line().await {
                if line.contains("write-behind worker started") {
                    return true;
                }
            }
            false
        })
        .await
        .expect("the worker starts or exits within 30 s");
        if started {
            tokio::spawn(async move { while let Ok(Some(_)) = logs.next_line().await {} });
            return child;
        }
        let output = child.wait_with_output().await.expect("the worker's output");
        eprintln!(
            "a worker exited before it started, starting it again: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
    panic!("the worker exited before it started, 10 times");
}

/// Waits until the consumer group has delivered and acknowledged every change (with SQS:
/// until the `queued` set is empty); how long it took.
async fn drain(redis: &RedisServer, prefix: &str, sqs: bool) -> Duration {
    let started = Instant::now();
    let stream = format!("{prefix}writes");
    let mut connection = redis.connection().await;
    if sqs {
        return drain_queued(&mut connection, prefix, started).await;
    }
    loop {
        let groups: redis::streams::StreamInfoGroupsReply = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&stream)
            .query_async(&mut connection)
            .await
            .expect("XINFO GROUPS");
        let group = groups.groups.first().expect("the workers' group");
        if group.pending == 0 && group.lag == Some(0) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < DRAIN_BOUND,
            "the queue did not drain within {DRAIN_BOUND:?}: {} pending, lag {:?}",
            group.pending,
            group.lag
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The messages in the run's SQS dead-letter queue.
async fn dead_letters(settings: &[(String, String)]) -> Vec<String> {
    let url = settings
        .iter()
        .find(|(name, _)| name == "OPONN_SQS_DEAD_LETTER_URL")
        .map(|(_, url)| url.clone())
        .expect("an SQS run");
    let received = Moto::shared()
        .client()
        .await
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("ReceiveMessage");
    received
        .messages()
        .iter()
        .filter_map(|message| message.body().map(str::to_owned))
        .collect()
}

/// Waits until the `queued` set (SQS) is empty.
async fn drain_queued(
    connection: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    started: Instant,
) -> Duration {
    loop {
        let queued: u64 = redis::cmd("ZCARD")
            .arg(format!("{prefix}queued"))
            .query_async(connection)
            .await
            .expect("ZCARD");
        if queued == 0 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < DRAIN_BOUND,
            "the queue did not drain within {DRAIN_BOUND:?}: {queued} changes queued"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The field a run's mutations write in `collection`.
fn field_of(collection: &str) -> &'static str {
    match collection {
        "books" => "title",
        _ => "name",
    }
}

/// Compares, for every record of `collection` (`ids`), the cache's entry, MongoDB's document
/// and the acknowledged writes; returns how many records were compared and every difference
/// found.
async fn compare(
    redis: &RedisServer,
    environment: &Environment,
    collection: &str,
    ids: &[String],
    acknowledged: &[Acknowledged],
) -> (usize, Vec<String>) {
    let field = field_of(collection);
    let mut newest: HashMap<&str, &Acknowledged> = HashMap::new();
    for write in acknowledged.iter().filter(|w| w.collection == collection) {
        let entry = newest.entry(write.id.as_str()).or_insert(write);
        if write.version > entry.version {
            *entry = write;
        }
    }
    let documents = environment
        .database()
        .await
        .collection::<Document>(collection);
    let mut connection = redis.connection().await;
    let mut differences = Vec::new();
    for id in ids {
        let stored = documents
            .find_one(doc! { "_id": mongodb::bson::oid::ObjectId::parse_str(id).expect("an id") })
            .await
            .expect("find_one")
            .expect("the record is in MongoDB");
        let stored_version = stored.get_i64("version").expect("a version");
        let stored_title = stored.get_str(field).expect("the field");
        let cached: Option<String> = redis::cmd("GET")
            .arg(format!("{}{collection}_{id}", environment.prefix))
            .query_async(&mut connection)
            .await
            .expect("GET");
        if let Some(cached) = cached {
            let mut parts = cached.splitn(3, ' ');
            let (version, stamp, json) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            if stamp == "pending" {
                differences.push(format!("{id}: still pending after the drain: {cached}"));
            }
            let cached_title = serde_json::from_str::<Value>(json)
                .ok()
                .map(|v| v[field].clone());
            if version != stored_version.to_string()
                || cached_title.as_ref().and_then(Value::as_str) != Some(stored_title)
            {
                differences.push(format!(
                    "{id}: cache holds {version} {cached_title:?}, MongoDB {stored_version} {stored_title:?}"
                ));
            }
        }
        if let Some(write) = newest.get(id.as_str()) {
            if stored_version < write.version
                || (stored_version == write.version && stored_title != write.value)
            {
                differences.push(format!(
                    "{id}: acknowledged {} {:?}, MongoDB holds {stored_version} {stored_title:?}",
                    write.version, write.value
                ));
            }
        }
    }
    (ids.len(), differences)
}
