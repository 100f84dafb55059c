//! The deployer's failures, each with what to do about it. `main` prints them; tests match
//! on them.

use std::time::Duration;

use aws_smithy_types::error::metadata::ProvideErrorMetadata;

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
        "the GitHub connection {name} is {status}, not AVAILABLE: {arn}\n  Approve it once, in \
         the console (AWS offers no API for it): open {console_url}\n  (or Developer Tools > \
         Settings > Connections > {name}), choose Update pending connection, and \
         install or choose the AWS Connector for GitHub app for the repository.\n  Then {then}."
    )]
    ConnectionNotApproved {
        arn: String,
        name: String,
        status: String,
        console_url: String,
        /// What to run once approved, for the command that stopped.
        then: &'static str,
    },

    #[error(
        "preflight failed, nothing was changed:{}",
        .0.iter().map(|failure| format!("\n  - {failure}")).collect::<String>()
    )]
    Preflight(Vec<String>),

    #[error("{0}: not confirmed, nothing was changed (`--yes` answers yes)")]
    NotConfirmed(String),

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

    #[error(
        "the service runs, but its data path is broken: {down} (read through the load \
         balancer at {endpoint}){advice}"
    )]
    DataPath {
        endpoint: String,
        /// Each component that is not ok, and its state: `MongoDB down, Redis down`.
        down: String,
        advice: String,
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

    #[error("not found: {0}")]
    NotFound(String),

    #[error("AWS {operation}: {message}")]
    Aws {
        operation: &'static str,
        message: String,
    },
}

impl DeployError {
    /// An SDK error as one readable line: the service's code and message when it answered,
    /// else the chain of causes (connection refused, timeout, an unparseable answer).
    pub fn aws<E>(operation: &'static str) -> impl FnOnce(E) -> Self
    where
        E: std::error::Error + ProvideErrorMetadata,
    {
        move |error| DeployError::Aws {
            operation,
            message: describe_sdk_error(&error),
        }
    }
}

pub fn describe_sdk_error<E>(error: &E) -> String
where
    E: std::error::Error + ProvideErrorMetadata,
{
    if let Some(message) = error.message() {
        return match error.code() {
            Some(code) => format!("{code}: {message}"),
            None => message.to_owned(),
        };
    }
    causes(error)
}

/// An error and its causes, on one line.
pub fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
