//! A `redis-server` a test owns, in its own directory on its own port, that the test kills,
//! pauses and restarts with real signals.
//!
//! It runs with `--save "" --appendonly no`: it writes nothing to disk unless asked
//! ([`RedisServer::snapshot`]), so a plain restart ([`RedisServer::restart_empty`]) comes back
//! empty, and a restart from a snapshot ([`RedisServer::restart_from`]) comes back holding what
//! the snapshot held, as a promoted replica that lagged would. Every restart keeps the port, so
//! clients reconnect to the same URL.

use std::{path::PathBuf, process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::unique_name;

/// How long a start, a `SAVE` or a signal may take before the test fails.
const BOUND: Duration = Duration::from_secs(10);

pub struct RedisServer {
    port: u16,
    directory: PathBuf,
    /// `None` while killed and not yet restarted.
    process: Option<Child>,
    /// Numbers the files of successive processes and snapshots, so none overwrites another.
    generation: u32,
}

/// An RDB file set aside by [`RedisServer::snapshot`].
#[derive(Debug, Clone)]
pub struct Snapshot {
    file: PathBuf,
}

impl RedisServer {
    /// Starts an empty server on a free port of 127.0.0.1, in a new temporary directory.
    pub async fn start() -> Self {
        let directory = std::env::temp_dir().join(unique_name("oponn-redis"));
        std::fs::create_dir_all(&directory).expect("a temporary directory");
        let mut server = Self {
            port: free_port(),
            directory,
            process: None,
            generation: 0,
        };
        server.restart_empty().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `SAVE`, then a copy of the RDB file under a name no later `SAVE` writes to.
    pub async fn snapshot(&mut self) -> Snapshot {
        let save = async {
            let client = redis::Client::open(self.url())?;
            let mut connection = client.get_multiplexed_async_connection().await?;
            redis::cmd("SAVE")
                .query_async::<()>(&mut connection)
                .await
        };
        tokio::time::timeout(BOUND, save)
            .await
            .expect("SAVE within the bound")
            .expect("SAVE succeeds");
        let saved = self.live_file();
        self.generation += 1;
        let file = self
            .directory
            .join(format!("snapshot-{}.rdb", self.generation));
        std::fs::copy(saved, &file).expect("the RDB file is copied");
        Snapshot { file }
    }

    /// SIGKILL, and waits until the process is gone (so the port is free again).
    pub async fn kill(&mut self) {
        let mut process = self.process.take().expect("Redis is running");
        process.start_kill().expect("SIGKILL is sent");
        tokio::time::timeout(BOUND, process.wait())
            .await
            .expect("Redis exits after SIGKILL")
            .expect("an exit status");
    }

    /// SIGSTOP: the server keeps its connections open but answers nothing.
    pub async fn pause(&self) {
        signal(self.pid(), "STOP").await;
    }

    /// SIGCONT after [`RedisServer::pause`].
    pub async fn resume(&self) {
        signal(self.pid(), "CONT").await;
    }

    /// Starts a server on the same port with nothing in it.
    pub async fn restart_empty(&mut self) {
        self.generation += 1;
        self.spawn().await;
    }

    /// Starts a server on the same port that loads `snapshot` first.
    pub async fn restart_from(&mut self, snapshot: &Snapshot) {
        self.generation += 1;
        std::fs::copy(&snapshot.file, self.live_file()).expect("the snapshot is copied");
        self.spawn().await;
    }

    fn pid(&self) -> u32 {
        let process = self.process.as_ref().expect("Redis is running");
        process.id().expect("Redis has not been reaped")
    }

    /// The RDB file of the current generation: what it loads at start and `SAVE` writes.
    fn live_file(&self) -> PathBuf {
        self.directory.join(format!("live-{}.rdb", self.generation))
    }

    /// Starts `redis-server` on the live file and waits for it to accept connections.
    async fn spawn(&mut self) {
        assert!(self.process.is_none(), "Redis is already running");
        let file_name = self.live_file();
        let file_name = file_name.file_name().expect("a file name");
        let mut process = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.directory)
            .arg("--dbfilename")
            .arg(file_name)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts (is it installed?)");
        let mut logs = BufReader::new(process.stdout.take().expect("stdout")).lines();
        let ready = async {
            let mut seen = Vec::new();
            while let Ok(Some(line)) = logs.next_line().await {
                if line.contains("Ready to accept connections") {
                    return;
                }
                seen.push(line);
            }
            panic!("redis-server exited before it was ready:\n{}", seen.join("\n"));
        };
        tokio::time::timeout(BOUND, ready)
            .await
            .expect("redis-server is ready within the bound");
        // Its later log lines must still be read, or a full pipe would block it.
        tokio::spawn(async move { while let Ok(Some(_)) = logs.next_line().await {} });
        self.process = Some(process);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            // SIGKILL ends a stopped process too.
            let _ = process.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// A port nothing listens on now. Another process could take it before the caller binds it;
/// the caller then fails loudly (`Address already in use`), which has not happened in practice.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Sends `SIG<name>` to `pid` with `kill`.
pub async fn signal(pid: u32, name: &str) {
    let status = tokio::time::timeout(
        BOUND,
        Command::new("kill")
            .args(["-s", name, &pid.to_string()])
            .status(),
    )
    .await
    .expect("kill returns")
    .expect("kill runs");
    assert!(status.success(), "kill -s {name} {pid}: {status}");
}
