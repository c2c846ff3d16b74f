//! openai-forward drop-in: the binary configured from the environment only (no `-c`), as
//! `aifd run` users start it. Each test sets openai-forward's variables, starts the real
//! process and checks what a client (or the operator's terminal) sees.

use crate::common;

use common::mock::MockUpstream;
use common::process::{gateway_command, server_yaml, Process};
use common::*;
use std::net::SocketAddr;
use std::time::Duration;

/// The gateway started from `vars` alone, listening on a free port of 127.0.0.1.
async fn start_env(vars: &[(&str, &str)]) -> (Process, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = gateway_command(dir.path());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.args(["run", "--host", "127.0.0.1", "--port", &port.to_string()]);
    let proc = Process::spawn(&mut cmd);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(addr).await;
    (proc, addr, dir)
}

fn forward_config(up: &MockUpstream, route: &str, kind: &str) -> String {
    format!(
        r#"[{{"base_url":"{}","route":"{route}","type":"{kind}"}}]"#,
        up.url()
    )
}

/// `/healthz` reveals nothing: openai-forward answers it whatever the IP lists say, and
/// monitors (Render, its own restart script) probe it from addresses no list names.
#[tokio::test]
async fn healthz_is_answered_for_any_address_and_never_rate_limited() {
    let up = MockUpstream::start().await;
    let forward = forward_config(&up, "/", "openai");
    let (_proc, addr, _dir) = start_env(&[
        ("FORWARD_CONFIG", &forward),
        ("IP_WHITELIST", "10.9.8.7"),
        ("GLOBAL_RATE_LIMIT", "1/minute"),
    ])
    .await;
    for _ in 0..3 {
        let resp = client()
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "\"OK\"");
    }
    // Everything else is still refused to an address not on the list.
    let resp = client()
        .get(format!("http://{addr}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(up.request_count(), 0);
}

#[tokio::test]
async fn healthz_ignores_the_deny_list_in_yaml_mode_too() {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        r#"{}access: {{deny: ['127.0.0.0/8']}}
routes:
  - {{prefix: /, upstream: '{}'}}
"#,
        server_yaml(dir.path(), port, ""),
        up.url()
    );
    std::fs::write(dir.path().join("gw.yaml"), config).unwrap();
    let _proc = Process::spawn(gateway_command(dir.path()).args(["run", "-c", "gw.yaml"]));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(addr).await;
    let get = |path: &str| client().get(format!("http://{addr}{path}")).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/v1/models").await.unwrap().status(), 403);
}

/// openai-forward serves a level without upstream keys (by leaking the forward key upstream)
/// and a limit for a level no key has (it never applies). A YAML config refuses both; from the
/// environment the gateway starts with a warning, and such keys get a 403 of their own.
#[tokio::test]
async fn a_level_without_upstream_keys_starts_with_a_warning_and_its_keys_get_a_403() {
    let up = MockUpstream::start().await;
    let forward = forward_config(&up, "/", "openai");
    let vars = [
        ("FORWARD_CONFIG", forward.as_str()),
        ("OPENAI_API_KEY_CONFIG", r#"{"sk-real-0": [0]}"#),
        ("FORWARD_KEY_CONFIG", r#"{"fk-zero": 0, "fk-one": 1}"#),
        (
            "REQ_RATE_LIMIT",
            r#"{"/v1/chat/completions": [{"level": 7, "limit": "1/minute"}]}"#,
        ),
    ];
    // `check` without `-c` reads the environment as `run` does and shows the warnings.
    let dir = tempfile::tempdir().unwrap();
    let mut check = gateway_command(dir.path());
    for (k, v) in vars {
        check.env(k, v);
    }
    let out = check
        .arg("check")
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("environment: ok"));
    assert!(err.contains("level 1 has no upstream key"), "{err}");
    assert!(err.contains("level 7"), "{err}");
    assert!(
        !err.contains("sk-real-0") && !err.contains("fk-one"),
        "{err}"
    );

    let (mut proc, addr, _dir) = start_env(&vars).await;
    let chat = |key: &'static str| {
        client()
            .post(format!("http://{addr}/v1/chat/completions"))
            .bearer_auth(key)
            .json(&serde_json::json!({"model": "gpt-4o-mini", "messages": []}))
            .send()
    };
    let resp = chat("fk-one").await.unwrap();
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "key_not_provisioned", "{body}");
    assert_eq!(up.request_count(), 0, "the key never reaches the upstream");
    // Level 7's limit applies to nobody; level 0 works as configured.
    for _ in 0..2 {
        assert_eq!(chat("fk-zero").await.unwrap().status(), 200);
    }
    assert_eq!(
        up.requests()[0].header("authorization"),
        Some("Bearer sk-real-0")
    );
    let log = proc.kill_for_stderr();
    assert!(log.contains("level 1 has no upstream key"), "{log}");
}

/// openai-forward hands an upstream's 429/500/503 to the client as it is, on the first attempt;
/// a client (or its SDK) that retries on its own would otherwise multiply the calls. Failed
/// connects are still retried (nothing reached the upstream).
#[tokio::test]
async fn an_upstream_status_error_is_answered_after_one_attempt() {
    use common::mock::Behavior;
    let up = MockUpstream::start().await;
    let forward = forward_config(&up, "/", "openai");
    let (_proc, addr, _dir) = start_env(&[
        ("FORWARD_CONFIG", &forward),
        ("OPENAI_API_KEY_CONFIG", r#"{"sk-a": [0], "sk-b": [0]}"#),
        ("FORWARD_KEY_CONFIG", r#"{"fk-zero": 0}"#),
    ])
    .await;
    for status in [429u16, 500, 503] {
        let before = up.request_count();
        up.set_behavior(Behavior::Json {
            status,
            headers: vec![],
            body: serde_json::json!({"error": {"message": "busy", "type": "x", "param": null, "code": null}}),
        });
        let resp = client()
            .post(format!("http://{addr}/v1/chat/completions"))
            .bearer_auth("fk-zero")
            .json(&serde_json::json!({"model": "gpt-4o-mini", "messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status);
        assert_eq!(
            up.request_count() - before,
            1,
            "status {status}: one attempt"
        );
    }
}

/// A browser's cookies for the gateway's host must not reach a third party: `Cookie` is
/// dropped on every route (openai-forward dropped it too) unless a route opts in.
/// `Accept-Language` is forwarded on purpose (no credential, and localised APIs use it), and a
/// trailing slash is kept (for general APIs `/x/` and `/x` may differ; openai-forward stripped
/// it).
#[tokio::test]
async fn cookies_stay_at_the_gateway_while_language_and_trailing_slash_go_through() {
    use common::mock::Behavior;
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::Echo);
    let forward = format!(
        r#"[{{"base_url":"{0}","route":"/gemini","type":"general"}},{{"base_url":"{0}","route":"/","type":"openai"}}]"#,
        up.url()
    );
    let (_proc, addr, _dir) = start_env(&[("FORWARD_CONFIG", &forward)]).await;
    for path in ["/gemini/v1beta/models/", "/v1/models/"] {
        let resp = client()
            .get(format!("http://{addr}{path}"))
            .header("cookie", "session=gateway-secret")
            .header("accept-language", "de-DE")
            .header("x-custom", "1")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let echo: serde_json::Value = resp.json().await.unwrap();
        let headers = &echo["headers"];
        assert!(headers.get("cookie").is_none(), "{path}: {echo}");
        assert_eq!(headers["accept-language"], "de-DE", "{path}");
        assert!(
            echo["path"].as_str().unwrap().ends_with("/models/"),
            "{echo}"
        );
    }
}

#[tokio::test]
async fn a_route_may_opt_in_to_forward_cookies() {
    use common::mock::Behavior;
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::Echo);
    let gw = start_gateway(&format!(
        r#"routes:
  - {{prefix: /app, upstream: '{0}', type: general, forward_cookies: true}}
  - {{prefix: /, upstream: '{0}', type: general}}
"#,
        up.url()
    ))
    .await;
    for (path, forwarded) in [("/app/x", true), ("/x", false)] {
        let echo: serde_json::Value = client()
            .get(gw.url(path))
            .header("cookie", "a=1")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(echo["headers"].get("cookie").is_some(), forwarded, "{path}");
    }
}

/// Browser clients: openai-forward allows any origin with credentials and answers preflights
/// itself. Env mode does the same through the CORS policy a YAML config would set.
#[tokio::test]
async fn preflights_are_answered_locally_and_responses_carry_cors_headers() {
    let up = MockUpstream::start().await;
    let forward = forward_config(&up, "/", "openai");
    let (_proc, addr, _dir) = start_env(&[
        ("FORWARD_CONFIG", &forward),
        ("OPENAI_API_KEY_CONFIG", r#"{"sk-real-0": [0]}"#),
        ("FORWARD_KEY_CONFIG", r#"{"fk-zero": 0}"#),
    ])
    .await;
    let origin = "https://chat.example.org";
    let resp = client()
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{addr}/v1/chat/completions"),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], origin);
    assert_eq!(h["access-control-allow-credentials"], "true");
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"));
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    assert_eq!(up.request_count(), 0, "a preflight never goes upstream");

    let resp = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("origin", origin)
        .bearer_auth("fk-zero")
        .json(&serde_json::json!({"model": "m", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], origin);
    assert_eq!(resp.headers()["access-control-allow-credentials"], "true");
}

/// A variable that does nothing must not pass for one in force: misspelt names get a "did you
/// mean", ignored ones their reason, unknown `.env` entries a mention.
#[tokio::test]
async fn unknown_and_ignored_variables_are_warned_about_at_start() {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join(".env"),
        format!(
            "FORWARD_CONFIG='{}'\nFORWARD_CONFG=x\nITER_CHUNK_TYPE=one-by-one\nMY_SETTING=1\n",
            forward_config(&up, "/", "openai")
        ),
    )
    .unwrap();
    let mut proc = Process::spawn(gateway_command(dir.path()).env("LOG_OPENIA", "true").args([
        "run",
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
    ]));
    wait_listening(SocketAddr::from(([127, 0, 0, 1], port))).await;
    let log = proc.kill_for_stderr();
    for expected in [
        "FORWARD_CONFG is not an openai-forward variable; did you mean FORWARD_CONFIG?",
        "LOG_OPENIA is not an openai-forward variable; did you mean LOG_OPENAI?",
        "ITER_CHUNK_TYPE is set but not used",
        "MY_SETTING (in .env) is not an openai-forward variable",
    ] {
        assert!(log.contains(expected), "{expected}\n{log}");
    }
    assert!(!log.contains("PATH"), "{log}");
}

/// `BENCHMARK_MODE=true`: openai-forward's canned chat completions at
/// `/benchmark/v1/chat/completions`, streamed or not, without any upstream call.
#[tokio::test]
async fn benchmark_mode_answers_canned_chat_completions_without_an_upstream() {
    let up = MockUpstream::start().await;
    let forward = forward_config(&up, "/", "openai");
    let (_proc, addr, _dir) = start_env(&[
        ("FORWARD_CONFIG", &forward),
        ("BENCHMARK_MODE", "true"),
        ("OPENAI_API_KEY_CONFIG", r#"{"sk-real-0": [0]}"#),
        ("FORWARD_KEY_CONFIG", r#"{"fk-zero": 0}"#),
    ])
    .await;
    let url = format!("http://{addr}/benchmark/v1/chat/completions");
    let body = |stream: bool| {
        serde_json::json!({"model": "gpt-3.5-turbo", "stream": stream,
            "messages": [{"role": "user", "content": "hi"}]})
    };
    let resp = client().post(&url).json(&body(false)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-3.5-turbo");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let answer = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!answer.is_empty());
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(v["system_fingerprint"], "fp_0123456789");

    let text = client()
        .post(&url)
        .json(&body(true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<&str> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{text}");
    let chunks: Vec<serde_json::Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!content.is_empty() && chunks.len() > 4, "{text}");
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    // The next answer in turn.
    assert_ne!(content, answer);
    assert_eq!(up.request_count(), 0, "nothing went upstream");
}

/// In YAML the same answers come from a `type: benchmark` route, paced like a live stream.
#[tokio::test]
async fn a_yaml_benchmark_route_streams_paced_events() {
    use futures_util::StreamExt;
    let gw = start_gateway(
        r#"routes:
  - {prefix: /bench, type: benchmark}
limits:
  rules:
    - {route: /bench, output_tokens_per_second: 50}
"#,
    )
    .await;
    let start = std::time::Instant::now();
    let resp = client()
        .post(gw.url("/bench/v1/chat/completions"))
        .json(&serde_json::json!({"model": "m", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let (mut events, mut first) = (0usize, None);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        events += chunk.windows(5).filter(|w| w == b"data:").count();
        first.get_or_insert(start.elapsed());
    }
    let spread = start.elapsed() - first.unwrap();
    // One token per event at 50/s: 20 ms apart (generous for a loaded machine).
    assert!(events > 10, "{events}");
    let expected = Duration::from_millis(20 * (events as u64 - 2));
    assert!(
        spread >= expected * 8 / 10,
        "{spread:?} for {events} events"
    );
    let resp = client()
        .get(gw.url("/bench/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

/// openai-forward promises that identical requests to a general route in `CACHE_ROUTES` are
/// answered from the cache, with no per-request switch (its 0.8.1 never stored them: a bug).
#[tokio::test]
async fn a_general_route_in_cache_routes_caches_identical_posts() {
    use common::mock::Behavior;
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::Echo);
    let forward = forward_config(&up, "/g", "general");
    let (_proc, addr, _dir) = start_env(&[
        ("FORWARD_CONFIG", &forward),
        ("CACHE_GENERAL", "true"),
        ("CACHE_ROUTES", r#"["/v1/generate"]"#),
    ])
    .await;
    let post = |prompt: &'static str| {
        client()
            .post(format!("http://{addr}/g/v1/generate"))
            .json(&serde_json::json!({"prompt": prompt}))
            .send()
    };
    let first = post("hello").await.unwrap().text().await.unwrap();
    let second = post("hello").await.unwrap().text().await.unwrap();
    assert_eq!(first, second);
    assert_eq!(
        up.request_count(),
        1,
        "the second answer came from the cache"
    );
    post("other").await.unwrap().text().await.unwrap();
    assert_eq!(up.request_count(), 2);
}

/// When each SSE event (`data:` line) of a streamed chat reached the client, from the request.
async fn event_times(url: String, key: Option<&str>) -> Vec<Duration> {
    use futures_util::StreamExt;
    let start = std::time::Instant::now();
    let mut req = client()
        .post(url)
        .json(&serde_json::json!({"model": "m", "stream": true, "messages": []}));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut times = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        let n = chunk.windows(5).filter(|w| w == b"data:").count();
        times.extend(std::iter::repeat_n(start.elapsed(), n));
    }
    times
}

/// `TOKEN_RATE_LIMIT` 5/second paces a 6-event answer exactly as the YAML rule
/// `output_tokens_per_second: 5` on that path does: one event every 200 ms. (Both modes used to
/// send events bunched, 3 and 4 at a time, because pacing delayed whole upstream reads.)
#[tokio::test]
async fn token_rate_limit_paces_streams_as_the_yaml_rule_does() {
    use common::mock::Behavior;
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::chat_stream(6, Duration::ZERO));
    let forward = forward_config(&up, "/", "openai");
    let (_proc, addr, _dir) = start_env(&[
        ("FORWARD_CONFIG", &forward),
        (
            "TOKEN_RATE_LIMIT",
            r#"{"/v1/chat/completions": [{"level": 0, "limit": "5/second"}]}"#,
        ),
    ])
    .await;
    let env = event_times(format!("http://{addr}/v1/chat/completions"), None).await;
    let gw = start_gateway(&format!(
        r#"routes:
  - {{prefix: /, upstream: '{}'}}
limits:
  rules:
    - {{path: /v1/chat/completions, output_tokens_per_second: 5}}
"#,
        up.url()
    ))
    .await;
    let yaml = event_times(gw.url("/v1/chat/completions"), None).await;
    assert_eq!(env.len(), yaml.len());
    // Six one-token events at 5/s, then [DONE]: each ~200 ms after the one before, in both
    // modes (a loaded machine may only stretch the gaps).
    for times in [&env, &yaml] {
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap >= Duration::from_millis(150), "bunched: {times:?}");
        }
    }
}

/// openai-forward replays a cached chat answer as a stream; here too, from the environment
/// alone: a non-stream answer cached through `CACHE_OPENAI` serves the same chat asked with
/// `stream: true` as a synthesized stream, with no second upstream call.
#[tokio::test]
async fn a_cached_chat_answer_is_replayed_as_a_stream_from_the_environment() {
    let up = MockUpstream::start().await;
    let forward = forward_config(&up, "/", "openai");
    let (_proc, addr, _dir) = start_env(&[
        ("FORWARD_CONFIG", &forward),
        ("CACHE_OPENAI", "true"),
        ("CACHE_ROUTES", r#"["/v1/chat/completions"]"#),
        ("DEFAULT_REQUEST_CACHING_VALUE", "true"),
    ])
    .await;
    let chat = |stream: bool| {
        client()
            .post(format!("http://{addr}/v1/chat/completions"))
            .json(&serde_json::json!({
                "model": "gpt-4o-mini",
                "stream": stream,
                "messages": [{"role": "user", "content": "say hello"}]
            }))
            .send()
    };
    let answer: serde_json::Value = chat(false).await.unwrap().json().await.unwrap();
    let content = answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let streamed = chat(true).await.unwrap();
    assert_eq!(streamed.status(), 200);
    assert_eq!(streamed.headers()["x-cache"], "HIT");
    assert!(streamed.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let body = streamed.text().await.unwrap();
    let mut joined = String::new();
    for data in body.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if data == "[DONE]" {
            continue;
        }
        let chunk: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(chunk["object"], "chat.completion.chunk");
        if let Some(d) = chunk["choices"][0]["delta"]["content"].as_str() {
            joined.push_str(d);
        }
    }
    assert_eq!(joined, content);
    assert_eq!(body.matches("data: [DONE]").count(), 1);
    assert_eq!(up.request_count(), 1, "the stream came from the cache");
}
