//! The benchmark's ceiling: the smallest axum server, on the same runtime and allocator as
//! `oponn`. `make bench` compares the service's endpoints against it. Listens on `HELLO_LISTEN`.

use axum::{routing::get, Router};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let address = std::env::var("HELLO_LISTEN").unwrap_or_else(|_| "127.0.0.1:8099".into());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    let router = Router::new().route("/", get(|| async { "Hello, World!" }));
    axum::serve(listener, router).await?;
    Ok(())
}
