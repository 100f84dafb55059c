//! The `oponn` binary: parse the command line and hand over to the library.

use clap::Parser;

/// mimalloc instead of the system allocator: a cached read allocates a few hundred small
/// objects, and glibc's malloc was 14% of its CPU (README, Measured, has the before and after).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Before any TLS client (Redis, MongoDB, the source API) is built.
    oponn::cache::install_crypto_provider();
    oponn::cli::run(oponn::cli::Cli::parse()).await
}
