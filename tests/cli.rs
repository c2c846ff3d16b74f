//! The binary as an operator runs it: the built-in default, `--host/--port`, the banner, and
//! openai-forward's environment variables or `.env` as a drop-in replacement for `aifd run`.

use crate::common;

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

/// Wait up to `bound` for `proc` to exit; its exit code (`None`: still running, then killed).
fn exit_within(proc: &mut Process, bound: Duration) -> Option<i32> {
    let start = std::time::Instant::now();
    while start.elapsed() < bound {
        if let Some(status) = proc.0.try_wait().unwrap() {
            return Some(status.code().unwrap_or(-1));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A port that is taken fails the start at once, with the address in the message, instead of
/// retrying for 30 s and then running without a listener — in the foreground and with `-d`,
/// whose foreground process is what systemd (Type=forking) judges the start by.
#[test]
fn a_port_in_use_fails_the_start_quickly_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _taken = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let config = format!(
        "{}routes:\n  - {{prefix: /, upstream: 'http://127.0.0.1:9'}}\n",
        server_yaml(dir.path(), port, "")
    );
    std::fs::write(dir.path().join("gw.yaml"), config).unwrap();
    for daemon in [false, true] {
        let mut cmd = gateway_command(dir.path());
        cmd.args(["run", "-c", "gw.yaml"]);
        if daemon {
            cmd.arg("-d");
        }
        let mut proc = Process::spawn(&mut cmd);
        let code = exit_within(&mut proc, Duration::from_secs(5));
        let err = proc.kill_for_stderr();
        // A daemon forked before failing would have written its pid file.
        if let Ok(pid) = std::fs::read_to_string(dir.path().join("pid")) {
            let _ = std::process::Command::new("kill")
                .args(["-9", pid.trim()])
                .status();
        }
        assert!(
            matches!(code, Some(c) if c != 0),
            "daemon={daemon}: exit {code:?}:\n{err}"
        );
        assert!(
            err.contains(&format!("127.0.0.1:{port}")) && err.contains("in use"),
            "daemon={daemon}:\n{err}"
        );
    }
}

/// Two listen addresses that would claim the same socket (Pingora panics on an exact
/// duplicate; a wildcard and a specific address on one port cannot both be bound) are a
/// config problem that `check` names.
#[test]
fn check_refuses_duplicate_and_overlapping_listen_addresses() {
    let dir = tempfile::tempdir().unwrap();
    for listen in [
        "['127.0.0.1:8000', '127.0.0.1:8000']",
        "['0.0.0.0:8000', '127.0.0.1:8000']",
        "['127.0.0.1:8000', '[::]:8000']",
    ] {
        std::fs::write(
            dir.path().join("gw.yaml"),
            format!(
                r#"server: {{listen: {listen}}}
routes: [{{prefix: /, upstream: 'http://127.0.0.1:9'}}]
"#
            ),
        )
        .unwrap();
        let out = gateway_command(dir.path())
            .args(["check", "-c", "gw.yaml"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{listen}: {err}");
        assert!(err.contains("server.listen[1]"), "{listen}: {err}");
    }
    // Different ports, or loopback addresses of the two families, are fine.
    std::fs::write(
        dir.path().join("gw.yaml"),
        r#"server: {listen: ['127.0.0.1:8000', '127.0.0.1:8001', '[::1]:8000']}
routes: [{prefix: /, upstream: 'http://127.0.0.1:9'}]
"#,
    )
    .unwrap();
    let out = gateway_command(dir.path())
        .args(["check", "-c", "gw.yaml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The upgrade socket hands the listening sockets to whoever is at its path: in a directory
/// others may write to (like /tmp), a local user could put a socket there and receive them at
/// the next reload. `run` refuses such a directory.
#[test]
fn an_upgrade_socket_in_a_shared_directory_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("gw.yaml"),
        format!(
            r#"server:
  listen: ['127.0.0.1:{port}']
  pid_file: '{}'
  upgrade_sock: '{}'
routes: [{{prefix: /, upstream: 'http://127.0.0.1:9'}}]
"#,
            dir.path().join("pid").display(),
            shared.join("upgrade.sock").display()
        ),
    )
    .unwrap();
    let mut proc = Process::spawn(gateway_command(dir.path()).args(["run", "-c", "gw.yaml"]));
    let code = exit_within(&mut proc, Duration::from_secs(5));
    let err = proc.kill_for_stderr();
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("server.upgrade_sock") && err.contains(&shared.display().to_string()),
        "{err}"
    );
}

/// `RUST_LOG=warn` means warnings and errors, Pingora's crates included: their info lines
/// (start-up, shutdown) stay out. (They are capped at info whatever RUST_LOG says, never raised.)
#[test]
fn rust_log_warn_quiets_pingora_too() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("gw.yaml"),
        format!(
            "{}routes:\n  - {{prefix: /, upstream: 'http://127.0.0.1:9'}}\n",
            server_yaml(dir.path(), port, "  grace_period: 0s\n")
        ),
    )
    .unwrap();
    let mut proc = Process::spawn(gateway_command(dir.path()).args(["run", "-c", "gw.yaml"]));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "never listened");
        std::thread::sleep(Duration::from_millis(5));
    }
    proc.signal("TERM");
    let err = proc.wait_for_stderr();
    assert!(err.contains("listening"), "{err}");
    assert!(!err.contains(" INFO "), "{err}");
}
