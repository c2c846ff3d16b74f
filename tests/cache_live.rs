//! `cache.fill_after_disconnect: true` over real sockets: a fill goes on after its client left
//! and is stored; identical requests follow a fill live (one upstream call); a fill that breaks
//! fails its readers (never a clean end) and stores nothing.

use crate::common;

use common::mock::{Behavior, MockUpstream};
use common::*;
use serde_json::json;
use std::time::Duration;

fn config(upstream: &str) -> String {
    format!(
        r#"routes:
  - prefix: /
    upstream: "{upstream}"
cache:
  default: true
  fill_after_disconnect: true
"#
    )
}

fn stream_body() -> serde_json::Value {
    json!({"model": "m", "messages": [], "stream": true})
}

async fn send(gw: &GatewayGuard) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .json(&stream_body())
        .send()
        .await
        .unwrap()
}

/// The whole body, or `Err` when the connection broke before a clean end.
async fn read_all(mut r: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(c) = r.chunk().await? {
        out.extend_from_slice(&c);
    }
    Ok(out)
}

#[tokio::test]
async fn a_fill_goes_on_after_its_client_left_and_is_stored() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::chat_stream(10, Duration::from_millis(30)));
    let gw = start_gateway(&config(&up.url())).await;
    let mut first = send(&gw).await;
    assert_eq!(first.headers()["x-cache"], "MISS");
    assert!(first.chunk().await.unwrap().is_some());
    drop(first);
    // The next identical request reads the fill (live or stored): one upstream call, whole.
    let second = send(&gw).await;
    assert_eq!(second.headers()["x-cache"], "HIT");
    let body = read_all(second).await.unwrap();
    assert!(
        body.ends_with(b"data: [DONE]\n\n"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let third = send(&gw).await;
    assert_eq!(third.headers()["x-cache"], "HIT");
    assert_eq!(read_all(third).await.unwrap(), body);
    assert_eq!(up.request_count(), 1);
}

#[tokio::test]
async fn identical_requests_follow_one_fill_live() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::chat_stream(8, Duration::from_millis(30)));
    let gw = start_gateway(&config(&up.url())).await;
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let url = gw.url("/v1/chat/completions");
        tasks.push(tokio::spawn(async move {
            let r = client()
                .post(url)
                .json(&stream_body())
                .send()
                .await
                .unwrap();
            read_all(r).await.unwrap()
        }));
    }
    let mut bodies = Vec::new();
    for t in tasks {
        bodies.push(t.await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert!(bodies[0].ends_with(b"data: [DONE]\n\n"));
    assert_eq!(up.request_count(), 1);
}

#[tokio::test]
async fn a_broken_fill_fails_its_readers_and_stores_nothing() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&config(&up.url())).await;
    // Cut mid-stream: the client's stream breaks. (Under load the reset can reach the gateway
    // before it read the response head, which the kernel then discards: a 502, also fine.)
    up.set_behavior(Behavior::ResetMidStream {
        events_before_reset: 2,
    });
    let r = send(&gw).await;
    if r.status() == 200 {
        assert!(read_all(r).await.is_err());
    } else {
        assert_eq!(r.status(), 502);
    }
    // Ends cleanly on the wire but without its terminal event: still never a clean end.
    up.set_behavior(Behavior::Sse {
        chunks: vec![common::mock::chat_stream_event(0).into()],
        delay: Duration::ZERO,
        done: false,
    });
    assert!(read_all(send(&gw).await).await.is_err());
    up.set_behavior(Behavior::OpenAi);
    let r = send(&gw).await;
    assert_eq!(r.headers()["x-cache"], "MISS");
    let fresh = read_all(r).await.unwrap();
    assert!(fresh.ends_with(b"data: [DONE]\n\n"));
    // The usage chunk the gateway asked for is still cut out for a client that did not.
    assert!(!String::from_utf8_lossy(&fresh).contains("prompt_tokens"));
    let r = send(&gw).await;
    assert_eq!(r.headers()["x-cache"], "HIT");
    assert_eq!(read_all(r).await.unwrap(), fresh);
    // Non-stream answers too.
    let chat = json!({"model": "m", "messages": []});
    for expect in ["MISS", "HIT"] {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .json(&chat)
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-cache"], expect);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["object"], "chat.completion");
    }
    assert_eq!(up.request_count(), 4);
}
