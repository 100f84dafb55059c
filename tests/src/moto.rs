//! A moto server on 127.0.0.1 standing in for SQS (write-behind with `OPONN_QUEUE=sqs`).
//!
//! One server per test process ([`Moto::shared`]): the AWS SDK reads its endpoint, region and
//! credentials from the environment, so the process's `AWS_*` variables point at it once, and
//! each test isolates itself with queues of its own ([`Moto::fifo_queues`]). The server runs
//! under a small shell that kills it (by its PID) once the test process is gone, since a
//! static is never dropped.

use std::{
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use aws_sdk_sqs::types::QueueAttributeName;

pub struct Moto {
    pub endpoint: String,
    /// The shell that runs the server and kills it once this process is gone.
    _watchdog: Child,
}

const REGION: &str = "us-east-1";

impl Moto {
    /// The test process's moto server, started on first use; the process's `AWS_*` variables
    /// point at it from then on.
    pub fn shared() -> &'static Moto {
        static SHARED: OnceLock<Moto> = OnceLock::new();
        SHARED.get_or_init(|| {
            let moto = Self::start();
            for (name, value) in moto.env() {
                // Once, before any SQS client of this process is built.
                std::env::set_var(name, value);
            }
            moto
        })
    }

    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let script = r#"moto_server -H 127.0.0.1 -p "$1" >/dev/null 2>&1 & moto=$!
while kill -0 "$2" 2>/dev/null && kill -0 "$moto" 2>/dev/null; do sleep 1; done
kill "$moto" 2>/dev/null"#;
        let watchdog = Command::new("sh")
            .args([
                "-c",
                script,
                "sh",
                &port.to_string(),
                &std::process::id().to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start moto_server under sh ({error})"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {port} within 30 s: install it with \
                 `pip install 'moto[server]'`"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            _watchdog: watchdog,
        }
    }

    /// The AWS SDK's settings for this server: what a child process needs in its environment.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
    }

    pub async fn client(&self) -> aws_sdk_sqs::Client {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_credential_types::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .load()
            .await;
        aws_sdk_sqs::Client::new(&sdk)
    }

    /// Creates the FIFO queue `<name>.fifo` and its dead-letter queue `<name>-dead.fifo`;
    /// returns their URLs.
    pub async fn fifo_queues(&self, name: &str) -> (String, String) {
        let client = self.client().await;
        let mut urls = Vec::new();
        for queue in [format!("{name}.fifo"), format!("{name}-dead.fifo")] {
            let created = client
                .create_queue()
                .queue_name(&queue)
                .attributes(QueueAttributeName::FifoQueue, "true")
                .send()
                .await
                .unwrap_or_else(|error| panic!("creating {queue}: {error:?}"));
            urls.push(created.queue_url.expect("a queue URL"));
        }
        let dead = urls.pop().expect("two queues");
        (urls.pop().expect("two queues"), dead)
    }
}
