//! A TCP proxy a test puts between the app and one server, to cut and restore the connection.
//!
//! Cutting closes every open connection and stops listening, so new connections are refused:
//! what a crashed server looks like to a client. (A server that is alive but silent is a
//! paused [`crate::RedisServer`].) Each test owns its proxy, so an outage in one test never
//! touches another.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{
    net::{TcpListener, TcpSocket, TcpStream},
    task::{AbortHandle, JoinHandle},
};

pub struct TcpProxy {
    address: SocketAddr,
    upstream: String,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    acceptor: Mutex<Option<JoinHandle<()>>>,
}

impl TcpProxy {
    /// Starts a proxy on 127.0.0.1 (a free port) that forwards to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = listen("127.0.0.1:0".parse().expect("an address"))?;
        let proxy = Self {
            address: listener.local_addr()?,
            upstream: upstream.to_owned(),
            connections: Arc::default(),
            acceptor: Mutex::new(None),
        };
        proxy.serve(listener);
        Ok(proxy)
    }

    /// `127.0.0.1:<port>` of the proxy.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Drops every open connection and refuses new ones until [`TcpProxy::restore`]: once it
    /// returns, the port is closed.
    pub async fn cut(&self) {
        self.abort_all();
        let acceptor = self.acceptor.lock().expect("proxy lock").take();
        if let Some(acceptor) = acceptor {
            acceptor.abort();
            // Resolves once the task, and the listener it owns, are dropped.
            let _ = acceptor.await;
        }
    }

    /// Listens again on the same port and lets connections through.
    pub fn restore(&self) {
        if self.acceptor.lock().expect("proxy lock").is_some() {
            return;
        }
        let listener = listen(self.address).expect("the proxy's port is free again");
        self.serve(listener);
    }

    fn abort_all(&self) {
        if let Some(acceptor) = self.acceptor.lock().expect("proxy lock").as_ref() {
            acceptor.abort();
        }
        for connection in self.connections.lock().expect("proxy lock").drain(..) {
            connection.abort();
        }
    }

    fn serve(&self, listener: TcpListener) {
        let acceptor = tokio::spawn(accept(
            listener,
            self.upstream.clone(),
            self.connections.clone(),
        ));
        *self.acceptor.lock().expect("proxy lock") = Some(acceptor);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.abort_all();
    }
}

/// A listener on `address`, with `SO_REUSEADDR` so a restore can take the port back while the
/// connections of before the cut linger in `TIME_WAIT`.
fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

async fn accept(
    listener: TcpListener,
    upstream: String,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
) {
    while let Ok((mut client, _)) = listener.accept().await {
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

        proxy.cut().await;
        assert!(matches!(round_trip(&mut open).await, Ok(0) | Err(_)));
        let refused = TcpStream::connect(proxy.address()).await;
        assert_eq!(
            refused.map(drop).map_err(|error| error.kind()),
            Err(std::io::ErrorKind::ConnectionRefused)
        );

        proxy.restore();
        let mut again = TcpStream::connect(proxy.address()).await.expect("connect");
        assert_eq!(round_trip(&mut again).await.expect("echo"), 4);
    }
}
