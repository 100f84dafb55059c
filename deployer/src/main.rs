//! `deployer`: plans, applies, verifies and tears down oponn's AWS infrastructure.
fn main() {}
