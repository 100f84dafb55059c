//! What one chaos run stands up: its own Redis, its own database on the shared MongoDB seeded with
//! the sample, and two `oponn serve` instances on both, with the same key prefix.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use mongodb::bson::{doc, oid::ObjectId, Bson, Document};
use serde_json::{json, Value};

use crate::{Environment, RedisServer, Server};

/// The number of `oponn serve` instances a run starts.
pub const INSTANCES: usize = 2;

/// The instance settings every run uses: a short Redis timeout and breaker, so a dead or stopped
/// Redis is noticed within the fault; a mutation waits up to 5 s for Redis to take its cache
/// write, longer than any outage a run injects. (A binary that does not know a setting
/// ignores it.)
const INSTANCE_SETTINGS: [(&str, &str); 3] = [
    ("OPONN_REDIS_TIMEOUT_MS", "200"),
    ("OPONN_REDIS_RETRY_AFTER_MS", "200"),
    ("OPONN_REDIS_WRITE_TIMEOUT_MS", "5000"),
];

/// Where each instance can be reached, as the workload sees it: `None` while it is down, so no
/// request is sent to an instance that was killed on purpose.
#[derive(Debug, Default)]
pub struct Routes(RwLock<[Option<String>; INSTANCES]>);

impl Routes {
    /// The instance to send a request to, and its base URL: `preferred` if it is up, else
    /// another one.
    pub fn pick(&self, preferred: usize) -> Option<(usize, String)> {
        let routes = self.0.read().expect("routes lock");
        (0..INSTANCES)
            .map(|offset| (preferred + offset) % INSTANCES)
            .find_map(|index| Some((index, routes[index].clone()?)))
    }

    fn set(&self, index: usize, base: Option<String>) {
        self.0.write().expect("routes lock")[index] = base;
    }
}

/// The servers of one run. Dropping it kills every process and removes the database and the
/// Redis directory.
pub struct Deployment {
    // Fields drop in order: the instances and Redis go before the environment cleans up, so the
    // clean-up never waits on a stopped Redis.
    instances: [Option<Server>; INSTANCES],
    pub redis: RedisServer,
    routes: Arc<Routes>,
    environment: Environment,
}

/// How the run ended, as the instances, MongoDB and Redis see the hot records.
#[derive(Debug)]
pub struct FinalState {
    /// `(instance, id, served version, MongoDB's version)` wherever they differ.
    pub mismatches: Vec<(usize, String, i64, i64)>,
    /// Hot records whose raw Redis entry holds a version older than MongoDB's.
    pub older_cache_entries: usize,
}

impl Deployment {
    /// Starts Redis, seeds a new database with the sample, and starts the instances.
    pub async fn start() -> Self {
        let redis = RedisServer::start().await;
        let environment = Environment::with_redis("chaos", &redis.url());
        environment.seed().await;
        let mut deployment = Self {
            instances: Default::default(),
            redis,
            routes: Arc::default(),
            environment,
        };
        for index in 0..INSTANCES {
            deployment.start_instance(index).await;
        }
        deployment
    }

    pub fn environment(&self) -> &Environment {
        &self.environment
    }

    pub fn routes(&self) -> Arc<Routes> {
        self.routes.clone()
    }

    /// Starts instance `index` (again) and routes requests to it.
    pub async fn start_instance(&mut self, index: usize) {
        assert!(
            self.instances[index].is_none(),
            "instance {index} is running"
        );
        let mut command = self.environment.command(&["serve"]);
        command.envs(INSTANCE_SETTINGS);
        let mut server = Server::spawn(command).await;
        server.discard_logs();
        self.routes.set(index, Some(server.base.clone()));
        self.instances[index] = Some(server);
    }

    /// Stops routing to instance `index`, SIGKILLs it and waits until it is gone. Requests
    /// already sent to it fail.
    pub async fn kill_instance(&mut self, index: usize) {
        self.routes.set(index, None);
        let mut server = self.instances[index].take().expect("the instance runs");
        server.child.start_kill().expect("SIGKILL is sent");
        tokio::time::timeout(Duration::from_secs(10), server.child.wait())
            .await
            .expect("the instance exits after SIGKILL")
            .expect("an exit status");
    }

    /// Polls every instance's `/readyz` until each says `ready` with no pending cache repairs,
    /// or `bound` passed; how long that took, or `None` if it did not happen.
    pub async fn wait_until_settled(&self, bound: Duration) -> Option<Duration> {
        let started = Instant::now();
        let client = reqwest::Client::new();
        let settled = async {
            for server in self.instances.iter().flatten() {
                let readyz = format!("{}/readyz", server.ops_base());
                while !is_settled(&client, &readyz).await {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        tokio::time::timeout(bound, settled)
            .await
            .ok()
            .map(|()| started.elapsed())
    }

    /// Reads `ids` through every instance and from MongoDB, and their raw Redis entries.
    pub async fn final_state(&self, ids: &[String]) -> FinalState {
        let stored = self.stored_versions(ids).await;
        let mut mismatches = Vec::new();
        for (index, server) in self.instances.iter().enumerate() {
            let Some(server) = server else { continue };
            let served = served_versions(server, ids).await;
            for ((id, served), stored) in ids.iter().zip(served).zip(&stored) {
                if served != Some(*stored) {
                    mismatches.push((index, id.clone(), served.unwrap_or(-1), *stored));
                }
            }
        }
        let cached = self.cached_versions(ids).await;
        let older_cache_entries = cached
            .iter()
            .zip(&stored)
            .filter(|(cached, stored)| cached.is_some_and(|cached| cached < **stored))
            .count();
        FinalState {
            mismatches,
            older_cache_entries,
        }
    }

    /// MongoDB's version of each of `ids`, in order.
    async fn stored_versions(&self, ids: &[String]) -> Vec<i64> {
        let object_ids: Vec<ObjectId> = ids
            .iter()
            .map(|id| ObjectId::parse_str(id).expect("a hex ObjectId"))
            .collect();
        let mut cursor = self
            .environment
            .database()
            .await
            .collection::<Document>("books")
            .find(doc! { "_id": { "$in": object_ids } })
            .projection(doc! { "version": 1 })
            .await
            .expect("a MongoDB query");
        let mut versions = std::collections::HashMap::new();
        while cursor.advance().await.expect("MongoDB answers") {
            let document = cursor.deserialize_current().expect("a document");
            let id = document.get_object_id("_id").expect("an _id").to_hex();
            let version = match document.get("version") {
                Some(Bson::Int64(version)) => *version,
                Some(Bson::Int32(version)) => i64::from(*version),
                other => panic!("{id} has no integer version: {other:?}"),
            };
            versions.insert(id, version);
        }
        ids.iter()
            .map(|id| *versions.get(id).expect("every hot book is stored"))
            .collect()
    }

    /// The version in each of `ids`' raw Redis entries (`<prefix>books_<id>` holding
    /// `"<version> ..."`), in order; `None` where there is no entry.
    async fn cached_versions(&self, ids: &[String]) -> Vec<Option<i64>> {
        let keys: Vec<String> = ids
            .iter()
            .map(|id| format!("{}books_{id}", self.environment.prefix))
            .collect();
        let read = async {
            let client = redis::Client::open(self.redis.url())?;
            let mut connection = client.get_multiplexed_async_connection().await?;
            redis::cmd("MGET")
                .arg(&keys)
                .query_async::<Vec<Option<String>>>(&mut connection)
                .await
        };
        let entries = tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("Redis answers MGET in time")
            .expect("MGET succeeds");
        entries
            .iter()
            .map(|entry| entry.as_deref()?.split_once(' ')?.0.parse().ok())
            .collect()
    }
}

/// Whether `/readyz` says `ready` with no pending cache repairs (a binary that does not report
/// them counts as none).
async fn is_settled(client: &reqwest::Client, readyz: &str) -> bool {
    let Ok(response) = client
        .get(readyz)
        .timeout(Duration::from_secs(2))
        .send()
        .await
    else {
        return false;
    };
    let Ok(body) = response.json::<Value>().await else {
        return false;
    };
    body["status"] == "ready" && body["pendingCacheRepairs"].as_u64().unwrap_or(0) == 0
}

/// The version `server` serves for each of `ids`, in order (`None` for a missing record).
async fn served_versions(server: &Server, ids: &[String]) -> Vec<Option<i64>> {
    let body = server
        .graphql(
            "query($ids: [ID!]!) { booksByIds(ids: $ids) { id version } }",
            json!({ "ids": ids }),
        )
        .await;
    let books = body["data"]["booksByIds"]
        .as_array()
        .unwrap_or_else(|| panic!("booksByIds answers: {body}"));
    books.iter().map(|book| book["version"].as_i64()).collect()
}
