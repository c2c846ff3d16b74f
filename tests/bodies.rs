//! Request bodies of any size on JSON API routes: read in full before the upstream is chosen,
//! bounded (413), and sent upstream byte-identical on the first attempt and on retries, with
//! keep-alive intact afterwards.

use crate::common;

use common::mock::{Behavior, MockUpstream};
use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A chat body of about `size` bytes whose bytes are not what serde_json would write (odd
/// spacing, key order), so any re-serialisation on the way would show.
fn chat_body(size: usize) -> Vec<u8> {
    let filler = "abcdefghij".repeat(size / 10);
    format!("{{ \"messages\" : [ {{\"content\":\"{filler}\",\"role\":\"user\"}} ],\n \"model\":\"gpt-4o\" }}").into_bytes()
}

async fn post_raw(gw: &GatewayGuard, path: &str, body: Vec<u8>) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn one_and_twenty_mib_bodies_are_model_checked_and_arrive_byte_identical() {
    let up = MockUpstream::start().await;
    let yaml = format!(
        r#"upstream_keys: {{p: [sk-1]}}
tenants: {{t: {{models: [gpt-4o]}}}}
forward_keys: [{{key: fk-1, tenant: t}}]
routes:
  - {{prefix: /, upstream: '{}', auth: {{pool: p}}}}
"#,
        up.url()
    );
    let gw = start_gateway(&yaml).await;
    for size in [1 << 20, 20 << 20] {
        let body = chat_body(size);
        let resp = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth("fk-1")
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{size}");
        let seen = up.requests().pop().unwrap();
        assert!(seen.body == body, "{size}-byte body altered on the way");
        // Disallowed model in an equally large body: refused.
        let bad = String::from_utf8(body)
            .unwrap()
            .replace("\"gpt-4o\"", "\"o3-pro\"");
        let resp = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth("fk-1")
            .header("content-type", "application/json")
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403);
    }
    assert_eq!(up.request_count(), 2);
}

#[tokio::test]
async fn a_large_body_survives_a_connect_retry() {
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let retry = "    retry: {connect_retries: 8, backoff: 100ms, backoff_max: 200ms}\n";
    let gw = start_gateway(&one_route("/", &format!("http://{addr}"), retry)).await;
    let body = chat_body(5 << 20);
    let request = tokio::spawn({
        let url = gw.url("/v1/chat/completions");
        let body = body.clone();
        async move {
            client()
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(250)).await;
    let up = MockUpstream::start_on(addr).await;
    assert_eq!(request.await.unwrap().status(), 200);
    assert!(up.requests()[0].body == body);
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_with_413() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&one_route("/", &up.url(), "    max_body: 64KiB\n")).await;
    // Declared too large.
    let resp = post_raw(&gw, "/v1/chat/completions", chat_body(100_000)).await;
    assert_eq!(resp.status(), 413);
    assert_eq!(error_code(&resp.json().await.unwrap()), "request_too_large");
    // Chunked, with no length to judge by: counted while reading.
    let chunks = futures_util::stream::iter(
        (0..20).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 10_000]))),
    );
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(up.request_count(), 0);
    // Under the limit: fine.
    assert_eq!(
        post_raw(&gw, "/v1/chat/completions", chat_body(30_000))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn keep_alive_survives_a_pre_read_body() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::Echo);
    let gw = start_gateway(&one_route("/", &up.url(), "")).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let body = chat_body(100_000);
    for i in 0..3 {
        let head = format!("POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&body).await.unwrap();
        let resp = read_response(&mut s).await;
        assert_eq!(
            resp["body_len"],
            body.len(),
            "request {i} on the same connection"
        );
    }
    assert_eq!(up.request_count(), 3);
}

/// Read one Content-Length JSON response from a raw connection.
async fn read_response(s: &mut tokio::net::TcpStream) -> Value {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 65536];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut tmp))
            .await
            .expect("response timed out")
            .unwrap();
        assert!(n > 0, "the gateway closed the connection");
        buf.extend_from_slice(&tmp[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .expect("content-length");
            if buf.len() >= end + 4 + len {
                return serde_json::from_slice(&buf[end + 4..end + 4 + len]).unwrap();
            }
        }
    }
}

#[tokio::test]
async fn bodies_pass_untouched_when_nothing_needs_them() {
    // A general route without model lists streams the body without reading it first.
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::Echo);
    let gw = start_gateway(&one_route("/", &up.url(), "    type: general\n")).await;
    let resp = post_raw(&gw, "/anything", b"not json at all".to_vec()).await;
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echo["body_len"], 15);
}

#[tokio::test]
async fn a_general_route_reads_json_only_when_a_client_names_its_fallbacks() {
    // `fallbacks.from_request` is on by default; it needs the body's model only when the
    // request names fallbacks, so otherwise a JSON body goes on unread: even one whose model a
    // reading gateway would call ambiguous (and refuse).
    let up = MockUpstream::start().await;
    let gw = start_gateway(&one_route("/", &up.url(), "    type: general\n")).await;
    let body = br#"{"model":"a","MODEL":"b"}"#.to_vec();
    let resp = post_raw(&gw, "/v1/chat/completions", body.clone()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(up.requests()[0].body, body);
    // Naming fallbacks makes the model matter: the body is read, and this one refused.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("x-fallback-models", "c")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(up.request_count(), 1);
}
