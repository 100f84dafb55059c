//! The `oponn` command line: `serve`, `seed`, `schema`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::{config::Settings, metrics::Metrics, sample, startup, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "oponn",
    version,
    about = "A GraphQL service over MongoDB with a Redis cache"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve GraphQL over HTTP until SIGTERM or Ctrl-C.
    Serve,
    /// Load books from a JSON file (an array of books) into MongoDB, through the cache.
    /// Idempotent: records are matched by `sourceKey`, and unchanged ones are left alone.
    Seed {
        #[arg(long, default_value = "app/sample/books.json")]
        file: PathBuf,
    },
    /// Print the GraphQL schema (SDL).
    Schema,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Schema = cli.command {
        print!("{}", crate::graphql::sdl());
        return Ok(());
    }
    let settings = Settings::from_env()?;
    telemetry::init(&settings.log)?;
    match cli.command {
        Command::Serve => {
            let app = startup::Application::build(settings).await?;
            app.run_until(startup::shutdown_signal()).await
        }
        Command::Seed { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let books =
                sample::parse(&text).with_context(|| format!("parsing {}", file.display()))?;
            let datastore = startup::connect(&settings, &Metrics::new()).await?;
            datastore.store().ensure_indexes().await?;
            let (summary, ids) = datastore.upsert_books(&books).await?;
            let example: Vec<String> = ids.iter().take(3).map(|id| format!("\"{id}\"")).collect();
            tracing::info!(
                file = %file.display(),
                inserted = summary.inserted,
                changed = summary.changed,
                unchanged = summary.unchanged,
                example = %format!("{{ booksByIds(ids: [{}]) {{ id title authors }} }}", example.join(", ")),
                "seeded"
            );
            Ok(())
        }
        Command::Schema => unreachable!("handled before settings are loaded"),
    }
}
