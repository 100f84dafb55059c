//! A moto server of the test's own on 127.0.0.1, killed (by its PID) when dropped.

use std::{
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use deployer::{aws::Aws, config::DeployConfig};

pub const REGION: &str = "eu-west-1";

pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    /// Starts moto's server on a free port and waits until it answers: `moto_server.py`
    /// beside this file, moto's own server with its CREATE change sets executed as CreateStack
    /// would create the stack (see that file).
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let server = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/moto_server.py");
        let child = Command::new("python3")
            .args([server, "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start moto_server ({error}): install it with `pip install 'moto[server]'` or run `make infra-check`")
            });
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        moto.wait_until_listening(port);
        moto
    }

    fn wait_until_listening(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub async fn aws(&self) -> Aws {
        Aws::from_sdk(&self.sdk().await, REGION)
    }

    /// An SQS client (the deployer has none: only the service calls SQS).
    pub async fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk().await)
    }

    /// `config` with its three secrets stored in this moto (once) and named by their full
    /// ARNs, as `up`'s preflight requires.
    pub async fn with_secrets(&self, mut config: DeployConfig) -> DeployConfig {
        let client = aws_sdk_secretsmanager::Client::new(&self.sdk().await);
        for arn in [
            Some(&mut config.secrets.mongodb_uri),
            config.secrets.redis_url.as_mut(),
            Some(&mut config.secrets.api_tokens),
        ]
        .into_iter()
        .flatten()
        {
            // The name, without the six characters Secrets Manager appended to it.
            let name = arn
                .rsplit(":secret:")
                .next()
                .expect("a secret ARN")
                .rsplit_once('-')
                .map(|(name, _suffix)| name.to_owned())
                .expect("a full ARN ends in -<six characters>");
            let full = match client.describe_secret().secret_id(&name).send().await {
                Ok(found) => found.arn().expect("an ARN").to_owned(),
                Err(_) => client
                    .create_secret()
                    .name(&name)
                    .secret_string("not-a-real-secret")
                    .send()
                    .await
                    .expect("create the secret in moto")
                    .arn()
                    .expect("an ARN")
                    .to_owned(),
            };
            *arn = full;
        }
        config
    }

    async fn sdk(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
            .load()
            .await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
