//! The built `oponn` binary as the end-to-end tests run it: an isolated [`Environment`] (its own
//! database and key prefix, both removed on drop), one-shot commands, and [`Server`]s.
//!
//! Processes are started with `kill_on_drop`, so a failing test leaves none behind.

use std::{process::Stdio, time::Duration};

use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

use crate::{delete_app_keys, oponn_binary, unique_name, Stack};

/// The bearer token every [`Environment`] configures for mutations.
pub const TOKEN: &str = "e2e-token-0123456789abcdef";

/// The sample catalogue (32 books) `oponn seed` loads by default.
pub const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../app/sample/books.json");

/// An isolated environment for the binary: its own database and key prefix on the local stack,
/// removed on drop.
pub struct Environment {
    pub stack: Stack,
    /// The Redis the binary caches in: the stack's, or one the test owns.
    pub redis_url: String,
    pub database: String,
    pub prefix: String,
}

impl Environment {
    /// A new database and key prefix, both named `<name>_<12 hex digits>`.
    pub fn new(name: &str) -> Self {
        let stack = Stack::from_env();
        Self::with_redis(name, &stack.redis_url)
    }

    /// The same, caching in another Redis than the stack's.
    pub fn with_redis(name: &str, redis_url: &str) -> Self {
        Self {
            stack: Stack::from_env(),
            redis_url: redis_url.to_owned(),
            database: unique_name(name),
            prefix: format!("{}:", unique_name(name)),
        }
    }

    /// `oponn <args>` with only this environment's settings, output piped.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(oponn_binary());
        command
            .args(args)
            .env_clear()
            .env("MONGODB_URI", &self.stack.mongodb_uri)
            .env("REDIS_URL", &self.redis_url)
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

    /// `oponn seed --file <the sample>`; its last log line.
    pub async fn seed(&self) -> Value {
        let output = self
            .command(&["seed", "--file", SAMPLE])
            .output()
            .await
            .expect("seed runs");
        assert!(output.status.success(), "seed failed: {output:?}");
        last_json_line(&output.stdout)
    }

    /// This environment's database, through a client of its own.
    pub async fn database(&self) -> mongodb::Database {
        mongodb::Client::with_uri_str(&self.stack.mongodb_uri)
            .await
            .expect("a MongoDB client")
            .database(&self.database)
    }

    /// The id of every book in the database, as hex.
    pub async fn sample_ids(&self) -> Vec<String> {
        let ids: Vec<mongodb::bson::Bson> = self
            .database()
            .await
            .collection::<mongodb::bson::Document>("books")
            .distinct("_id", mongodb::bson::doc! {})
            .await
            .expect("distinct ids");
        ids.iter()
            .map(|id| id.as_object_id().expect("ObjectId").to_hex())
            .collect()
    }
}

impl Drop for Environment {
    fn drop(&mut self) {
        let (mongodb_uri, redis_url, database, prefix) = (
            self.stack.mongodb_uri.clone(),
            self.redis_url.clone(),
            self.database.clone(),
            self.prefix.clone(),
        );
        // Drop cannot await, and may run inside a runtime: clean up on a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                // Bounded: a test's own Redis may already be gone (or stopped).
                let _ = tokio::time::timeout(Duration::from_secs(10), async {
                    if let Ok(client) = mongodb::Client::with_uri_str(&mongodb_uri).await {
                        let _ = client.database(&database).drop().await;
                    }
                    let _ = delete_app_keys(&redis_url, &prefix).await;
                })
                .await;
            });
        })
        .join();
    }
}

/// The last line of a one-shot command's JSON logs.
pub fn last_json_line(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().last().expect("a log line");
    serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"))
}

/// A running `oponn serve`, and the address it reported.
pub struct Server {
    pub child: Child,
    /// `None` once [`Server::discard_logs`] handed them to a task.
    logs: Option<Lines<BufReader<ChildStdout>>>,
    /// `http://<address>` of the public server.
    pub base: String,
    ops_base: String,
}

impl Server {
    /// `oponn serve` in `environment`, once it logged the address it serves on.
    pub async fn start(environment: &Environment) -> Self {
        Self::spawn(environment.command(&["serve"])).await
    }

    /// Runs `command` (an `oponn serve` with JSON logs on a piped stdout) until it logs the
    /// address it serves on.
    pub async fn spawn(mut command: Command) -> Self {
        let mut child = command.spawn().expect("serve starts");
        let mut logs = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let serving = wait_for_log(&mut logs, "serving").await;
        let address = |field: &str| {
            let address = serving[field].as_str();
            format!(
                "http://{}",
                address.unwrap_or_else(|| panic!("{field} in {serving}"))
            )
        };
        Self {
            child,
            logs: Some(logs),
            base: address("address"),
            ops_base: address("ops_address"),
        }
    }

    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
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

    /// Reads the server's log lines until one has `message`; fails after 30 s.
    pub async fn wait_for_log(&mut self, message: &str) -> Value {
        let logs = self.logs.as_mut().expect("logs not discarded");
        wait_for_log(logs, message).await
    }

    /// Reads and drops every further log line, on a task that ends with the process. A server
    /// that runs long must have its stdout read: once the pipe is full, it blocks on logging.
    pub fn discard_logs(&mut self) {
        if let Some(mut logs) = self.logs.take() {
            tokio::spawn(async move { while let Ok(Some(_)) = logs.next_line().await {} });
        }
    }

    /// `http://<address>` of the operations server (`/readyz`, `/metrics`).
    pub fn ops_base(&self) -> &str {
        &self.ops_base
    }
}

/// Reads log lines until one has `message`; fails after 30 s.
pub async fn wait_for_log(logs: &mut Lines<BufReader<ChildStdout>>, message: &str) -> Value {
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
