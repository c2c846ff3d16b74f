//! What the logs keep, through the real binary: one access-log line per request whatever the
//! client puts in its fields (a newline in `model` must not forge a second line), and a stream
//! still running when the grace period of a stop ends gets its access-log line and its chat
//! record, both saying it was cut.

use crate::common;

use common::mock::{chat_stream_event, Behavior, MockUpstream};
use common::process::{gateway_command, server_yaml, Process};
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// Start the binary at `RUST_LOG=info` with a chat-logged `/openai` route to `upstream`.
async fn start(dir: &Path, upstream: &str, server_extra: &str) -> (Process, SocketAddr) {
    let port = free_port();
    let config = format!(
        r#"{}log:
  chat: {{dir: '{}'}}
routes:
  - {{prefix: /openai, upstream: '{upstream}'}}
"#,
        server_yaml(dir, port, server_extra),
        dir.join("chats").display()
    );
    std::fs::write(dir.join("gw.yaml"), config).unwrap();
    let proc = Process::spawn(
        gateway_command(dir)
            .env("RUST_LOG", "info")
            .args(["run", "-c", "gw.yaml"]),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(addr).await;
    (proc, addr)
}

fn access_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(" outcome=")).collect()
}

fn chat_records(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("chats").join("openai").join("chat.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a chat record is one JSON line"))
        .collect()
}

#[tokio::test]
async fn control_characters_in_client_fields_cannot_split_an_access_log_line() {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut proc, addr) = start(dir.path(), &up.url(), "  grace_period: 1s\n").await;
    let model = "a\nFAKE LINE status=200\r\u{1b}[2K\u{2028}x";
    let resp = client()
        .post(format!("http://{addr}/openai/v1/chat/completions"))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.bytes().await;
    proc.signal("TERM");
    let log = proc.wait_for_stderr();
    let lines = access_lines(&log);
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains(r#"model="a\nFAKE LINE status=200\r\u{1b}[2K\u{2028}x""#),
        "{log}"
    );
    assert!(!log.lines().any(|l| l.starts_with("FAKE LINE")), "{log}");
    assert!(!log.contains('\u{1b}'), "{log}");
    // The chat log is JSON: the same model is one record, escaped by the encoder.
    let records = chat_records(dir.path());
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["model"], model);
}

#[tokio::test]
async fn a_stream_cut_at_the_end_of_the_grace_period_is_logged_as_cut() {
    let up = MockUpstream::start().await;
    // The first event at once, the rest never: the stream outlives the grace period.
    up.set_behavior(Behavior::SseGated {
        events: (0..5).map(chat_stream_event).collect(),
    });
    let dir = tempfile::tempdir().unwrap();
    let (mut proc, addr) = start(
        dir.path(),
        &up.url(),
        // Time enough for the cut stream's logging (a debug build loads its tokenizer slowly);
        // the process exits as soon as it is done.
        r#"  grace_period: 1s
  shutdown_timeout: 20s
"#,
    )
    .await;
    let resp = client()
        .post(format!("http://{addr}/openai/v1/chat/completions"))
        .json(&json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("t0 "));
    let stopped = Instant::now();
    proc.signal("TERM");
    let mut clean = true;
    while let Some(chunk) = body.next().await {
        if chunk.is_err() {
            clean = false;
            break;
        }
    }
    assert!(!clean, "a cut stream must not end cleanly");
    let log = proc.wait_for_stderr();
    let took = stopped.elapsed();
    assert!(took < Duration::from_secs(20), "{took:?}");
    let lines = access_lines(&log);
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains("outcome=cut_by_shutdown"), "{log}");
    let records = chat_records(dir.path());
    assert_eq!(records.len(), 1, "{log}");
    assert_eq!(records[0]["complete"], false);
    assert_eq!(records[0]["error"], "cut_by_shutdown");
    assert!(records[0]["answer"].as_str().unwrap().contains("t0"));
}
