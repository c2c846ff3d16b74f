//! OTLP traces against a local collector stand-in: one server span per request, joined to the
//! caller's `traceparent`, one client span per upstream attempt, GenAI attributes, and the
//! attempt's own `traceparent` sent upstream.

use crate::common;

use common::mock::{Behavior, MockUpstream};
use common::*;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A collector that answers every `POST /v1/traces` with 200 and hands over its JSON body.
async fn collector() -> (String, mpsc::UnboundedReceiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request at a time on the connection: head, then Content-Length bytes.
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                    assert!(head.starts_with("post /v1/traces "), "{head}");
                    assert!(head.contains("content-type: application/json"), "{head}");
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .unwrap()
                        .trim()
                        .parse()
                        .unwrap();
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 65536];
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body: Value =
                        serde_json::from_slice(&buf[head_end..head_end + len]).unwrap();
                    buf.drain(..head_end + len);
                    let _ = tx.send(body);
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                    if conn.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, rx)
}

/// Spans received until `n` have arrived (batches are sent within a second).
async fn spans(rx: &mut mpsc::UnboundedReceiver<Value>, n: usize) -> Vec<Value> {
    let mut spans = Vec::new();
    while spans.len() < n {
        let batch = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the collector got the spans")
            .unwrap();
        let rs = &batch["resourceSpans"][0];
        assert_eq!(
            rs["resource"]["attributes"][0]["value"]["stringValue"],
            "gateway-under-test"
        );
        spans.extend(
            rs["scopeSpans"][0]["spans"]
                .as_array()
                .unwrap()
                .iter()
                .cloned(),
        );
    }
    spans
}

fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    let found = span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key);
    match found {
        Some(a) => {
            let v = &a["value"];
            ["stringValue", "intValue", "doubleValue", "boolValue"]
                .iter()
                .map(|k| &v[*k])
                .find(|v| !v.is_null())
                .unwrap()
        }
        None => panic!("{key} missing in {span}"),
    }
}

#[tokio::test]
async fn a_request_and_its_attempts_are_exported_joined_to_the_callers_trace() {
    let (endpoint, mut rx) = collector().await;
    let primary = MockUpstream::start().await;
    primary.set_behavior(Behavior::Json {
        status: 503,
        headers: vec![],
        body: json!({"error": {"message": "busy", "type": "server_error", "param": null, "code": null}}),
    });
    let fallback = MockUpstream::start().await;
    let gw = start_gateway(&format!(
        r#"
telemetry:
  otlp: {{endpoint: '{endpoint}', service_name: gateway-under-test}}
routes:
  - prefix: /openai
    type: openai
    retry: {{retries: 0, backoff: 1ms}}
    upstreams:
      - {{url: '{}', name: primary, priority: 0}}
      - {{url: '{}', name: secondary, priority: 1}}
"#,
        primary.url(),
        fallback.url()
    ))
    .await;
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let resp = client()
        .post(gw.url("/openai/v1/chat/completions"))
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .json(&json!({"model": "gpt-traced", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let spans = spans(&mut rx, 3).await;
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let server = spans.iter().find(|s| s["kind"] == 2).unwrap();
    assert_eq!(server["traceId"], caller_trace);
    assert_eq!(server["parentSpanId"], caller_span);
    assert_eq!(server["name"], "chat gpt-traced");
    assert_eq!(attr(server, "gen_ai.request.model"), "gpt-traced");
    assert_eq!(attr(server, "http.response.status_code"), "200");
    assert_eq!(attr(server, "llm_forward.attempts"), "2");
    assert!(attr(server, "gen_ai.usage.input_tokens").as_str().unwrap() != "0");
    assert!(attr(server, "gen_ai.usage.output_tokens")
        .as_str()
        .is_some());
    assert!(server["status"].get("code").is_some_and(|c| c == 0));
    let attempts: Vec<&Value> = spans.iter().filter(|s| s["kind"] == 3).collect();
    assert_eq!(attempts.len(), 2);
    for a in &attempts {
        assert_eq!(a["traceId"], caller_trace);
        assert_eq!(a["parentSpanId"], server["spanId"]);
    }
    let failed = attempts
        .iter()
        .find(|a| attr(a, "llm_forward.upstream") == "primary")
        .unwrap();
    assert_eq!(failed["status"]["code"], 2);
    assert_eq!(attr(failed, "http.response.status_code"), "503");
    let answered = attempts
        .iter()
        .find(|a| attr(a, "llm_forward.upstream") == "secondary")
        .unwrap();
    assert_eq!(attr(answered, "http.response.status_code"), "200");

    // Each upstream saw its own attempt as the parent, in the caller's trace.
    let sent = fallback.requests()[0]
        .header("traceparent")
        .unwrap()
        .to_string();
    assert_eq!(
        sent,
        format!(
            "00-{caller_trace}-{}-01",
            answered["spanId"].as_str().unwrap()
        )
    );
}

#[tokio::test]
async fn unsampled_callers_and_a_zero_ratio_export_nothing() {
    let (endpoint, mut rx) = collector().await;
    let up = MockUpstream::start().await;
    let gw = start_gateway(&format!(
        r#"
telemetry:
  otlp: {{endpoint: '{endpoint}', service_name: gateway-under-test, sample: 0}}
routes:
  - {{prefix: /openai, upstream: '{}', type: openai}}
"#,
        up.url()
    ))
    .await;
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    // A caller that did not sample its trace, then a new trace under a zero ratio.
    for traceparent in [
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
        None,
    ] {
        let mut req = client()
            .post(gw.url("/openai/v1/chat/completions"))
            .json(&chat);
        if let Some(t) = traceparent {
            req = req.header("traceparent", t);
        }
        assert_eq!(req.send().await.unwrap().status(), 200);
    }
    // A sampled caller is still recorded: its span proves the two before were not.
    let resp = client()
        .post(gw.url("/openai/v1/chat/completions"))
        .header(
            "traceparent",
            "00-11111111111111111111111111111111-2222222222222222-01",
        )
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let spans = spans(&mut rx, 2).await;
    assert!(spans
        .iter()
        .all(|s| s["traceId"] == "11111111111111111111111111111111"));
    // An unsampled request adds no trace header of its own.
    assert!(up.requests()[1].header("traceparent").is_none());
}
