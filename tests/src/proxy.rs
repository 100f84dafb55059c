//! A TCP proxy a test puts between the app and one server, to cut and restore the connection.
//!
//! Cutting closes every open connection and makes new ones close as soon as they are accepted,
//! which is what a crashed or unreachable server looks like to a client. Each test owns its
//! proxy, so an outage in one test never touches another.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

use tokio::{
    net::{TcpListener, TcpStream},
    task::{AbortHandle, JoinHandle},
};

pub struct TcpProxy {
    address: SocketAddr,
    cut: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    acceptor: JoinHandle<()>,
}

impl TcpProxy {
    /// Starts a proxy on 127.0.0.1 (a free port) that forwards to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let acceptor = tokio::spawn(accept(
            listener,
            upstream.to_owned(),
            cut.clone(),
            connections.clone(),
        ));
        Ok(Self {
            address,
            cut,
            connections,
            acceptor,
        })
    }

    /// `127.0.0.1:<port>` of the proxy.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Drops every open connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for connection in self.connections.lock().expect("proxy lock").drain(..) {
            connection.abort();
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut();
    }
}

async fn accept(
    listener: TcpListener,
    upstream: String,
    cut: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
) {
    while let Ok((mut client, _)) = listener.accept().await {
        if cut.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let upstream = upstream.clone();
        let forward = tokio::spawn(async move {
            if let Ok(mut server) = TcpStream::connect(&upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
        let mut open = connections.lock().expect("proxy lock");
        open.retain(|connection| !connection.is_finished());
        open.push(forward.abort_handle());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 64];
                    while let Ok(n) = socket.read(&mut buffer).await {
                        if n == 0 || socket.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        address
    }

    async fn round_trip(stream: &mut TcpStream) -> std::io::Result<usize> {
        stream.write_all(b"ping").await?;
        let mut buffer = [0u8; 4];
        stream.read(&mut buffer).await
    }

    #[tokio::test]
    async fn a_cut_closes_open_connections_and_refuses_new_ones_until_restored() {
        let proxy = TcpProxy::start(&echo_server().await.to_string())
            .await
            .expect("proxy starts");
        let mut open = TcpStream::connect(proxy.address()).await.expect("connect");
        assert_eq!(round_trip(&mut open).await.expect("echo"), 4);

        proxy.cut();
        assert!(matches!(round_trip(&mut open).await, Ok(0) | Err(_)));
        let mut refused = TcpStream::connect(proxy.address()).await.expect("accepted");
        assert!(matches!(round_trip(&mut refused).await, Ok(0) | Err(_)));

        proxy.restore();
        let mut again = TcpStream::connect(proxy.address()).await.expect("connect");
        assert_eq!(round_trip(&mut again).await.expect("echo"), 4);
    }
}
