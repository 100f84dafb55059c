//! Black-box tests of the built `oponn` binary: start-up, seeding, serving, shutdown.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and figures are printed"
)]

use std::time::Duration;

use oponn_tests::{oponn_binary, Environment, RedisServer, Server, SAMPLE};
use serde_json::json;
use tokio::process::Command;

#[tokio::test]
async fn seeding_twice_inserts_the_sample_once() {
    let env = Environment::new("e2e");
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
    let env = Environment::new("e2e");
    let output = env
        .command(&["seed", "--file", SAMPLE])
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
    let env = Environment::new("e2e");
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

/// The binary as deployed against ElastiCache with in-transit encryption: `rediss://`, here a
/// TLS-only `redis-server` whose throwaway CA is named by `OPONN_REDIS_CA_FILE`. The seed's
/// cache writes and the server's reads go over TLS (and `main` installed the crypto provider:
/// without one, the first handshake would panic).
#[tokio::test]
async fn the_binary_seeds_and_serves_through_a_tls_redis() {
    let redis = RedisServer::start_tls().await;
    let ca_file = redis.ca_file();
    let env = Environment::with_redis("e2e", &redis.url());
    let output = env
        .command(&["seed", "--file", SAMPLE])
        .env("OPONN_REDIS_CA_FILE", &ca_file)
        .output()
        .await
        .expect("seed runs");
    assert!(output.status.success(), "seed failed: {output:?}");

    let mut serve = env.command(&["serve"]);
    serve.env("OPONN_REDIS_CA_FILE", &ca_file);
    let server = Server::spawn(serve).await;
    let ids = env.sample_ids().await;
    let body = server
        .graphql(
            "query($ids: [ID!]!) { booksByIds(ids: $ids) { id title } }",
            json!({ "ids": ids }),
        )
        .await;
    assert_eq!(
        body["data"]["booksByIds"].as_array().map(Vec::len),
        Some(32),
        "{body}"
    );
    let ready: serde_json::Value = reqwest::get(format!("{}/readyz", server.ops_base()))
        .await
        .expect("readyz answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["redis"]["up"], true, "{ready}");
    let lookups = reqwest::get(format!("{}/metrics", server.ops_base()))
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("text");
    assert!(
        lookups.contains("oponn_cache_lookups_total{entity=\"books\",result=\"hit\"} 32"),
        "the seed cached every book over TLS:\n{lookups}"
    );
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let env = Environment::new("e2e");
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
    server.wait_for_log("stopped").await;
    let status = tokio::time::timeout(Duration::from_secs(10), server.child.wait())
        .await
        .expect("exits within 10 s")
        .expect("exit status");
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn a_missing_setting_fails_start_up_and_names_it() {
    let env = Environment::new("e2e");
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
    let env = Environment::new("e2e");
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
    let env = Environment::new("e2e");
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
