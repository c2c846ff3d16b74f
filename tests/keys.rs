//! Keys and tenants over real sockets: forward keys swapped for pool keys in the place each
//! upstream expects, unknown keys refused before any upstream work, route and model allow-lists,
//! key health (a rejected or throttled key is skipped, the request moves on), and the auth
//! modes for client keys.

use crate::common;

use common::mock::{Behavior, MockUpstream};
use common::*;
use serde_json::json;

fn config(upstream: &str, route_extra: &str) -> String {
    format!(
        r#"
upstream_keys:
  main:
    - {{key: sk-upstream-1, name: main-1}}
    - sk-upstream-2
tenants:
  gold: {{}}
  free:
    models: [gpt-4o-mini, text-embedding-3-small, whisper-1]
    routes: [/openai]
forward_keys:
  - {{key: fk-gold, tenant: gold, name: alice}}
  - {{key: fk-free, tenant: free}}
routes:
  - prefix: /openai
    upstream: "{upstream}"
    auth: {{pool: main}}
{route_extra}
"#
    )
}

async fn chat(gw: &GatewayGuard, path: &str, key: Option<&str>, model: &str) -> reqwest::Response {
    let mut req = client()
        .post(gw.url(path))
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn forward_keys_are_swapped_round_robin_and_never_sent_upstream() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&config(&up.url(), "")).await;
    for _ in 0..4 {
        assert_eq!(
            chat(
                &gw,
                "/openai/v1/chat/completions",
                Some("fk-gold"),
                "gpt-4o"
            )
            .await
            .status(),
            200
        );
    }
    let auths: Vec<String> = up
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap_or("").to_string())
        .collect();
    assert_eq!(
        auths,
        [
            "Bearer sk-upstream-1",
            "Bearer sk-upstream-2",
            "Bearer sk-upstream-1",
            "Bearer sk-upstream-2"
        ]
    );
    for r in up.requests() {
        assert!(
            !format!("{:?}{:?}", r.headers, r.path).contains("fk-"),
            "a forward key reached the upstream"
        );
    }
}

#[tokio::test]
async fn missing_or_unknown_keys_get_401_and_never_reach_the_upstream() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&config(&up.url(), "")).await;
    for key in [
        None,
        Some("fk-nope"),
        Some("sk-upstream-1"),
        Some("fk-gol"),
        Some("fk-gold2"),
    ] {
        let resp = chat(&gw, "/openai/v1/chat/completions", key, "gpt-4o").await;
        assert_eq!(resp.status(), 401, "{key:?}");
        assert_eq!(error_code(&resp.json().await.unwrap()), "invalid_api_key");
    }
    let resp = client()
        .get(gw.url("/openai/v1/models"))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(up.request_count(), 0);
}

#[tokio::test]
async fn model_allow_lists_apply_to_every_json_endpoint() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&config(&up.url(), "")).await;
    let c = client();
    for (path, body) in [
        (
            "/openai/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": []}),
        ),
        (
            "/openai/v1/completions",
            json!({"model": "gpt-4o", "prompt": "x"}),
        ),
        (
            "/openai/v1/embeddings",
            json!({"model": "text-embedding-3-large", "input": "x"}),
        ),
        (
            "/openai/v1/images/generations",
            json!({"model": "dall-e-3", "prompt": "x"}),
        ),
        ("/openai/v1/responses", json!({"model": "o3", "input": "x"})),
        (
            "/openai/v1/audio/speech",
            json!({"model": "tts-1", "input": "x", "voice": "alloy"}),
        ),
    ] {
        let resp = c
            .post(gw.url(path))
            .bearer_auth("fk-free")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{path}");
        assert_eq!(error_code(&resp.json().await.unwrap()), "model_not_allowed");
    }
    // A body without a JSON content type is checked all the same.
    let resp = c
        .post(gw.url("/openai/v1/chat/completions"))
        .bearer_auth("fk-free")
        .header("content-type", "text/plain")
        .body(r#"{"model":"gpt-4o"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // So is an upload's `model` form field.
    let form = reqwest::multipart::Form::new()
        .text("model", "whisper-2")
        .part(
            "file",
            reqwest::multipart::Part::bytes(vec![1u8; 1000]).file_name("a.wav"),
        );
    let resp = c
        .post(gw.url("/openai/v1/audio/transcriptions"))
        .bearer_auth("fk-free")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        up.request_count(),
        0,
        "a disallowed model reached the upstream"
    );

    assert_eq!(
        chat(
            &gw,
            "/openai/v1/chat/completions",
            Some("fk-free"),
            "gpt-4o-mini"
        )
        .await
        .status(),
        200
    );
    let form = reqwest::multipart::Form::new()
        .text("model", "whisper-1")
        .part(
            "file",
            reqwest::multipart::Part::bytes(vec![1u8; 1000]).file_name("a.wav"),
        );
    let resp = c
        .post(gw.url("/openai/v1/audio/transcriptions"))
        .bearer_auth("fk-free")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_ne!(resp.status(), 403);
    // An unrestricted tenant may call any model.
    assert_eq!(
        chat(
            &gw,
            "/openai/v1/chat/completions",
            Some("fk-gold"),
            "o3-pro"
        )
        .await
        .status(),
        200
    );
}

#[tokio::test]
async fn tenants_are_limited_to_their_routes() {
    let up = MockUpstream::start().await;
    let extra = format!(
        r#"  - prefix: /other
    upstream: "{}"
    auth: {{pool: main}}
"#,
        up.url()
    );
    let gw = start_gateway(&config(&up.url(), &extra)).await;
    let resp = chat(
        &gw,
        "/other/v1/chat/completions",
        Some("fk-free"),
        "gpt-4o-mini",
    )
    .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(error_code(&resp.json().await.unwrap()), "route_not_allowed");
    assert_eq!(up.request_count(), 0);
    assert_eq!(
        chat(&gw, "/other/v1/chat/completions", Some("fk-gold"), "gpt-4o")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn malformed_json_is_a_400_and_never_reaches_the_upstream() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&config(&up.url(), "")).await;
    for body in [
        r#"{"model": "gpt-4o", "#,
        "[1,2,3]",
        "not json",
        "{\"model\": 5}",
    ] {
        let resp = client()
            .post(gw.url("/openai/v1/chat/completions"))
            .bearer_auth("fk-gold")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        assert_eq!(error_code(&resp.json().await.unwrap()), "invalid_json");
    }
    assert_eq!(up.request_count(), 0);
}

#[tokio::test]
async fn a_rejected_key_leaves_the_rotation_and_the_request_moves_on() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&config(&up.url(), "")).await;
    let invalid = json!({"error": {"message": "Incorrect API key", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}});
    up.push_behavior(Behavior::Json {
        status: 401,
        headers: vec![],
        body: invalid,
    });
    let big = "x".repeat(200_000);
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": big}]});
    let resp = client()
        .post(gw.url("/openai/v1/chat/completions"))
        .bearer_auth("fk-gold")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the second key should have answered");
    for _ in 0..3 {
        assert_eq!(
            chat(
                &gw,
                "/openai/v1/chat/completions",
                Some("fk-gold"),
                "gpt-4o"
            )
            .await
            .status(),
            200
        );
    }
    let reqs = up.requests();
    let auths: Vec<&str> = reqs
        .iter()
        .map(|r| r.header("authorization").unwrap_or(""))
        .collect();
    assert_eq!(
        auths,
        [
            "Bearer sk-upstream-1",
            "Bearer sk-upstream-2",
            "Bearer sk-upstream-2",
            "Bearer sk-upstream-2",
            "Bearer sk-upstream-2"
        ]
    );
    // The retry sent the same 200 KB body again, byte for byte.
    assert_eq!(reqs[0].body, reqs[1].body);
    assert_eq!(reqs[0].body.len(), serde_json::to_vec(&body).unwrap().len());
}

#[tokio::test]
async fn a_throttled_key_cools_down_for_retry_after() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&config(&up.url(), "")).await;
    up.push_behavior(Behavior::Json { status: 429, headers: vec![("retry-after".into(), "30".into())], body: json!({"error": {"message": "slow", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}) });
    for _ in 0..3 {
        assert_eq!(
            chat(
                &gw,
                "/openai/v1/chat/completions",
                Some("fk-gold"),
                "gpt-4o"
            )
            .await
            .status(),
            200
        );
    }
    let auths: Vec<String> = up
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap_or("").to_string())
        .collect();
    assert_eq!(
        auths,
        [
            "Bearer sk-upstream-1",
            "Bearer sk-upstream-2",
            "Bearer sk-upstream-2",
            "Bearer sk-upstream-2"
        ]
    );
}

#[tokio::test]
async fn when_every_key_is_refused_the_client_gets_the_upstreams_answer() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&config(&up.url(), "")).await;
    let limited = Behavior::Json {
        status: 429,
        // Longer than `retry_after_max`: not waited out (a shorter one would be, then retried).
        headers: vec![("retry-after".into(), "30".into())],
        body: json!({"error": {"message": "slow", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}),
    };
    up.push_behavior(limited.clone());
    up.push_behavior(limited);
    let resp = chat(
        &gw,
        "/openai/v1/chat/completions",
        Some("fk-gold"),
        "gpt-4o",
    )
    .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "30");
    assert_eq!(up.request_count(), 2);
    // Both keys cool down now: the gateway answers without calling the upstream.
    let resp = chat(
        &gw,
        "/openai/v1/chat/completions",
        Some("fk-gold"),
        "gpt-4o",
    )
    .await;
    assert_eq!(resp.status(), 503);
    assert_eq!(
        error_code(&resp.json().await.unwrap()),
        "no_upstream_key_available"
    );
    assert_eq!(up.request_count(), 2);
}

#[tokio::test]
async fn a_forward_key_in_x_api_key_is_swapped_and_never_sent_upstream() {
    // Anthropic's SDKs send the key in `x-api-key`. On a mixed route an unrecognised key passes
    // through as the client's own, so a forward key there must be recognised, not forwarded.
    let up = MockUpstream::start().await;
    let yaml =
        config(&up.url(), "").replace("auth: {pool: main}", "auth: {pool: main, mode: mixed}");
    let gw = start_gateway(&yaml).await;
    let resp = client()
        .post(gw.url("/openai/v1/chat/completions"))
        .header("x-api-key", "fk-gold")
        .json(&json!({"model": "gpt-4o", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = &up.requests()[0];
    assert_eq!(seen.header("x-api-key"), None);
    assert!(seen
        .header("authorization")
        .is_some_and(|v| v.starts_with("Bearer sk-upstream-")));
}

#[tokio::test]
async fn keys_go_where_each_upstream_expects_them() {
    let azure = MockUpstream::start().await;
    let gemini = MockUpstream::start().await;
    let extra = format!(
        r#"  - prefix: /azure
    upstream: "{}"
    auth: {{pool: main, key_header: api-key}}
  - prefix: /gemini
    upstream: "{}"
    type: general
    auth: {{pool: main, key_header: "query:key"}}
"#,
        azure.url(),
        gemini.url()
    );
    let yaml = config("http://127.0.0.1:9", &extra)
        .replace("routes: [/openai]", "routes: [/openai, /azure, /gemini]");
    let gw = start_gateway(&yaml).await;
    let c = client();
    // Azure's SDK sends `api-key`.
    let resp = c
        .post(gw.url("/azure/openai/deployments/d/chat/completions?api-version=2024-06-01"))
        .header("api-key", "fk-gold")
        .json(&json!({"model": "gpt-4o", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = &azure.requests()[0];
    assert_eq!(seen.header("api-key"), Some("sk-upstream-1"));
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(
        seen.path,
        "/openai/deployments/d/chat/completions?api-version=2024-06-01"
    );
    // Gemini's clients send `?key=` (or x-goog-api-key); the forward key is replaced in place.
    let resp = c
        .get(gw.url("/gemini/v1beta/models?key=fk-gold&pageSize=5"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = c
        .get(gw.url("/gemini/v1beta/models"))
        .header("x-goog-api-key", "fk-gold")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let paths: Vec<String> = gemini.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/v1beta/models?pageSize=5&key=sk-upstream-2",
            "/v1beta/models?key=sk-upstream-1"
        ]
    );
    assert!(gemini
        .requests()
        .iter()
        .all(|r| r.header("x-goog-api-key").is_none()));
}

#[tokio::test]
async fn auth_modes_for_client_keys() {
    let up = MockUpstream::start().await;
    let extra = format!(
        r#"  - prefix: /own
    upstream: "{0}"
    auth: {{mode: passthrough}}
  - prefix: /mixed
    upstream: "{0}"
    auth: {{mode: mixed, pool: main}}
  - prefix: /open
    upstream: "{0}"
    auth: {{mode: open, pool: main}}
"#,
        up.url()
    );
    let gw = start_gateway(&config(&up.url(), &extra)).await;
    let auth_of = |i: usize| up.requests()[i].header("authorization").map(str::to_string);
    // passthrough: the client's own key goes upstream untouched.
    assert_eq!(
        chat(&gw, "/own/v1/chat/completions", Some("sk-client-own"), "m")
            .await
            .status(),
        200
    );
    assert_eq!(auth_of(0).as_deref(), Some("Bearer sk-client-own"));
    // mixed: unknown keys pass through, forward keys are swapped.
    assert_eq!(
        chat(
            &gw,
            "/mixed/v1/chat/completions",
            Some("sk-client-own"),
            "m"
        )
        .await
        .status(),
        200
    );
    assert_eq!(auth_of(1).as_deref(), Some("Bearer sk-client-own"));
    assert_eq!(
        chat(&gw, "/mixed/v1/chat/completions", Some("fk-gold"), "m")
            .await
            .status(),
        200
    );
    assert!(auth_of(2).unwrap().starts_with("Bearer sk-upstream-"));
    // open: anyone, with a pool key.
    assert_eq!(
        chat(&gw, "/open/v1/chat/completions", None, "m")
            .await
            .status(),
        200
    );
    assert!(auth_of(3).unwrap().starts_with("Bearer sk-upstream-"));
}

/// The keys each recorded request carried, in order.
fn auths(up: &MockUpstream) -> Vec<String> {
    up.requests()
        .iter()
        .map(|r| r.header("authorization").unwrap_or("").to_string())
        .collect()
}

/// An OpenAI-shaped error body that says nothing about the key itself.
fn refusal(code: &str) -> serde_json::Value {
    json!({"error": {"message": "refused", "type": "invalid_request_error", "param": null, "code": code}})
}

#[tokio::test]
async fn a_client_the_upstream_refuses_cannot_take_keys_out_of_the_pool() {
    let up = MockUpstream::start().await;
    // A restricted key: one endpoint is outside its scope, whichever pool key is sent. Only the
    // clients that call it are refused; that says nothing about the keys.
    up.set_behavior(Behavior::RefuseIf {
        field: ":path".into(),
        contains: "/v1/files".into(),
        status: 401,
        body: json!({"error": {"message": "You have insufficient permissions for this operation. Missing scopes: api.files.read.", "type": "invalid_request_error", "param": null, "code": null}}),
    });
    let gw = start_gateway(&config(&up.url(), "")).await;
    for i in 1..=5 {
        let resp = client()
            .get(gw.url("/openai/v1/files"))
            .bearer_auth("fk-gold")
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            401,
            "the upstream's answer goes to the client"
        );
        // At most one key change per request: never a walk through the pool.
        assert!(up.request_count() <= 2 * i, "{:?}", auths(&up));
    }
    let before = up.request_count();
    for _ in 0..4 {
        assert_eq!(
            chat(
                &gw,
                "/openai/v1/chat/completions",
                Some("fk-free"),
                "gpt-4o-mini"
            )
            .await
            .status(),
            200
        );
    }
    let served = &auths(&up)[before..];
    assert!(
        served.contains(&"Bearer sk-upstream-1".to_string())
            && served.contains(&"Bearer sk-upstream-2".to_string()),
        "both keys still serve other clients: {served:?}"
    );
}

#[tokio::test]
async fn organization_headers_never_reach_an_upstream_a_gateway_key_goes_to() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::RefuseIf {
        field: "openai-organization".into(),
        contains: "org-".into(),
        status: 401,
        body: json!({"error": {"message": "OpenAI-Organization header should match organization for API key", "type": "invalid_request_error", "param": null, "code": "mismatched_organization"}}),
    });
    let extra = format!(
        r#"  - prefix: /own
    upstream: "{}"
    auth: {{mode: passthrough}}
"#,
        up.url()
    );
    let gw = start_gateway(&config(&up.url(), &extra)).await;
    let send = |path: &'static str, key: &'static str| {
        client()
            .post(gw.url(path))
            .bearer_auth(key)
            .header("openai-organization", "org-client")
            .header("openai-project", "proj_client")
            .json(&json!({"model": "gpt-4o", "messages": []}))
            .send()
    };
    for _ in 0..3 {
        let resp = send("/openai/v1/chat/completions", "fk-gold")
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    for r in up.requests() {
        assert_eq!(r.header("openai-organization"), None);
        assert_eq!(r.header("openai-project"), None);
    }
    // The client's own key (pass-through) belongs to the client's organization: kept.
    let resp = send("/own/v1/chat/completions", "sk-client").await.unwrap();
    assert_eq!(resp.status(), 401);
    let last = up.requests().pop().unwrap();
    assert_eq!(last.header("openai-project"), Some("proj_client"));
    drop(gw);

    // A route that allows them forwards them; their refusals take no key out.
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::RefuseIf {
        field: "openai-organization".into(),
        contains: "org-".into(),
        status: 401,
        body: refusal("mismatched_organization"),
    });
    let yaml = config(&up.url(), "").replace(
        "auth: {pool: main}",
        "auth: {pool: main, forward_org_headers: true}",
    );
    let gw = start_gateway(&yaml).await;
    for _ in 0..4 {
        let resp = client()
            .post(gw.url("/openai/v1/chat/completions"))
            .bearer_auth("fk-gold")
            .header("openai-organization", "org-client")
            .json(&json!({"model": "gpt-4o", "messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    assert_eq!(
        up.requests()[0].header("openai-organization"),
        Some("org-client")
    );
    let before = up.request_count();
    assert!(before <= 8, "one key change per request at most");
    for _ in 0..2 {
        assert_eq!(
            chat(
                &gw,
                "/openai/v1/chat/completions",
                Some("fk-free"),
                "gpt-4o-mini"
            )
            .await
            .status(),
            200
        );
    }
    let served = &auths(&up)[before..];
    assert_eq!(served, ["Bearer sk-upstream-1", "Bearer sk-upstream-2"]);
}

#[tokio::test]
async fn a_key_refused_for_every_client_leaves_after_n_and_is_probed_after_a_backoff() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::RefuseIf {
        field: "authorization".into(),
        contains: "sk-upstream-2".into(),
        status: 403,
        body: refusal("forbidden"),
    });
    let yaml = format!(
        r#"key_health: {{refusals: 2, refusal_window: 1m, probe_after: 1s, probe_max: 2s}}
{}"#,
        config(&up.url(), "").replace(
            "forward_keys:\n",
            r#"forward_keys:
  - {key: fk-third, tenant: gold}
"#
        )
    );
    let gw = start_gateway(&yaml).await;
    let key2 = "Bearer sk-upstream-2".to_string();
    let ask = |fk: &'static str| chat(&gw, "/openai/v1/chat/completions", Some(fk), "gpt-4o");
    // One client, however often refused, is one piece of evidence: key 2 stays.
    for _ in 0..4 {
        assert_eq!(ask("fk-gold").await.status(), 200);
    }
    let seen = auths(&up);
    assert!(
        seen.iter().filter(|a| **a == key2).count() >= 2,
        "key 2 stays in the rotation: {seen:?}"
    );
    // A second client refused with it: out of the rotation.
    for i in 0.. {
        assert!(i < 4, "key 2 was never tried: {:?}", auths(&up));
        let n = up.request_count();
        assert_eq!(ask("fk-third").await.status(), 200);
        if auths(&up)[n..].contains(&key2) {
            break;
        }
    }
    let out = up.request_count();
    for _ in 0..4 {
        assert_eq!(ask("fk-gold").await.status(), 200);
    }
    assert!(
        !auths(&up)[out..].contains(&key2),
        "a disabled key is not used before its probe: {:?}",
        &auths(&up)[out..]
    );
    // After the backoff, one live request probes it (still refused: the client is served by
    // key 1 all the same).
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let before = up.request_count();
    for _ in 0..3 {
        assert_eq!(ask("fk-gold").await.status(), 200);
    }
    let probes = auths(&up)[before..].iter().filter(|a| **a == key2).count();
    assert_eq!(probes, 1, "{:?}", &auths(&up)[before..]);
    // Once the upstream takes it again, the next probe brings it back.
    up.set_behavior(Behavior::OpenAi);
    tokio::time::sleep(std::time::Duration::from_millis(2300)).await;
    let before = up.request_count();
    for _ in 0..5 {
        assert_eq!(ask("fk-gold").await.status(), 200);
    }
    let back = auths(&up)[before..].iter().filter(|a| **a == key2).count();
    assert!(back >= 2, "{:?}", &auths(&up)[before..]);
}

#[tokio::test]
async fn a_429_for_one_model_does_not_cool_the_key_for_another() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&config(&up.url(), "")).await;
    up.push_behavior(Behavior::Json {
        status: 429,
        headers: vec![("retry-after".into(), "30".into())],
        body: refusal("rate_limit_exceeded"),
    });
    let ask =
        |model: &'static str| chat(&gw, "/openai/v1/chat/completions", Some("fk-gold"), model);
    // Key 1 is throttled for gpt-4o (for 30 s): the request moves on to key 2.
    assert_eq!(ask("gpt-4o").await.status(), 200);
    // Round-robin comes back to key 1, which still serves gpt-4o-mini...
    assert_eq!(ask("gpt-4o-mini").await.status(), 200);
    assert_eq!(ask("gpt-4o-mini").await.status(), 200);
    // ...but not gpt-4o yet.
    assert_eq!(ask("gpt-4o").await.status(), 200);
    let sent: Vec<(String, String)> = up
        .requests()
        .iter()
        .map(|r| {
            let model = r.json().unwrap()["model"].as_str().unwrap().to_string();
            (model, r.header("authorization").unwrap().to_string())
        })
        .collect();
    let pair = |m: &str, k: &str| (m.to_string(), format!("Bearer sk-upstream-{k}"));
    assert_eq!(
        sent,
        [
            pair("gpt-4o", "1"),
            pair("gpt-4o", "2"),
            pair("gpt-4o-mini", "1"),
            pair("gpt-4o-mini", "2"),
            pair("gpt-4o", "2"),
        ]
    );
}

#[tokio::test]
async fn a_query_key_echoed_in_an_upstream_error_page_never_reaches_the_client() {
    let up = MockUpstream::start().await;
    let extra = format!(
        r#"  - prefix: /gemini
    upstream: "{}"
    type: general
    auth: {{pool: main, key_header: "query:key"}}
"#,
        up.url()
    );
    let yaml = config("http://127.0.0.1:9", &extra)
        .replace("routes: [/openai]", "routes: [/openai, /gemini]");
    let gw = start_gateway(&yaml).await;
    for status in [400, 404] {
        up.push_behavior(Behavior::EchoUrlError { status });
        let resp = client()
            .get(gw.url("/gemini/v1beta/models/x:generateContent?key=fk-gold&alt=sse"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status);
        let body = resp.text().await.unwrap();
        assert!(!body.contains("sk-upstream"), "{body}");
        assert!(
            body.contains("Invalid URL (GET /v1beta/models/x:generateContent?alt=sse&key="),
            "{body}"
        );
    }
    assert!(up.requests()[0].path.contains("key=sk-upstream-"));
}

#[tokio::test]
async fn a_spent_quota_cools_the_key_for_every_model() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&config(&up.url(), "")).await;
    up.push_behavior(Behavior::Json {
        status: 429,
        headers: vec![],
        body: json!({"error": {"message": "You exceeded your current quota, please check your plan and billing details.", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}),
    });
    let ask =
        |model: &'static str| chat(&gw, "/openai/v1/chat/completions", Some("fk-gold"), model);
    assert_eq!(ask("gpt-4o").await.status(), 200);
    // Round-robin comes back to key 1: it rests for this model too.
    assert_eq!(ask("gpt-4o-mini").await.status(), 200);
    assert_eq!(
        auths(&up),
        [
            "Bearer sk-upstream-1",
            "Bearer sk-upstream-2",
            "Bearer sk-upstream-2"
        ]
    );
}
