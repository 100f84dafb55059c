//! A `redis-server` of a test's own, to kill, restart, restore from a snapshot and pause: the
//! faults a shared server must never suffer. It listens on a free 127.0.0.1 port, keeps its
//! files in a directory of its own, and dies with the value.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::unique_name;

pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// The file the running server saves to (and started from).
    dbfilename: &'static str,
    snapshots: usize,
    /// Whether it keeps an append-only file (`appendfsync always`).
    durable: bool,
}

impl RedisServer {
    /// Starts an empty server that saves nothing unless asked ([`RedisServer::snapshot`]).
    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    /// Starts an empty server with an append-only file fsynced before every reply
    /// (`appendonly yes`, `appendfsync always`): what write-behind needs.
    pub async fn start_durable() -> Self {
        Self::start_with(true).await
    }

    async fn start_with(durable: bool) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(unique_name("oponn-redis"));
        std::fs::create_dir_all(&dir).expect("a directory for the Redis server");
        let mut server = Self {
            port,
            dir,
            child: None,
            dbfilename: "dump.rdb",
            snapshots: 0,
            durable,
        };
        server.launch(None).await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Saves the dataset now (`SAVE`) and returns a copy of it, to restart from later.
    pub async fn snapshot(&mut self) -> PathBuf {
        let mut connection = self.connection().await;
        let _: () = redis::cmd("SAVE")
            .query_async(&mut connection)
            .await
            .expect("SAVE");
        self.snapshots += 1;
        let copy = self.dir.join(format!("snapshot-{}.rdb", self.snapshots));
        std::fs::copy(self.dir.join(self.dbfilename), &copy).expect("copy the snapshot");
        copy
    }

    /// SIGKILL: no shutdown, no save.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILLs the server and starts it again on the same port from its append-only file (a
    /// durable server: every acknowledged write comes back).
    pub async fn crash_and_restart(&mut self) {
        assert!(self.durable, "only a durable server keeps its data");
        self.kill();
        self.launch(None).await;
    }

    /// Starts the server again on the same port, empty (after [`RedisServer::kill`]).
    pub async fn restart_empty(&mut self) {
        self.kill();
        self.launch(None).await;
    }

    /// Starts the server again on the same port with the data of `snapshot`: what a replica
    /// that lagged behind holds when it is promoted.
    pub async fn restart_from(&mut self, snapshot: &Path) {
        self.kill();
        self.launch(Some(snapshot)).await;
    }

    /// SIGSTOP: the server keeps its connections and data but answers nothing.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`RedisServer::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// A connection of the test's own.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("a Redis client")
            .get_multiplexed_async_connection()
            .await
            .expect("a connection to the test's Redis")
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the server runs");
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }

    async fn launch(&mut self, snapshot: Option<&Path>) {
        let dbfilename = match snapshot {
            Some(snapshot) => {
                let name = "restored.rdb";
                std::fs::copy(snapshot, self.dir.join(name)).expect("stage the snapshot");
                name
            }
            None => {
                let _ = std::fs::remove_file(self.dir.join("dump.rdb"));
                "dump.rdb"
            }
        };
        let appendonly = if self.durable { "yes" } else { "no" };
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                appendonly,
                "--appendfsync",
                "always",
            ])
            .args(["--dir", self.dir.to_str().expect("a UTF-8 path")])
            .args(["--dbfilename", dbfilename])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (scripts/stack installs it)");
        self.child = Some(child);
        self.dbfilename = dbfilename;
        self.wait_until_ready().await;
    }

    /// Polls `PING` (a fresh server reports readiness only by answering), for at most 10 s.
    async fn wait_until_ready(&self) {
        let client = redis::Client::open(self.url()).expect("a Redis client");
        for _ in 0..200 {
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
                let pong: redis::RedisResult<String> =
                    redis::cmd("PING").query_async(&mut connection).await;
                if pong.is_ok() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server on port {} did not start", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL lands on a paused server too.
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nothing listens on now (the OS picks it; the listener is closed at once).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}
