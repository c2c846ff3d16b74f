//! Streams, token accounting and chat logs over real sockets: usage requested upstream and the
//! extra chunk removed for clients that did not ask (byte-exact otherwise), usage exactly once
//! for clients that did, JSONL records for chat, completions and embeddings, cut streams logged
//! as cut with estimated usage, logging that never fails a request, and `convert`.

use crate::common;

use common::mock::{Behavior, MockUpstream};
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

fn config(upstream: &str, dir: &Path) -> String {
    format!(
        r#"log:
  chat: {{dir: '{}'}}
routes:
  - {{prefix: /openai, upstream: '{upstream}'}}
"#,
        dir.display()
    )
}

async fn chat(gw: &GatewayGuard, body: Value) -> reqwest::Response {
    client()
        .post(gw.url("/openai/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_stream_is_accounted_without_the_client_seeing_the_extra_usage_chunk() {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(&config(&up.url(), dir.path())).await;
    let msgs = json!([{"role": "user", "content": "Say hello"}]);
    let text = chat(
        &gw,
        json!({"model": "gpt-4o", "stream": true, "messages": msgs}),
    )
    .await
    .text()
    .await
    .unwrap();
    // The upstream was asked for usage …
    let sent = up.requests()[0].json().unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert_eq!(sent["messages"], msgs);
    // … and the client got exactly what the upstream sends without it.
    assert!(
        !text.contains("\"usage\""),
        "the usage chunk leaked: {text}"
    );
    assert!(text.ends_with("data: [DONE]\n\n"));
    let mut reference = up.requests()[0].json().unwrap();
    reference.as_object_mut().unwrap().remove("stream_options");
    let direct = client()
        .post(format!("{}/v1/chat/completions", up.url()))
        .json(&reference)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, direct, "bytes differ from the upstream's own stream");

    let recs = chat_records(dir.path(), "openai", 1).await;
    let r = &recs[0];
    assert_eq!(r["endpoint"], "chat");
    assert_eq!(r["stream"], true);
    assert_eq!(r["complete"], true);
    assert_eq!(r["answer"], "Hello from mock");
    assert_eq!(r["usage"]["prompt_tokens"], 10);
    assert_eq!(r["usage"]["completion_tokens"], 3);
    assert_eq!(r["usage"]["estimated"], false);
    assert_eq!(r["request"]["messages"], msgs);
    assert_eq!(r["route"], "/openai");
    assert!(r["ttft_ms"].as_f64().is_some());
}

#[tokio::test]
async fn a_client_that_asked_for_usage_gets_it_exactly_once() {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(&config(&up.url(), dir.path())).await;
    let body = json!({"model": "m", "stream": true, "stream_options": {"include_usage": true}, "messages": []});
    let text = chat(&gw, body.clone()).await.text().await.unwrap();
    assert_eq!(text.matches("\"usage\"").count(), 1, "{text}");
    // Its request went upstream untouched.
    assert_eq!(up.requests()[0].body, serde_json::to_vec(&body).unwrap());
}

/// The usage request is spliced into `stream_options`, which may come before the conversation:
/// the record still holds the conversation the client sent, not bytes shifted by the splice.
#[tokio::test]
async fn a_conversation_after_the_spliced_stream_options_is_logged_as_sent() {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(&config(&up.url(), dir.path())).await;
    let msgs = json!([{"role": "user", "content": "Say hello"}]);
    // Replaced (`false` → `true`: one byte shorter), and inserted into an empty object.
    for options in [r#"{"include_usage":false}"#, "{}"] {
        let body = format!(
            r#"{{"model":"m","stream":true,"stream_options":{options},"messages":{msgs}}}"#
        );
        let resp = client()
            .post(gw.url("/openai/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap();
    }
    let recs = chat_records(dir.path(), "openai", 2).await;
    for r in &recs {
        assert_eq!(r["request"]["messages"], msgs, "{r}");
    }
    for sent in up.requests() {
        assert_eq!(
            sent.json().unwrap()["stream_options"]["include_usage"],
            true
        );
    }
}

#[tokio::test]
async fn json_answers_and_embeddings_are_logged_with_usage() {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(&config(&up.url(), dir.path())).await;
    let resp = chat(
        &gw,
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let resp = client()
        .post(gw.url("/openai/v1/embeddings"))
        .json(&json!({"model": "text-embedding-3-small", "input": ["a", "b"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let recs = chat_records(dir.path(), "openai", 2).await;
    let chat = recs.iter().find(|r| r["endpoint"] == "chat").unwrap();
    assert_eq!(chat["stream"], false);
    assert_eq!(chat["answer"], "Hello from mock");
    assert_eq!(chat["usage"]["total_tokens"], 13);
    assert_eq!(chat["model"], "gpt-4o");
    let emb = recs.iter().find(|r| r["endpoint"] == "embeddings").unwrap();
    assert_eq!(emb["request"]["input"], json!(["a", "b"]));
    assert_eq!(emb["usage"]["prompt_tokens"], 8);
    assert!(
        !emb.to_string().contains("embedding\":["),
        "vectors must not be logged"
    );
}

#[tokio::test]
async fn a_stream_cut_by_the_upstream_is_logged_as_cut_with_estimated_usage() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::ResetMidStream {
        events_before_reset: 5,
    });
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(&config(&up.url(), dir.path())).await;
    let resp = chat(
        &gw,
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "count"}]}),
    )
    .await;
    assert!(resp.text().await.is_err(), "the cut must reach the client");
    let recs = chat_records(dir.path(), "openai", 1).await;
    let r = &recs[0];
    assert_eq!(r["complete"], false);
    assert_eq!(r["usage"]["estimated"], true);
    // Counted with the model's tokenizer from what did arrive.
    let answer = r["answer"].as_str().unwrap();
    assert_eq!(
        r["usage"]["completion_tokens"],
        llm_forward::tokens::count("m", answer)
    );
    assert!(r["usage"]["completion_tokens"].as_u64().unwrap() >= 5);
    assert!(r["answer"].as_str().unwrap().starts_with("t0 t1"));
}

#[tokio::test]
async fn an_unwritable_log_directory_never_fails_a_request() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&config(&up.url(), Path::new("/dev/full/not-a-dir"))).await;
    for stream in [false, true] {
        let resp = chat(&gw, json!({"model": "m", "stream": stream, "messages": []})).await;
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap();
    }
}

#[tokio::test]
async fn convert_turns_chat_logs_into_openai_forward_files() {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(&config(&up.url(), dir.path())).await;
    chat(
        &gw,
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await
    .text()
    .await
    .unwrap();
    chat_records(dir.path(), "openai", 1).await;
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_llm-forward"))
        .args(["convert", "--log-dir"])
        .arg(dir.path())
        .arg("--out-dir")
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success());
    let converted: Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("chat_openai.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(converted[0]["assistant"], "Hello from mock");
    // openai-forward writes each message as `{role: content}`.
    assert_eq!(converted[0]["messages"][0]["user"], "hi");
}

#[tokio::test]
async fn logs_rotate_by_size_and_keep_the_configured_number_of_files() {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"log:
  chat: {{dir: '{}', max_file_size: 1KiB, keep_files: 2}}
routes:
  - {{prefix: /openai, upstream: '{}'}}
"#,
        dir.path().display(),
        up.url()
    );
    let gw = start_gateway(&yaml).await;
    for i in 0..12 {
        let resp = chat(&gw, json!({"model": "m", "messages": [{"role": "user", "content": format!("question {i}")}]})).await;
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap();
    }
    // Every record is ~600 bytes: 12 of them fill several 1 KiB files; only 2 rotated remain.
    let route_dir = dir.path().join("openai");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let files: Vec<String> = std::fs::read_dir(&route_dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let rotated = files.iter().filter(|f| f.as_str() != "chat.jsonl").count();
        let text = std::fs::read_to_string(route_dir.join("chat.jsonl")).unwrap_or_default();
        if rotated == 2 && text.contains("question 11") {
            break;
        }
        assert!(Instant::now() < deadline, "files: {files:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_is_charged_for_what_was_generated() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::SseGated {
        events: (0..6)
            .map(|i| {
                format!("{{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"word{i} \"}}}}]}}")
            })
            .collect(),
    });
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(&config(&up.url(), dir.path())).await;
    let resp = chat(
        &gw,
        json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "go"}]}),
    )
    .await;
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    for _ in 0..3 {
        let c = futures_util::StreamExt::next(&mut body)
            .await
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&c));
        up.release(1);
    }
    drop(body);
    let recs = chat_records(dir.path(), "openai", 1).await;
    let r = &recs[0];
    assert_eq!(r["complete"], false);
    assert_eq!(r["usage"]["estimated"], true);
    let answer = r["answer"].as_str().unwrap();
    assert!(answer.starts_with("word0 word1"), "{answer}");
    assert_eq!(
        r["usage"]["completion_tokens"],
        llm_forward::tokens::count("gpt-4o", answer)
    );
}
