//! The AWS clients the deployer uses, built once from the environment's configuration (profile,
//! SSO, environment variables) with a region, optionally an endpoint (moto in tests), and a
//! timeout on every call. Tests build the same struct from the SDK's mocked clients.

use std::time::Duration;

use aws_config::{timeout::TimeoutConfig, BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;

use crate::error::DeployError;

#[derive(Debug, Clone)]
pub struct Aws {
    pub region: String,
    pub cloudformation: aws_sdk_cloudformation::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub pipelines: aws_sdk_codepipeline::Client,
    pub connections: aws_sdk_codestarconnections::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub iam: aws_sdk_iam::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl Aws {
    /// Loads the shared configuration and fails early, with advice, when there are no
    /// credentials (rather than on the first call, deep in a deployment).
    pub async fn connect(region: &str, endpoint_url: Option<&str>) -> Result<Self, DeployError> {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            .operation_attempt_timeout(Duration::from_secs(30))
            .operation_timeout(Duration::from_secs(90))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .timeout_config(timeouts);
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let sdk = loader.load().await;
        let provider = sdk.credentials_provider().ok_or_else(|| {
            DeployError::MissingCredentials("no credentials provider is configured".into())
        })?;
        provider
            .provide_credentials()
            .await
            .map_err(|error| DeployError::MissingCredentials(crate::error::causes(&error)))?;
        Ok(Self::from_sdk(&sdk, region))
    }

    pub fn from_sdk(sdk: &SdkConfig, region: &str) -> Self {
        Self {
            region: region.to_owned(),
            cloudformation: aws_sdk_cloudformation::Client::new(sdk),
            ecs: aws_sdk_ecs::Client::new(sdk),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(sdk),
            pipelines: aws_sdk_codepipeline::Client::new(sdk),
            connections: aws_sdk_codestarconnections::Client::new(sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(sdk),
            iam: aws_sdk_iam::Client::new(sdk),
            secrets: aws_sdk_secretsmanager::Client::new(sdk),
        }
    }
}
