//! Route selection over real sockets: segment-aware longest prefix, slash collapsing, prefix
//! stripping onto the upstream base path, query kept, 404 in OpenAI's shape, local /healthz.

use crate::common;

use common::mock::{Behavior, MockUpstream};
use common::*;
use serde_json::Value;

#[tokio::test]
async fn longest_segment_aware_prefix_wins() {
    let root = MockUpstream::start().await;
    let gen = MockUpstream::start().await;
    root.set_behavior(Behavior::Echo);
    gen.set_behavior(Behavior::Echo);
    let yaml = format!(
        r#"routes:
  - {{prefix: /, upstream: '{}'}}
  - {{prefix: /gen, upstream: '{}/base/v1', type: general}}
"#,
        root.url(),
        gen.url()
    );
    let gw = start_gateway(&yaml).await;
    let c = client();

    let get = |path: &str| c.get(gw.url(path)).send();
    let echo: Value = get("/gen/chat/completions?x=1&y=%20")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["path"], "/base/v1/chat/completions?x=1&y=%20");
    let echo: Value = get("//gen//models").await.unwrap().json().await.unwrap();
    assert_eq!(echo["path"], "/base/v1/models");
    let echo: Value = get("/gen").await.unwrap().json().await.unwrap();
    assert_eq!(echo["path"], "/base/v1");
    // `/genfoo` is not under `/gen`: it falls through to the root route, untouched.
    let echo: Value = get("/genfoo/x").await.unwrap().json().await.unwrap();
    assert_eq!(echo["path"], "/genfoo/x");
    assert_eq!(gen.request_count(), 3);
    assert_eq!(root.request_count(), 1);
}

#[tokio::test]
async fn unrouted_paths_get_an_openai_shaped_404_and_never_reach_an_upstream() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&one_route("/openai", &up.url(), "")).await;
    for path in ["/", "/v1/chat/completions", "/openaix/v1/models"] {
        let resp = client().post(gw.url(path)).body("{}").send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(error_code(&body), "route_not_found");
    }
    assert_eq!(up.request_count(), 0);
}

#[tokio::test]
async fn healthz_is_answered_locally() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&one_route("/", &up.url(), "")).await;
    let resp = client().get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "\"OK\"");
    assert_eq!(up.request_count(), 0);
}
