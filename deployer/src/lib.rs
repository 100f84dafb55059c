//! The `deployer` library: everything the binary does, callable from tests.
//!
//! Planning is pure (templates + `deploy.toml` -> the stacks oponn needs and their parameters);
//! the AWS SDK clients sit behind one thin wrapper per service, so tests drive the same code
//! against moto or against the SDK's own test doubles.

pub mod template;
