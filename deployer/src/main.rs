//! `deployer`: plans, applies, verifies and tears down oponn's AWS infrastructure.
//! Only wiring: parse the command line, run, print the error.

use std::process::ExitCode;

use clap::Parser;
use deployer::cli::{run, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            #[allow(clippy::print_stderr, reason = "a command line tool's last word")]
            {
                eprintln!("error: {error}");
            }
            ExitCode::FAILURE
        }
    }
}
