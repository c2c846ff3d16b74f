//! The binary as an operator runs it: the built-in default, `--host/--port`, the banner, and
//! openai-forward's environment variables or `.env` as a drop-in replacement for `aifd run`.

mod common;

use common::mock::MockUpstream;
use common::process::{gateway_command, server_yaml, Process};
use common::*;
use std::net::SocketAddr;
use std::time::Duration;

#[tokio::test]
async fn default_config_with_port_override_serves_healthz_and_prints_a_banner() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = gateway_command(dir.path())
        .args(["run", "--host", "127.0.0.1", "--port", &port.to_string()])
        .spawn()
        .unwrap();
    let mut proc = Process(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(addr).await;
    let resp = client()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "\"OK\"");
    // The banner is written before the server starts; read what is there so far.
    let out = proc.kill_for_stderr();
    assert!(
        out.contains(&format!("listening   http://127.0.0.1:{port}")),
        "{out}"
    );
    assert!(out.contains("https://api.openai.com  [openai]"), "{out}");
}

#[tokio::test]
async fn openai_forward_environment_variables_configure_the_routes() {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let forward = format!(
        r#"[{{"base_url":"{}","route":"/localai","type":"openai"}}]"#,
        up.url()
    );
    let child = gateway_command(dir.path())
        .env("FORWARD_CONFIG", forward)
        .env("TIMEOUT", "3")
        .args(["run", "--host", "127.0.0.1", "--port", &port.to_string()])
        .spawn()
        .unwrap();
    let _proc = Process(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(addr).await;
    let resp = client()
        .get(format!("http://{addr}/localai/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.requests()[0].path, "/v1/models");
}

#[tokio::test]
async fn a_dotenv_file_in_the_working_directory_is_read() {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join(".env"),
        format!("FORWARD_CONFIG='[\n  {{\"base_url\":\"{}\",\"route\":\"/gemini\",\"type\":\"general\"}}\n]'\n", up.url()),
    )
    .unwrap();
    let child = gateway_command(dir.path())
        .args(["run", "--host", "127.0.0.1", "--port", &port.to_string()])
        .spawn()
        .unwrap();
    let _proc = Process(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(addr).await;
    let resp = client()
        .get(format!("http://{addr}/gemini/v1beta/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.requests()[0].path, "/v1beta/models");
}

#[tokio::test]
async fn openai_forward_key_variables_map_onto_forward_keys_and_levels() {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let forward = format!(
        r#"[{{"base_url":"{}","route":"/","type":"openai"}}]"#,
        up.url()
    );
    let child = gateway_command(dir.path())
        .env("FORWARD_CONFIG", forward)
        .env("OPENAI_API_KEY_CONFIG", r#"{"sk-real-1": [1]}"#)
        .env("FORWARD_KEY_CONFIG", r#"{"fk-user": 1}"#)
        .env("LEVEL_MODELS", r#"{"1": ["gpt-4o-mini"]}"#)
        .env("IP_WHITELIST", "127.0.0.1")
        .args(["run", "--host", "127.0.0.1", "--port", &port.to_string()])
        .spawn()
        .unwrap();
    let _proc = Process(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(addr).await;
    let chat = |model: &str| {
        client()
            .post(format!("http://{addr}/v1/chat/completions"))
            .bearer_auth("fk-user")
            .json(&serde_json::json!({"model": model, "messages": []}))
            .send()
    };
    assert_eq!(chat("gpt-4o-mini").await.unwrap().status(), 200);
    assert_eq!(chat("gpt-4o").await.unwrap().status(), 403);
    assert_eq!(up.request_count(), 1);
    assert_eq!(
        up.requests()[0].header("authorization"),
        Some("Bearer sk-real-1")
    );
}

#[test]
fn a_proxy_we_cannot_use_refuses_to_start_without_echoing_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let out = gateway_command(dir.path())
        .env("PROXY", "socks5://user:hunter2@127.0.0.1:7890")
        .args(["run", "--port", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PROXY") && err.contains("http://"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

/// A client that leaves before its answer is an access-log line with its outcome, not an
/// ERROR: at `RUST_LOG=warn` an operator's log must not fill with every impatient client.
#[tokio::test]
async fn a_client_that_leaves_is_logged_but_not_as_an_error() {
    use tokio::io::AsyncWriteExt;
    let up = MockUpstream::start().await;
    up.set_behavior(common::mock::Behavior::Stall);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "{}routes:\n  - {{prefix: /, upstream: '{}'}}\n",
        server_yaml(dir.path(), port, ""),
        up.url()
    );
    std::fs::write(dir.path().join("gw.yaml"), config).unwrap();
    let mut proc = Process::spawn(
        gateway_command(dir.path())
            .env("RUST_LOG", "info")
            .args(["run", "-c", "gw.yaml"]),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(addr).await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n\
          Content-Length: 2\r\n\r\n{}",
    )
    .await
    .unwrap();
    assert!(up.wait_for_requests(1, Duration::from_secs(5)).await);
    drop(tcp);
    assert!(up
        .wait_for_peer_close(Duration::from_secs(2))
        .await
        .is_some());
    // A graceful stop lets the request's logging finish before the process exits.
    proc.signal("TERM");
    let log = proc.wait_for_stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("POST /v1/chat/completions") && l.contains("INFO")),
        "{log}"
    );
    assert!(!log.contains("ERROR"), "{log}");
}
