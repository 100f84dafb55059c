//! `deploy.toml`: what to deploy where. Read and validated once; the rest of the deployer holds
//! only a [`DeployConfig`], whose fields cannot be invalid.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        message: String,
    },
    #[error(
        "stage {stage} would serve plain HTTP: only stage \"dev\" does so by default. In \
         deploy.toml's [service], add\n  domain = \"api.example.com\" and hosted_zone_id = \
         \"Z...\" (your Route 53 zone: the service stack requests an ACM certificate and makes \
         the alias record),\n  or certificate_arn = \"arn:aws:acm:...\" (your own certificate, \
         with domain = the name it covers),\n  or allow_http = true to serve HTTP on purpose"
    )]
    PlainHttp { stage: String },
}

/// A validated `deploy.toml`.
#[derive(Debug, Clone)]
pub struct DeployConfig {
    pub app: Name,
    pub stage: Name,
    pub region: String,
    /// Where the CloudFormation templates are (relative paths are resolved against the
    /// directory of `deploy.toml`).
    pub templates: PathBuf,
    pub network: NetworkConfig,
    pub cluster: ClusterConfig,
    pub service: ServiceConfig,
    pub cache: CacheConfig,
    pub alarms: AlarmsConfig,
    pub github: GitHubConfig,
    pub secrets: SecretsConfig,
}

/// Where the instances run: public subnets, each instance with its own changing public IP
/// (default), or with `nat = true` private subnets behind one NAT gateway whose Elastic IP
/// is the one address to allow-list (MongoDB Atlas).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    #[serde(default)]
    pub nat: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    #[serde(default = "default_instance_type")]
    pub instance_type: String,
    #[serde(default = "one")]
    pub min_instances: u32,
    #[serde(default = "three")]
    pub max_instances: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    #[serde(default = "two")]
    pub desired_tasks: u32,
    #[serde(default = "one")]
    pub min_tasks: u32,
    #[serde(default = "four")]
    pub max_tasks: u32,
    #[serde(default = "default_cpu")]
    pub cpu: u32,
    #[serde(default = "default_memory")]
    pub memory: u32,
    #[serde(default = "default_database")]
    pub mongodb_database: String,
    /// The image for the service's first deployment; later ones come from the pipeline or
    /// `deployer rollout`, and `up` keeps whatever image is running.
    pub image: Option<String>,
    /// Your own ACM certificate (in the stack's region) for HTTPS; see [`ServiceConfig::https`].
    pub certificate_arn: Option<String>,
    /// The name the service answers HTTPS at (`api.example.com`).
    pub domain: Option<String>,
    /// The Route 53 public hosted zone of `domain`: the service stack then requests an ACM
    /// certificate validated by DNS in it and makes an alias record to the load balancer.
    pub hosted_zone_id: Option<String>,
    /// Serve plain HTTP in a stage other than `dev`, on purpose.
    #[serde(default)]
    pub allow_http: bool,
    /// `OPONN_WRITE_MODE` of the tasks.
    #[serde(default)]
    pub write_mode: WriteMode,
    /// The write-behind queue (`OPONN_QUEUE`); `sqs` adds the queue stack.
    #[serde(default)]
    pub queue: QueueKind,
}

impl ServiceConfig {
    /// The service's async worker threads: its CPU units in whole vCPUs (1,024 units each),
    /// rounded up, at least one.
    pub fn worker_threads(&self) -> u32 {
        self.cpu.div_ceil(1024).max(1)
    }
}

/// When a mutation replies: once MongoDB has it (`through`), or once Redis and the queue
/// have it (`behind`; every task then also runs the worker that persists it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    #[default]
    Through,
    Behind,
}

impl WriteMode {
    /// The value of `OPONN_WRITE_MODE`.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteMode::Through => "through",
            WriteMode::Behind => "behind",
        }
    }
}

/// Where write-behind queues its changes: the Redis stream next to the cache (nothing to
/// deploy), or SQS FIFO queues of their own stack (`queue.yaml`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueKind {
    #[default]
    Redis,
    Sqs,
}

/// How the load balancer serves the service (derived from `domain`, `hosted_zone_id` and
/// `certificate_arn`, which [`DeployConfig::parse`] has checked fit together).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Https {
    /// Plain HTTP on port 80, at the load balancer's own name.
    Off,
    /// An ACM certificate for `domain` the service stack requests and validates in the hosted
    /// zone, and an alias record `domain` -> the load balancer.
    Managed {
        domain: String,
        hosted_zone_id: String,
    },
    /// The certificate given; at `domain` when given (its DNS record is yours to make), else at
    /// the load balancer's own name (which the certificate does not cover).
    OwnCertificate {
        certificate_arn: String,
        domain: Option<String>,
    },
}

impl ServiceConfig {
    pub fn https(&self) -> Https {
        match (&self.domain, &self.hosted_zone_id, &self.certificate_arn) {
            (Some(domain), Some(zone), _) => Https::Managed {
                domain: domain.clone(),
                hosted_zone_id: zone.clone(),
            },
            (domain, _, Some(arn)) => Https::OwnCertificate {
                certificate_arn: arn.clone(),
                domain: domain.clone(),
            },
            _ => Https::Off,
        }
    }

    /// Whether the deployment has the queue stack and the service uses it.
    pub fn queue_on_sqs(&self) -> bool {
        self.queue == QueueKind::Sqs
    }
}

/// Where the service's alarms go: always its SNS topic (the service stack's `AlarmTopicArn`),
/// and with `email` a subscription mailing that address (confirmed from the mail).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmsConfig {
    pub email: Option<String>,
}

/// The Redis the service uses: by default the one `secrets.redis_url` names; with
/// `managed = true`, an ElastiCache replication group of the deployment's own (`cache.yaml`),
/// whose URL secret the service gets instead.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    #[serde(default)]
    pub managed: bool,
    /// The node type of the primary and of the replica.
    #[serde(default = "default_node_type")]
    pub node_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHubConfig {
    /// `owner/name`.
    pub repository: String,
    #[serde(default = "default_branch")]
    pub branch: String,
}

/// The ARNs (never the values) of the service's secrets, in Secrets Manager or SSM.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    pub mongodb_uri: String,
    /// Absent with a managed cache, whose stack makes this secret.
    pub redis_url: Option<String>,
    pub api_tokens: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    app: String,
    stage: String,
    region: String,
    templates: Option<PathBuf>,
    #[serde(default)]
    network: NetworkConfig,
    #[serde(default = "default_cluster")]
    cluster: ClusterConfig,
    #[serde(default = "default_service")]
    service: ServiceConfig,
    #[serde(default = "default_cache")]
    cache: CacheConfig,
    #[serde(default)]
    alarms: AlarmsConfig,
    github: GitHubConfig,
    secrets: SecretsConfig,
}

/// A lower-case name that fits in every AWS resource name built from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    fn parse(value: &str, max_length: usize) -> Result<Self, String> {
        let valid = !value.is_empty()
            && value.len() <= max_length
            && value.starts_with(|c: char| c.is_ascii_lowercase())
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !value.ends_with('-');
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(format!(
                "{value:?}: expected 1 to {max_length} of a-z, 0-9 and '-', starting with a letter"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl DeployConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |field: &'static str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            field,
            message,
        };
        let app = Name::parse(&raw.app, 20).map_err(|message| invalid("app", message))?;
        // The stage is alphanumeric: the templates' AllowedPattern refuses '-'.
        let stage = Name::parse(&raw.stage, 10)
            .and_then(|stage| match stage.0.contains('-') {
                true => Err(format!("{:?}: no '-' in a stage", stage.0)),
                false => Ok(stage),
            })
            .map_err(|message| invalid("stage", message))?;
        if raw.region.is_empty() || !raw.region.contains('-') {
            return Err(invalid(
                "region",
                format!("{:?} is not a region", raw.region),
            ));
        }
        let repository = &raw.github.repository;
        if repository.split('/').count() != 2 || repository.split('/').any(str::is_empty) {
            return Err(invalid(
                "github.repository",
                format!("{repository:?}: expected owner/name"),
            ));
        }
        for (field, arn) in [
            ("secrets.mongodb_uri", Some(&raw.secrets.mongodb_uri)),
            ("secrets.redis_url", raw.secrets.redis_url.as_ref()),
            ("secrets.api_tokens", Some(&raw.secrets.api_tokens)),
        ] {
            if let Some(arn) = arn {
                check_secret_arn(arn).map_err(|message| invalid(field, message))?;
            }
        }
        // Exactly one Redis: the managed cache's, or the one the secret names.
        match (raw.cache.managed, &raw.secrets.redis_url) {
            (true, Some(_)) => {
                return Err(invalid(
                    "secrets.redis_url",
                    "with [cache] managed = true the cache stack makes this secret: remove it"
                        .into(),
                ))
            }
            (false, None) => {
                return Err(invalid(
                    "secrets.redis_url",
                    "missing: the ARN of your Redis URL's secret, or [cache] managed = true".into(),
                ))
            }
            _ => {}
        }
        if let Some(email) = &raw.alarms.email {
            let parts: Vec<&str> = email.split('@').collect();
            let valid = parts.len() == 2
                && parts.iter().all(|part| !part.is_empty())
                && !email.contains(char::is_whitespace);
            if !valid {
                return Err(invalid(
                    "alarms.email",
                    format!("{email:?} is not an email address"),
                ));
            }
        }
        let node_type = &raw.cache.node_type;
        if !node_type.starts_with("cache.") || node_type.split('.').count() != 3 {
            return Err(invalid(
                "cache.node_type",
                format!("{node_type:?}: expected an ElastiCache node type (cache.t4g.micro)"),
            ));
        }
        let cluster = &raw.cluster;
        if cluster.min_instances > cluster.max_instances || cluster.max_instances == 0 {
            return Err(invalid(
                "cluster",
                "expected 0 <= min_instances <= max_instances, max_instances >= 1".into(),
            ));
        }
        let service = &raw.service;
        if service.min_tasks > service.max_tasks || service.max_tasks == 0 {
            return Err(invalid(
                "service",
                "expected min_tasks <= max_tasks, max_tasks >= 1".into(),
            ));
        }
        let hosted_zone_id =
            check_https(&raw.service).map_err(|(field, message)| invalid(field, message))?;
        // Only write-behind reads the queue: a queue stack nothing uses is a mistake.
        if service.queue_on_sqs() && service.write_mode != WriteMode::Behind {
            return Err(invalid(
                "service.queue",
                "queue = \"sqs\" is write-behind's queue: it needs write_mode = \"behind\"".into(),
            ));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let templates = base.join(raw.templates.unwrap_or_else(|| "infra-templates".into()));
        let mut service = raw.service;
        service.hosted_zone_id = hosted_zone_id;
        Ok(Self {
            app,
            stage,
            region: raw.region,
            templates,
            network: raw.network,
            cluster: raw.cluster,
            service,
            cache: raw.cache,
            alarms: raw.alarms,
            github: raw.github,
            secrets: raw.secrets,
        })
    }

    /// `{app}-{stage}`: the cluster, the service, the pipeline and the repository are named so.
    pub fn prefix(&self) -> String {
        format!("{}-{}", self.app, self.stage)
    }

    /// Plain HTTP is for `dev`: any other stage needs HTTPS (a domain, or a certificate) or
    /// says `allow_http = true`. Checked by `plan` and `up` before anything else; the other
    /// commands (`status`, `down`) still work on a deployment that predates the rule.
    pub fn require_https_outside_dev(&self) -> Result<(), ConfigError> {
        if self.stage.as_str() == DEV_STAGE
            || self.service.allow_http
            || self.service.https() != Https::Off
        {
            return Ok(());
        }
        Err(ConfigError::PlainHttp {
            stage: self.stage.to_string(),
        })
    }
}

/// The one stage that may serve plain HTTP without saying so.
pub const DEV_STAGE: &str = "dev";

/// `domain`, `hosted_zone_id`, `certificate_arn` and `allow_http` fit together; returns the
/// hosted zone's id without the `/hostedzone/` prefix Route 53's API lists it with.
fn check_https(service: &ServiceConfig) -> Result<Option<String>, (&'static str, String)> {
    if let Some(domain) = &service.domain {
        check_domain(domain).map_err(|message| ("service.domain", message))?;
    }
    let zone = service
        .hosted_zone_id
        .as_deref()
        .map(|zone| zone.trim_start_matches("/hostedzone/").to_owned());
    if let Some(zone) = &zone {
        let valid = zone.starts_with('Z')
            && zone.len() <= 32
            && zone
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if !valid {
            return Err((
                "service.hosted_zone_id",
                format!("{zone:?}: expected a Route 53 hosted zone id (Z0123456789ABCDEFGHIJ)"),
            ));
        }
    }
    match (&service.domain, &zone, &service.certificate_arn) {
        (None, Some(_), _) => Err((
            "service.hosted_zone_id",
            "needs service.domain, the name to serve in that zone".into(),
        )),
        (Some(_), Some(_), Some(_)) => Err((
            "service.certificate_arn",
            "with service.hosted_zone_id the service stack requests the certificate: remove \
             certificate_arn, or hosted_zone_id to bring your own"
                .into(),
        )),
        (Some(_), None, None) => Err((
            "service.domain",
            "needs hosted_zone_id (a certificate is requested and validated in that Route 53 \
             zone) or certificate_arn (yours, for that name)"
                .into(),
        )),
        (domain, _, arn) if service.allow_http && (domain.is_some() || arn.is_some()) => Err((
            "service.allow_http",
            "HTTPS is configured: remove allow_http".into(),
        )),
        _ => Ok(zone),
    }
}

/// A host name: dot-separated labels of a-z, 0-9 and '-', no wildcard.
fn check_domain(domain: &str) -> Result<(), String> {
    let labels: Vec<&str> = domain.split('.').collect();
    let valid = domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
    match valid {
        true => Ok(()),
        false => Err(format!(
            "{domain:?}: expected a lower-case host name such as api.example.com"
        )),
    }
}

/// A Secrets Manager secret or an SSM parameter ARN: the value itself is never in the config.
fn check_secret_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let valid = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && matches!(
            (parts[2], parts[5].split(['/', ':']).next()),
            ("secretsmanager", Some("secret")) | ("ssm", Some("parameter"))
        )
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit());
    match valid {
        true => Ok(()),
        false => Err("expected the ARN of a Secrets Manager secret or an SSM parameter (arn:aws:secretsmanager:<region>:<account>:secret:... or arn:aws:ssm:<region>:<account>:parameter/...), never the secret itself".into()),
    }
}

fn default_cluster() -> ClusterConfig {
    ClusterConfig {
        instance_type: default_instance_type(),
        min_instances: one(),
        max_instances: three(),
    }
}

fn default_service() -> ServiceConfig {
    ServiceConfig {
        desired_tasks: two(),
        min_tasks: one(),
        max_tasks: four(),
        cpu: default_cpu(),
        memory: default_memory(),
        mongodb_database: default_database(),
        image: None,
        certificate_arn: None,
        domain: None,
        hosted_zone_id: None,
        allow_http: false,
        write_mode: WriteMode::default(),
        queue: QueueKind::default(),
    }
}

fn default_cache() -> CacheConfig {
    CacheConfig {
        managed: false,
        node_type: default_node_type(),
    }
}

fn default_instance_type() -> String {
    "t3.small".into()
}
fn default_node_type() -> String {
    "cache.t4g.micro".into()
}
fn default_branch() -> String {
    "main".into()
}
fn default_database() -> String {
    "oponn".into()
}
fn default_cpu() -> u32 {
    512
}
fn default_memory() -> u32 {
    512
}
fn one() -> u32 {
    1
}
fn two() -> u32 {
    2
}
fn three() -> u32 {
    3
}
fn four() -> u32 {
    4
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../deploy.example.toml");

    fn parse(text: &str) -> Result<DeployConfig, ConfigError> {
        DeployConfig::parse(Path::new("/repo/deploy.toml"), text)
    }

    #[test]
    fn the_example_config_is_valid() {
        let config = parse(EXAMPLE).expect("the example parses");
        assert_eq!(config.prefix(), "oponn-dev");
        assert_eq!(config.github.branch, "main");
        assert_eq!(config.templates, Path::new("/repo/infra-templates"));
    }

    #[test]
    fn worker_threads_are_the_tasks_vcpus_rounded_up() {
        let mut config = parse(EXAMPLE).expect("the example parses");
        for (cpu, threads) in [
            (128, 1),
            (512, 1),
            (1024, 1),
            (1536, 2),
            (2048, 2),
            (4096, 4),
        ] {
            config.service.cpu = cpu;
            assert_eq!(config.service.worker_threads(), threads, "cpu = {cpu}");
        }
    }

    #[test]
    fn a_secret_value_in_place_of_an_arn_is_refused_without_echoing_it() {
        let text = EXAMPLE.replace(
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:oponn/dev/mongodb-uri-a1B2c3",
            "mongodb://admin:hunter2@db:27017",
        );
        let error = parse(&text).expect_err("a value, not an ARN").to_string();
        assert!(error.contains("secrets.mongodb_uri"), "{error}");
        assert!(!error.contains("hunter2"), "the secret is echoed: {error}");
    }

    #[test]
    fn ssm_parameter_arns_are_accepted() {
        let text = EXAMPLE.replace(
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:oponn/dev/redis-url-d4E5f6",
            "arn:aws:ssm:eu-west-1:123456789012:parameter/oponn/dev/redis-url",
        );
        parse(&text).expect("an SSM parameter ARN");
    }

    #[test]
    fn names_that_do_not_fit_resource_names_are_refused() {
        for (from, to, field) in [
            ("app = \"oponn\"", "app = \"Oponn\"", "app"),
            ("stage = \"dev\"", "stage = \"my-dev\"", "stage"),
            (
                "repository = \"acme/oponn\"",
                "repository = \"oponn\"",
                "github.repository",
            ),
        ] {
            let error = parse(&EXAMPLE.replace(from, to)).expect_err(to).to_string();
            assert!(error.contains(field), "{error}");
        }
    }

    #[test]
    fn writes_are_through_without_a_queue_stack_unless_told() {
        let config = parse(EXAMPLE).expect("the example parses");
        assert_eq!(config.service.write_mode, WriteMode::Through);
        assert!(!config.service.queue_on_sqs());
    }

    #[test]
    fn write_behind_on_sqs_is_read_from_the_service_section() {
        // The example's commented lines, uncommented.
        let text: Vec<&str> = EXAMPLE
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(setting) if setting.starts_with("write_mode =") => setting,
                Some(setting) if setting.starts_with("queue =") => setting,
                _ => line,
            })
            .collect();
        let config = parse(&text.join("\n")).expect("behind on SQS");
        assert_eq!(config.service.write_mode, WriteMode::Behind);
        assert!(config.service.queue_on_sqs());
        let redis = parse(&EXAMPLE.replace("[service]\n", "[service]\nwrite_mode = \"behind\"\n"))
            .expect("behind on the Redis stream");
        assert_eq!(redis.service.queue, QueueKind::Redis);
    }

    #[test]
    fn an_sqs_queue_without_write_behind_or_an_unknown_mode_is_refused() {
        let unused = EXAMPLE.replace("[service]\n", "[service]\nqueue = \"sqs\"\n");
        let error = parse(&unused).expect_err("nothing reads it").to_string();
        assert!(error.contains("service.queue"), "{error}");
        assert!(error.contains("write_mode = \"behind\""), "{error}");
        for (key, value) in [("write_mode", "later"), ("queue", "kafka")] {
            let text = EXAMPLE.replace("[service]\n", &format!("[service]\n{key} = {value:?}\n"));
            let error = parse(&text).expect_err(value).to_string();
            assert!(error.contains(value), "{error}");
        }
    }

    #[test]
    fn instances_sit_in_public_subnets_unless_nat_is_asked_for() {
        assert!(!parse(EXAMPLE).expect("the example parses").network.nat);
        let uncommented: Vec<&str> = EXAMPLE
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(setting)
                    if setting.starts_with("[network]") || setting.starts_with("nat =") =>
                {
                    setting
                }
                _ => line,
            })
            .collect();
        let config = parse(&uncommented.join("\n")).expect("nat = true");
        assert!(config.network.nat);
    }

    #[test]
    fn alarms_mail_an_address_only_when_given_a_valid_one() {
        assert_eq!(parse(EXAMPLE).expect("the example").alarms.email, None);
        let uncommented: Vec<&str> = EXAMPLE
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(setting)
                    if setting.starts_with("[alarms]") || setting.starts_with("email =") =>
                {
                    setting
                }
                _ => line,
            })
            .collect();
        let text = uncommented.join("\n");
        let config = parse(&text).expect("an email");
        assert_eq!(config.alarms.email.as_deref(), Some("ops@example.com"));
        let error = parse(&text.replace("ops@example.com", "ops at example"))
            .expect_err("not an address")
            .to_string();
        assert!(error.contains("alarms.email"), "{error}");
    }

    /// The example with its `[cache]` lines uncommented and `secrets.redis_url` left out.
    fn managed_cache_example() -> String {
        let uncommented: Vec<&str> = EXAMPLE
            .lines()
            .filter(|line| !line.starts_with("redis_url ="))
            .map(|line| match line.strip_prefix("# ") {
                Some(setting)
                    if ["[cache]", "managed =", "node_type ="]
                        .iter()
                        .any(|start| setting.starts_with(start)) =>
                {
                    setting
                }
                _ => line,
            })
            .collect();
        uncommented.join("\n")
    }

    #[test]
    fn a_managed_cache_is_read_from_the_cache_section_and_needs_no_redis_secret() {
        let config = parse(&managed_cache_example()).expect("a managed cache");
        assert!(config.cache.managed);
        assert_eq!(config.cache.node_type, "cache.t4g.micro");
        assert_eq!(config.secrets.redis_url, None);
        let unmanaged = parse(EXAMPLE).expect("the example parses");
        assert!(!unmanaged.cache.managed);
        assert!(unmanaged.secrets.redis_url.is_some());
    }

    #[test]
    fn exactly_one_redis_is_configured() {
        let both = managed_cache_example().replace(
            "[secrets]\n",
            "[secrets]\nredis_url = \"arn:aws:secretsmanager:eu-west-1:123456789012:secret:r\"\n",
        );
        let error = parse(&both).expect_err("two Redis").to_string();
        assert!(error.contains("secrets.redis_url"), "{error}");
        assert!(error.contains("remove it"), "{error}");
        let neither = managed_cache_example().replace("managed = true", "managed = false");
        let error = parse(&neither).expect_err("no Redis").to_string();
        assert!(error.contains("secrets.redis_url"), "{error}");
        assert!(error.contains("missing"), "{error}");
        let odd = managed_cache_example().replace("cache.t4g.micro", "t4g.micro");
        let error = parse(&odd).expect_err("not a node type").to_string();
        assert!(error.contains("cache.node_type"), "{error}");
    }

    fn with_service(settings: &str) -> Result<DeployConfig, ConfigError> {
        parse(&EXAMPLE.replace("[service]\n", &format!("[service]\n{settings}\n")))
    }

    #[test]
    fn plain_http_is_refused_outside_dev_saying_what_to_add() {
        let dev = parse(EXAMPLE).expect("the example");
        assert_eq!(dev.service.https(), Https::Off);
        dev.require_https_outside_dev().expect("dev may serve HTTP");

        let prod = parse(&EXAMPLE.replace("stage = \"dev\"", "stage = \"prod\"")).expect("prod");
        let error = prod
            .require_https_outside_dev()
            .expect_err("plain HTTP in prod")
            .to_string();
        for what in [
            "stage prod",
            "domain = \"api.example.com\"",
            "hosted_zone_id",
            "certificate_arn",
            "allow_http = true",
        ] {
            assert!(error.contains(what), "{what} missing from: {error}");
        }

        let on_purpose = parse(
            &EXAMPLE
                .replace("stage = \"dev\"", "stage = \"prod\"")
                .replace("[service]\n", "[service]\nallow_http = true\n"),
        )
        .expect("allow_http");
        on_purpose.require_https_outside_dev().expect("said so");
    }

    #[test]
    fn a_domain_in_a_hosted_zone_is_https_with_a_certificate_the_stack_requests() {
        let config = with_service(
            "domain = \"api.example.com\"\nhosted_zone_id = \"/hostedzone/Z0123456789ABC\"",
        )
        .expect("a managed certificate");
        assert_eq!(
            config.service.https(),
            Https::Managed {
                domain: "api.example.com".into(),
                hosted_zone_id: "Z0123456789ABC".into(),
            },
            "the zone id as CloudFormation takes it, without /hostedzone/"
        );
        let mut prod = config.clone();
        prod.stage = Name::parse("prod", 10).expect("a name");
        prod.require_https_outside_dev().expect("HTTPS");

        let own = with_service(
            "certificate_arn = \"arn:aws:acm:eu-west-1:123456789012:certificate/0f3e\"\n\
             domain = \"api.example.com\"",
        )
        .expect("your own certificate at your own name");
        assert!(matches!(
            own.service.https(),
            Https::OwnCertificate {
                domain: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn https_settings_that_do_not_fit_together_are_refused_by_name() {
        for (settings, field, says) in [
            (
                "hosted_zone_id = \"Z0123\"",
                "service.hosted_zone_id",
                "needs service.domain",
            ),
            (
                "domain = \"api.example.com\"",
                "service.domain",
                "hosted_zone_id",
            ),
            (
                "domain = \"*.example.com\"\nhosted_zone_id = \"Z1\"",
                "service.domain",
                "host name",
            ),
            (
                "domain = \"api.example.com\"\nhosted_zone_id = \"zone\"",
                "service.hosted_zone_id",
                "Z0123",
            ),
            (
                "domain = \"a.example.com\"\nhosted_zone_id = \"Z1\"\n\
                 certificate_arn = \"arn:aws:acm:eu-west-1:123456789012:certificate/1\"",
                "service.certificate_arn",
                "remove",
            ),
            (
                "domain = \"a.example.com\"\nhosted_zone_id = \"Z1\"\nallow_http = true",
                "service.allow_http",
                "remove allow_http",
            ),
        ] {
            let error = with_service(settings).expect_err(settings).to_string();
            assert!(error.contains(field), "{settings}: {error}");
            assert!(error.contains(says), "{settings}: {error}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = parse(&format!("{EXAMPLE}\nunknown = 1\n")).expect_err("unknown key");
        assert!(error.to_string().contains("unknown"), "{error}");
    }
}
