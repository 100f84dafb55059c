//! The deployer's failures, each with what to do about it. `main` prints them; tests match
//! on them.

use std::time::Duration;

use aws_smithy_types::error::display::DisplayErrorContext;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),

    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),

    #[error(
        "no AWS credentials: {0}\n  Configure a profile (aws configure sso / AWS_PROFILE) or set \
         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, then retry."
    )]
    MissingCredentials(String),

    #[error(
        "the GitHub connection is {status}, not AVAILABLE: {arn}\n  Approve it once: AWS console \
         > Developer Tools > Settings > Connections > {name} > Update pending connection \
         (https://console.aws.amazon.com/codesuite/settings/connections?region={region}), \
         then run `deployer release`."
    )]
    ConnectionNotApproved {
        arn: String,
        name: String,
        status: String,
        region: String,
    },

    #[error("stack {stack} is {status}: {hint}")]
    StackStuck {
        stack: String,
        status: String,
        hint: &'static str,
    },

    #[error("stack {stack} failed and ended {status}\n  first failure: {reason}")]
    StackFailed {
        stack: String,
        status: String,
        reason: String,
    },

    #[error(
        "DEPLOYMENT ROLLED BACK by the ECS deployment circuit breaker: service {service} did not \
         become healthy on {task_definition}\n  reason: {reason}\n  the service runs {running} \
         again{events}"
    )]
    RolledBack {
        service: String,
        task_definition: String,
        running: String,
        reason: String,
        events: String,
    },

    #[error("{what} is not healthy: {detail}")]
    Unhealthy { what: String, detail: String },

    #[error("pipeline {pipeline} execution {execution} {status}: {detail}")]
    PipelineFailed {
        pipeline: String,
        execution: String,
        status: String,
        detail: String,
    },

    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },

    #[error("{0}")]
    NotFound(String),

    #[error("AWS {operation}: {message}")]
    Aws {
        operation: &'static str,
        message: String,
    },
}

impl DeployError {
    /// An SDK error, with its whole chain of causes (the service's message included).
    pub fn aws<E: std::error::Error>(operation: &'static str) -> impl FnOnce(E) -> Self {
        move |error| DeployError::Aws {
            operation,
            message: DisplayErrorContext(&error).to_string(),
        }
    }
}
