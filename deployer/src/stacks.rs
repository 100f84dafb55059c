//! The stacks oponn needs, derived from `deploy.toml` and the templates alone: names,
//! templates, parameters, and the order they are applied in (and deleted in, reversed).
//!
//! Each stack imports only from stacks before it, so applying in [`Layer::ALL`] order never
//! meets a missing export, and deleting in reverse never removes an export still imported.
//! The pipeline imports nothing: it addresses the service by name, so it can outlive the
//! cluster and service stacks (`down` keeps it, with the images, unless told otherwise).

use std::{collections::BTreeMap, fmt};

use crate::{
    config::DeployConfig,
    template::{Template, TemplateError},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    Network,
    Cluster,
    Pipeline,
    Service,
}

impl Layer {
    /// Apply order.
    pub const ALL: [Layer; 4] = [
        Layer::Network,
        Layer::Cluster,
        Layer::Pipeline,
        Layer::Service,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Layer::Network => "network",
            Layer::Cluster => "cluster",
            Layer::Pipeline => "pipeline",
            Layer::Service => "service",
        }
    }

    /// Whether deleting the stack deletes data (container images, build artifacts).
    pub fn holds_data(self) -> bool {
        self == Layer::Pipeline
    }
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
}

impl Names {
    pub fn of(config: &DeployConfig) -> Self {
        let prefix = config.prefix();
        Self {
            cluster: prefix.clone(),
            service: prefix.clone(),
            pipeline: prefix.clone(),
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

/// Every stack, in apply order. `image` is the service's image (see `up`).
pub fn specs(config: &DeployConfig, image: &str) -> Result<Vec<StackSpec>, TemplateError> {
    Layer::ALL
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
    let more: Vec<(&str, String)> = match layer {
        Layer::Network => vec![],
        Layer::Cluster => vec![
            ("NetworkStack", network),
            ("InstanceType", config.cluster.instance_type.clone()),
            ("MinInstances", config.cluster.min_instances.to_string()),
            ("MaxInstances", config.cluster.max_instances.to_string()),
        ],
        Layer::Pipeline => vec![
            ("GitHubRepository", config.github.repository.clone()),
            ("Branch", config.github.branch.clone()),
            ("ClusterName", names.cluster),
            ("ServiceName", names.service),
        ],
        Layer::Service => {
            let service = &config.service;
            vec![
                ("NetworkStack", network),
                ("ClusterStack", cluster),
                ("ImageUri", image.to_owned()),
                ("DesiredCount", service.desired_tasks.to_string()),
                ("MinTasks", service.min_tasks.to_string()),
                ("MaxTasks", service.max_tasks.to_string()),
                ("ContainerCpu", service.cpu.to_string()),
                ("ContainerMemory", service.memory.to_string()),
                ("MongoDbDatabase", service.mongodb_database.clone()),
                ("MongoDbUriSecretArn", config.secrets.mongodb_uri.clone()),
                ("RedisUrlSecretArn", config.secrets.redis_url.clone()),
                ("ApiTokensSecretArn", config.secrets.api_tokens.clone()),
                (
                    "CertificateArn",
                    service.certificate_arn.clone().unwrap_or_default(),
                ),
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

    #[test]
    fn every_template_gets_exactly_the_parameters_it_declares() {
        // check_parameters runs inside spec(); this pins that it passes for every layer.
        for spec in specs(&config(), "repo:tag").expect("the templates load") {
            assert!(spec.parameters.contains_key("App"), "{}", spec.name);
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
