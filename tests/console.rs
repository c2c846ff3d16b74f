//! The web console over real HTTP on the admin listener: nothing but the login page without the
//! admin key; a session cookie that is HttpOnly and SameSite=Strict; the overview counting what
//! went through the proxy; the live tail streaming finished requests; the config shown with its
//! secrets masked and a validate button that names problems by their path.

use crate::common;

use common::mock::MockUpstream;
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ADMIN_KEY: &str = "console-test-admin-key";

async fn gateway(up: &MockUpstream) -> GatewayGuard {
    start_gateway(&format!(
        r#"
upstream_keys:
  main: [sk-real-upstream-secret]
forward_keys: [{{key: fk-console-client, tenant: pro, name: alice}}]
tenants:
  pro: {{models: ['*'], routes: ['/openai']}}
admin: {{key: {ADMIN_KEY}, ui: true}}
routes:
  - {{prefix: /openai, upstream: '{}', type: openai, auth: {{pool: main}}}}
"#,
        up.url()
    ))
    .await
}

/// Sign in; the session cookie (`name=value`).
async fn login(gw: &GatewayGuard) -> String {
    let resp = client()
        .post(gw.admin_url("/api/login"))
        .json(&json!({"key": ADMIN_KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    cookie.split(';').next().unwrap().to_string()
}

async fn chat(gw: &GatewayGuard, model: &str) {
    let resp = client()
        .post(gw.url("/openai/v1/chat/completions"))
        .bearer_auth("fk-console-client")
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn nothing_but_the_login_page_without_the_admin_key() {
    let up = MockUpstream::start().await;
    let gw = gateway(&up).await;
    let page = client().get(gw.admin_url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    let html = page.text().await.unwrap();
    assert!(html.contains("id=\"login-form\""));
    for path in ["/api/session", "/api/overview", "/api/tail", "/api/config"] {
        let resp = client().get(gw.admin_url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["type"], "authentication_error");
    }
    let check = client()
        .post(gw.admin_url("/api/check"))
        .header("content-type", "application/yaml")
        .body("routes: []")
        .send()
        .await
        .unwrap();
    assert_eq!(check.status(), 401);
    // A made-up cookie, a wrong key, and a form post (what a cross-site page can send) fail.
    let forged = client()
        .get(gw.admin_url("/api/overview"))
        .header("cookie", "llmf_console=0000")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let wrong = client()
        .post(gw.admin_url("/api/login"))
        .json(&json!({"key": "not-the-admin-key"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    let form = client()
        .post(gw.admin_url("/api/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("key={ADMIN_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
    // Metrics stay where scrapers expect them.
    let metrics = client().get(gw.admin_url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
}

#[tokio::test]
async fn a_session_or_the_bearer_key_opens_it_and_logout_ends_it() {
    let up = MockUpstream::start().await;
    let gw = gateway(&up).await;
    let cookie = login(&gw).await;
    let with = |path: &str| client().get(gw.admin_url(path)).header("cookie", &cookie);
    assert_eq!(with("/api/session").send().await.unwrap().status(), 204);
    let bearer = client()
        .get(gw.admin_url("/api/overview"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    let out = client()
        .post(gw.admin_url("/api/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert!(out.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(with("/api/overview").send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn the_overview_counts_what_went_through_and_the_tail_streams_it() {
    let up = MockUpstream::start().await;
    let gw = gateway(&up).await;
    let cookie = login(&gw).await;
    let tail = client()
        .get(gw.admin_url("/api/tail"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), 200);
    assert_eq!(tail.headers()["content-type"], "text/event-stream");
    let mut events = tail.bytes_stream();
    // The tail is open once its first comment arrived; what finishes from now on is sent.
    let first = events.next().await.unwrap().unwrap();
    assert!(first.starts_with(b": live"));
    chat(&gw, "gpt-console-a").await;
    chat(&gw, "gpt-console-b").await;
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(seen.contains("gpt-console-a") && seen.contains("gpt-console-b")) {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, events.next())
            .await
            .expect("the tail shows both requests")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let event = seen
        .split("\n\n")
        .find(|e| e.contains("gpt-console-a"))
        .unwrap();
    assert!(event.starts_with("event: request\ndata: "), "{event}");
    let data: Value = serde_json::from_str(event.split_once("data: ").unwrap().1).unwrap();
    assert_eq!(data["route"], "/openai");
    assert_eq!(data["status"], 200);
    assert_eq!(data["key_id"], "alice");
    assert_eq!(data["outcome"], "ok");
    assert!(data["tokens"]["input"].as_u64().unwrap() > 0);
    assert!(
        data.get("exchange").is_none(),
        "messages stay hidden by default"
    );
    assert!(!seen.contains("fk-console-client") && !seen.contains("sk-real"));

    let overview: Value = client()
        .get(gw.admin_url("/api/overview"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(overview["totals"]["requests"], 2);
    assert_eq!(overview["totals"]["errors"], 0);
    let rates: u64 = overview["rates"]["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(rates, 2);
    assert!(overview["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
    let models: Vec<&str> = overview["usage"]["model"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(models.contains(&"gpt-console-a") && models.contains(&"gpt-console-b"));
    assert_eq!(overview["usage"]["tenant"][0]["name"], "pro");
    assert_eq!(overview["usage"]["tenant"][0]["today"]["requests"], 2);
    assert_eq!(overview["usage"]["key"][0]["name"], "alice");
    assert_eq!(overview["upstreams"][0]["breaker"], "closed");
    assert_eq!(overview["keys"][0]["pool"], "main");
    assert_eq!(overview["keys"][0]["state"], "healthy");
    let text = overview.to_string();
    assert!(!text.contains("sk-real-upstream-secret") && !text.contains("fk-console-client"));
}

#[tokio::test]
async fn the_config_is_shown_masked_and_check_names_problems() {
    let up = MockUpstream::start().await;
    let gw = gateway(&up).await;
    let cookie = login(&gw).await;
    let config = client()
        .get(gw.admin_url("/api/config"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(config.status(), 200);
    let text = config.text().await.unwrap();
    assert!(text.contains("/openai"), "{text}");
    for secret in ["sk-real-upstream-secret", "fk-console-client", ADMIN_KEY] {
        assert!(!text.contains(secret), "{secret} shown:\n{text}");
    }
    let check = |body: &'static str, content_type: &'static str| {
        client()
            .post(gw.admin_url("/api/check"))
            .header("cookie", &cookie)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let ok: Value = check(
        "routes: [{prefix: /, upstream: 'http://127.0.0.1:9'}]",
        "application/yaml",
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(ok, json!({"ok": true, "problems": []}));
    let bad: Value = check(
        "routes: [{prefix: /, upstream: 'http://127.0.0.1:9', retyr: {}}]",
        "application/yaml",
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(bad["ok"], false);
    assert!(
        bad["problems"].to_string().contains("routes[0].retyr"),
        "{bad}"
    );
    // Only YAML is checked: a form post (what another site could send) is refused.
    let form = check("routes: []", "application/x-www-form-urlencoded")
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
}

#[tokio::test]
async fn without_ui_there_is_no_console_and_ui_needs_a_key() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&format!(
        "routes: [{{prefix: /, upstream: '{}'}}]",
        up.url()
    ))
    .await;
    let page = client().get(gw.admin_url("/")).send().await.unwrap();
    assert_eq!(page.status(), 404);
    let api = client()
        .post(gw.admin_url("/api/login"))
        .json(&json!({"key": ADMIN_KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 404);
    let problems = llm_forward::config::parse_bytes(
        br#"admin: {ui: true}
routes: [{prefix: /, upstream: 'http://127.0.0.1:9'}]"#,
        &|_| None,
    )
    .unwrap_err()
    .to_string();
    assert!(problems.contains("admin.key"), "{problems}");
    let short = llm_forward::config::parse_bytes(
        br#"admin: {key: short, ui: true}
routes: [{prefix: /, upstream: 'http://127.0.0.1:9'}]"#,
        &|_| None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        short.contains("admin.key") && !short.contains("short\""),
        "{short}"
    );
}
