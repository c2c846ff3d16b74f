//! Graceful upgrade, as `systemctl reload` does it: a new process started with `-u` takes the
//! listening socket over from the running one (SIGQUIT); no request is refused during the swap
//! and a stream in flight on the old process runs to its end.

use crate::common;

use common::mock::{Behavior, MockUpstream};
use common::process::{gateway_command, server_yaml, Process};
use common::*;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A gateway on a free port with the config an upgrade needs (its own pid file and upgrade
/// socket, a 10 s grace period), serving one route.
struct Deployment {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Deployment {
    fn new(route: &str) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let server = server_yaml(
            dir.path(),
            port,
            r#"  threads: 1
  grace_period: 10s
  shutdown_timeout: 1s
"#,
        );
        std::fs::write(
            dir.path().join("llm-forward.yaml"),
            format!("{server}routes:\n  - {route}\n"),
        )
        .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let admin = common::process::admin_addr(&server);
        Deployment { dir, addr, admin }
    }

    fn start(&self, upgrade: bool) -> Process {
        let mut cmd = gateway_command(self.dir.path());
        cmd.args(["run", "-c", "llm-forward.yaml"])
            .stderr(Stdio::null());
        if upgrade {
            cmd.arg("-u");
        }
        Process::spawn(&mut cmd)
    }

    /// What `systemctl reload` does: a new process (`-u`) waits on the upgrade socket, then the
    /// old one gets SIGQUIT and hands the listeners over.
    async fn upgrade(&self, old: &Process) -> Process {
        let new = self.start(true);
        let sock = self.dir.path().join("upgrade.sock");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(
                Instant::now() < deadline,
                "the new process never opened the upgrade socket"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        old.signal("QUIT");
        new
    }
}

#[tokio::test]
async fn a_new_process_takes_over_without_dropping_requests_or_streams() {
    let up = MockUpstream::start().await;
    let deployment = Deployment::new(&format!("{{prefix: /, upstream: '{}'}}", up.url()));
    let addr = deployment.addr;
    let mut old = deployment.start(false);
    wait_listening(addr).await;

    // A stream on the old process, held open by the upstream.
    up.push_behavior(Behavior::SseGated {
        events: vec!["{\"n\":0}".into(), "{\"n\":1}".into()],
    });
    let resp = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .body("{\"stream\":true}")
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("\"n\":0"));

    let _new = deployment.upgrade(&old).await;

    // Requests keep being answered through the swap (the old process hands over, then closes).
    let c = client();
    let swap_ends = Instant::now() + Duration::from_secs(7);
    let mut served = 0;
    while Instant::now() < swap_ends {
        let resp = c
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .expect("refused during the upgrade");
        assert_eq!(resp.status(), 200);
        served += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served > 50);

    // The old stream is still alive and ends cleanly once the upstream finishes it.
    up.release(1);
    let mut rest = String::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("stream hung")
    {
        rest.push_str(&String::from_utf8_lossy(
            &chunk.expect("the in-flight stream was cut"),
        ));
    }
    assert!(
        rest.contains("\"n\":1") && rest.contains("[DONE]"),
        "{rest}"
    );

    // Drained: the old process exits at once instead of sleeping out its 10 s grace period.
    let drained = Instant::now();
    while old.0.try_wait().unwrap().is_none() {
        assert!(
            drained.elapsed() < Duration::from_secs(3),
            "the old process did not exit after draining"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The admin listener was handed over too: the new process answers on it.
    let metrics = client()
        .get(format!("http://{}/metrics", deployment.admin))
        .send()
        .await
        .expect("the admin listener was lost in the upgrade");
    assert_eq!(metrics.status(), 200);
}

/// Clients reusing keep-alive connections back to back lose no request across an upgrade.
/// Pingora drops the old process's connections that are between requests when its 5 s
/// hand-over ends; a request already on its way over one of them would get a reset. From the
/// upgrade signal on, the old process answers `Connection: close`, so clients move over.
#[tokio::test]
async fn keep_alive_clients_lose_no_request_across_an_upgrade() {
    let up = MockUpstream::start().await;
    up.set_recording(false);
    let deployment = Deployment::new(&format!(
        "{{prefix: /, upstream: '{}', type: openai}}",
        up.url()
    ));
    let addr = deployment.addr;
    let old = deployment.start(false);
    wait_listening(addr).await;

    // Clients that send their next request the moment an answer is in, each on its own pool.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU32::new(0));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (stop, served) = (Arc::clone(&stop), Arc::clone(&served));
            tokio::spawn(async move {
                let c = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .unwrap();
                let (mut ok, mut failed, mut closing) = (0u32, Vec::new(), 0u32);
                while !stop.load(Ordering::Relaxed) {
                    let sent = c
                        .post(format!("http://{addr}/v1/chat/completions"))
                        .header("content-type", "application/json")
                        .body(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#)
                        .send()
                        .await;
                    match sent {
                        Ok(resp) if resp.status() == 200 => {
                            let close = resp
                                .headers()
                                .get("connection")
                                .is_some_and(|v| v == "close");
                            closing += u32::from(close);
                            match resp.bytes().await {
                                Ok(_) => {
                                    ok += 1;
                                    served.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) => failed.push(e.to_string()),
                            }
                        }
                        Ok(resp) => failed.push(format!("status {}", resp.status())),
                        Err(e) => failed.push(format!("{e:?}")),
                    }
                }
                (ok, failed, closing)
            })
        })
        .collect();

    // Traffic on the old process first, then the upgrade.
    while served.load(Ordering::Relaxed) < 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _new = deployment.upgrade(&old).await;
    let quit = Instant::now();
    // Past the old process's 5 s hand-over, when it drops what is left.
    while quit.elapsed() < Duration::from_secs(7) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed, mut closing) = (0, Vec::new(), 0);
    for c in clients {
        let (o, f, cl) = c.await.unwrap();
        ok += o;
        failed.extend(f);
        closing += cl;
    }
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok > 500, "{ok}");
    assert!(closing > 0, "the old process never said Connection: close");
}

/// A second `-u` while a hand-over is under way (a double `systemctl reload`) is refused at
/// once with a clear message instead of racing the first one for the upgrade socket; the first
/// one takes the listeners over and the service never stops answering.
#[tokio::test]
async fn a_second_upgrade_during_a_hand_over_is_refused() {
    let up = MockUpstream::start().await;
    let deployment = Deployment::new(&format!("{{prefix: /, upstream: '{}'}}", up.url()));
    let addr = deployment.addr;
    let mut old = deployment.start(false);
    wait_listening(addr).await;

    let mut first = deployment.start(true);
    let sock = deployment.dir.path().join("upgrade.sock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "the first -u never opened the socket"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut second = Process::spawn(gateway_command(deployment.dir.path()).args([
        "run",
        "-c",
        "llm-forward.yaml",
        "-u",
    ]));
    let started = Instant::now();
    while second.0.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the second -u did not give up at once"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let code = second.0.wait().unwrap().code();
    let err = second.wait_for_stderr();
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}: {err}");
    assert!(err.contains("upgrade"), "{err}");

    // The first one still gets the listeners; requests are answered throughout.
    old.signal("QUIT");
    let c = client();
    let swap_ends = Instant::now() + Duration::from_secs(7);
    while Instant::now() < swap_ends {
        let resp = c
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .expect("refused during the upgrade");
        assert_eq!(resp.status(), 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        first.0.try_wait().unwrap().is_none(),
        "the first -u process exited"
    );
    let _ = old.0.wait();
}
