//! No key material in anything the gateway writes: its logs at the most verbose level, its
//! error bodies, its responses, its metrics, its cache files — across successes, refusals, key
//! rotation, upstream faults, cache hits and the cache's admin interface.

use crate::common;

use common::mock::{refused_addr, Behavior, MockUpstream};
use common::*;
use serde_json::json;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

const SECRETS: [&str; 5] = [
    "sk-live-UPSTREAM-0001-4f3c2b1a",
    "sk-live-UPSTREAM-0002-9e8d7c6b",
    "fk-FORWARD-alice-7a6b5c4d",
    "fk-FORWARD-bob-1f2e3d4c",
    "adm-CACHE-ADMIN-5e6f7a8b9c",
];

#[tokio::test]
async fn no_secret_appears_in_logs_errors_or_responses() {
    let up = MockUpstream::start().await;
    let dead = refused_addr();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let admin = free_port();
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
server: {{listen: ['127.0.0.1:{port}'], threads: 1, grace_period: 0s}}
admin: {{listen: '127.0.0.1:{admin}'}}
upstream_keys:
  main: [{{key: "${{LF_TEST_UP1}}"}}, {{key: "${{LF_TEST_UP2}}", name: second}}]
  fresh: [{{key: "${{LF_TEST_UP2}}"}}]
tenants: {{t: {{models: [gpt-4o]}}}}
forward_keys:
  - {{key: "${{LF_TEST_FK1}}", tenant: t}}
  - {{key: "${{LF_TEST_FK2}}", tenant: t, name: bob}}
routes:
  - {{prefix: /openai, upstream: '{}', auth: {{pool: main}}}}
  - {{prefix: /gemini, upstream: '{}', type: general, auth: {{pool: main, key_header: "query:key"}}}}
  - {{prefix: /dead, upstream: 'http://{dead}', auth: {{pool: main}}, retry: {{connect_retries: 1, backoff: 1ms}}}}
  - {{prefix: /cached, upstream: '{}', auth: {{pool: fresh}}}}
  - {{prefix: /gcached, upstream: '{}', type: general, auth: {{pool: fresh, key_header: "query:key"}}}}
cache:
  backend: disk
  path: '{}'
  default: true
  admin_key: "${{LF_TEST_ADMIN}}"
  routes: [{{route: /cached}}, {{route: /gcached}}]
"#,
            up.url(),
            up.url(),
            up.url(),
            up.url(),
            dir.path().join("cache").display()
        ),
    )
    .unwrap();
    let mut child = KillOnDrop(Some(
        Command::new(env!("CARGO_BIN_EXE_llm-forward"))
            .args(["run", "-c"])
            .arg(&config)
            .env("RUST_LOG", "trace")
            .env("LF_TEST_UP1", SECRETS[0])
            .env("LF_TEST_UP2", SECRETS[1])
            .env("LF_TEST_FK1", SECRETS[2])
            .env("LF_TEST_FK2", SECRETS[3])
            .env("LF_TEST_ADMIN", SECRETS[4])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(addr).await;
    let c = client();
    let url = |p: &str| format!("http://{addr}{p}");
    let mut seen_by_client = String::new();
    let chat = json!({"model": "gpt-4o", "messages": []});

    // A rejected key, a throttled key, successes, refusals of all kinds, a dead upstream.
    up.push_behavior(Behavior::Json { status: 401, headers: vec![], body: json!({"error": {"message": "bad key", "type": "x", "param": null, "code": "invalid_api_key"}}) });
    up.push_behavior(Behavior::Json { status: 429, headers: vec![("retry-after".into(), "1".into())], body: json!({"error": {"message": "slow", "type": "x", "param": null, "code": "rate_limit_exceeded"}}) });
    let requests = [
        c.post(url("/openai/v1/chat/completions"))
            .bearer_auth(SECRETS[2])
            .json(&chat),
        c.post(url("/openai/v1/chat/completions"))
            .bearer_auth(SECRETS[3])
            .json(&chat),
        c.post(url("/openai/v1/chat/completions"))
            .bearer_auth(SECRETS[2])
            .json(&json!({"model": "o3", "messages": []})),
        c.post(url("/openai/v1/chat/completions"))
            .bearer_auth("fk-not-a-key")
            .json(&chat),
        c.post(url("/openai/v1/chat/completions"))
            .bearer_auth(SECRETS[2])
            .header("content-type", "application/json")
            .body("{broken"),
        c.get(url(&format!("/gemini/v1beta/models?key={}", SECRETS[3]))),
        c.post(url("/dead/v1/chat/completions"))
            .bearer_auth(SECRETS[2])
            .json(&chat),
        c.get(url("/nowhere")).bearer_auth(SECRETS[2]),
        // Cache misses then hits, keyed (hashed) on tenants and on a key in the query.
        c.post(url("/cached/v1/embeddings"))
            .bearer_auth(SECRETS[2])
            .json(&json!({"model": "gpt-4o", "input": "x"})),
        c.post(url("/cached/v1/embeddings"))
            .bearer_auth(SECRETS[3])
            .json(&json!({"model": "gpt-4o", "input": "x"})),
        c.get(url(&format!("/gcached/v1beta/models?key={}", SECRETS[3]))),
        c.get(url(&format!("/gcached/v1beta/models?key={}", SECRETS[3]))),
        c.get(url("/_llmf/cache/stats")).bearer_auth(SECRETS[4]),
        c.get(url("/_llmf/cache/stats")).bearer_auth(SECRETS[2]),
    ];
    for (i, req) in requests.into_iter().enumerate() {
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {i}: {e:?}"));
        seen_by_client.push_str(&format!("{:?}", resp.headers()));
        seen_by_client.push_str(&resp.text().await.unwrap());
    }
    // The metrics, after all that traffic (key health included).
    let metrics = c
        .get(format!("http://127.0.0.1:{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("llm_forward_upstream_key_state{pool=\"main\",key=\"second\"}"),
        "{metrics}"
    );
    seen_by_client.push_str(&metrics);
    let child = child.0.take().unwrap();
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    let written = format!(
        "{}{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        seen_by_client
    );
    for secret in SECRETS {
        assert!(!written.contains(secret), "a secret leaked:\n{written}");
        // Also no recognisable part of it.
        assert!(
            !written.contains(&secret[8..20]),
            "part of a secret leaked:\n{written}"
        );
    }
    // Nor in the cache's files (names or contents), which do hold the answers.
    let mut files = 0;
    let mut stack = vec![dir.path().join("cache")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
                continue;
            }
            files += 1;
            let name = e.file_name().to_string_lossy().into_owned();
            let text = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned();
            for secret in SECRETS {
                assert!(!name.contains(secret) && !text.contains(secret), "{name}");
                assert!(!text.contains(&secret[8..20]), "{name}");
            }
        }
    }
    assert!(files >= 2, "the cache stored nothing:\n{written}");
    assert!(written.contains("cache=hit"), "no cache hit:\n{written}");
    assert!(
        written.contains("\"hit_ratio\""),
        "no admin stats:\n{written}"
    );
    // The logs are there and name keys by id.
    assert!(
        written.contains("key=bob"),
        "no access log with key ids:\n{written}"
    );
    assert!(written.contains("removed from rotation"), "{written}");
    // And the upstream did get real keys.
    assert!(up
        .requests()
        .iter()
        .any(|r| r.header("authorization") == Some(&format!("Bearer {}", SECRETS[0]))));
}

/// Kills the gateway if the test fails before it is stopped and read.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `check` and the start-up of `run` print where a config is wrong and what the gateway will
/// do, never a secret: not a `${VAR}` expanded into a URL (query, credentials, path), not a
/// Redis password, whether the value is accepted or refused.
#[tokio::test]
async fn check_and_start_up_never_print_secrets_from_urls() {
    const SECRET: &str = "Zq9-URL-SECRET-7c1d";
    const LITERAL: &str = "lit3ral-redis-pass";
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], yaml: &str| {
        std::fs::write(dir.path().join("c.yaml"), yaml).unwrap();
        let out = common::process::gateway_command(dir.path())
            .args(args)
            .arg("c.yaml")
            .env("LF_URL_SECRET", SECRET)
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let refused = [
        ("routes[0].upstream", "routes: [{prefix: /, upstream: 'https://api.example.com/?key=${LF_URL_SECRET}'}]"),
        ("routes[0].upstream", "routes: [{prefix: /, upstream: 'https://user:${LF_URL_SECRET}@api.example.com'}]"),
        ("routes[0].upstream", "routes: [{prefix: /, upstream: 'https://api.example.com:${LF_URL_SECRET}'}]"),
        ("limits.backend", r#"routes: [{prefix: /, upstream: 'http://127.0.0.1:9'}]
limits: {backend: 'redis://:${LF_URL_SECRET}@127.0.0.1:99999/0'}"#),
        ("cache.backend", r#"routes: [{prefix: /, upstream: 'http://127.0.0.1:9'}]
cache: {backend: 'redis://u:${LF_URL_SECRET}@/0', routes: [{route: /}]}"#),
        ("limits.backend", r#"routes: [{prefix: /, upstream: 'http://127.0.0.1:9'}]
limits: {backend: 'redis://:lit3ral-redis-pass@127.0.0.1:99999/0'}"#),
        ("routes[0].proxy", "routes: [{prefix: /, upstream: 'http://127.0.0.1:9', proxy: 'http://u:${LF_URL_SECRET}@h:1/path'}]"),
    ];
    for (path, yaml) in refused {
        for args in [&["check", "-c"][..], &["run", "-c"][..]] {
            let (code, text) = run(args, yaml);
            assert_eq!(code, Some(2), "{args:?} {yaml}:\n{text}");
            assert!(text.contains(path), "{args:?} {yaml}: no {path}:\n{text}");
            assert!(
                !text.contains(SECRET) && !text.contains(LITERAL),
                "{args:?} printed a secret:\n{text}"
            );
        }
    }

    // Accepted: `check` says ok, and the banner of a running gateway shows the route.
    let port = free_port();
    let yaml = format!(
        r#"{}routes: [{{prefix: /, upstream: 'http://127.0.0.1:9/bot${{LF_URL_SECRET}}/v1'}}]
limits: {{backend: 'redis://:${{LF_URL_SECRET}}@127.0.0.1:1/0'}}
cache: {{backend: 'redis://:lit3ral-redis-pass@127.0.0.1:1/0', routes: [{{route: /}}]}}
"#,
        common::process::server_yaml(dir.path(), port, "")
    );
    let (code, text) = run(&["check", "-c"], &yaml);
    assert_eq!(code, Some(0), "{text}");
    assert!(!text.contains(SECRET) && !text.contains(LITERAL), "{text}");
    std::fs::write(dir.path().join("c.yaml"), &yaml).unwrap();
    let mut proc = common::process::Process::spawn(
        common::process::gateway_command(dir.path())
            .args(["run", "-c", "c.yaml"])
            .env("LF_URL_SECRET", SECRET),
    );
    wait_listening(SocketAddr::from(([127, 0, 0, 1], port))).await;
    let text = proc.kill_for_stderr();
    assert!(text.contains("http://127.0.0.1:9/"), "{text}");
    assert!(
        !text.contains(SECRET) && !text.contains(LITERAL),
        "the start-up printed a secret:\n{text}"
    );
}

/// Marking a repeated secret header sensitive keeps every value: HTTP/2 clients (browsers) send
/// their cookies as separate `cookie` fields, and a route that forwards cookies must pass all of
/// them, not only the first (the marking used to re-insert the first value over the rest).
#[tokio::test]
async fn a_repeated_secret_header_reaches_the_upstream_whole() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&format!(
        r#"routes:
  - {{prefix: /, upstream: '{}', type: general, forward_cookies: true}}
"#,
        up.url()
    ))
    .await;
    let resp = client()
        .get(gw.url("/v1/models"))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .header("x-api-key", "sk-client-one")
        .header("x-api-key", "sk-client-two")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sent = up.requests().pop().unwrap();
    let values = |name: &str| -> Vec<String> {
        sent.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    };
    assert_eq!(values("cookie"), ["a=1", "b=2"]);
    assert_eq!(values("x-api-key"), ["sk-client-one", "sk-client-two"]);
}
