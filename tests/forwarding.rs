//! Forwarding over real sockets: methods, headers both ways, statuses, streamed uploads of any
//! size, SSE passed through chunk by chunk, keep-alive on both legs.

use crate::common;

use common::mock::{Behavior, MockUpstream};
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn echo_gateway(kind: &str) -> (MockUpstream, GatewayGuard) {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::Echo);
    let gw = start_gateway(&one_route("/up", &up.url(), &format!("    type: {kind}\n"))).await;
    (up, gw)
}

#[tokio::test]
async fn every_method_is_forwarded() {
    let (up, gw) = echo_gateway("general").await;
    let c = client();
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = c
            .request(m, gw.url("/up/v1/files/f-1"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{method}");
        let echo: Value = resp.json().await.unwrap();
        assert_eq!(echo["method"], method);
        assert_eq!(echo["path"], "/v1/files/f-1");
    }
    let head = c.head(gw.url("/up/v1/models")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(up.requests().last().unwrap().method, "HEAD");
}

#[tokio::test]
async fn request_headers_pass_except_hop_by_hop_and_host_is_the_upstreams() {
    let (up, gw) = echo_gateway("general").await;
    // Raw HTTP/1.1 so that hop-by-hop headers really are on the wire.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let req = "POST /up/v1/chat/completions HTTP/1.1\r\nHost: gateway.example\r\n\
        Authorization: Bearer sk-client\r\nOpenAI-Organization: org-1\r\nX-Custom: kept\r\n\
        Connection: keep-alive, X-Conn-Only\r\nX-Conn-Only: dropped\r\nKeep-Alive: timeout=5\r\n\
        TE: trailers\r\nProxy-Authorization: Basic c2VjcmV0\r\nContent-Length: 2\r\n\r\n{}";
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let seen = &up.requests()[0];
    assert_eq!(seen.header("host"), Some(up.addr().to_string().as_str()));
    assert_eq!(seen.header("authorization"), Some("Bearer sk-client"));
    assert_eq!(seen.header("openai-organization"), Some("org-1"));
    assert_eq!(seen.header("x-custom"), Some("kept"));
    for hop in ["x-conn-only", "keep-alive", "te", "proxy-authorization"] {
        assert_eq!(seen.header(hop), None, "{hop} must not be forwarded");
    }
    assert_eq!(&seen.body[..], b"{}");
}

#[tokio::test]
async fn upstream_status_headers_and_body_come_back() {
    let up = MockUpstream::start().await;
    let body = json!({"error": {"message": "slow down", "type": "requests", "param": null, "code": "rate_limit_exceeded"}});
    up.set_behavior(Behavior::Json {
        status: 429,
        headers: vec![
            ("x-request-id".into(), "req-123".into()),
            ("retry-after".into(), "7".into()),
            ("x-ratelimit-remaining-requests".into(), "0".into()),
            ("openai-processing-ms".into(), "12".into()),
        ],
        body: body.clone(),
    });
    // No retries: the 429 is the client's answer at once instead of after two 7 s
    // `Retry-After` waits (14 s of the suite's run; waiting it out is tested in resilience.rs).
    let retry = "    retry: {retries: 0}\n";
    let gw = start_gateway(&one_route("/", &up.url(), retry)).await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let h = resp.headers();
    // The upstream's own id comes back renamed; `x-request-id` is the gateway's.
    assert_eq!(h["x-upstream-request-id"], "req-123");
    assert_eq!(h["x-request-id"].len(), 32);
    assert_eq!(h["retry-after"], "7");
    assert_eq!(h["x-ratelimit-remaining-requests"], "0");
    assert_eq!(h["openai-processing-ms"], "12");
    assert_eq!(resp.json::<Value>().await.unwrap(), body);
}

/// FNV-1a 64, as the mock's echo reports it.
fn fnv1a64(chunks: &[&[u8]]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for chunk in chunks {
        for b in *chunk {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("{h:016x}")
}

#[tokio::test]
async fn a_100_mib_streamed_upload_arrives_intact() {
    let (_up, gw) = echo_gateway("general").await;
    const CHUNK: usize = 1 << 20;
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
    let expected = fnv1a64(&vec![chunk.as_slice(); 100]);
    let stream = futures_util::stream::iter((0..100).map({
        let chunk = bytes::Bytes::from(chunk);
        move |_| Ok::<_, std::io::Error>(chunk.clone())
    }));
    let resp = client()
        .post(gw.url("/up/v1/files"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echo["body_len"], 100 * CHUNK);
    assert_eq!(echo["body_fnv1a64"], expected);
}

#[tokio::test]
async fn a_multipart_audio_upload_arrives_intact() {
    let (up, gw) = echo_gateway("openai").await;
    let audio: Vec<u8> = (0..300_000u32).map(|i| (i % 256) as u8).collect();
    let form = reqwest::multipart::Form::new()
        .text("model", "whisper-1")
        .part(
            "file",
            reqwest::multipart::Part::bytes(audio.clone())
                .file_name("a.wav")
                .mime_str("audio/wav")
                .unwrap(),
        );
    let resp = client()
        .post(gw.url("/up/v1/audio/transcriptions"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = &up.requests()[0];
    assert!(seen
        .header("content-type")
        .unwrap()
        .starts_with("multipart/form-data; boundary="));
    let body = &seen.body[..];
    assert!(
        body.windows(audio.len()).any(|w| w == audio.as_slice()),
        "audio bytes altered"
    );
    assert!(body.windows(9).any(|w| w == b"whisper-1"));
}

#[tokio::test]
async fn sse_event_n_reaches_the_client_while_the_upstream_holds_n_plus_1() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::SseGated {
        events: (0..4).map(|i| format!("{{\"n\":{i}}}")).collect(),
    });
    let gw = start_gateway(&one_route("/", &up.url(), "")).await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "m", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    for i in 0..4 {
        // Event i must arrive before the mock is allowed to send event i+1.
        let want = format!("data: {{\"n\":{i}}}\n\n");
        while !seen.contains(&want) {
            let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
                .await
                .unwrap_or_else(|_| panic!("event {i} was held back by the gateway"))
                .expect("stream ended early")
                .unwrap();
            seen.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        assert!(!seen.contains(&format!("\"n\":{}", i + 1)));
        up.release(1);
    }
}

#[tokio::test]
async fn keep_alive_is_used_on_both_legs() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&one_route("/", &up.url(), "")).await;
    let c = client();
    for _ in 0..5 {
        let resp = c.get(gw.url("/v1/models")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    assert_eq!(up.request_count(), 5);
    assert_eq!(
        up.connection_count(),
        1,
        "the upstream connection should be reused"
    );
}

#[tokio::test]
async fn a_chat_completion_and_a_stream_pass_through_unchanged() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&one_route("/openai", &format!("{}/v1", up.url()), "")).await;
    let c = client();
    let resp = c
        .post(gw.url("/openai/chat/completions"))
        .json(&json!({"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["model"], "gpt-x");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(up.requests()[0].path, "/v1/chat/completions");

    let stream = c
        .post(gw.url("/openai/chat/completions"))
        .json(&json!({"model": "gpt-x", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(stream.trim_end().ends_with("data: [DONE]"), "{stream}");
    assert!(stream.contains("chat.completion.chunk"));
}
