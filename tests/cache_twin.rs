//! A stream request served from its cached non-stream twin, over real sockets: a synthesized
//! SSE stream with the cached content, usage only when asked, the twin's scope and switches.

use crate::common;

use common::mock::{Behavior, MockUpstream};
use common::*;
use serde_json::{json, Value};

fn config(upstream: &str, extra: &str) -> String {
    format!(
        r#"routes:
  - prefix: /
    upstream: "{upstream}"
cache:
  backend: memory
  default: true
{extra}"#
    )
}

/// A non-stream answer with a longer text, a fingerprint and a tool call.
fn answer() -> Value {
    json!({
        "id": "chatcmpl-twin", "object": "chat.completion", "created": 1_700_000_123u64,
        "model": "gpt-4o-mini-2024", "system_fingerprint": "fp_twin",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": null,
            "message": {"role": "assistant", "content": "Sure, here it is: 千里之行. Done!",
                "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "f", "arguments": "{\"a\":1}"}}]}}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}
    })
}

fn request(stream: Option<Value>) -> Value {
    let mut r = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "twin"}]});
    if let Some(s) = stream {
        r["stream"] = json!(true);
        if !s.is_null() {
            r["stream_options"] = s;
        }
    }
    r
}

async fn post(gw: &GatewayGuard, key: &str, body: &Value) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {key}"))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The chunks of an SSE body (checked: every event is `data:`, one `[DONE]`, last).
fn chunks(body: &str) -> Vec<Value> {
    let events: Vec<&str> = body.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.last(), Some(&"data: [DONE]"), "{body}");
    assert_eq!(events.iter().filter(|e| **e == "data: [DONE]").count(), 1);
    events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect()
}

async fn gateway_with_cached_twin(extra: &str) -> (MockUpstream, GatewayGuard) {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::Json {
        status: 200,
        headers: vec![],
        body: answer(),
    });
    let gw = start_gateway(&config(&up.url(), extra)).await;
    let first = post(&gw, "sk-client", &request(None)).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-cache").as_deref(), Some("MISS"));
    first.bytes().await.unwrap();
    (up, gw)
}

#[tokio::test]
async fn a_stream_is_served_from_its_cached_non_stream_twin() {
    let (up, gw) = gateway_with_cached_twin("").await;
    let resp = post(&gw, "sk-client", &request(Some(Value::Null))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(up.request_count(), 1, "no second upstream call");
    assert_eq!(header(&resp, "x-cache").as_deref(), Some("HIT"));
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("text/event-stream")
    );
    assert!(header(&resp, "content-length").is_none());
    let chunks = chunks(&resp.text().await.unwrap());
    assert!(chunks.len() > 6, "content split in pieces: {chunks:?}");
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], "chatcmpl-twin");
        assert_eq!(c["model"], "gpt-4o-mini-2024");
        assert_eq!(c["created"], 1_700_000_123u64);
        assert_eq!(c["system_fingerprint"], "fp_twin");
        assert!(c.get("usage").is_none(), "usage only when asked: {c}");
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, answer()["choices"][0]["message"]["content"]);
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0][0]["index"], 0);
    assert_eq!(calls[0][0]["id"], "call_1");
    assert_eq!(calls[0][0]["function"]["arguments"], "{\"a\":1}");
    let finishes: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, [&json!("tool_calls")]);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[tokio::test]
async fn include_usage_gets_one_usage_chunk_equal_to_the_cached_usage() {
    let (up, gw) = gateway_with_cached_twin("").await;
    let body = request(Some(json!({"include_usage": true})));
    let resp = post(&gw, "sk-client", &body).await;
    assert_eq!(header(&resp, "x-cache").as_deref(), Some("HIT"));
    let chunks = chunks(&resp.text().await.unwrap());
    let usage: Vec<&Value> = chunks.iter().filter_map(|c| c.get("usage")).collect();
    assert_eq!(usage, [&answer()["usage"]]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(up.request_count(), 1);
}

#[tokio::test]
async fn another_tenant_does_not_get_the_twin() {
    let (up, gw) = gateway_with_cached_twin("").await;
    up.set_behavior(Behavior::OpenAi);
    let resp = post(&gw, "sk-other", &request(Some(Value::Null))).await;
    assert_eq!(header(&resp, "x-cache").as_deref(), Some("MISS"));
    resp.bytes().await.unwrap();
    assert_eq!(up.request_count(), 2);
}

#[tokio::test]
async fn caching_off_for_the_request_or_the_route_goes_upstream() {
    let (up, gw) = gateway_with_cached_twin("").await;
    up.set_behavior(Behavior::OpenAi);
    let mut body = request(Some(Value::Null));
    body["caching"] = json!(false);
    let resp = post(&gw, "sk-client", &body).await;
    assert!(header(&resp, "x-cache").is_none());
    let text = resp.text().await.unwrap();
    assert!(text.contains("Hello"), "{text}");
    assert_eq!(up.request_count(), 2);

    // Route default off: the twin was cached by asking, the stream does not ask.
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::Json {
        status: 200,
        headers: vec![],
        body: answer(),
    });
    let yaml = format!(
        r#"routes:
  - prefix: /
    upstream: "{}"
cache:
  backend: memory
  default: false
"#,
        up.url()
    );
    let gw = start_gateway(&yaml).await;
    let mut twin = request(None);
    twin["caching"] = json!(true);
    post(&gw, "sk-client", &twin).await.bytes().await.unwrap();
    let again = post(&gw, "sk-client", &twin).await;
    assert_eq!(header(&again, "x-cache").as_deref(), Some("HIT"));
    again.bytes().await.unwrap();
    up.set_behavior(Behavior::OpenAi);
    let resp = post(&gw, "sk-client", &request(Some(Value::Null))).await;
    assert!(header(&resp, "x-cache").is_none());
    resp.bytes().await.unwrap();
    assert_eq!(up.request_count(), 2);
}

#[tokio::test]
async fn without_a_twin_the_stream_goes_upstream_and_is_cached_under_its_own_key() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::OpenAi);
    let gw = start_gateway(&config(&up.url(), "")).await;
    let body = request(Some(Value::Null));
    let first = post(&gw, "sk-client", &body).await;
    assert_eq!(header(&first, "x-cache").as_deref(), Some("MISS"));
    first.bytes().await.unwrap();
    let second = post(&gw, "sk-client", &body).await;
    assert_eq!(header(&second, "x-cache").as_deref(), Some("HIT"));
    second.bytes().await.unwrap();
    assert_eq!(up.request_count(), 1);
}

#[tokio::test]
async fn a_twin_sent_with_stream_false_serves_too_and_is_paced_like_a_live_stream() {
    // 20 events a second: the synthesized stream (a dozen events) takes visibly long.
    let (up, gw) = gateway_with_cached_twin(
        r#"limits:
  rules:
    - {output_tokens_per_second: 20}
"#,
    )
    .await;
    let mut off = request(None);
    off["stream"] = json!(false);
    off["messages"][0]["content"] = json!("other");
    post(&gw, "sk-client", &off).await.bytes().await.unwrap();
    assert_eq!(up.request_count(), 2);
    let mut on = request(Some(Value::Null));
    on["messages"][0]["content"] = json!("other");
    let started = std::time::Instant::now();
    let resp = post(&gw, "sk-client", &on).await;
    assert_eq!(header(&resp, "x-cache").as_deref(), Some("HIT"));
    let body = resp.text().await.unwrap();
    let elapsed = started.elapsed();
    let n = chunks(&body).len();
    assert!(n > 10, "{n} chunks");
    // At least half the paced time (generous: the first events may go out at once).
    assert!(
        elapsed >= std::time::Duration::from_millis(n as u64 * 50 / 2),
        "{n} events in {elapsed:?}"
    );
    assert_eq!(up.request_count(), 2);
    if let Ok(path) = std::env::var("CACHE_TWIN_DUMP") {
        std::fs::write(path, body).unwrap();
    }
}

#[tokio::test]
async fn a_twin_hit_counts_as_a_hit_and_its_key_purges_the_entry_served() {
    let (up, gw) = gateway_with_cached_twin("  admin_key: adm-0123456789abcdef\n").await;
    let resp = post(&gw, "sk-client", &request(Some(Value::Null))).await;
    let key = header(&resp, "x-cache-key").unwrap();
    resp.bytes().await.unwrap();
    let stats: Value = client()
        .get(gw.url("/_llmf/cache/stats"))
        .header("authorization", "Bearer adm-0123456789abcdef")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (stats["hits"].as_u64(), stats["misses"].as_u64()),
        (Some(1), Some(1))
    );
    let purged: Value = client()
        .post(gw.url("/_llmf/cache/purge"))
        .header("authorization", "Bearer adm-0123456789abcdef")
        .json(&json!({ "key": key }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(purged["purged"], 1);
    up.set_behavior(Behavior::OpenAi);
    let resp = post(&gw, "sk-client", &request(Some(Value::Null))).await;
    assert_eq!(header(&resp, "x-cache").as_deref(), Some("MISS"));
    resp.bytes().await.unwrap();
    assert_eq!(up.request_count(), 2);
}

/// A synthesized stream is framed (chunked), so the client's connection stays usable: without a
/// length or chunking an HTTP/1.1 body ends only when the gateway closes the connection, which a
/// keep-alive client (and every load generator) reads as a failed request.
#[tokio::test]
async fn a_twin_stream_is_chunked_and_the_connection_is_reused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_up, gw) = gateway_with_cached_twin("").await;
    let addr = gw
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body = request(Some(Value::Null)).to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer sk-client\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    for round in 0..2 {
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let read = async {
            let mut buf = [0u8; 8192];
            // The chunked body's last chunk ends the answer.
            while !got.ends_with(b"0\r\n\r\n") {
                let n = conn.read(&mut buf).await.unwrap();
                assert!(n > 0, "round {round}: the gateway closed the connection");
                got.extend_from_slice(&buf[..n]);
            }
        };
        let text = match tokio::time::timeout(std::time::Duration::from_secs(5), read).await {
            Ok(()) => String::from_utf8_lossy(&got).to_lowercase(),
            Err(_) => panic!(
                "round {round}: no chunked end: {}",
                String::from_utf8_lossy(&got)
            ),
        };
        assert!(text.starts_with("http/1.1 200"), "{text}");
        assert!(text.contains("x-cache: hit"), "{text}");
        assert!(text.contains("transfer-encoding: chunked"), "{text}");
        assert!(text.contains("data: [done]"), "{text}");
    }
}
