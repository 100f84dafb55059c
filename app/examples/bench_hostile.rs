//! `make bench-hostile`: what anonymous readers can do to writers and to Redis, measured over
//! HTTP against an in-process server on the local stack.
//!
//! 1. `updateBook` p50/p99 on an empty result cache, then again after 10,000 distinct anonymous
//!    filtered queries (title prefixes: no equality term, so every one lands in the range every
//!    book write visits). Aim: within 2x.
//! 2. The Redis memory of the app's keys (every key under its prefix, by `MEMORY USAGE`) before
//!    and after 10,000 `bookstoresForBooks` calls on random ids, once their results expired.
//!    Aim: back to the baseline.
//!
//! Needs MONGODB_URI and REDIS_URL (the Makefile exports the local stack's). Loopback only.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "it prints its figures"
)]

use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use oponn::{config::Settings, startup::Application};
use serde_json::{json, Value};

const TOKEN: &str = "bench-token-0123456789abcdef";
const BOOKS: usize = 200;
const WRITES: usize = 300;
const ANONYMOUS_QUERIES: usize = 10_000;
const IN_FLIGHT: usize = 16;

struct Server {
    base: String,
    prefix: String,
    database: String,
    client: reqwest::Client,
}

impl Server {
    async fn start(extra: &[(&str, &str)]) -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let database = format!("bench_hostile_{}", &id[..8]);
        let prefix = format!("bench-hostile-{}:", &id[..8]);
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        let (database_name, key_prefix) = (database.clone(), prefix.clone());
        let settings = Settings::from_lookup(move |name| {
            if let Some((_, value)) = extra.iter().find(|(n, _)| n == name) {
                return Some(value.clone());
            }
            match name {
                "MONGODB_DATABASE" => Some(database_name.clone()),
                "OPONN_KEY_PREFIX" => Some(key_prefix.clone()),
                "OPONN_LISTEN" | "OPONN_OPS_LISTEN" => Some("127.0.0.1:0".to_owned()),
                "OPONN_API_TOKENS" => Some(TOKEN.to_owned()),
                "OPONN_MONGODB_TIMEOUT_MS" => Some("30000".to_owned()),
                "RUST_LOG" => Some("warn".to_owned()),
                other => std::env::var(other).ok(),
            }
        })?;
        let app = Application::build(settings).await?;
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until(std::future::pending()));
        Ok(Self {
            base,
            prefix,
            database,
            client: reqwest::Client::new(),
        })
    }

    async fn graphql(&self, token: bool, query: &str, variables: Value) -> anyhow::Result<Value> {
        let mut request = self
            .client
            .post(format!("{}/graphql", self.base))
            .json(&json!({ "query": query, "variables": variables }));
        if token {
            request = request.bearer_auth(TOKEN);
        }
        let body: Value = request.send().await?.json().await?;
        anyhow::ensure!(body.get("errors").is_none(), "errors: {body}");
        Ok(body)
    }

    async fn create_books(&self) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::with_capacity(BOOKS);
        for n in 0..BOOKS {
            let body = self
                .graphql(
                    true,
                    "mutation($input: CreateBookInput!) { createBook(input: $input) { id } }",
                    json!({ "input": {
                        "sourceKey": format!("/works/HOSTILE{n}"),
                        "title": format!("Title {n:05}"),
                        "authors": [format!("Author {}", n % 20)],
                    } }),
                )
                .await?;
            ids.push(
                body["data"]["createBook"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        Ok(ids)
    }

    /// p50 and p99 of `WRITES` sequential `updateBook` calls, in milliseconds.
    async fn update_latency(&self, ids: &[String], round: usize) -> anyhow::Result<(f64, f64)> {
        let mut latencies = Vec::with_capacity(WRITES);
        for n in 0..WRITES {
            let id = &ids[(n * 7 + round) % ids.len()];
            let started = Instant::now();
            self.graphql(
                true,
                "mutation($id: ID!, $t: String!) { updateBook(id: $id, input: { title: $t }) { version } }",
                json!({ "id": id, "t": format!("Title {n:05} r{round}") }),
            )
            .await?;
            latencies.push(started.elapsed());
        }
        latencies.sort();
        let at =
            |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
        Ok((ms(at(0.50)), ms(at(0.99))))
    }

    /// Runs `ANONYMOUS_QUERIES` anonymous requests, `IN_FLIGHT` at a time.
    async fn flood(&self, request: impl Fn(usize) -> (String, Value)) -> anyhow::Result<()> {
        let calls = (0..ANONYMOUS_QUERIES).map(|n| {
            let (query, variables) = request(n);
            async move { self.graphql(false, &query, variables).await }
        });
        let mut results = stream::iter(calls).buffer_unordered(IN_FLIGHT);
        while let Some(result) = results.next().await {
            result?;
        }
        Ok(())
    }

    /// Bytes Redis holds for this app's keys (`MEMORY USAGE` of each), and how many keys.
    async fn redis_footprint(&self) -> anyhow::Result<(u64, usize)> {
        let url = std::env::var("REDIS_URL")?;
        let mut redis = redis::Client::open(url)?
            .get_multiplexed_async_connection()
            .await?;
        let mut bytes = 0;
        let mut keys_seen = 0;
        for pattern in [
            format!("{}*", self.prefix),
            format!("{{{}q}}*", self.prefix),
        ] {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut redis)
                    .await?;
                for key in keys {
                    let usage: Option<u64> = redis::cmd("MEMORY")
                        .arg("USAGE")
                        .arg(&key)
                        .query_async(&mut redis)
                        .await?;
                    bytes += usage.unwrap_or(0);
                    keys_seen += 1;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok((bytes, keys_seen))
    }

    async fn clean_up(&self) -> anyhow::Result<()> {
        let client = mongodb::Client::with_uri_str(std::env::var("MONGODB_URI")?).await?;
        client.database(&self.database).drop().await?;
        oponn_tests::delete_app_keys(&std::env::var("REDIS_URL")?, &self.prefix).await?;
        Ok(())
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!(
        "1. updateBook before and after {ANONYMOUS_QUERIES} distinct anonymous filtered queries"
    );
    let server = Server::start(&[]).await?;
    let ids = server.create_books().await?;
    let (p50, before) = server.update_latency(&ids, 0).await?;
    println!("   empty result cache:        p50 {p50:7.2} ms   p99 {before:7.2} ms");
    server
        .flood(|n| {
            (
                "query($p: String!) { books(filter: { titlePrefix: $p }, first: 5) { nodes { id } } }".to_owned(),
                json!({ "p": format!("T{n}") }),
            )
        })
        .await?;
    let (p50, after) = server.update_latency(&ids, 1).await?;
    println!("   after the anonymous flood: p50 {p50:7.2} ms   p99 {after:7.2} ms");
    println!("   p99 ratio: {:.2}x (aim: within 2x)", after / before);
    server.clean_up().await?;

    println!("2. Redis memory of the app's keys, {ANONYMOUS_QUERIES} random-id bookstoresForBooks(20 ids)");
    let ttl_secs = 2;
    let server = Server::start(&[
        ("OPONN_CACHE_RESULT_TTL_SECS", "2"),
        ("OPONN_CACHE_NEGATIVE_TTL_SECS", "2"),
        ("OPONN_REDIS_RETRY_AFTER_MS", "200"),
    ])
    .await?;
    server.create_books().await?;
    let (baseline, keys) = server.redis_footprint().await?;
    println!("   baseline:                  {baseline:>10} bytes in {keys} keys");
    server
        .flood(|n| {
            let ids: Vec<String> = (0..20)
                .map(|i| format!("{:024x}", 0xabc0_0000_u64 + (n * 20 + i) as u64))
                .collect();
            (
                "query($ids: [ID!]!) { bookstoresForBooks(bookIds: $ids) { id } }".to_owned(),
                json!({ "ids": ids }),
            )
        })
        .await?;
    let (peak, keys) = server.redis_footprint().await?;
    println!("   right after the calls:     {peak:>10} bytes in {keys} keys");
    // Results expire after the TTL; the repair loop trims their index entries within a beat.
    tokio::time::sleep(Duration::from_secs(ttl_secs + 2)).await;
    let (settled, keys) = server.redis_footprint().await?;
    println!("   once the results expired:  {settled:>10} bytes in {keys} keys");
    println!(
        "   after / baseline: {:.2}x (aim: 1.0x)",
        settled as f64 / baseline.max(1) as f64
    );
    server.clean_up().await?;
    Ok(())
}
