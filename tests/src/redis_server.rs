//! A `redis-server` of a test's own, to kill, restart, restore from a snapshot and pause: the
//! faults a shared server must never suffer. It listens on a free 127.0.0.1 port, keeps its
//! files in a directory of its own, and dies with the value. [`RedisServer::start_tls`] starts
//! one that speaks only TLS, with a certificate from a throwaway CA made for it.

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
    /// Whether it speaks only TLS (`rediss://`), with the certificates in `dir`.
    tls: bool,
}

/// The files of a TLS server's throwaway CA and certificate, in its directory.
const CA_FILE: &str = "ca.pem";
const CERTIFICATE_FILE: &str = "server.pem";
const KEY_FILE: &str = "server.key";

impl RedisServer {
    /// Starts an empty server that saves nothing unless asked ([`RedisServer::snapshot`]).
    pub async fn start() -> Self {
        Self::start_with(false, false).await
    }

    /// Starts an empty server with an append-only file fsynced before every reply
    /// (`appendonly yes`, `appendfsync always`): what write-behind needs.
    pub async fn start_durable() -> Self {
        Self::start_with(true, false).await
    }

    /// Starts an empty server that speaks only TLS (no plain port), its certificate for
    /// `127.0.0.1` and `localhost` signed by a CA made for it alone ([`RedisServer::ca_file`]);
    /// it asks clients for no certificate.
    pub async fn start_tls() -> Self {
        Self::start_with(false, true).await
    }

    async fn start_with(durable: bool, tls: bool) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(unique_name("oponn-redis"));
        std::fs::create_dir_all(&dir).expect("a directory for the Redis server");
        if tls {
            write_certificates(&dir);
        }
        let mut server = Self {
            port,
            dir,
            child: None,
            dbfilename: "dump.rdb",
            snapshots: 0,
            durable,
            tls,
        };
        server.launch(None).await;
        server
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The PEM of the CA that signed a TLS server's certificate (what `OPONN_REDIS_CA_FILE`
    /// names).
    pub fn ca_file(&self) -> PathBuf {
        assert!(self.tls, "only a TLS server has a CA");
        self.dir.join(CA_FILE)
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
        self.client()
            .get_multiplexed_async_connection()
            .await
            .expect("a connection to the test's Redis")
    }

    /// A client of the test's own; over TLS, trusting the server's CA.
    fn client(&self) -> redis::Client {
        if !self.tls {
            return redis::Client::open(self.url()).expect("a Redis client");
        }
        // The process needs one rustls provider (the service installs the same one).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let root_cert = std::fs::read(self.ca_file()).expect("the test CA");
        redis::Client::build_with_tls(
            self.url(),
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root_cert),
            },
        )
        .expect("a TLS Redis client")
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
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        command.args(["--bind", "127.0.0.1"]);
        if self.tls {
            let file = |name| {
                self.dir
                    .join(name)
                    .to_str()
                    .expect("a UTF-8 path")
                    .to_owned()
            };
            command
                .args(["--port", "0", "--tls-port", &port])
                .args(["--tls-cert-file", &file(CERTIFICATE_FILE)])
                .args(["--tls-key-file", &file(KEY_FILE)])
                .args(["--tls-ca-cert-file", &file(CA_FILE)])
                .args(["--tls-auth-clients", "no"]);
        } else {
            command.args(["--port", &port]);
        }
        let child = command
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
        let client = self.client();
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

/// Writes a throwaway CA and a server certificate it signed, for `127.0.0.1` and `localhost`,
/// into `dir` ([`CA_FILE`], [`CERTIFICATE_FILE`], [`KEY_FILE`]).
fn write_certificates(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, "oponn throwaway test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("a CA key"))
        .expect("a CA certificate");
    let key = KeyPair::generate().expect("a server key");
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server certificate parameters");
    server
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let certificate = server.signed_by(&key, &ca).expect("a server certificate");
    std::fs::write(dir.join(CA_FILE), ca.pem()).expect("write the CA");
    std::fs::write(dir.join(CERTIFICATE_FILE), certificate.pem()).expect("write the certificate");
    std::fs::write(dir.join(KEY_FILE), key.serialize_pem()).expect("write the key");
}

/// A port nothing listens on now (the OS picks it; the listener is closed at once).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}
