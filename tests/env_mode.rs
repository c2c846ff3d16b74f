//! openai-forward drop-in: the binary configured from the environment only (no `-c`), as
//! `aifd run` users start it. Each test sets openai-forward's variables, starts the real
//! process and checks what a client (or the operator's terminal) sees.

mod common;

use common::mock::MockUpstream;
use common::process::{gateway_command, server_yaml, Process};
use common::*;
use std::net::SocketAddr;
use std::time::Duration;

/// The gateway started from `vars` alone, listening on a free port of 127.0.0.1.
async fn start_env(vars: &[(&str, &str)]) -> (Process, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = gateway_command(dir.path());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.args(["run", "--host", "127.0.0.1", "--port", &port.to_string()]);
    let proc = Process::spawn(&mut cmd);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(addr).await;
    (proc, addr, dir)
}

fn forward_config(up: &MockUpstream, route: &str, kind: &str) -> String {
    format!(
        r#"[{{"base_url":"{}","route":"{route}","type":"{kind}"}}]"#,
        up.url()
    )
}

/// `/healthz` reveals nothing: openai-forward answers it whatever the IP lists say, and
/// monitors (Render, its own restart script) probe it from addresses no list names.
#[tokio::test]
async fn healthz_is_answered_for_any_address_and_never_rate_limited() {
    let up = MockUpstream::start().await;
    let forward = forward_config(&up, "/", "openai");
    let (_proc, addr, _dir) = start_env(&[
        ("FORWARD_CONFIG", &forward),
        ("IP_WHITELIST", "10.9.8.7"),
        ("GLOBAL_RATE_LIMIT", "1/minute"),
    ])
    .await;
    for _ in 0..3 {
        let resp = client()
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "\"OK\"");
    }
    // Everything else is still refused to an address not on the list.
    let resp = client()
        .get(format!("http://{addr}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(up.request_count(), 0);
}

#[tokio::test]
async fn healthz_ignores_the_deny_list_in_yaml_mode_too() {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "{}access: {{deny: ['127.0.0.0/8']}}\nroutes:\n  - {{prefix: /, upstream: '{}'}}\n",
        server_yaml(dir.path(), port, ""),
        up.url()
    );
    std::fs::write(dir.path().join("gw.yaml"), config).unwrap();
    let _proc = Process::spawn(gateway_command(dir.path()).args(["run", "-c", "gw.yaml"]));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(addr).await;
    let get = |path: &str| client().get(format!("http://{addr}{path}")).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/v1/models").await.unwrap().status(), 403);
}
