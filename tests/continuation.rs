//! `stream_errors: continue`: a chat stream the upstream breaks (or lets go idle) after part of
//! the answer reached the client is finished by the next candidate, spliced into the client's
//! stream as ordinary chunks. Asserts what the client read and what the continuing mock got.

use crate::common;

use common::mock::{chat_stream_event, Behavior, MockUpstream, DONE_EVENT};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const INSTRUCTION_START: &str = "Your previous message was cut off.";

/// `primary` then `fallback` (priority 2, with `prefill`), continuing broken streams.
fn config(primary: &MockUpstream, fallback: &MockUpstream, prefill: bool, extra: &str) -> String {
    format!(
        r#"routes:
  - prefix: /
    upstreams:
      - {{url: "{}", name: primary}}
      - {{url: "{}", name: fallback, priority: 2, prefill: {prefill}}}
    retry: {{retries: 2, backoff: 10ms, backoff_max: 40ms}}
    stream_errors: continue
{extra}"#,
        primary.url(),
        fallback.url()
    )
}

/// The continuing upstream's answer: its own id, model and created, which the client must not see.
fn continuation(usage: bool) -> Behavior {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-other", "object": "chat.completion.chunk", "created": 5,
               "model": "other-model",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        .to_string()
    };
    let mut events = vec![
        chunk(json!({"role": "assistant", "content": "c0 "}), Value::Null),
        chunk(json!({"content": "c1"}), Value::Null),
        chunk(json!({}), json!("stop")),
    ];
    if usage {
        events.push(
            json!({"id": "chatcmpl-other", "object": "chat.completion.chunk", "created": 5,
                   "model": "other-model", "choices": [],
                   "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}})
            .to_string(),
        );
    }
    let refs: Vec<&str> = events.iter().map(String::as_str).collect();
    Behavior::sse_events(&refs, Duration::ZERO)
}

fn ask() -> Value {
    json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]})
}

/// The JSON events of a stream (not `[DONE]`).
fn events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn answer(events: &[Value]) -> String {
    events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// The messages the continuing upstream was sent.
fn sent_messages(up: &MockUpstream) -> Vec<Value> {
    let reqs = up.requests();
    assert_eq!(reqs.len(), 1);
    reqs[0].json().unwrap()["messages"]
        .as_array()
        .unwrap()
        .clone()
}

fn assert_one_answer(text: &str, clean: bool, expected: &str) -> Vec<Value> {
    assert!(clean, "a continued stream ends cleanly: {text}");
    assert_eq!(text.matches("[DONE]").count(), 1, "{text}");
    assert!(text.ends_with(DONE_EVENT), "{text}");
    let evs = events(text);
    assert_eq!(answer(&evs), expected);
    for e in &evs {
        assert_eq!(e["id"], "chatcmpl-mock", "{e}");
        assert_eq!(e["model"], "mock-model", "{e}");
        assert_eq!(e["created"], 1_700_000_000u64, "{e}");
    }
    evs
}

#[tokio::test]
async fn a_cut_stream_is_continued_with_a_prefill_on_the_next_upstream() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.set_behavior(Behavior::ResetMidStream {
        events_before_reset: 3,
    });
    fallback.set_behavior(continuation(false));
    fallback.set_recording(true);
    let gw = start_gateway(&config(&primary, &fallback, true, "")).await;
    let (text, clean) = read_stream(chat(&gw, ask()).await).await;
    assert!(text.starts_with(&chat_stream_event(0)), "{text}");
    let evs = assert_one_answer(&text, clean, "t0 t1 t2 c0 c1");
    assert!(evs
        .iter()
        .all(|e| e["choices"][0]["delta"]["role"].is_null()));
    let messages = sent_messages(&fallback);
    assert_eq!(
        messages.last().unwrap(),
        &json!({"role": "assistant", "content": "t0 t1 t2 "})
    );
    assert_eq!(messages.len(), 2);
}

#[tokio::test]
async fn a_stream_that_goes_idle_midway_is_continued() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.set_behavior(Behavior::StallMidStream {
        events_before_stall: 2,
    });
    fallback.set_behavior(continuation(false));
    fallback.set_recording(true);
    let extra = "    timeouts: {idle: 600ms, read: 60s}\n";
    let gw = start_gateway(&config(&primary, &fallback, true, extra)).await;
    let start = Instant::now();
    let (text, clean) = read_stream(chat(&gw, ask()).await).await;
    assert_one_answer(&text, clean, "t0 t1 c0 c1");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(
        sent_messages(&fallback).last().unwrap()["content"],
        "t0 t1 "
    );
}

#[tokio::test]
async fn a_model_without_prefill_is_asked_to_continue_and_never_sent_a_prefill() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.set_behavior(Behavior::ResetMidStream {
        events_before_reset: 3,
    });
    fallback.set_behavior(continuation(false));
    fallback.set_recording(true);
    let gw = start_gateway(&config(&primary, &fallback, false, "")).await;
    let (text, clean) = read_stream(chat(&gw, ask()).await).await;
    assert_one_answer(&text, clean, "t0 t1 t2 c0 c1");
    let messages = sent_messages(&fallback);
    let last = messages.last().unwrap();
    assert_eq!(last["role"], "user");
    assert!(last["content"]
        .as_str()
        .unwrap()
        .starts_with(INSTRUCTION_START));
    assert_eq!(
        messages[messages.len() - 2],
        json!({"role": "assistant", "content": "t0 t1 t2 "})
    );
}

#[tokio::test]
async fn a_continuation_that_fails_ends_the_stream_abnormally() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.set_behavior(Behavior::ResetMidStream {
        events_before_reset: 3,
    });
    fallback.set_behavior(Behavior::ResetMidStream {
        events_before_reset: 1,
    });
    let gw = start_gateway(&config(&primary, &fallback, true, "")).await;
    let (text, clean) = read_stream(chat(&gw, ask()).await).await;
    assert!(!clean, "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    // Refused outright: the same.
    fallback.set_behavior(Behavior::Json {
        status: 500,
        headers: vec![],
        body: json!({"error": {"message": "boom", "type": "server_error", "param": null, "code": null}}),
    });
    let (text, clean) = read_stream(chat(&gw, ask()).await).await;
    assert!(!clean && !text.contains("[DONE]"), "{text}");
}

#[tokio::test]
async fn usage_is_summed_over_both_calls_and_the_record_says_continued() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.set_behavior(Behavior::ResetMidStream {
        events_before_reset: 3,
    });
    fallback.set_behavior(continuation(true));
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"log:
  chat: {{dir: '{}'}}
{}"#,
        dir.path().display(),
        config(&primary, &fallback, true, "").replace("prefix: /", "prefix: /openai")
    );
    let gw = start_gateway(&yaml).await;
    let mut body = ask();
    body["stream_options"] = json!({"include_usage": true});
    let resp = client()
        .post(gw.url("/openai/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let (text, clean) = read_stream(resp).await;
    let evs = assert_one_answer(&text, clean, "t0 t1 t2 c0 c1");
    // The broken call's part is estimated: the conversation `[{"role":"user","content":"hi"}]`
    // (32 bytes, 8 tokens) and three deltas.
    let usage = &evs.last().unwrap()["usage"];
    assert_eq!(
        usage,
        &json!({"prompt_tokens": 18, "completion_tokens": 5, "total_tokens": 23})
    );
    assert_eq!(evs.iter().filter(|e| !e["usage"].is_null()).count(), 1);
    let recs = chat_records(dir.path(), "openai", 1).await;
    let rec = &recs[0];
    assert_eq!(rec["answer"], "t0 t1 t2 c0 c1", "{rec}");
    assert_eq!(rec["usage"]["total_tokens"], 23, "{rec}");
    assert_eq!(rec["complete"], true, "{rec}");
    assert!(rec["error"].is_null(), "{rec}");
    assert_eq!(rec["continued_by"]["upstream"], "fallback", "{rec}");
}

/// Through the real binary's log: the access line says `outcome=continued` and names the model
/// that finished; no ERROR line for an answer the client got whole.
#[tokio::test]
async fn the_access_log_says_continued() {
    use common::process::{gateway_command, server_yaml, Process};
    use std::net::SocketAddr;
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.set_behavior(Behavior::ResetMidStream {
        events_before_reset: 3,
    });
    fallback.set_behavior(continuation(false));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "{}{}",
        server_yaml(
            dir.path(),
            port,
            r#"  threads: 1
  grace_period: 5s
"#
        ),
        config(&primary, &fallback, true, "")
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
        .post(format!("http://{addr}/v1/chat/completions"))
        .json(&ask())
        .send()
        .await
        .unwrap();
    let (text, clean) = read_stream(resp).await;
    assert_one_answer(&text, clean, "t0 t1 t2 c0 c1");
    proc.signal("TERM");
    let err = proc.wait_for_stderr();
    let access = err
        .lines()
        .find(|l| l.contains("status=") && l.contains("route=/ "))
        .unwrap_or_else(|| panic!("no access line:\n{err}"));
    assert!(access.contains("outcome=continued"), "{access}");
    assert!(access.contains("upstream=fallback"), "{access}");
    assert!(!err.contains("ERROR"), "{err}");
    assert!(!err.contains("Fail to proxy"), "{err}");
}

/// `prefill` may name models (globs of the names the upstream knows): the continuing model
/// `gpt-4o` is not among them, so it gets the instruction, never a prefill.
#[tokio::test]
async fn prefill_can_be_limited_to_some_models() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.set_behavior(Behavior::ResetMidStream {
        events_before_reset: 3,
    });
    fallback.set_behavior(continuation(false));
    fallback.set_recording(true);
    let yaml =
        config(&primary, &fallback, true, "").replace("prefill: true", "prefill: [claude-*]");
    let gw = start_gateway(&yaml).await;
    let (text, clean) = read_stream(chat(&gw, ask()).await).await;
    assert_one_answer(&text, clean, "t0 t1 t2 c0 c1");
    let messages = sent_messages(&fallback);
    assert_eq!(messages.last().unwrap()["role"], "user");
    let yaml = config(&primary, &fallback, true, "").replace("prefill: true", "prefill: [gpt-4*]");
    let gw = start_gateway(&yaml).await;
    let (text, clean) = read_stream(chat(&gw, ask()).await).await;
    assert_one_answer(&text, clean, "t0 t1 t2 c0 c1");
    let reqs = fallback.requests();
    let last = reqs.last().unwrap().json().unwrap()["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["role"], "assistant");
}

/// With no other upstream for the model, a fallback model continues (on the same upstream), and
/// the client's chunks still name the model it saw.
#[tokio::test]
async fn a_fallback_model_continues_when_no_other_upstream_serves_the_model() {
    let up = MockUpstream::start().await;
    up.push_behavior(Behavior::ResetMidStream {
        events_before_reset: 3,
    });
    up.set_behavior(continuation(false));
    up.set_recording(true);
    let extra = r#"    stream_errors: continue
    fallbacks: {models: [gpt-4o-mini]}
"#;
    let gw = start_gateway(&one_route("/", &up.url(), extra)).await;
    let (text, clean) = read_stream(chat(&gw, ask()).await).await;
    assert_one_answer(&text, clean, "t0 t1 t2 c0 c1");
    let reqs = up.requests();
    assert_eq!(reqs.len(), 2);
    let second = reqs[1].json().unwrap();
    assert_eq!(second["model"], "gpt-4o-mini");
    assert_eq!(
        second["messages"].as_array().unwrap().last().unwrap()["role"],
        "user"
    );
}

/// A continued stream reached the client whole: `/metrics` counts it a success (it was counted
/// as the cut's `stream_interrupted`), and counts the continuation on its own.
#[tokio::test]
async fn a_continued_stream_is_a_success_in_the_metrics() {
    let (primary, fallback) = (MockUpstream::start().await, MockUpstream::start().await);
    primary.set_behavior(Behavior::ResetMidStream {
        events_before_reset: 3,
    });
    fallback.set_behavior(continuation(true));
    let gw = start_gateway(&config(&primary, &fallback, true, "")).await;
    let (text, clean) = read_stream(chat(&gw, ask()).await).await;
    assert_one_answer(&text, clean, "t0 t1 t2 c0 c1");
    // The request is recorded when it is logged, just after its last byte.
    let deadline = Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        let text = client()
            .get(gw.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("llm_forward_requests_total{route=\"/\"") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let requests: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("llm_forward_requests_total{route=\"/\""))
        .collect();
    assert_eq!(
        requests,
        ["llm_forward_requests_total{route=\"/\",status_class=\"2xx\",outcome=\"ok\"} 1"],
        "{metrics}"
    );
    assert!(
        metrics.contains("llm_forward_streams_continued_total{route=\"/\"} 1"),
        "{metrics}"
    );
}
