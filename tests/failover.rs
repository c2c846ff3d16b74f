//! Failover that finishes answers (issue 14): breakers per (upstream, model), the total budget
//! bounding only the way to the first byte, `max_duration`, model globs in upstream lists, and
//! resets on reused pooled connections. Over real sockets with the mock upstream.

use crate::common;

use common::mock::{Behavior, MockUpstream, DONE_EVENT};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn overloaded() -> Behavior {
    Behavior::Json {
        status: 503,
        headers: Vec::new(),
        body: json!({"error": {"message": "overloaded", "type": "server_error", "param": null, "code": "overloaded"}}),
    }
}

/// Calls the mock saw for `model`.
fn calls_for(up: &MockUpstream, model: &str) -> usize {
    up.requests()
        .iter()
        .filter(|r| r.json().is_some_and(|v| v["model"] == model))
        .count()
}

// ---- Item 3: the total budget bounds the way to the first byte, not the stream -----------------

#[tokio::test]
async fn the_total_budget_does_not_cut_a_healthy_stream() {
    let up = MockUpstream::start().await;
    // 13 chunks, one every 200 ms: about 2.6 s, well past the 1 s budget.
    up.set_behavior(Behavior::chat_stream(13, Duration::from_millis(200)));
    let extra = r#"    retry: {total: 1s}
    timeouts: {idle: 2s}
"#;
    let gw = start_gateway(&one_route("/", &up.url(), extra)).await;
    let start = Instant::now();
    let (text, clean) = read_stream(chat(&gw, ask("gpt-4o", true)).await).await;
    assert!(clean, "{text}");
    assert!(text.ends_with(DONE_EVENT), "{text}");
    assert!(start.elapsed() >= Duration::from_millis(2400));
}

#[tokio::test]
async fn max_duration_cuts_a_stream_that_runs_past_it() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::chat_stream(13, Duration::from_millis(200)));
    let extra = r#"    retry: {total: 5s}
    timeouts: {idle: 2s, max_duration: 1s}
"#;
    let gw = start_gateway(&one_route("/", &up.url(), extra)).await;
    let start = Instant::now();
    let resp = chat(&gw, ask("gpt-4o", true)).await;
    assert_eq!(resp.status(), 200);
    let (text, clean) = read_stream(resp).await;
    let took = start.elapsed();
    assert!(!clean, "a cut stream must not end cleanly: {text}");
    assert!(!text.contains("[DONE]"));
    assert!(text.contains("t0 "), "{text}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2300),
        "{took:?}"
    );
}

// ---- Item 2: breakers per (upstream, model) ----------------------------------------------------

/// One upstream serving every model; `model-a` falls back to `model-b`.
fn one_upstream_with_fallback(up: &MockUpstream, extra: &str) -> String {
    format!(
        r#"routes:
  - prefix: /
    upstreams:
      - {{url: "{}", name: u}}
    fallbacks: {{by_model: {{model-a: [model-b]}}}}
{extra}"#,
        up.url()
    )
}

#[tokio::test]
async fn a_failing_model_opens_its_own_breaker_while_the_fallback_on_the_same_upstream_serves() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::ForModel {
        model: "model-a".into(),
        behavior: Box::new(overloaded()),
    });
    let extra = r#"    retry: {retries: 1, backoff: 10ms, backoff_max: 20ms}
    breaker: {failures: 3, open_for: 30s}
"#;
    let gw = start_gateway(&one_upstream_with_fallback(&up, extra)).await;
    for i in 0..6 {
        let resp = chat(&gw, ask("model-a", false)).await;
        assert_eq!(resp.status(), 200, "request {i}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["model"], "model-b", "request {i}");
    }
    // Two calls per request until the third failure opens (u, model-a); from then on requests
    // go straight to model-b. Counting per upstream, model-b's successes would keep resetting
    // the count and model-a would get two calls every time (12).
    let a_calls = calls_for(&up, "model-a");
    assert!(a_calls <= 4, "{a_calls} calls for model-a");
    assert_eq!(calls_for(&up, "model-b"), 6);
    // The gauge counts it, without naming the model.
    let text = client()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("llm_forward_upstream_model_breakers_open{route=\"/\",upstream=\"u\"} 1"),
        "{text}"
    );
    // The upstream itself stays in use: a model of its own goes through.
    assert_eq!(chat(&gw, ask("model-c", false)).await.status(), 200);
    assert_eq!(calls_for(&up, "model-c"), 1);
}

#[tokio::test]
async fn a_first_token_timeout_for_one_model_does_not_skip_its_upstream_for_the_fallback() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::ForModel {
        model: "model-a".into(),
        behavior: Box::new(Behavior::chat_stream(3, Duration::from_secs(20))),
    });
    // A POST the upstream had whole is failed over only with on_reset (it may be billed twice).
    let extra = r#"    retry: {retries: 1, backoff: 10ms, on_reset: true}
    timeouts: {first_token: 600ms}
"#;
    let gw = start_gateway(&one_upstream_with_fallback(&up, extra)).await;
    let resp = chat(&gw, ask("model-a", true)).await;
    assert_eq!(resp.status(), 200);
    let (text, clean) = read_stream(resp).await;
    assert!(clean && text.ends_with(DONE_EVENT), "{text}");
    assert_eq!(
        calls_for(&up, "model-a"),
        1,
        "a silent model is not asked again"
    );
    assert_eq!(calls_for(&up, "model-b"), 1);
}

// ---- Item 5: globs and exclusions in upstream model lists --------------------------------------

#[tokio::test]
async fn upstream_model_lists_take_globs_and_exclusions() {
    let (fb, openai) = (MockUpstream::start().await, MockUpstream::start().await);
    let yaml = format!(
        r#"routes:
  - prefix: /
    upstreams:
      - {{url: "{}", name: fb, models: ["fb-*"]}}
      - {{url: "{}", name: openai, models: ["gpt-4o*", "!gpt-4o-realtime*"]}}
"#,
        fb.url(),
        openai.url()
    );
    let gw = start_gateway(&yaml).await;
    let resp = chat(&gw, ask("fb-large", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(answered_by(&resp), "fb");
    assert_eq!(fb.requests()[0].json().unwrap()["model"], "fb-large");
    let resp = chat(&gw, ask("gpt-4o-mini", false)).await;
    assert_eq!(answered_by(&resp), "openai");
    // Excluded, and no other upstream serves it: the client's 404, no upstream touched.
    let resp = chat(&gw, ask("gpt-4o-realtime-preview", false)).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(error_code(&resp.json().await.unwrap()), "model_not_found");
    assert_eq!(fb.request_count() + openai.request_count(), 2);
}

// ---- Item 6: resets on reused pooled connections ------------------------------------------------

/// A pool of idle connections to an upstream that now resets every request: the first reset on
/// a reused connection is retried at once (a stale connection is no news about the upstream),
/// the next ones wait the backoff and count for the breaker, which opens and sends the next
/// request to the fallback.
#[tokio::test]
async fn repeated_resets_on_pooled_connections_back_off_and_open_the_breaker() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    let yaml = format!(
        r#"routes:
  - prefix: /
    upstreams:
      - {{url: "{}", name: primary}}
      - {{url: "{}", name: fallback, priority: 2}}
    retry: {{retries: 2, backoff: 500ms, backoff_max: 2s}}
    breaker: {{failures: 3, open_for: 30s}}
"#,
        primary.url(),
        fallback.url()
    );
    let gw = start_gateway(&yaml).await;
    // Four connections at once, then idle in the gateway's pool.
    primary.set_behavior(Behavior::SlowHeaders {
        delay: Duration::from_millis(300),
    });
    let c = client();
    let warm = (0..4).map(|_| c.get(gw.url("/v1/models")).send());
    for r in futures_util::future::join_all(warm).await {
        assert_eq!(r.unwrap().status(), 200);
    }
    assert!(primary.connection_count() >= 4);
    primary.set_behavior(Behavior::ResetBeforeHeaders);
    let before = primary.request_count();
    let resp = c.get(gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(answered_by(&resp), "fallback");
    let seen: Vec<Instant> = primary.requests()[before..]
        .iter()
        .map(|r| r.received_at)
        .collect();
    // One free retry, then the plan's three (the first try and two retries).
    assert_eq!(seen.len(), 4, "{seen:?}");
    let gaps: Vec<Duration> = seen.windows(2).map(|w| w[1] - w[0]).collect();
    // Backoffs are drawn from [b/2, b]: 250-500 ms, then 500-1000 ms.
    assert!(gaps[0] < Duration::from_millis(240), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(240), "{gaps:?}");
    assert!(gaps[2] >= Duration::from_millis(490), "{gaps:?}");
    // Three counted failures opened the primary's breaker: the next request skips it.
    let resp = c.get(gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(answered_by(&resp), "fallback");
    assert_eq!(primary.request_count(), before + 4);
}

// ---- Item 4: logs that say what happened ----------------------------------------------------------

/// Through the real binary's log: a stalled first token, an idle stream and a routine retry are
/// told apart in the access log's `outcome=`, and none of them is Pingora's ERROR "Downstream
/// ReadTimedout" or a WARN "Fail to proxy" for a retry the plan made.
#[tokio::test]
async fn deadlines_and_retries_are_logged_for_what_they_are() {
    use common::process::{gateway_command, server_yaml, Process};
    use std::net::SocketAddr;
    let (slow, stall, flaky) = (
        MockUpstream::start().await,
        MockUpstream::start().await,
        MockUpstream::start().await,
    );
    slow.set_behavior(Behavior::chat_stream(3, Duration::from_secs(20)));
    stall.set_behavior(Behavior::StallMidStream {
        events_before_stall: 2,
    });
    flaky.push_behavior(overloaded());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let route = |prefix: &str, up: &MockUpstream, extra: &str| {
        format!(
            r#"  - prefix: {prefix}
    upstream: '{}'
    retry: {{retries: 1, backoff: 10ms}}
{extra}"#,
            up.url()
        )
    };
    let config = format!(
        "{}routes:\n{}{}{}",
        server_yaml(
            dir.path(),
            port,
            r#"  threads: 1
  grace_period: 5s
"#
        ),
        route("/slow", &slow, "    timeouts: {first_token: 500ms}\n"),
        route("/stall", &stall, "    timeouts: {idle: 500ms}\n"),
        route("/flaky", &flaky, ""),
    );
    std::fs::write(dir.path().join("gw.yaml"), config).unwrap();
    let mut proc = Process::spawn(
        gateway_command(dir.path())
            .env("RUST_LOG", "info")
            .args(["run", "-c", "gw.yaml"]),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(addr).await;
    let post = |path: &str| {
        client()
            .post(format!("http://{addr}{path}/v1/chat/completions"))
            .json(&ask("gpt-4o", true))
            .send()
    };
    let resp = post("/slow").await.unwrap();
    assert_eq!(resp.status(), 504);
    let (_, clean) = read_stream(post("/stall").await.unwrap()).await;
    assert!(!clean);
    let (_, clean) = read_stream(post("/flaky").await.unwrap()).await;
    assert!(clean);
    proc.signal("TERM");
    let err = proc.wait_for_stderr();
    let access = |route: &str| {
        err.lines()
            .find(|l| l.contains("status=") && l.contains(&format!("route={route} ")))
            .unwrap_or_else(|| panic!("no access line for {route}:\n{err}"))
            .to_string()
    };
    assert!(access("/slow").contains("outcome=first_token"), "{err}");
    assert!(access("/stall").contains("outcome=idle"), "{err}");
    assert!(access("/flaky").contains("outcome=ok"), "{err}");
    assert!(!err.contains("ReadTimedout"), "{err}");
    assert!(!err.contains("Fail to proxy"), "{err}");
    assert!(
        err.contains("no first token within the first_token deadline"),
        "{err}"
    );
    assert!(err.contains("attempt 1 failed"), "{err}");
}

// ---- Interim (1xx) answers -----------------------------------------------------------------------

/// An upstream that answers each request with `100 Continue`, then a 500 (as a server does that
/// takes a body in and then fails), one request per connection; with the number it answered.
async fn continue_then_500() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answered = std::sync::Arc::new(AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&answered);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let count = std::sync::Arc::clone(&count);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // The head, then as many body bytes as it announces.
                let (head_end, len) = loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (i + 4, len);
                    }
                };
                while buf.len() < head_end + len {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                let body = r#"{"error":{"message":"boom","type":"server_error","param":null,"code":null}}"#;
                let _ = s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
                let _ = s.flush().await;
                let last = format!(
                    "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(last.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (url, answered)
}

/// A `100 Continue` before the final 500 is no answer: the 500 is what the attempt got. It is
/// retried on the fallback (the interim head the client may have seen does not stop that),
/// and it counts against the breaker, which opens. Judged as the success of the 100, it kept
/// resetting the breaker's count, and the 500 went to the client.
#[tokio::test]
async fn an_interim_100_before_a_500_is_judged_as_the_500() {
    use std::sync::atomic::Ordering;
    let (primary, answered) = continue_then_500().await;
    let fallback = MockUpstream::start().await;
    let yaml = format!(
        r#"routes:
  - prefix: /
    upstreams:
      - {{url: "{primary}", name: primary}}
      - {{url: "{}", name: fallback, priority: 2}}
    retry: {{retries: 0}}
    breaker: {{failures: 2, open_for: 30s}}
"#,
        fallback.url()
    );
    let gw = start_gateway(&yaml).await;
    let c = client();
    for i in 0..4 {
        let resp = c.get(gw.url("/v1/models")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "GET {i}");
        assert_eq!(answered_by(&resp), "fallback", "GET {i}");
    }
    // Two failures opened the primary's breaker: the last two requests skipped it.
    assert_eq!(answered.load(Ordering::SeqCst), 2);
    let text = c
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("llm_forward_upstream_breaker_state{route=\"/\",upstream=\"primary\"} 2"),
        "{text}"
    );
    // A request with a body (held by the gateway for replay) is retried the same way.
    let gw = start_gateway(&yaml).await;
    let resp = chat(&gw, ask("m", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(answered_by(&resp), "fallback");
}
