//! Upstream faults and client departures over real sockets: refused, reset, stalled, slow and
//! unresolvable upstreams get OpenAI-shaped 502/504s that name nothing internal; connect
//! failures are retried with backoff; a cut stream never looks complete; a client that leaves
//! cancels the upstream request.

use crate::common;

use common::mock::{refused_addr, Behavior, MockUpstream};
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const FAST: &str = r#"    timeouts: {connect: 1s, read: 500ms}
    retry: {connect_retries: 1, backoff: 10ms, backoff_max: 20ms}
"#;

async fn post_chat(gw: &GatewayGuard, stream: bool) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "m", "stream": stream, "messages": []}))
        .send()
        .await
        .unwrap()
}

/// The error body: OpenAI's shape, and no trace of the upstream's address.
async fn expect_error(resp: reqwest::Response, status: u16, code: &str, upstream: SocketAddr) {
    assert_eq!(resp.status(), status);
    let text = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error_code(&body), code);
    assert!(
        !text.contains(&upstream.port().to_string()),
        "leaks the upstream: {text}"
    );
    assert!(!text.contains("127.0.0.1"), "leaks the upstream: {text}");
}

#[tokio::test]
async fn connection_refused_is_a_502_after_bounded_retries() {
    let addr = refused_addr();
    let gw = start_gateway(&one_route("/", &format!("http://{addr}"), FAST)).await;
    expect_error(
        post_chat(&gw, false).await,
        502,
        "upstream_unreachable",
        addr,
    )
    .await;
    // The gateway is still healthy afterwards.
    assert_eq!(
        client()
            .get(gw.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn connect_failures_are_retried_until_the_upstream_appears() {
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let retry = "    retry: {connect_retries: 8, backoff: 100ms, backoff_max: 200ms}\n";
    let gw = start_gateway(&one_route("/", &format!("http://{addr}"), retry)).await;
    let request = tokio::spawn({
        let url = gw.url("/v1/models");
        async move { client().get(url).send().await.unwrap() }
    });
    // The first attempts are refused; the upstream comes up during the backoff.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let up = MockUpstream::start_on(addr).await;
    let resp = request.await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.request_count(), 1);
}

#[tokio::test]
async fn retries_back_off_exponentially() {
    let addr = refused_addr();
    // 3 retries at 100ms·2^n with jitter in the upper half: at least 50+100+200 ms.
    let retry = "    retry: {connect_retries: 3, backoff: 100ms, backoff_max: 1s}\n";
    let gw = start_gateway(&one_route("/", &format!("http://{addr}"), retry)).await;
    let start = Instant::now();
    expect_error(
        post_chat(&gw, false).await,
        502,
        "upstream_unreachable",
        addr,
    )
    .await;
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(350), "no backoff: {took:?}");
    assert!(took < Duration::from_secs(3), "unbounded: {took:?}");
}

#[tokio::test]
async fn a_reset_before_headers_is_a_502() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::ResetBeforeHeaders);
    let gw = start_gateway(&one_route("/", &up.url(), FAST)).await;
    expect_error(
        post_chat(&gw, false).await,
        502,
        "upstream_connection_broken",
        up.addr(),
    )
    .await;
    // The upstream read the whole POST before the reset: it may have acted on it, so it is
    // not sent again (unless the route sets `retry.on_reset`).
    assert_eq!(up.request_count(), 1);
}

#[tokio::test]
async fn a_stalled_upstream_is_a_504_after_the_read_timeout() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::Stall);
    let gw = start_gateway(&one_route("/", &up.url(), FAST)).await;
    let start = Instant::now();
    expect_error(
        post_chat(&gw, false).await,
        504,
        "upstream_timeout",
        up.addr(),
    )
    .await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn slow_headers_within_the_timeout_are_fine_beyond_it_a_504() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&one_route("/", &up.url(), FAST)).await;
    up.push_behavior(Behavior::SlowHeaders {
        delay: Duration::from_millis(100),
    });
    assert_eq!(post_chat(&gw, false).await.status(), 200);
    up.push_behavior(Behavior::SlowHeaders {
        delay: Duration::from_millis(1500),
    });
    expect_error(
        post_chat(&gw, false).await,
        504,
        "upstream_timeout",
        up.addr(),
    )
    .await;
}

/// Read a streamed body to its end; `Err` when the connection ended abnormally.
async fn read_stream(resp: reqwest::Response) -> (String, Result<(), String>) {
    let mut text = String::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .expect("stream hung")
    {
        match chunk {
            Ok(c) => text.push_str(&String::from_utf8_lossy(&c)),
            Err(e) => return (text, Err(e.to_string())),
        }
    }
    (text, Ok(()))
}

#[tokio::test]
async fn a_stream_reset_mid_way_ends_abnormally_for_the_client() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::ResetMidStream {
        events_before_reset: 3,
    });
    let gw = start_gateway(&one_route("/", &up.url(), FAST)).await;
    let resp = post_chat(&gw, true).await;
    assert_eq!(resp.status(), 200);
    let (text, end) = read_stream(resp).await;
    assert!(
        text.matches("data: ").count() >= 3,
        "events before the cut must arrive: {text}"
    );
    assert!(!text.contains("[DONE]"));
    assert!(end.is_err(), "a cut stream must not end cleanly");
}

#[tokio::test]
async fn a_stream_that_goes_silent_is_cut_after_the_idle_timeout() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::SseGated {
        events: vec!["{\"n\":0}".into(), "{\"n\":1}".into()],
    });
    let gw = start_gateway(&one_route("/", &up.url(), FAST)).await;
    let start = Instant::now();
    let resp = post_chat(&gw, true).await;
    assert_eq!(resp.status(), 200);
    // Event 1 is never released: after `read` (500ms) of silence the stream is cut.
    let (text, end) = read_stream(resp).await;
    assert!(text.contains("\"n\":0"));
    assert!(!text.contains("[DONE]"));
    assert!(end.is_err(), "a stalled stream must not end cleanly");
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_client_leaving_before_the_first_byte_cancels_the_upstream_request() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::Stall);
    let gw = start_gateway(&one_route("/", &up.url(), "")).await;
    let request = tokio::spawn({
        let url = gw.url("/v1/chat/completions");
        async move { client().post(url).body("{}").send().await }
    });
    assert!(up.wait_for_requests(1, Duration::from_secs(5)).await);
    let left = Instant::now();
    request.abort();
    let closed = up
        .wait_for_peer_close(Duration::from_secs(2))
        .await
        .expect("upstream never saw the close");
    assert!(closed.duration_since(left) < Duration::from_secs(1));
}

#[tokio::test]
async fn a_client_leaving_mid_stream_cancels_the_upstream_request() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::SseGated {
        events: (0..10).map(|i| format!("{{\"n\":{i}}}")).collect(),
    });
    let gw = start_gateway(&one_route("/", &up.url(), "")).await;
    let resp = post_chat(&gw, true).await;
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("\"n\":0"));
    let left = Instant::now();
    drop(body);
    // The mock may only notice on its next write or read: let one more event out.
    up.release(1);
    let closed = up
        .wait_for_peer_close(Duration::from_secs(2))
        .await
        .expect("upstream never saw the close");
    assert!(closed.duration_since(left) < Duration::from_secs(1));
}

#[tokio::test]
async fn an_unresolvable_upstream_is_a_502_not_a_panic() {
    let yaml = r#"server: {dns_timeout: 2s}
routes:
  - {prefix: /, upstream: 'http://no-such-host.invalid:8080'}
"#;
    let gw = start_gateway(yaml).await;
    for _ in 0..2 {
        let resp = post_chat(&gw, false).await;
        assert_eq!(resp.status(), 502);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(error_code(&body), "upstream_dns_failed");
        assert!(!body.to_string().contains("no-such-host"));
    }
    assert_eq!(
        client()
            .get(gw.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn host_names_resolve_asynchronously() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&one_route(
        "/",
        &format!("http://localhost:{}", up.addr().port()),
        "",
    ))
    .await;
    let resp = client().get(gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        up.requests()[0].header("host"),
        Some(format!("localhost:{}", up.addr().port()).as_str())
    );
}
