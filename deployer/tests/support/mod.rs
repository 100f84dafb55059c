//! Shared by the deployer's integration tests: a moto server per test, and a deployer wired to
//! it or to the SDK's test doubles.

#![allow(dead_code, reason = "each test binary uses part of it")]

pub mod balancer;
pub mod doubles;
pub mod moto;

use std::{path::PathBuf, time::Duration};

use deployer::{
    aws::Aws,
    commands::Deployer,
    config::{DeployConfig, QueueKind, WriteMode},
    console::Console,
    pace::Pace,
};

pub fn templates() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra-templates")
}

/// The example config, with no instances to launch (moto's Auto Scaling never terminates
/// them, which blocks deleting the VPC) and a first image (moto runs no pipeline).
pub fn config() -> DeployConfig {
    let text = include_str!("../../../deploy.example.toml")
        .replace("min_instances = 1", "min_instances = 0")
        .replace(
            "# image = \"123456789012.dkr.ecr.eu-west-1.amazonaws.com/oponn-dev:<commit>\"",
            "image = \"123456789012.dkr.ecr.eu-west-1.amazonaws.com/oponn-dev:first\"",
        );
    let mut config = DeployConfig::parse(std::path::Path::new("deploy.toml"), &text)
        .expect("the test config parses");
    config.templates = templates();
    config
}

/// [`config`] with write-behind on SQS: the queue stack, and the service using it.
pub fn behind_on_sqs() -> DeployConfig {
    let mut config = config();
    config.service.write_mode = WriteMode::Behind;
    config.service.queue = QueueKind::Sqs;
    config
}

pub fn deployer(config: DeployConfig, aws: Aws) -> Deployer {
    Deployer {
        config,
        aws,
        console: Console::capture(),
        pace: Pace::immediate(Duration::from_secs(30)),
    }
}
