//! IP access and CORS over real sockets. Every test client is 127.0.0.1, so the rules are
//! written around it; forwarded headers are believed only from trusted proxies.

use crate::common;

use common::mock::MockUpstream;
use common::*;

async fn status(gw: &GatewayGuard, path: &str, headers: &[(&str, &str)]) -> u16 {
    let mut req = client().get(gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn global_and_route_rules_block_before_any_work() {
    let up = MockUpstream::start().await;
    let yaml = format!(
        r#"access: {{deny: [10.0.0.0/8]}}
routes:
  - {{prefix: /open, upstream: '{0}'}}
  - {{prefix: /internal, upstream: '{0}', access: {{allow: ['192.168.0.0/16']}}}}
  - {{prefix: /local, upstream: '{0}', access: {{allow: ['127.0.0.1', '::1']}}}}
"#,
        up.url()
    );
    let gw = start_gateway(&yaml).await;
    assert_eq!(status(&gw, "/open/v1/models", &[]).await, 200);
    assert_eq!(status(&gw, "/internal/v1/models", &[]).await, 403);
    assert_eq!(status(&gw, "/local/v1/models", &[]).await, 200);
    assert_eq!(up.request_count(), 2);

    let denied = format!(
        r#"access: {{deny: ['127.0.0.0/8']}}
routes: [{{prefix: /, upstream: '{}'}}]
"#,
        up.url()
    );
    let gw = start_gateway(&denied).await;
    let resp = client().get(gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(error_code(&resp.json().await.unwrap()), "ip_forbidden");
    assert_eq!(up.request_count(), 2);
}

#[tokio::test]
async fn spoofed_forwarding_headers_from_an_untrusted_peer_change_nothing() {
    let up = MockUpstream::start().await;
    // 127.0.0.1 is not a trusted proxy here: its headers are ignored.
    let yaml = format!(
        r#"access: {{allow: ['127.0.0.1/32']}}
routes: [{{prefix: /, upstream: '{}'}}]
"#,
        up.url()
    );
    let gw = start_gateway(&yaml).await;
    for h in [
        ("x-forwarded-for", "8.8.8.8"),
        ("x-real-ip", "8.8.8.8"),
        ("forwarded", "for=8.8.8.8"),
    ] {
        assert_eq!(status(&gw, "/v1/models", &[h]).await, 200, "{h:?}");
    }
    let yaml = format!(
        r#"access: {{deny: ['1.2.3.4']}}
routes: [{{prefix: /, upstream: '{}'}}]
"#,
        up.url()
    );
    let gw = start_gateway(&yaml).await;
    assert_eq!(
        status(&gw, "/v1/models", &[("x-forwarded-for", "1.2.3.4")]).await,
        200
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_right_most_untrusted_hop_is_the_client() {
    let up = MockUpstream::start().await;
    let yaml = format!(
        r#"access: {{trusted_proxies: ['127.0.0.1/32', '10.0.0.0/8'], deny: ['1.2.3.4', '2001:db8::/32']}}
routes: [{{prefix: /, upstream: '{}'}}]
"#,
        up.url()
    );
    let gw = start_gateway(&yaml).await;
    assert_eq!(
        status(&gw, "/v1/models", &[("x-forwarded-for", "1.2.3.4")]).await,
        403
    );
    assert_eq!(
        status(
            &gw,
            "/v1/models",
            &[("x-forwarded-for", "1.2.3.4, 10.1.1.1")]
        )
        .await,
        403
    );
    // The client prepended a fake hop; the right-most untrusted one is what our proxy saw.
    assert_eq!(
        status(
            &gw,
            "/v1/models",
            &[("x-forwarded-for", "1.2.3.4, 5.6.7.8")]
        )
        .await,
        200
    );
    assert_eq!(
        status(
            &gw,
            "/v1/models",
            &[("x-forwarded-for", "5.6.7.8, 1.2.3.4")]
        )
        .await,
        403
    );
    assert_eq!(
        status(
            &gw,
            "/v1/models",
            &[("forwarded", "for=\"[2001:db8::1]:443\"")]
        )
        .await,
        403
    );
    assert_eq!(
        status(&gw, "/v1/models", &[("x-forwarded-for", "::ffff:1.2.3.4")]).await,
        403
    );
    assert_eq!(
        status(&gw, "/v1/models", &[("x-real-ip", "1.2.3.4")]).await,
        403
    );
}

#[tokio::test]
async fn forward_keys_can_carry_their_own_ip_rules() {
    let up = MockUpstream::start().await;
    let yaml = format!(
        r#"upstream_keys: {{p: [sk-1]}}
tenants: {{t: {{}}, office: {{access: {{allow: ['192.168.0.0/16']}}}}}}
forward_keys:
  - {{key: fk-here, tenant: t, access: {{allow: ['127.0.0.1']}}}}
  - {{key: fk-elsewhere, tenant: t, access: {{allow: ['10.0.0.0/8']}}}}
  - {{key: fk-office, tenant: office}}
routes: [{{prefix: /, upstream: '{}', auth: {{pool: p}}}}]
"#,
        up.url()
    );
    let gw = start_gateway(&yaml).await;
    assert_eq!(
        status(&gw, "/v1/models", &[("authorization", "Bearer fk-here")]).await,
        200
    );
    assert_eq!(
        status(
            &gw,
            "/v1/models",
            &[("authorization", "Bearer fk-elsewhere")]
        )
        .await,
        403
    );
    assert_eq!(
        status(&gw, "/v1/models", &[("authorization", "Bearer fk-office")]).await,
        403
    );
    assert_eq!(up.request_count(), 1);
}

#[tokio::test]
async fn cors_preflight_is_answered_locally_and_responses_carry_the_headers() {
    let up = MockUpstream::start().await;
    let yaml = format!(
        r#"cors: {{allow_origins: ['https://app.example.com']}}
routes: [{{prefix: /, upstream: '{}'}}]
"#,
        up.url()
    );
    let gw = start_gateway(&yaml).await;
    let c = client();
    let pre = c
        .request(reqwest::Method::OPTIONS, gw.url("/v1/chat/completions"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(pre.status().is_success());
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(pre.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));
    let bad = c
        .request(reqwest::Method::OPTIONS, gw.url("/v1/chat/completions"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(bad.headers().get("access-control-allow-origin").is_none());
    assert_eq!(up.request_count(), 0, "preflights are never forwarded");
    let resp = c
        .get(gw.url("/v1/models"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    // Errors the gateway makes itself are readable by the page too.
    let resp = c
        .get(gw.url("/healthz"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
}
