//! The `deployer` library: everything the binary does, callable from tests.
//!
//! Planning is pure (`stacks`, `plan`: templates + `deploy.toml` -> the stacks oponn needs,
//! their parameters, and diffs against what is deployed); the AWS calls sit in one thin module
//! per service (`cloudformation`, `service`, `pipeline`), over the SDK's clients gathered in
//! [`aws::Aws`], so tests drive the same code against moto or the SDK's test doubles. The
//! commands (`commands`) compose the two.

pub mod aws;
pub mod cli;
pub mod cloudformation;
pub mod commands;
pub mod config;
pub mod console;
pub mod diagnose;
pub mod error;
pub mod pace;
pub mod pipeline;
pub mod plan;
pub mod preflight;
pub mod readiness;
pub mod service;
pub mod stacks;
pub mod template;
