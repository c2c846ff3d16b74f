//! Upstream resilience over real sockets, the sixteen fault scenarios of the field and then
//! some: every test asserts what the client got and what each mock upstream saw (attempts,
//! timing, bodies). Routes have a primary and a fallback upstream unless said otherwise.

use crate::common;

use common::connect_proxy::ConnectProxy;
use common::mock::{chat_stream_event, Behavior, MockUpstream, DONE_EVENT};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Fast retries, so that tests measure the policy and not the default backoff.
const RETRY: &str = "    retry: {retries: 2, backoff: 10ms, backoff_max: 40ms}\n";

/// A route over `primary` (priority 1) and `fallback` (priority 2), plus `extra` route keys.
fn two_upstreams(primary: &MockUpstream, fallback: &MockUpstream, extra: &str) -> String {
    format!(
        r#"routes:
  - prefix: /
    upstreams:
      - {{url: "{}", name: primary}}
      - {{url: "{}", name: fallback, priority: 2}}
{extra}"#,
        primary.url(),
        fallback.url()
    )
}

fn json_error(status: u16, code: &str, headers: &[(&str, &str)]) -> Behavior {
    Behavior::Json {
        status,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: json!({"error": {"message": code, "type": "invalid_request_error", "param": null, "code": code}}),
    }
}

// ---- 1. 429 with Retry-After ----------------------------------------------------------------

#[tokio::test]
async fn a_429_with_retry_after_is_retried_after_that_long() {
    let up = MockUpstream::start().await;
    up.push_behavior(json_error(
        429,
        "rate_limit_exceeded",
        &[("retry-after", "2")],
    ));
    let gw = start_gateway(&one_route("/", &up.url(), RETRY)).await;
    let resp = chat(&gw, ask("gpt-4o", false)).await;
    assert_eq!(resp.status(), 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].received_at - seen[0].received_at;
    assert!(gap >= Duration::from_millis(1800), "{gap:?}");
    assert!(gap < Duration::from_secs(5), "{gap:?}");
}

#[tokio::test]
async fn retry_after_ms_is_preferred_when_given() {
    let up = MockUpstream::start().await;
    up.push_behavior(json_error(
        503,
        "overloaded",
        &[("retry-after", "30"), ("retry-after-ms", "300")],
    ));
    let gw = start_gateway(&one_route("/", &up.url(), RETRY)).await;
    assert_eq!(chat(&gw, ask("gpt-4o", false)).await.status(), 200);
    let seen = up.requests();
    let gap = seen[1].received_at - seen[0].received_at;
    assert!(
        gap >= Duration::from_millis(280) && gap < Duration::from_secs(3),
        "{gap:?}"
    );
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_moves_on_to_the_fallback_at_once() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.set_behavior(json_error(
        429,
        "rate_limit_exceeded",
        &[("retry-after", "3600")],
    ));
    let gw = start_gateway(&two_upstreams(&primary, &fallback, RETRY)).await;
    let start = Instant::now();
    let resp = chat(&gw, ask("gpt-4o", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(answered_by(&resp), "fallback");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(primary.request_count(), 1);
}

// ---- 2. persistent 429 ----------------------------------------------------------------------

#[tokio::test]
async fn a_persistent_429_is_retried_a_bounded_number_of_times_then_falls_back() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.set_behavior(json_error(429, "rate_limit_exceeded", &[]));
    let gw = start_gateway(&two_upstreams(&primary, &fallback, RETRY)).await;
    let resp = chat(&gw, ask("gpt-4o", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(answered_by(&resp), "fallback");
    assert_eq!(primary.request_count(), 3, "one attempt and two retries");
    assert_eq!(fallback.request_count(), 1);
}

#[tokio::test]
async fn without_a_fallback_the_last_429_reaches_the_client_unchanged() {
    let up = MockUpstream::start().await;
    up.set_behavior(json_error(
        429,
        "rate_limit_exceeded",
        &[("x-ratelimit-remaining-requests", "0")],
    ));
    let gw = start_gateway(&one_route("/", &up.url(), RETRY)).await;
    let resp = chat(&gw, ask("gpt-4o", false)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], "0");
    assert_eq!(
        error_code(&resp.json().await.unwrap()),
        "rate_limit_exceeded"
    );
    assert_eq!(up.request_count(), 3);
}

// ---- 3. one 500, 4. persistent 503 -----------------------------------------------------------

#[tokio::test]
async fn one_500_is_retried_once_on_the_same_upstream() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.push_behavior(json_error(500, "server_error", &[]));
    let gw = start_gateway(&two_upstreams(&primary, &fallback, RETRY)).await;
    let resp = chat(&gw, ask("gpt-4o", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(answered_by(&resp), "primary");
    assert_eq!(primary.request_count(), 2);
    assert_eq!(fallback.request_count(), 0);
}

#[tokio::test]
async fn a_persistent_503_falls_back() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.set_behavior(json_error(503, "overloaded", &[]));
    let gw = start_gateway(&two_upstreams(&primary, &fallback, RETRY)).await;
    let resp = chat(&gw, ask("gpt-4o", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(answered_by(&resp), "fallback");
    assert_eq!(primary.request_count(), 3);
    // The fallback got the very same body.
    assert_eq!(primary.requests()[0].body, fallback.requests()[0].body);
}

// ---- 5. TCP reset, 6. no response at all ------------------------------------------------------

/// `RETRY` with `on_reset: true`: the route accepts that a request the upstream may have acted
/// on is sent again.
const RETRY_ON_RESET: &str =
    "    retry: {retries: 2, backoff: 10ms, backoff_max: 40ms, on_reset: true}\n";

/// A POST the upstream read whole and then reset may have been acted on (a completion billed):
/// by default it is delivered once, and the client hears of the broken connection.
#[tokio::test]
async fn a_post_reset_after_it_was_delivered_whole_is_not_sent_again() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.set_behavior(Behavior::ResetBeforeHeaders);
    let gw = start_gateway(&two_upstreams(&primary, &fallback, RETRY)).await;
    for stream in [false, true] {
        let resp = chat(&gw, ask("gpt-4o", stream)).await;
        assert_eq!(resp.status(), 502);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(error_code(&body), "upstream_connection_broken");
    }
    assert_eq!(primary.request_count(), 2, "one delivery per request");
    assert_eq!(fallback.request_count(), 0, "no failover either");
    assert_eq!(primary.requests()[0].json().unwrap(), ask("gpt-4o", false));
}

#[tokio::test]
async fn a_post_reset_after_it_was_delivered_is_retried_when_the_route_opts_in() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.push_behavior(Behavior::ResetBeforeHeaders);
    let gw = start_gateway(&two_upstreams(&primary, &fallback, RETRY_ON_RESET)).await;
    let resp = chat(&gw, ask("gpt-4o", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(answered_by(&resp), "primary");
    assert_eq!(primary.request_count(), 2);
}

/// GET is idempotent: a reset before its answer is retried whatever the route says.
#[tokio::test]
async fn a_get_reset_before_headers_is_retried() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.push_behavior(Behavior::ResetBeforeHeaders);
    let gw = start_gateway(&two_upstreams(&primary, &fallback, RETRY)).await;
    let resp = client().get(gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(answered_by(&resp), "primary");
    assert_eq!(primary.request_count(), 2);
}

/// A pooled connection that breaks on its first use is most likely one the upstream had
/// already closed: Pingora's rule (one immediate retry on a fresh connection, not counted
/// against `retries`) stays, for a POST too. The only delivered request sent twice by default.
#[tokio::test]
async fn a_pooled_connection_that_breaks_on_first_use_is_retried_once() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&one_route("/", &up.url(), RETRY)).await;
    assert_eq!(chat(&gw, ask("gpt-4o", false)).await.status(), 200);
    up.push_behavior(Behavior::ResetBeforeHeaders);
    let resp = chat(&gw, ask("gpt-4o", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(up.request_count(), 3);
    assert_eq!(
        up.connection_count(),
        2,
        "the second attempt on a fresh connection"
    );
    // Once only: the pooled connection breaks, then the fresh one, which is not retried.
    up.set_behavior(Behavior::ResetBeforeHeaders);
    let resp = chat(&gw, ask("gpt-4o", false)).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(up.request_count(), 5);
    assert_eq!(up.connection_count(), 3);
}

/// A refused connect reached nothing: a POST is retried and fails over as before.
#[tokio::test]
async fn a_refused_connect_still_fails_over_for_a_post() {
    let fallback = MockUpstream::start().await;
    let yaml = format!(
        r#"routes:
  - prefix: /
    upstreams:
      - {{url: "http://{}", name: gone}}
      - {{url: "{}", name: fallback, priority: 2}}
{RETRY}"#,
        common::mock::refused_addr(),
        fallback.url()
    );
    let gw = start_gateway(&yaml).await;
    let resp = chat(&gw, ask("gpt-4o", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(answered_by(&resp), "fallback");
    assert_eq!(fallback.request_count(), 1);
}

/// An upstream that resets after reading only the request head cannot have acted on a POST
/// whose body it never got: that attempt is retried (here on the fallback) without opting in.
#[tokio::test]
async fn a_post_reset_before_its_body_was_written_is_retried() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&heads);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut chunk).await {
                    Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => break,
                }
            }
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = sock.set_zero_linger();
            drop(sock);
        }
    });
    let fallback = MockUpstream::start().await;
    let yaml = format!(
        r#"routes:
  - prefix: /
    max_body: 64MiB
    upstreams:
      - {{url: "http://{addr}", name: primary}}
      - {{url: "{}", name: fallback, priority: 2}}
{RETRY}"#,
        fallback.url()
    );
    let gw = start_gateway(&yaml).await;
    // Far more than socket buffers hold: the upstream cannot have had it whole.
    let big = "x".repeat(16 << 20);
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": big}]});
    let resp = chat(&gw, body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(answered_by(&resp), "fallback");
    assert!(heads.load(Ordering::SeqCst) >= 1);
}

/// A reset after the head (a close mid-body) is after delivery too.
#[tokio::test]
async fn a_head_followed_by_a_close_is_not_retried_for_a_post_by_default() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::HeadThenClose);
    let gw = start_gateway(&one_route("/", &up.url(), RETRY)).await;
    let resp = chat(&gw, ask("gpt-4o", false)).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(up.request_count(), 1);
}

#[tokio::test]
async fn a_head_followed_by_a_close_is_retried_without_a_trace_on_the_client() {
    let up = MockUpstream::start().await;
    up.push_behavior(Behavior::HeadThenClose);
    let gw = start_gateway(&one_route("/", &up.url(), RETRY_ON_RESET)).await;
    for stream in [false, true] {
        let resp = chat(&gw, ask("gpt-4o", stream)).await;
        assert_eq!(resp.status(), 200);
        let (text, clean) = read_stream(resp).await;
        assert!(clean, "{text}");
        assert!(
            !text.contains("HTTP/1.1"),
            "a second head leaked into the body: {text}"
        );
        if !stream {
            let body: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(body["model"], "gpt-4o");
        }
        up.push_behavior(Behavior::HeadThenClose);
    }
    assert_eq!(up.request_count(), 4);
}

#[tokio::test]
async fn an_upstream_that_does_not_resolve_fails_over() {
    let fallback = MockUpstream::start().await;
    let yaml = format!(
        r#"server: {{dns_timeout: 2s}}
routes:
  - prefix: /
    upstreams:
      - {{url: "http://no-such-host.invalid:8080", name: gone}}
      - {{url: "{}", name: fallback, priority: 2}}
    retry: {{connect_retries: 0, backoff: 10ms}}
"#,
        fallback.url()
    );
    let gw = start_gateway(&yaml).await;
    let resp = chat(&gw, ask("gpt-4o", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(answered_by(&resp), "fallback");
}

#[tokio::test]
async fn a_silent_upstream_is_not_retried_and_the_fallback_answers_within_the_budget() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.set_behavior(Behavior::Stall);
    let extra = format!("{RETRY_ON_RESET}    timeouts: {{read: 700ms}}\n");
    let gw = start_gateway(&two_upstreams(&primary, &fallback, &extra)).await;
    let start = Instant::now();
    let resp = chat(&gw, ask("gpt-4o", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(answered_by(&resp), "fallback");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(650) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(
        primary.request_count(),
        1,
        "a silent upstream is not retried"
    );
}

/// A silent upstream had the whole POST: by default its timeout is the client's answer, not a
/// second delivery elsewhere.
#[tokio::test]
async fn a_silent_upstream_is_not_failed_over_for_a_post_by_default() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.set_behavior(Behavior::Stall);
    let extra = format!("{RETRY}    timeouts: {{read: 700ms}}\n");
    let gw = start_gateway(&two_upstreams(&primary, &fallback, &extra)).await;
    let resp = chat(&gw, ask("gpt-4o", false)).await;
    assert_eq!(resp.status(), 504);
    assert_eq!(error_code(&resp.json().await.unwrap()), "upstream_timeout");
    assert_eq!(primary.request_count(), 1);
    assert_eq!(fallback.request_count(), 0);
}

#[tokio::test]
async fn the_total_budget_bounds_the_whole_call() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.set_behavior(Behavior::Stall);
    fallback.set_behavior(Behavior::Stall);
    let extra = r#"    retry: {retries: 2, backoff: 10ms, total: 1500ms}
    timeouts: {read: 60s}
"#;
    let gw = start_gateway(&two_upstreams(&primary, &fallback, extra)).await;
    let start = Instant::now();
    let resp = chat(&gw, ask("gpt-4o", false)).await;
    let took = start.elapsed();
    assert_eq!(resp.status(), 504);
    assert_eq!(error_code(&resp.json().await.unwrap()), "upstream_timeout");
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_eq!(primary.request_count(), 1);
}

// ---- 7. slow first token ----------------------------------------------------------------------

/// A primary whose first event comes only after 20 s, on a route of `kind` with a 800 ms
/// `first_token`: the fallback answers within the budget, nothing of the primary reaches the
/// client, and the primary's connection is closed. Returns what the fallback was sent.
async fn slow_first_token_fails_over(kind: &str) -> Value {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    // Headers at once, the first event only after 20 s.
    primary.set_behavior(Behavior::chat_stream(3, Duration::from_secs(20)));
    let extra = format!(
        r#"    type: {kind}
{RETRY_ON_RESET}    timeouts: {{first_token: 800ms}}
"#
    );
    let gw = start_gateway(&two_upstreams(&primary, &fallback, &extra)).await;
    let start = Instant::now();
    let resp = chat(&gw, ask("gpt-4o", true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(answered_by(&resp), "fallback");
    let (text, clean) = read_stream(resp).await;
    let took = start.elapsed();
    assert!(clean);
    assert!(
        text.contains("Hello") && text.ends_with(DONE_EVENT),
        "{text}"
    );
    assert!(
        !text.contains("t0 "),
        "nothing of the primary's stream: {text}"
    );
    assert!(
        took >= Duration::from_millis(750) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(primary.request_count(), 1);
    assert!(primary
        .wait_for_peer_close(Duration::from_secs(2))
        .await
        .is_some());
    fallback.requests()[0].json().unwrap()
}

#[tokio::test]
async fn a_slow_first_token_fails_over_before_the_client_sees_a_byte() {
    slow_first_token_fails_over("openai").await;
}

/// Without `on_reset`, a missed first-token deadline is the client's answer (504): the primary
/// had the request and may still be generating (and billing) it.
#[tokio::test]
async fn a_slow_first_token_is_a_504_without_failover_by_default() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.set_behavior(Behavior::chat_stream(3, Duration::from_secs(20)));
    let extra = format!("{RETRY}    timeouts: {{first_token: 800ms}}\n");
    let gw = start_gateway(&two_upstreams(&primary, &fallback, &extra)).await;
    let resp = chat(&gw, ask("gpt-4o", true)).await;
    assert_eq!(resp.status(), 504);
    assert_eq!(error_code(&resp.json().await.unwrap()), "upstream_timeout");
    assert_eq!(primary.request_count(), 1);
    assert_eq!(fallback.request_count(), 0);
    assert!(primary
        .wait_for_peer_close(Duration::from_secs(2))
        .await
        .is_some());
}

/// A `general` route reads no body for itself, but a first-token deadline needs the attempt
/// replayable and the stream flag known: with deadlines configured its JSON body is pre-read,
/// and goes on exactly as the client sent it.
#[tokio::test]
async fn a_general_route_with_a_first_token_deadline_fails_over_too() {
    assert_eq!(
        slow_first_token_fails_over("general").await,
        ask("gpt-4o", true)
    );
}

// ---- 8. stream cut, 9. stream stalls ------------------------------------------------------------

#[tokio::test]
async fn a_stream_cut_after_40_of_60_tokens_ends_abnormally_and_is_not_retried() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.set_behavior(Behavior::ResetMidStream {
        events_before_reset: 40,
    });
    let gw = start_gateway(&two_upstreams(&primary, &fallback, RETRY)).await;
    let resp = chat(&gw, ask("gpt-4o", true)).await;
    assert_eq!(resp.status(), 200);
    let (text, clean) = read_stream(resp).await;
    assert!(!clean, "a cut stream must not end cleanly");
    assert!(!text.contains("[DONE]"));
    assert!(text.contains(&chat_stream_event(39)));
    assert_eq!(primary.request_count(), 1);
    assert_eq!(
        fallback.request_count(),
        0,
        "bytes reached the client: no retry"
    );
}

#[tokio::test]
async fn a_cut_stream_can_say_why_in_band() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::ResetMidStream {
        events_before_reset: 3,
    });
    let extra = format!("{RETRY}    stream_errors: event\n");
    let gw = start_gateway(&one_route("/", &up.url(), &extra)).await;
    let (text, clean) = read_stream(chat(&gw, ask("gpt-4o", true)).await).await;
    assert!(!clean);
    assert!(!text.contains("[DONE]"));
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    let event: Value = serde_json::from_str(last.trim_start_matches("data: ")).unwrap();
    assert_eq!(error_code(&event), "stream_interrupted");
}

#[tokio::test]
async fn a_stream_that_stalls_midway_ends_abnormally_after_the_idle_timeout() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::StallMidStream {
        events_before_stall: 5,
    });
    let extra = format!("{RETRY}    timeouts: {{idle: 600ms, read: 60s}}\n");
    let gw = start_gateway(&one_route("/", &up.url(), &extra)).await;
    let start = Instant::now();
    let (text, clean) = read_stream(chat(&gw, ask("gpt-4o", true)).await).await;
    let took = start.elapsed();
    assert!(!clean);
    assert!(!text.contains("[DONE]"));
    assert!(text.contains(&chat_stream_event(4)));
    assert!(
        took >= Duration::from_millis(550) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_eq!(up.request_count(), 1);
    assert!(up
        .wait_for_peer_close(Duration::from_secs(2))
        .await
        .is_some());
}

// ---- 10. malformed chunk, 11. no [DONE] ----------------------------------------------------------

#[tokio::test]
async fn a_malformed_chunk_passes_and_the_stream_completes() {
    let up = MockUpstream::start().await;
    let mut chunks: Vec<bytes::Bytes> = vec![chat_stream_event(0).into()];
    chunks.push("data: {\"choices\": [{\"delta\": \n\n".into());
    chunks.push(chat_stream_event(1).into());
    up.set_behavior(Behavior::Sse {
        chunks,
        delay: Duration::ZERO,
        done: true,
    });
    let gw = start_gateway(&one_route("/", &up.url(), RETRY)).await;
    let (text, clean) = read_stream(chat(&gw, ask("gpt-4o", true)).await).await;
    assert!(clean);
    assert!(text.contains("{\"delta\": \n\n"));
    assert!(text.contains(&chat_stream_event(1)) && text.ends_with(DONE_EVENT));
}

#[tokio::test]
async fn a_stream_without_done_that_ends_cleanly_is_finished_promptly() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::Sse {
        chunks: (0..3).map(|i| chat_stream_event(i).into()).collect(),
        delay: Duration::ZERO,
        done: false,
    });
    let extra = format!("{RETRY}    timeouts: {{idle: 30s}}\n");
    let gw = start_gateway(&one_route("/", &up.url(), &extra)).await;
    let start = Instant::now();
    let (text, clean) = read_stream(chat(&gw, ask("gpt-4o", true)).await).await;
    assert!(clean);
    assert!(text.ends_with(&chat_stream_event(2)));
    assert!(start.elapsed() < Duration::from_secs(1));
}

// ---- 12. context length, 13. content filter -------------------------------------------------------

const CONTEXT_FALLBACK: &str = "    fallbacks: {context_length: [big-context]}\n";

#[tokio::test]
async fn context_length_exceeded_goes_once_to_the_larger_context_fallback() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.set_behavior(json_error(400, "context_length_exceeded", &[]));
    let yaml = format!(
        r#"routes:
  - prefix: /
    upstreams:
      - {{url: "{}", name: primary, models: [gpt-4o]}}
      - {{url: "{}", name: big, models: {{big-context: big-context-2024}}}}
{RETRY}{CONTEXT_FALLBACK}"#,
        primary.url(),
        fallback.url()
    );
    let gw = start_gateway(&yaml).await;
    let resp = chat(&gw, ask("gpt-4o", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(answered_by(&resp), "big");
    let body: Value = resp.json().await.unwrap();
    // The model that answered, under the name its upstream gave, with its usage.
    assert_eq!(body["model"], "big-context-2024");
    assert!(body["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(primary.request_count(), 1, "a 400 is not retried unchanged");
    assert_eq!(
        fallback.requests()[0].json().unwrap()["model"],
        "big-context-2024"
    );
}

#[tokio::test]
async fn context_length_exceeded_without_a_fallback_is_the_clients_answer() {
    let up = MockUpstream::start().await;
    up.set_behavior(json_error(400, "context_length_exceeded", &[]));
    let gw = start_gateway(&one_route("/", &up.url(), RETRY)).await;
    let resp = chat(&gw, ask("gpt-4o", false)).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        error_code(&resp.json().await.unwrap()),
        "context_length_exceeded"
    );
    assert_eq!(up.request_count(), 1);
}

#[tokio::test]
async fn a_content_filter_rejection_is_returned_as_is_after_exactly_one_attempt() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.set_behavior(json_error(400, "content_filter", &[]));
    let extra = format!("{RETRY}    fallbacks: {{models: [other]}}\n");
    let gw = start_gateway(&two_upstreams(&primary, &fallback, &extra)).await;
    let resp = chat(&gw, ask("gpt-4o", false)).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(error_code(&resp.json().await.unwrap()), "content_filter");
    assert_eq!(primary.request_count(), 1);
    assert_eq!(fallback.request_count(), 0);
}

// ---- 14. flapping primary -------------------------------------------------------------------------

#[tokio::test]
async fn a_flapping_primary_is_served_by_the_fallback_and_back_in_use_after_recovery() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    let extra = format!("{RETRY}    breaker: {{failures: 3, open_for: 2s}}\n");
    let gw = start_gateway(&two_upstreams(&primary, &fallback, &extra)).await;
    primary.set_behavior(json_error(503, "overloaded", &[]));
    let start = Instant::now();
    let mut served_by = Vec::new();
    let mut recovered = false;
    for i in 0..10 {
        if !recovered && start.elapsed() >= Duration::from_secs(6) {
            primary.set_behavior(Behavior::OpenAi);
            recovered = true;
        }
        let resp = chat(&gw, ask("gpt-4o", false)).await;
        assert_eq!(resp.status(), 200, "request {i}");
        served_by.push((start.elapsed(), answered_by(&resp)));
        let next = Duration::from_secs(i + 1);
        tokio::time::sleep(next.saturating_sub(start.elapsed())).await;
    }
    // During the outage the breaker spares the primary: three calls to open it, then one probe
    // per open period, instead of three calls for every request.
    let outage_calls = primary
        .requests()
        .iter()
        .filter(|r| r.received_at < start + Duration::from_secs(6))
        .count();
    assert!(
        outage_calls <= 7,
        "{outage_calls} calls during the outage: {served_by:?}"
    );
    // Within about two seconds of recovering, the primary serves again.
    let back = served_by
        .iter()
        .filter(|(t, _)| *t >= Duration::from_millis(8500))
        .all(|(_, by)| by == "primary");
    assert!(back, "{served_by:?}");
}

// ---- 15. fail-over accounting, fallback models ------------------------------------------------------

#[tokio::test]
async fn a_fallback_model_answers_under_its_own_name_with_its_usage() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.set_behavior(json_error(503, "overloaded", &[]));
    let yaml = format!(
        r#"routes:
  - prefix: /
    upstreams:
      - {{url: "{}", name: primary, models: [gpt-4o]}}
      - {{url: "{}", name: cheap, models: [gpt-4o-mini]}}
{RETRY}    fallbacks: {{by_model: {{gpt-4o: [gpt-4o-mini]}}}}
"#,
        primary.url(),
        fallback.url()
    );
    let gw = start_gateway(&yaml).await;
    let resp = chat(&gw, ask("gpt-4o", true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(answered_by(&resp), "cheap");
    let (text, clean) = read_stream(resp).await;
    assert!(clean);
    assert!(text.contains("\"model\":\"gpt-4o-mini\""), "{text}");
    assert!(!text.contains("\"model\":\"gpt-4o\""), "{text}");
    let sent = fallback.requests()[0].json().unwrap();
    assert_eq!(sent["model"], "gpt-4o-mini");
    assert_eq!(sent["messages"], ask("gpt-4o", true)["messages"]);
    // Not streamed: the fallback's own usage comes back with its name.
    let resp = chat(&gw, ask("gpt-4o", false)).await;
    assert_eq!(answered_by(&resp), "cheap");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["usage"]["total_tokens"], 13);
}

/// Model lists and fallback models need the request's model: a `general` route with them reads
/// its JSON bodies too (and otherwise forwards them as sent).
#[tokio::test]
async fn a_general_route_routes_by_model_and_falls_back_to_another_model() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    let yaml = format!(
        r#"routes:
  - prefix: /
    type: general
    upstreams:
      - {{url: "{}", name: primary, models: [gpt-4o]}}
      - {{url: "{}", name: cheap, models: [gpt-4o-mini]}}
{RETRY}    fallbacks: {{by_model: {{gpt-4o: [gpt-4o-mini]}}}}
"#,
        primary.url(),
        fallback.url()
    );
    let gw = start_gateway(&yaml).await;
    // By model: each model goes where it is served, the body unchanged.
    let resp = chat(&gw, ask("gpt-4o-mini", false)).await;
    assert_eq!(answered_by(&resp), "cheap");
    assert_eq!(
        fallback.requests()[0].json().unwrap(),
        ask("gpt-4o-mini", false)
    );
    assert_eq!(primary.request_count(), 0);
    // A failing model falls back under the fallback's name.
    primary.set_behavior(json_error(503, "overloaded", &[]));
    let resp = chat(&gw, ask("gpt-4o", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(answered_by(&resp), "cheap");
    assert_eq!(
        fallback.requests()[1].json().unwrap()["model"],
        "gpt-4o-mini"
    );
}

#[tokio::test]
async fn a_client_may_name_its_fallbacks_in_a_header_that_never_goes_upstream() {
    let up = MockUpstream::start().await;
    up.push_behavior(json_error(503, "overloaded", &[]));
    up.push_behavior(json_error(503, "overloaded", &[]));
    up.push_behavior(json_error(503, "overloaded", &[]));
    let gw = start_gateway(&one_route("/", &up.url(), RETRY)).await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-fallback-models", "[\"model-b\"]")
        .json(&ask("model-a", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["model"], "model-b");
    let seen = up.requests();
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|r| r.header("x-fallback-models").is_none()));
    assert_eq!(seen[3].json().unwrap()["model"], "model-b");
}

#[tokio::test]
async fn a_general_route_falls_back_to_the_models_a_client_names() {
    let up = MockUpstream::start().await;
    for _ in 0..3 {
        up.push_behavior(json_error(503, "overloaded", &[]));
    }
    let gw = start_gateway(&one_route(
        "/",
        &up.url(),
        &format!("    type: general\n{RETRY}"),
    ))
    .await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-fallback-models", "model-b")
        .json(&ask("model-a", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|r| r.header("x-fallback-models").is_none()));
    assert_eq!(seen[3].json().unwrap()["model"], "model-b");
}

#[tokio::test]
async fn an_upstream_gets_the_model_under_its_own_name() {
    let up = MockUpstream::start().await;
    let yaml = format!(
        r#"routes:
  - prefix: /
    upstreams:
      - {{url: "{}", models: {{gpt-4o: my-azure-deployment}}}}
"#,
        up.url()
    );
    let gw = start_gateway(&yaml).await;
    assert_eq!(chat(&gw, ask("gpt-4o", false)).await.status(), 200);
    assert_eq!(
        up.requests()[0].json().unwrap()["model"],
        "my-azure-deployment"
    );
    let resp = chat(&gw, ask("unknown-model", false)).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(error_code(&resp.json().await.unwrap()), "model_not_found");
    assert_eq!(up.request_count(), 1);
}

#[tokio::test]
async fn equal_priorities_share_the_load_by_weight() {
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    let yaml = format!(
        r#"routes:
  - prefix: /
    upstreams:
      - {{url: "{}", name: a, weight: 3}}
      - {{url: "{}", name: b, weight: 1}}
"#,
        a.url(),
        b.url()
    );
    let gw = start_gateway(&yaml).await;
    for _ in 0..200 {
        assert_eq!(
            client()
                .get(gw.url("/v1/models"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let (na, nb) = (a.request_count(), b.request_count());
    assert_eq!(na + nb, 200);
    // 150 expected; binomial sd ~6: far outside means the weights are ignored.
    assert!((110..=185).contains(&na), "a={na} b={nb}");
}

#[tokio::test]
async fn each_upstream_gets_its_own_keys_and_client_keys_never_reach_a_pooled_one() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.set_behavior(json_error(503, "overloaded", &[]));
    let yaml = format!(
        r#"upstream_keys:
  openai: [sk-openai]
  other: [sk-other]
tenants:
  t: {{pool: openai}}
forward_keys: [{{key: fk-1, tenant: t}}]
routes:
  - prefix: /
    auth: {{mode: mixed}}
    upstreams:
      - {{url: "{}", name: primary}}
      - {{url: "{}", name: other, priority: 2, pool: other, key_header: api-key}}
{RETRY}"#,
        primary.url(),
        fallback.url()
    );
    let gw = start_gateway(&yaml).await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("fk-1")
        .json(&ask("gpt-4o", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(answered_by(&resp), "other");
    assert_eq!(
        primary.requests()[0].header("authorization"),
        Some("Bearer sk-openai")
    );
    let sent = &fallback.requests()[0];
    assert_eq!(sent.header("api-key"), Some("sk-other"));
    assert_eq!(sent.header("authorization"), None);
    // A client with its own key (mixed mode) is never sent where the gateway's keys go: the
    // pooled fallback is not a candidate, and the primary's 503 is its answer.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("sk-client-own")
        .json(&ask("gpt-4o", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(fallback.request_count(), 1);
    assert!(primary
        .requests()
        .iter()
        .skip(3)
        .all(|r| r.header("authorization") == Some("Bearer sk-client-own")));
}

#[tokio::test]
async fn an_upstream_without_keys_gets_no_credential_at_all() {
    let (primary, local) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.set_behavior(json_error(503, "overloaded", &[]));
    let yaml = format!(
        r#"upstream_keys:
  openai: [sk-openai]
tenants:
  t: {{}}
forward_keys: [{{key: fk-1, tenant: t}}]
routes:
  - prefix: /
    upstreams:
      - {{url: "{}", name: primary, pool: openai}}
      - {{url: "{}", name: local, priority: 2, key_header: none}}
{RETRY}"#,
        primary.url(),
        local.url()
    );
    let gw = start_gateway(&yaml).await;
    let resp = client()
        .post(gw.url("/v1/chat/completions?key=fk-1"))
        .bearer_auth("fk-1")
        .header("api-key", "fk-1")
        .json(&ask("gpt-4o", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(answered_by(&resp), "local");
    let sent = &local.requests()[0];
    for carrier in ["authorization", "api-key", "x-goog-api-key"] {
        assert_eq!(sent.header(carrier), None, "{carrier}");
    }
    assert!(!sent.path.contains("fk-1"), "{}", sent.path);
    assert_eq!(
        primary.requests()[0].header("authorization"),
        Some("Bearer sk-openai")
    );
}

// ---- Outbound proxy ------------------------------------------------------------------------------

#[tokio::test]
async fn an_outbound_proxy_tunnels_with_connect_and_its_credentials() {
    let up = MockUpstream::start().await;
    // base64("user:p@ss")
    let proxy = ConnectProxy::start(Some("Basic dXNlcjpwQHNz")).await;
    let url = proxy.url().replace("http://", "http://user:p%40ss@");
    let extra = format!("    proxy: \"{url}\"\n");
    let gw = start_gateway(&one_route("/", &up.url(), &extra)).await;
    for _ in 0..3 {
        assert_eq!(chat(&gw, ask("gpt-4o", false)).await.status(), 200);
    }
    assert_eq!(up.request_count(), 3);
    assert_eq!(proxy.targets()[0], up.addr().to_string());
    assert!(proxy.tunnels() >= 1 && proxy.tunnels() <= 3);
    // The credentials go to the proxy only, never upstream.
    assert!(up
        .requests()
        .iter()
        .all(|r| r.header("proxy-authorization").is_none()));
}

#[tokio::test]
async fn a_proxy_that_refuses_the_credentials_is_a_clear_502() {
    let up = MockUpstream::start().await;
    let proxy = ConnectProxy::start(Some("Basic c29tZW9uZTplbHNl")).await;
    let extra = format!("{RETRY}    proxy: \"{}\"\n", proxy.url());
    let gw = start_gateway(&one_route("/", &up.url(), &extra)).await;
    let resp = chat(&gw, ask("gpt-4o", false)).await;
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.unwrap();
    assert_eq!(
        error_code(&serde_json::from_str(&text).unwrap()),
        "upstream_unreachable"
    );
    assert!(!text.contains(&proxy.addr().port().to_string()));
    assert_eq!(up.request_count(), 0);
}

// ---- With the response cache ------------------------------------------------------------------

const CACHE: &str = r#"cache:
  backend: memory
  default: true
"#;

#[tokio::test]
async fn a_stream_failed_over_after_its_head_is_served_but_not_stored() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.set_behavior(Behavior::chat_stream(3, Duration::from_secs(20)));
    let extra = format!("{RETRY_ON_RESET}    timeouts: {{first_token: 500ms}}\n{CACHE}");
    let gw = start_gateway(&two_upstreams(&primary, &fallback, &extra)).await;
    for _ in 0..2 {
        let resp = chat(&gw, ask("gpt-4o", true)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(answered_by(&resp), "fallback");
        let (text, clean) = read_stream(resp).await;
        assert!(clean && text.ends_with(DONE_EVENT), "{text}");
    }
    // pingora-cache cannot restart a fill: the abandoned attempt's head turned it off.
    assert_eq!(fallback.request_count(), 2);
    // A status retry happens before any fill starts: that answer is stored.
    primary.set_behavior(json_error(503, "overloaded", &[]));
    let body = ask("gpt-4o-2", false);
    assert_eq!(chat(&gw, body.clone()).await.headers()["x-cache"], "MISS");
    assert_eq!(chat(&gw, body).await.headers()["x-cache"], "HIT");
}

#[tokio::test]
async fn a_fallback_models_answer_is_served_but_never_cached() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.set_behavior(json_error(503, "overloaded", &[]));
    let yaml = format!(
        r#"routes:
  - prefix: /
    upstreams:
      - {{url: "{}", name: primary, models: [gpt-4o]}}
      - {{url: "{}", name: cheap, models: [gpt-4o-mini]}}
{RETRY}    fallbacks: {{models: [gpt-4o-mini]}}
    breaker: {{failures: 100}}
{CACHE}"#,
        primary.url(),
        fallback.url()
    );
    let gw = start_gateway(&yaml).await;
    for _ in 0..2 {
        let resp = chat(&gw, ask("gpt-4o", false)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-cache"], "MISS");
        assert_eq!(resp.json::<Value>().await.unwrap()["model"], "gpt-4o-mini");
    }
    assert_eq!(fallback.request_count(), 2);
    // Once the requested model answers, its answer is stored.
    primary.set_behavior(Behavior::OpenAi);
    let resp = chat(&gw, ask("gpt-4o", false)).await;
    assert_eq!(resp.json::<Value>().await.unwrap()["model"], "gpt-4o");
    let resp = chat(&gw, ask("gpt-4o", false)).await;
    assert_eq!(resp.headers()["x-cache"], "HIT");
}
