//! The stacks oponn needs, derived from `deploy.toml` and the templates alone: names,
//! templates, parameters, and the order they are applied in (and deleted in, reversed).
//!
//! Each stack imports only from stacks before it, so applying in [`Layer::ALL`] order never
//! meets a missing export, and deleting in reverse never removes an export still imported.
//! The pipeline imports nothing: it addresses the service by name, so it can outlive the
//! cluster and service stacks (`down` keeps it, with the images, unless told otherwise).
//! The queue stack (only with `queue = "sqs"`) imports nothing either; the service, after
//! it, imports its queue URLs and access policy. It holds acknowledged writes MongoDB may
//! not have yet, so `down` keeps it too unless told otherwise.
//!
//! The cache stack (only with `[cache] managed = true`) imports the network's private
//! subnets and the cluster's instance security group; the service imports its REDIS_URL
//! secret. With write-through it is a cache only (every record it holds is MongoDB's, read
//! again on a miss), so `down` deletes it. With write-behind it also holds acknowledged
//! writes MongoDB may not have yet (pending records, and on `queue = "redis"` the queue
//! itself), so `down` keeps it unless told otherwise, and with it the cluster and network
//! stacks it imports from ([`Layer::imports_from`]): CloudFormation refuses to delete an
//! export another stack imports.

use std::{collections::BTreeMap, fmt};

use crate::{
    config::{DeployConfig, Https, WriteMode},
    template::{Template, TemplateError},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    Network,
    Cluster,
    Pipeline,
    Queue,
    Cache,
    Service,
}

impl Layer {
    /// Apply order, of every layer a deployment can have ([`layers`]: the ones it has).
    pub const ALL: [Layer; 6] = [
        Layer::Network,
        Layer::Cluster,
        Layer::Pipeline,
        Layer::Queue,
        Layer::Cache,
        Layer::Service,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Layer::Network => "network",
            Layer::Cluster => "cluster",
            Layer::Pipeline => "pipeline",
            Layer::Queue => "queue",
            Layer::Cache => "cache",
            Layer::Service => "service",
        }
    }

    /// Whether deleting the stack deletes data (container images, build artifacts; writes
    /// not yet persisted).
    pub fn holds_data(self, config: &DeployConfig) -> bool {
        self.data(config).is_some()
    }

    /// What deleting the stack would lose, said to the person running `down`. The cache's
    /// depends on the write mode `deploy.toml` has now: drain before going back to
    /// write-through (deployer/README.md, "Redis in AWS").
    pub fn data(self, config: &DeployConfig) -> Option<&'static str> {
        match self {
            Layer::Pipeline => Some("the images"),
            // How to check it drained: deployer/README.md, "Write-behind on SQS".
            Layer::Queue => Some("acknowledged writes MongoDB may not have yet"),
            Layer::Cache => match config.service.write_mode {
                WriteMode::Behind => Some("acknowledged writes MongoDB may not have yet"),
                WriteMode::Through => None,
            },
            Layer::Network | Layer::Cluster | Layer::Service => None,
        }
    }

    /// The layers whose exports this one imports (every `*Stack` parameter names one of
    /// them): a stack kept by `down` keeps these too.
    pub fn imports_from(self) -> &'static [Layer] {
        match self {
            Layer::Network | Layer::Pipeline | Layer::Queue => &[],
            Layer::Cluster => &[Layer::Network],
            Layer::Cache => &[Layer::Network, Layer::Cluster],
            Layer::Service => &[Layer::Network, Layer::Cluster, Layer::Queue, Layer::Cache],
        }
    }

    /// Whether this deployment has the layer: the queue only with `queue = "sqs"`, the cache
    /// only with `[cache] managed = true`.
    pub fn is_configured(self, config: &DeployConfig) -> bool {
        match self {
            Layer::Queue => config.service.queue_on_sqs(),
            Layer::Cache => config.cache.managed,
            Layer::Network | Layer::Cluster | Layer::Pipeline | Layer::Service => true,
        }
    }
}

/// The layers this deployment has, in apply order.
pub fn layers(config: &DeployConfig) -> Vec<Layer> {
    Layer::ALL
        .into_iter()
        .filter(|layer| layer.is_configured(config))
        .collect()
}

impl fmt::Display for Layer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// One stack as it should be.
#[derive(Debug, Clone)]
pub struct StackSpec {
    pub layer: Layer,
    pub name: String,
    pub template: Template,
    pub parameters: BTreeMap<String, String>,
}

/// The names the deployer addresses resources by, all derived from `{app}-{stage}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub cluster: String,
    pub service: String,
    pub pipeline: String,
    pub repository: String,
    /// The service's log group (service.yaml: `/ecs/{app}-{stage}`).
    pub log_group: String,
}

impl Names {
    pub fn of(config: &DeployConfig) -> Self {
        let prefix = config.prefix();
        Self {
            cluster: prefix.clone(),
            service: prefix.clone(),
            pipeline: prefix.clone(),
            log_group: format!("/ecs/{prefix}"),
            repository: prefix,
        }
    }
}

pub fn stack_name(config: &DeployConfig, layer: Layer) -> String {
    format!("{}-{}", config.prefix(), layer.name())
}

/// The service's image when none is known yet (no service, no `service.image` in the
/// config): shown by `plan`; `up` waits for the pipeline's first build instead.
pub const IMAGE_FROM_FIRST_BUILD: &str = "(built by the pipeline's first run)";

/// Every stack of this deployment, in apply order. `image` is the service's image (see `up`).
pub fn specs(config: &DeployConfig, image: &str) -> Result<Vec<StackSpec>, TemplateError> {
    layers(config)
        .into_iter()
        .map(|layer| spec(config, layer, image))
        .collect()
}

pub fn spec(config: &DeployConfig, layer: Layer, image: &str) -> Result<StackSpec, TemplateError> {
    let template = Template::load(&config.templates.join(format!("{}.yaml", layer.name())))?;
    let parameters = parameters(config, layer, image);
    check_parameters(&template, &parameters)?;
    Ok(StackSpec {
        layer,
        name: stack_name(config, layer),
        template,
        parameters,
    })
}

fn parameters(config: &DeployConfig, layer: Layer, image: &str) -> BTreeMap<String, String> {
    let names = Names::of(config);
    let mut parameters = BTreeMap::from([
        ("App".to_owned(), config.app.to_string()),
        ("Stage".to_owned(), config.stage.to_string()),
    ]);
    let network = stack_name(config, Layer::Network);
    let cluster = stack_name(config, Layer::Cluster);
    // Empty: the service uses the Redis stream and imports nothing from a queue stack.
    let queue = match config.service.queue_on_sqs() {
        true => stack_name(config, Layer::Queue),
        false => String::new(),
    };
    // Empty: the service's REDIS_URL is the secret deploy.toml names.
    let cache = match config.cache.managed {
        true => stack_name(config, Layer::Cache),
        false => String::new(),
    };
    let nat = config.network.nat.to_string();
    // The alarms' topic (service) and the pipeline's failures' topic mail the same address.
    let alarm_email = config.alarms.email.clone().unwrap_or_default();
    let more: Vec<(&str, String)> = match layer {
        Layer::Network => vec![("Nat", nat)],
        Layer::Queue => vec![],
        Layer::Cache => vec![
            ("NetworkStack", network),
            ("ClusterStack", cluster),
            ("NodeType", config.cache.node_type.clone()),
        ],
        Layer::Cluster => vec![
            ("NetworkStack", network),
            ("Nat", nat),
            ("InstanceType", config.cluster.instance_type.clone()),
            ("MinInstances", config.cluster.min_instances.to_string()),
            ("MaxInstances", config.cluster.max_instances.to_string()),
        ],
        Layer::Pipeline => vec![
            ("GitHubRepository", config.github.repository.clone()),
            ("Branch", config.github.branch.clone()),
            ("ClusterName", names.cluster),
            ("ServiceName", names.service),
            ("AlarmEmail", alarm_email),
        ],
        Layer::Service => {
            let service = &config.service;
            let (certificate, domain, zone) = match service.https() {
                Https::Off => (String::new(), String::new(), String::new()),
                Https::Managed {
                    domain,
                    hosted_zone_id,
                } => (String::new(), domain, hosted_zone_id),
                Https::OwnCertificate {
                    certificate_arn,
                    domain,
                } => (certificate_arn, domain.unwrap_or_default(), String::new()),
            };
            vec![
                ("NetworkStack", network),
                ("ClusterStack", cluster),
                ("ImageUri", image.to_owned()),
                ("DesiredCount", service.desired_tasks.to_string()),
                ("MinTasks", service.min_tasks.to_string()),
                ("MaxTasks", service.max_tasks.to_string()),
                ("ContainerCpu", service.cpu.to_string()),
                ("ContainerMemory", service.memory.to_string()),
                ("WorkerThreads", service.worker_threads().to_string()),
                ("MongoDbDatabase", service.mongodb_database.clone()),
                ("MongoDbUriSecretArn", config.secrets.mongodb_uri.clone()),
                (
                    "RedisUrlSecretArn",
                    config.secrets.redis_url.clone().unwrap_or_default(),
                ),
                ("ApiTokensSecretArn", config.secrets.api_tokens.clone()),
                ("CertificateArn", certificate),
                ("Domain", domain),
                ("HostedZoneId", zone),
                ("WriteMode", service.write_mode.as_str().to_owned()),
                ("QueueStack", queue),
                ("CacheStack", cache),
                ("AlarmEmail", alarm_email),
            ]
        }
    };
    parameters.extend(more.into_iter().map(|(key, value)| (key.to_owned(), value)));
    parameters
}

/// Every parameter passed is declared, and every declared one without a default is passed:
/// a template and the deployer that drift apart fail here, before any AWS call.
fn check_parameters(
    template: &Template,
    parameters: &BTreeMap<String, String>,
) -> Result<(), TemplateError> {
    let declared = template.parameters();
    let shape = |message: String| TemplateError::Shape {
        path: template.path.clone(),
        message,
    };
    if let Some(unknown) = parameters.keys().find(|name| !declared.contains_key(*name)) {
        return Err(shape(format!(
            "the deployer passes {unknown}, which the template does not declare"
        )));
    }
    if let Some((missing, _)) = declared
        .iter()
        .find(|(name, default)| default.is_none() && !parameters.contains_key(*name))
    {
        return Err(shape(format!(
            "the template needs {missing}, which the deployer does not pass"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::config::{QueueKind, WriteMode};

    fn config() -> DeployConfig {
        let mut config = DeployConfig::parse(
            Path::new("deploy.toml"),
            include_str!("../../deploy.example.toml"),
        )
        .expect("the example parses");
        config.templates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra-templates");
        config
    }

    #[test]
    fn stacks_are_applied_network_cluster_pipeline_service() {
        let specs = specs(&config(), "repo:tag").expect("the templates load");
        let names: Vec<&str> = specs.iter().map(|spec| spec.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "oponn-dev-network",
                "oponn-dev-cluster",
                "oponn-dev-pipeline",
                "oponn-dev-service"
            ]
        );
    }

    fn behind_on_sqs() -> DeployConfig {
        let mut config = config();
        config.service.write_mode = WriteMode::Behind;
        config.service.queue = QueueKind::Sqs;
        config
    }

    #[test]
    fn the_queue_stack_comes_with_sqs_only_and_before_the_service() {
        let names = |config: &DeployConfig| -> Vec<String> {
            specs(config, "repo:tag")
                .expect("the templates load")
                .into_iter()
                .map(|spec| spec.name)
                .collect()
        };
        assert_eq!(
            names(&behind_on_sqs()),
            [
                "oponn-dev-network",
                "oponn-dev-cluster",
                "oponn-dev-pipeline",
                "oponn-dev-queue",
                "oponn-dev-service"
            ]
        );
        let mut on_redis = config();
        on_redis.service.write_mode = WriteMode::Behind;
        assert!(!names(&on_redis).contains(&"oponn-dev-queue".to_owned()));
        assert!(!names(&config()).contains(&"oponn-dev-queue".to_owned()));
    }

    #[test]
    fn the_service_imports_the_queue_stack_only_on_sqs_and_gets_the_write_mode() {
        let on_sqs = spec(&behind_on_sqs(), Layer::Service, "repo:abc").expect("loads");
        assert_eq!(on_sqs.parameters["WriteMode"], "behind");
        assert_eq!(on_sqs.parameters["QueueStack"], "oponn-dev-queue");

        let through = spec(&config(), Layer::Service, "repo:abc").expect("loads");
        assert_eq!(through.parameters["WriteMode"], "through");
        assert_eq!(through.parameters["QueueStack"], "");

        let mut on_redis = config();
        on_redis.service.write_mode = WriteMode::Behind;
        let on_redis = spec(&on_redis, Layer::Service, "repo:abc").expect("loads");
        assert_eq!(on_redis.parameters["WriteMode"], "behind");
        assert_eq!(on_redis.parameters["QueueStack"], "");

        let queue = spec(&behind_on_sqs(), Layer::Queue, "").expect("loads");
        assert_eq!(queue.name, "oponn-dev-queue");
        assert_eq!(
            queue.parameters.keys().collect::<Vec<_>>(),
            ["App", "Stage"],
            "the visibility timeout keeps its default; the app sets it per receive"
        );
    }

    #[test]
    fn every_stack_imports_only_from_stacks_applied_before_it() {
        for config in [config(), behind_on_sqs(), managed_cache()] {
            let specs = specs(&config, "repo:tag").expect("the templates load");
            for (position, spec) in specs.iter().enumerate() {
                let before: Vec<&str> = specs[..position].iter().map(|s| s.name.as_str()).collect();
                for (name, value) in &spec.parameters {
                    if name.ends_with("Stack") && !value.is_empty() {
                        assert!(
                            before.contains(&value.as_str()),
                            "{} imports from {value} ({name}), not applied before it",
                            spec.name
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_queue_holds_data_as_the_pipeline_does() {
        let holding: Vec<Layer> = Layer::ALL
            .into_iter()
            .filter(|layer| layer.holds_data(&config()))
            .collect();
        assert_eq!(holding, [Layer::Pipeline, Layer::Queue]);
    }

    #[test]
    fn nat_reaches_the_network_and_the_cluster_alike() {
        for nat in [false, true] {
            let mut config = config();
            config.network.nat = nat;
            for layer in [Layer::Network, Layer::Cluster] {
                let spec = spec(&config, layer, "").expect("loads");
                assert_eq!(spec.parameters["Nat"], nat.to_string(), "{}", spec.name);
            }
        }
    }

    fn managed_cache() -> DeployConfig {
        let mut config = config();
        config.cache.managed = true;
        config.secrets.redis_url = None;
        config
    }

    #[test]
    fn the_cache_holds_data_only_with_write_behind() {
        let mut behind = managed_cache();
        assert!(
            !Layer::Cache.holds_data(&behind),
            "write-through: a cache only"
        );
        behind.service.write_mode = WriteMode::Behind;
        assert!(
            Layer::Cache.holds_data(&behind),
            "write-behind: pending writes"
        );
    }

    #[test]
    fn the_cache_stack_comes_when_managed_after_the_cluster_and_before_the_service() {
        let names: Vec<String> = specs(&managed_cache(), "repo:tag")
            .expect("the templates load")
            .into_iter()
            .map(|spec| spec.name)
            .collect();
        assert_eq!(
            names,
            [
                "oponn-dev-network",
                "oponn-dev-cluster",
                "oponn-dev-pipeline",
                "oponn-dev-cache",
                "oponn-dev-service"
            ]
        );
        let cache = spec(&managed_cache(), Layer::Cache, "").expect("loads");
        assert_eq!(cache.parameters["NetworkStack"], "oponn-dev-network");
        assert_eq!(cache.parameters["ClusterStack"], "oponn-dev-cluster");
        assert_eq!(cache.parameters["NodeType"], "cache.t4g.micro");
    }

    #[test]
    fn the_service_takes_the_managed_caches_secret_or_the_configured_one() {
        let managed = spec(&managed_cache(), Layer::Service, "repo:abc").expect("loads");
        assert_eq!(managed.parameters["CacheStack"], "oponn-dev-cache");
        assert_eq!(managed.parameters["RedisUrlSecretArn"], "");
        let own = spec(&config(), Layer::Service, "repo:abc").expect("loads");
        assert_eq!(own.parameters["CacheStack"], "");
        assert!(own.parameters["RedisUrlSecretArn"].starts_with("arn:aws:secretsmanager:"));
    }

    #[test]
    fn every_stack_parameter_names_a_layer_the_stack_imports_from() {
        let mut everything = managed_cache();
        everything.service.write_mode = WriteMode::Behind;
        everything.service.queue = QueueKind::Sqs;
        for spec in specs(&everything, "repo:tag").expect("the templates load") {
            let imported: Vec<String> = spec
                .layer
                .imports_from()
                .iter()
                .map(|layer| stack_name(&everything, *layer))
                .collect();
            for (name, value) in &spec.parameters {
                if name.ends_with("Stack") {
                    assert!(
                        imported.contains(value),
                        "{}: {name} = {value} is not in imports_from",
                        spec.name
                    );
                }
            }
        }
    }

    #[test]
    fn every_template_gets_exactly_the_parameters_it_declares() {
        // check_parameters runs inside spec(); this pins that it passes for every layer.
        for config in [config(), behind_on_sqs(), managed_cache()] {
            for spec in specs(&config, "repo:tag").expect("the templates load") {
                assert!(spec.parameters.contains_key("App"), "{}", spec.name);
            }
        }
    }

    #[test]
    fn the_service_gets_the_image_and_the_secret_arns() {
        let spec = spec(&config(), Layer::Service, "repo:abc").expect("loads");
        assert_eq!(spec.parameters["ImageUri"], "repo:abc");
        assert_eq!(spec.parameters["ClusterStack"], "oponn-dev-cluster");
        assert!(spec.parameters["MongoDbUriSecretArn"].starts_with("arn:aws:secretsmanager:"));
        assert_eq!(spec.parameters["CertificateArn"], "");
    }

    #[test]
    fn the_service_gets_one_worker_thread_per_vcpu_of_its_tasks() {
        let mut config = config();
        for (cpu, threads) in [(512, "1"), (2048, "2")] {
            config.service.cpu = cpu;
            let spec = spec(&config, Layer::Service, "repo:abc").expect("loads");
            assert_eq!(spec.parameters["WorkerThreads"], threads, "cpu = {cpu}");
        }
    }

    #[test]
    fn a_domain_in_a_hosted_zone_reaches_the_service_without_a_certificate_arn() {
        let mut managed = config();
        managed.service.domain = Some("api.example.com".into());
        managed.service.hosted_zone_id = Some("Z0123456789ABC".into());
        let service = spec(&managed, Layer::Service, "repo:abc").expect("loads");
        assert_eq!(service.parameters["Domain"], "api.example.com");
        assert_eq!(service.parameters["HostedZoneId"], "Z0123456789ABC");
        assert_eq!(
            service.parameters["CertificateArn"], "",
            "the stack requests one"
        );

        let mut own = config();
        own.service.certificate_arn =
            Some("arn:aws:acm:eu-west-1:123456789012:certificate/0f3e".into());
        let service = spec(&own, Layer::Service, "repo:abc").expect("loads");
        assert!(service.parameters["CertificateArn"].starts_with("arn:aws:acm:"));
        assert_eq!(service.parameters["Domain"], "");
        assert_eq!(service.parameters["HostedZoneId"], "");
    }

    #[test]
    fn the_pipeline_mails_its_failures_to_the_alarms_address() {
        let mut config = config();
        assert_eq!(
            spec(&config, Layer::Pipeline, "")
                .expect("loads")
                .parameters["AlarmEmail"],
            ""
        );
        config.alarms.email = Some("ops@example.com".into());
        for layer in [Layer::Pipeline, Layer::Service] {
            let stack = spec(&config, layer, "repo:abc").expect("loads");
            assert_eq!(stack.parameters["AlarmEmail"], "ops@example.com", "{layer}");
        }
    }

    #[test]
    fn a_parameter_the_template_does_not_declare_is_refused() {
        let mut parameters = parameters(&config(), Layer::Network, "x");
        parameters.insert("Surprise".into(), "1".into());
        let template = Template::load(&config().templates.join("network.yaml")).unwrap();
        let error = check_parameters(&template, &parameters).expect_err("undeclared");
        assert!(error.to_string().contains("Surprise"), "{error}");
    }

    #[test]
    fn a_required_parameter_left_out_is_refused() {
        let mut parameters = parameters(&config(), Layer::Service, "x");
        parameters.remove("ImageUri");
        let template = Template::load(&config().templates.join("service.yaml")).unwrap();
        let error = check_parameters(&template, &parameters).expect_err("missing");
        assert!(error.to_string().contains("ImageUri"), "{error}");
    }
}
