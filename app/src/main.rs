//! The `oponn` binary: parse the command line and hand over to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    oponn::cli::run(oponn::cli::Cli::parse()).await
}
