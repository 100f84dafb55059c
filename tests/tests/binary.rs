//! Black-box tests of the built `oponn` binary: start-up, seeding, serving, shutdown.

use std::{process::Stdio, time::Duration};

use oponn_tests::{delete_app_keys, oponn_binary, unique_name, Stack};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

const TOKEN: &str = "e2e-token-0123456789abcdef";

/// An isolated environment for the binary: its own database and key prefix.
struct Env {
    stack: Stack,
    database: String,
    prefix: String,
}

impl Env {
    fn new() -> Self {
        Self {
            stack: Stack::from_env(),
            database: unique_name("e2e"),
            prefix: format!("{}:", unique_name("e2e")),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(oponn_binary());
        command
            .args(args)
            .env_clear()
            .env("MONGODB_URI", &self.stack.mongodb_uri)
            .env("REDIS_URL", &self.stack.redis_url)
            .env("MONGODB_DATABASE", &self.database)
            .env("OPONN_KEY_PREFIX", &self.prefix)
            .env("OPONN_API_TOKENS", TOKEN)
            .env("OPONN_LISTEN", "127.0.0.1:0")
            .env("OPONN_OPS_LISTEN", "127.0.0.1:0")
            .env("OPONN_LOG_FORMAT", "json")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    async fn seed(&self) -> Value {
        let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../app/sample/books.json");
        let output = self
            .command(&["seed", "--file", sample])
            .output()
            .await
            .expect("seed runs");
        assert!(output.status.success(), "seed failed: {output:?}");
        last_json_line(&output.stdout)
    }

    async fn sample_ids(&self) -> Vec<String> {
        let client = mongodb::Client::with_uri_str(&self.stack.mongodb_uri)
            .await
            .expect("client");
        let ids: Vec<mongodb::bson::Bson> = client
            .database(&self.database)
            .collection::<mongodb::bson::Document>("books")
            .distinct("_id", mongodb::bson::doc! {})
            .await
            .expect("distinct ids");
        ids.iter()
            .map(|id| id.as_object_id().expect("ObjectId").to_hex())
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let (stack, database, prefix) = (
            self.stack.clone(),
            self.database.clone(),
            self.prefix.clone(),
        );
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                if let Ok(client) = mongodb::Client::with_uri_str(&stack.mongodb_uri).await {
                    let _ = client.database(&database).drop().await;
                }
                let _ = delete_app_keys(&stack.redis_url, &prefix).await;
            });
        })
        .join();
    }
}

fn last_json_line(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().last().expect("a log line");
    serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"))
}

/// A running `oponn serve`, and the address it reported.
struct Server {
    child: Child,
    logs: Lines<BufReader<ChildStdout>>,
    base: String,
}

impl Server {
    async fn start(env: &Env) -> Self {
        let mut child = env.command(&["serve"]).spawn().expect("serve starts");
        let mut logs = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let serving = wait_for_log(&mut logs, "serving").await;
        let address = serving["address"].as_str().expect("address").to_owned();
        Self {
            child,
            logs,
            base: format!("http://{address}"),
        }
    }

    async fn graphql(&self, query: &str, variables: Value) -> Value {
        reqwest::Client::new()
            .post(format!("{}/graphql", self.base))
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("answer")
            .json()
            .await
            .expect("JSON")
    }
}

/// Reads log lines until one has `message`; fails after 30 s.
async fn wait_for_log(logs: &mut Lines<BufReader<ChildStdout>>, message: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = logs.next_line().await.expect("read stdout") {
            if let Ok(event) = serde_json::from_str::<Value>(&line) {
                if event["message"] == message {
                    return event;
                }
            }
        }
        panic!("the process exited before logging {message:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no {message:?} log line within 30 s"))
}

#[tokio::test]
async fn seeding_twice_inserts_the_sample_once() {
    let env = Env::new();
    let first = env.seed().await;
    assert_eq!(first["message"], "seeded");
    assert_eq!(first["inserted"], 32);
    let second = env.seed().await;
    assert_eq!(
        (second["inserted"].as_u64(), second["unchanged"].as_u64()),
        (Some(0), Some(32))
    );
}

/// A one-shot command has no repair loop: if Redis never takes its cache writes it says so and
/// exits non-zero, rather than leave servers on older cached versions without a word.
#[tokio::test]
async fn seeding_while_redis_is_unreachable_stores_the_books_and_fails_naming_the_cache() {
    let env = Env::new();
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../app/sample/books.json");
    let output = env
        .command(&["seed", "--file", sample])
        // Nothing listens here.
        .env("REDIS_URL", "redis://127.0.0.1:9")
        .env("OPONN_REDIS_TIMEOUT_MS", "200")
        .env("OPONN_REDIS_RETRY_AFTER_MS", "100")
        .env("OPONN_CACHE_SETTLE_MS", "300")
        .output()
        .await
        .expect("seed runs");
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Redis did not take 32 cached record(s)"),
        "{stderr}"
    );
    assert_eq!(env.sample_ids().await.len(), 32, "MongoDB keeps the books");
}

#[tokio::test]
async fn the_served_binary_answers_books_by_ids_from_the_seeded_sample() {
    let env = Env::new();
    env.seed().await;
    let ids = env.sample_ids().await;
    assert_eq!(ids.len(), 32);
    let server = Server::start(&env).await;
    let body = server
        .graphql(
            "query($ids: [ID!]!) { booksByIds(ids: $ids) { id title } }",
            json!({ "ids": ids }),
        )
        .await;
    let books = body["data"]["booksByIds"].as_array().expect("a list");
    assert_eq!(books.len(), 32);
    assert!(
        books.iter().any(|book| book["title"] == "The Hobbit"),
        "{body}"
    );
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let env = Env::new();
    let mut server = Server::start(&env).await;
    let health = reqwest::get(format!("{}/healthz", server.base))
        .await
        .expect("answer");
    assert_eq!(health.status(), 200);

    let pid = server.child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    wait_for_log(&mut server.logs, "stopped").await;
    let status = tokio::time::timeout(Duration::from_secs(10), server.child.wait())
        .await
        .expect("exits within 10 s")
        .expect("exit status");
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn a_missing_setting_fails_start_up_and_names_it() {
    let env = Env::new();
    let output = env
        .command(&["serve"])
        .env_remove("MONGODB_URI")
        .output()
        .await
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("MONGODB_URI is not set"), "{stderr}");
}

#[tokio::test]
async fn the_schema_command_prints_the_checked_in_schema() {
    let output = Command::new(oponn_binary())
        .arg("schema")
        .output()
        .await
        .expect("runs");
    assert!(output.status.success());
    let checked_in = include_str!("../../schema.graphql");
    assert_eq!(String::from_utf8_lossy(&output.stdout), checked_in);
}

#[tokio::test]
async fn ingesting_into_an_unknown_bookstore_fails_before_fetching_anything() {
    let env = Env::new();
    let output = env
        .command(&[
            "ingest",
            "--query",
            "anything",
            "--bookstore",
            "No Such Shop",
        ])
        // Nothing listens here: reaching the source would be a different failure.
        .env("OPONN_SOURCE_URL", "http://127.0.0.1:9/")
        .output()
        .await
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no bookstore has that name"), "{stderr}");
}

/// The container's health check: `oponn probe` succeeds against a serving binary and fails
/// when nothing listens.
#[tokio::test]
async fn the_probe_command_reports_whether_the_server_is_healthy() {
    let env = Env::new();
    let server = Server::start(&env).await;
    let listen = server.base.trim_start_matches("http://").to_owned();
    let healthy = Command::new(oponn_binary())
        .arg("probe")
        .env("OPONN_LISTEN", &listen)
        .output()
        .await
        .expect("runs");
    assert!(
        healthy.status.success(),
        "{}",
        String::from_utf8_lossy(&healthy.stderr)
    );
    drop(server);

    let nobody = Command::new(oponn_binary())
        .arg("probe")
        .env("OPONN_LISTEN", "127.0.0.1:9")
        .output()
        .await
        .expect("runs");
    assert!(!nobody.status.success());
}
