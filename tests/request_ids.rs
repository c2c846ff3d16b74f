//! Request ids: generated unless a trusted proxy sent a sane one; sent upstream and back to the
//! client (errors included), and found in error messages, chat-log records and the access log.

use crate::common;

use common::mock::{refused_addr, MockUpstream};
use common::process::{gateway_command, server_yaml, Process};
use common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn id_of(resp: &reqwest::Response) -> String {
    resp.headers()["x-request-id"].to_str().unwrap().to_string()
}

fn is_generated(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn a_generated_id_goes_upstream_and_back_to_the_client() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&one_route("/", &up.url(), "")).await;
    let first = client().get(gw.url("/v1/models")).send().await.unwrap();
    let second = client().get(gw.url("/v1/models")).send().await.unwrap();
    let (a, b) = (id_of(&first), id_of(&second));
    assert!(is_generated(&a) && is_generated(&b), "{a} {b}");
    assert_ne!(a, b);
    let seen = up.requests();
    assert_eq!(seen[0].header("x-request-id"), Some(a.as_str()));
    assert_eq!(seen[1].header("x-request-id"), Some(b.as_str()));
}

#[tokio::test]
async fn an_untrusted_clients_id_is_replaced() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&one_route("/", &up.url(), "")).await;
    let resp = client()
        .get(gw.url("/v1/models"))
        .header("x-request-id", "client-chosen-1")
        .send()
        .await
        .unwrap();
    let id = id_of(&resp);
    assert!(is_generated(&id), "{id}");
    assert_eq!(up.requests()[0].header("x-request-id"), Some(id.as_str()));
}

#[tokio::test]
async fn a_trusted_proxys_sane_id_is_kept() {
    let up = MockUpstream::start().await;
    let yaml = format!(
        r#"access: {{trusted_proxies: ['127.0.0.1/32']}}
{}"#,
        one_route("/", &up.url(), "")
    );
    let gw = start_gateway(&yaml).await;
    let send = |id: String| {
        client()
            .get(gw.url("/v1/models"))
            .header("x-request-id", id)
            .send()
    };
    let kept = send("edge-42/abc".into()).await.unwrap();
    assert_eq!(id_of(&kept), "edge-42/abc");
    assert_eq!(up.requests()[0].header("x-request-id"), Some("edge-42/abc"));
    // Too long, or not visible ASCII: replaced even from a trusted proxy.
    for bad in ["x".repeat(129), "has space".into()] {
        let resp = send(bad.clone()).await.unwrap();
        assert!(is_generated(&id_of(&resp)), "{bad:?} was kept");
    }
}

#[tokio::test]
async fn error_answers_carry_the_id_in_the_header_and_the_message() {
    let up = MockUpstream::start().await;
    let yaml = format!(
        r#"routes:
  - {{prefix: /ok, upstream: '{}'}}
  - {{prefix: /dead, upstream: 'http://{}', retry: {{connect_retries: 0}}}}
"#,
        up.url(),
        refused_addr()
    );
    let gw = start_gateway(&yaml).await;
    for (path, status) in [("/nowhere", 404), ("/dead/v1/models", 502)] {
        let resp = client().get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), status);
        let id = id_of(&resp);
        assert!(is_generated(&id), "{id}");
        let body: Value = resp.json().await.unwrap();
        error_code(&body);
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.ends_with(&format!(" (request id: {id})")),
            "{message}"
        );
    }
    let health = client().get(gw.url("/healthz")).send().await.unwrap();
    assert!(is_generated(&id_of(&health)));
}

#[tokio::test]
async fn the_chat_record_has_the_id() {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"log:
  chat: {{dir: '{}'}}
routes:
  - {{prefix: /openai, upstream: '{}'}}
"#,
        dir.path().display(),
        up.url()
    );
    let gw = start_gateway(&yaml).await;
    let resp = client()
        .post(gw.url("/openai/v1/chat/completions"))
        .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let id = id_of(&resp);
    resp.bytes().await.unwrap();
    let file = dir.path().join("openai").join("chat.jsonl");
    let deadline = Instant::now() + Duration::from_secs(10);
    let record: Value = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            break serde_json::from_str(line).unwrap();
        }
        assert!(Instant::now() < deadline, "no chat record");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(record["request_id"], id.as_str());
}

#[tokio::test]
async fn the_access_log_line_has_the_id() {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "{}routes:\n  - {{prefix: /, upstream: '{}'}}\n",
        server_yaml(
            dir.path(),
            port,
            r#"  threads: 1
  grace_period: 5s
"#
        ),
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
    let resp = client()
        .get(format!("http://{addr}/v1/models"))
        .send()
        .await
        .unwrap();
    let id = id_of(&resp);
    resp.bytes().await.unwrap();
    // The line is written in `logging`, just after the answer; a graceful stop waits for it.
    proc.signal("TERM");
    let err = proc.wait_for_stderr();
    let line = err
        .lines()
        .find(|l| l.contains("GET /v1/models status=200"))
        .unwrap_or_else(|| panic!("no access log line:\n{err}"));
    assert!(line.contains(&format!("request_id={id}")), "{line}");
}
