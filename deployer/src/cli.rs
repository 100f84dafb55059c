//! The command line: `deployer [--config deploy.toml] <command>`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::{
    aws::Aws,
    commands::{Deployer, UpOptions},
    config::DeployConfig,
    console::Console,
    error::DeployError,
    pace::Pace,
};

#[derive(Debug, Parser)]
#[command(
    name = "deployer",
    version,
    about = "Plans, applies, verifies and tears down oponn's AWS infrastructure"
)]
pub struct Cli {
    /// The deployment's configuration (see deploy.example.toml).
    #[arg(long, default_value = "deploy.toml", env = "DEPLOYER_CONFIG")]
    pub config: PathBuf,
    /// Send every AWS call to this endpoint (a moto server in tests).
    #[arg(long, env = "DEPLOYER_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what `up` would change, stack by stack (CloudFormation change sets, as a diff).
    Plan,
    /// Create or update the stacks in order, following their events, then verify the service.
    Up {
        /// Do not verify the service afterwards (see `verify`).
        #[arg(long)]
        skip_verify: bool,
        /// Answer yes to every question (CI): recreate a stack left ROLLBACK_COMPLETE.
        #[arg(long)]
        yes: bool,
    },
    /// The check `up` ends with: the service steady, its targets healthy, its data path
    /// (MongoDB, Redis) ready through the load balancer (`<Url>/readyz`), the pipeline's stages.
    Verify,
    /// Stacks, service deployments, target health and the last pipeline runs.
    Status,
    /// The last lines of the service's log group (its newest streams, one per task).
    Logs {
        #[arg(long, default_value_t = 50)]
        lines: i32,
    },
    /// Start the pipeline (test, build, push, deploy) and follow it.
    Release,
    /// Deploy an image through ECS and wait; fails if the circuit breaker rolls it back.
    Rollout {
        /// A tag of the stack's ECR repository, or a whole image reference.
        #[arg(long)]
        image: String,
    },
    /// Return the service to the previous task definition revision (or `--to <revision>`).
    Rollback {
        #[arg(long)]
        to: Option<String>,
    },
    /// Delete the stacks in reverse order, keeping the image repository unless told.
    Down {
        /// Also delete the pipeline stack and the images in its repository.
        #[arg(long)]
        delete_data: bool,
    },
}

pub async fn run(cli: Cli) -> Result<(), DeployError> {
    let config = DeployConfig::load(&cli.config)?;
    let aws = Aws::connect(&config.region, cli.endpoint_url.as_deref()).await?;
    let deployer = Deployer {
        config,
        aws,
        console: Console::stdout(),
        pace: Pace::AWS,
    };
    match cli.command {
        Command::Plan => deployer.plan().await.map(drop),
        Command::Up { skip_verify, yes } => {
            deployer.up(UpOptions { skip_verify, yes }).await.map(drop)
        }
        Command::Verify => deployer.verify().await,
        Command::Status => deployer.status().await,
        Command::Logs { lines } => deployer.logs(lines).await,
        Command::Release => deployer.release().await.map(drop),
        Command::Rollout { image } => deployer.rollout(&image).await.map(drop),
        Command::Rollback { to } => deployer.rollback(to.as_deref()).await.map(drop),
        Command::Down { delete_data } => deployer.down(delete_data).await,
    }
}
