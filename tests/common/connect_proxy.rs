//! A minimal HTTP CONNECT forward proxy for the outbound-proxy tests: it tunnels to 127.0.0.1
//! only, can require `Proxy-Authorization`, and counts the tunnels it opened and the credentials
//! it saw. Stops (aborting every tunnel) when dropped.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Default)]
struct Seen {
    tunnels: AtomicUsize,
    targets: Mutex<Vec<String>>,
    authorizations: Mutex<Vec<Option<String>>>,
}

pub struct ConnectProxy {
    addr: SocketAddr,
    seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl ConnectProxy {
    /// `required`: the exact `Proxy-Authorization` value to demand (else 407).
    pub async fn start(required: Option<&str>) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let required = required.map(str::to_string);
        let shared = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            let mut tunnels = tokio::task::JoinSet::new();
            while let Ok((conn, _)) = listener.accept().await {
                tunnels.spawn(serve(conn, Arc::clone(&shared), required.clone()));
            }
        });
        ConnectProxy { addr, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn tunnels(&self) -> usize {
        self.seen.tunnels.load(Ordering::SeqCst)
    }

    pub fn targets(&self) -> Vec<String> {
        self.seen.targets.lock().unwrap().clone()
    }

    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.seen.authorizations.lock().unwrap().clone()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut conn: TcpStream, seen: Arc<Seen>, required: Option<String>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let auth = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, v)| v.trim().to_string());
    seen.authorizations.lock().unwrap().push(auth.clone());
    let mut parts = request_line.split(' ');
    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
        let _ = conn
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    if required.is_some() && auth != required {
        let _ = conn
            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    }
    seen.targets.lock().unwrap().push(target.to_string());
    // Loopback only: the tests never leave the machine. The proxy resolves names, as a real
    // one would (the gateway does not resolve proxied upstreams itself).
    let port = target
        .strip_prefix("127.0.0.1:")
        .or_else(|| target.strip_prefix("localhost:"));
    let Some(port) = port else {
        let _ = conn
            .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    let Ok(mut upstream) =
        TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap_or(0))).await
    else {
        let _ = conn
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    seen.tunnels.fetch_add(1, Ordering::SeqCst);
    if conn
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
}
