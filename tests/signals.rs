//! Stopping the real binary with signals: every stop ends the process within a bound, frees the
//! port and writes a few lines, never a flood. Pingora's own SIGINT path ("fast shutdown") left
//! about one process in ten spinning on `Accept() failed` with the port still bound.

use crate::common;

use common::process::{gateway_command, server_yaml, Process};
use common::*;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

/// More worker threads than cores make the race that hung SIGINT likelier: a listener is
/// registered on one thread's runtime while its accept loop may run on another.
const THREADS: &str = "  threads: 4\n";

#[tokio::test]
async fn sigint_stops_the_gateway_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    std::fs::write(
        dir.path().join("gw.yaml"),
        format!(
            "{}routes:\n  - {{prefix: /, upstream: 'http://127.0.0.1:9'}}\n",
            server_yaml(dir.path(), port, THREADS)
        ),
    )
    .unwrap();
    for round in 0..50 {
        let mut proc = Process::spawn(gateway_command(dir.path()).args(["run", "-c", "gw.yaml"]));
        // Read stderr as it comes, counting bytes, so a flood cannot block the writer.
        let mut err = proc.0.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let (mut total, mut head, mut buf) = (0usize, Vec::new(), [0u8; 8192]);
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                total += n;
                if head.len() < 4096 {
                    head.extend_from_slice(&buf[..n]);
                }
            }
            (total, String::from_utf8_lossy(&head).into_owned())
        });
        // Serving, not only bound (the port is bound before the server starts).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !healthz(addr).await {
            assert!(Instant::now() < deadline, "round {round}: never served");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        proc.signal("INT");
        let sent = Instant::now();
        let status = loop {
            if let Some(status) = proc.0.try_wait().unwrap() {
                break Some(status);
            }
            if sent.elapsed() > Duration::from_secs(5) {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        if status.is_none() {
            let _ = proc.0.kill();
            let _ = proc.0.wait();
        }
        let (bytes, head) = reader.join().unwrap();
        assert!(
            status.is_some(),
            "round {round}: still running 5 s after SIGINT ({bytes} bytes on stderr):\n{head}"
        );
        // 0: our handler ran (the default action would end it by the signal).
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "round {round}:\n{head}"
        );
        assert!(
            bytes < 64 << 10,
            "round {round}: {bytes} bytes on stderr:\n{head}"
        );
        assert!(
            TcpListener::bind(addr).is_ok(),
            "round {round}: the port is still bound after exit"
        );
    }
}

async fn healthz(addr: SocketAddr) -> bool {
    let resp = client().get(format!("http://{addr}/healthz")).send().await;
    resp.is_ok_and(|r| r.status() == 200)
}

/// A stop signal sent once the port is bound but before the server has installed its
/// handlers still takes the usual path (here: SIGTERM, a graceful stop, exit 0) instead of
/// killing the process outright.
#[tokio::test]
async fn a_stop_signal_right_after_the_bind_is_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    std::fs::write(
        dir.path().join("gw.yaml"),
        format!(
            "{}routes:\n  - {{prefix: /, upstream: 'http://127.0.0.1:9'}}\n",
            server_yaml(dir.path(), port, "  grace_period: 0s\n")
        ),
    )
    .unwrap();
    for round in 0..10 {
        let mut proc = Process::spawn(gateway_command(dir.path()).args(["run", "-c", "gw.yaml"]));
        wait_listening(addr).await;
        proc.signal("TERM");
        let err = proc.wait_for_stderr();
        let status = proc.0.wait().unwrap();
        assert_eq!(status.code(), Some(0), "round {round}: {status:?}\n{err}");
    }
}
