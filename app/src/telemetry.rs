//! Logs: `tracing` to stdout, JSON when stdout is not a terminal (containers, CI), human-readable
//! on a terminal. Set once, by the binary; library code only emits events and spans.

use std::io::IsTerminal;

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. Call once, at the top of `main`.
pub fn init(settings: &LogSettings) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&settings.filter)
        .map_err(|err| anyhow::anyhow!("RUST_LOG={:?} is not valid: {err}", settings.filter))?;
    let json = match settings.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let builder = fmt().with_env_filter(filter).with_target(true);
    let installed = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.compact().try_init()
    };
    installed.map_err(|err| anyhow::anyhow!("could not install the log subscriber: {err}"))
}
