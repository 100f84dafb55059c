//! A stand-in for the service's load balancer: an HTTP server on 127.0.0.1 that answers
//! every request with the next of its canned responses (the last one repeats) and counts the
//! requests, so `verify` can read `/readyz` from it as it would through the real one.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    task::JoinHandle,
};

pub struct LoadBalancer {
    pub url: String,
    requests: Arc<AtomicUsize>,
    paths: Arc<std::sync::Mutex<Vec<String>>>,
    server: JoinHandle<()>,
}

impl LoadBalancer {
    /// Answers `(status, JSON body)` in order, repeating the last.
    pub async fn answering(responses: Vec<(u16, &'static str)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let requests = Arc::new(AtomicUsize::new(0));
        let paths = Arc::new(std::sync::Mutex::new(Vec::new()));
        let server = tokio::spawn({
            let (requests, paths) = (requests.clone(), paths.clone());
            async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    let served = requests.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = responses[served.min(responses.len() - 1)];
                    let mut request = Vec::new();
                    let mut buffer = [0_u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(read) => request.extend_from_slice(&buffer[..read]),
                        }
                    }
                    let line = String::from_utf8_lossy(&request);
                    if let Some(path) = line.split_whitespace().nth(1) {
                        paths.lock().expect("no panics").push(path.to_owned());
                    }
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                }
            }
        });
        Self {
            url,
            requests,
            paths,
            server,
        }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn paths(&self) -> Vec<String> {
        self.paths.lock().expect("no panics").clone()
    }
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        self.server.abort();
    }
}
