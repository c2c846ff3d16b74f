//! A tenant's model list against requests crafted to name one model to the gateway and another
//! to the upstream: multipart bodies that parsers read differently, JSON keys that
//! case-insensitive decoders (Go's, as in Ollama or LocalAI) merge, a missing `model`, and
//! models named in the path (Azure deployments, Gemini). Each is refused before any upstream
//! sees it; plain requests still pass.

use crate::common;

use common::mock::{Behavior, MockUpstream};
use common::*;
use serde_json::Value;

fn config(upstream: &str) -> String {
    format!(
        r#"
upstream_keys: {{main: [sk-upstream-1]}}
tenants:
  gold: {{}}
  free:
    models: [gpt-4o-mini, whisper-1, gemini-1.5-flash, my-mini]
forward_keys:
  - {{key: fk-gold, tenant: gold}}
  - {{key: fk-free, tenant: free}}
routes:
  - {{prefix: /openai, upstream: "{upstream}", auth: {{pool: main}}}}
  - {{prefix: /mini, upstream: "{upstream}", auth: {{pool: main}}, default_model: gpt-4o-mini}}
  - {{prefix: /big, upstream: "{upstream}", auth: {{pool: main}}, default_model: gpt-4o}}
  - {{prefix: /azure, upstream: "{upstream}", auth: {{pool: main}}}}
  - {{prefix: /gemini, upstream: "{upstream}", auth: {{pool: main}}, type: general}}
"#
    )
}

async fn post(
    gw: &GatewayGuard,
    path: &str,
    key: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let resp = client()
        .post(gw.url(path))
        .bearer_auth(key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A multipart body with boundary `XyZ` from raw parts (headers and value), joined by `eol`.
fn form(parts: &[(&str, &str)], eol: &str) -> Vec<u8> {
    let mut body = String::new();
    for (head, value) in parts {
        body.push_str(&format!("--XyZ{eol}{head}{eol}{eol}{value}{eol}"));
    }
    body.push_str(&format!("--XyZ--{eol}"));
    body.into_bytes()
}

const FILE: (&str, &str) = (
    "Content-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav",
    "RIFF0000WAVE",
);
const MULTIPART: &str = "multipart/form-data; boundary=XyZ";
const TRANSCRIBE: &str = "/openai/v1/audio/transcriptions";

#[tokio::test]
async fn multipart_bodies_that_parsers_read_differently_are_refused() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::Echo);
    let gw = start_gateway(&config(&up.url())).await;
    let fake_boundary_in_file =
        "RIFF--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n";
    let crafted: Vec<(&str, Vec<u8>)> = vec![
        (
            "unquoted name",
            form(
                &[
                    FILE,
                    ("Content-Disposition: form-data; name=model", "whisper-2"),
                ],
                "\r\n",
            ),
        ),
        (
            "upper-case NAME",
            form(
                &[
                    FILE,
                    (
                        "Content-Disposition: form-data; NAME=\"model\"",
                        "whisper-2",
                    ),
                ],
                "\r\n",
            ),
        ),
        (
            "duplicate model fields",
            form(
                &[
                    (
                        "Content-Disposition: form-data; name=\"model\"",
                        "whisper-1",
                    ),
                    FILE,
                    (
                        "Content-Disposition: form-data; name=\"model\"",
                        "whisper-2",
                    ),
                ],
                "\r\n",
            ),
        ),
        (
            "LF-only line endings",
            form(
                &[
                    (
                        "Content-Disposition: form-data; name=\"file\"; filename=\"a.wav\"",
                        "RIFF",
                    ),
                    (
                        "Content-Disposition: form-data; name=\"model\"",
                        "whisper-2",
                    ),
                ],
                "\n",
            ),
        ),
        (
            "fake boundary inside the file",
            form(
                &[
                    (FILE.0, fake_boundary_in_file),
                    (
                        "Content-Disposition: form-data; name=\"model\"",
                        "whisper-2",
                    ),
                ],
                "\r\n",
            ),
        ),
        (
            "RFC 2231 name*",
            form(
                &[
                    FILE,
                    (
                        "Content-Disposition: form-data; name*=UTF-8''model",
                        "whisper-2",
                    ),
                ],
                "\r\n",
            ),
        ),
        (
            "quoted-pair in the name",
            form(
                &[
                    FILE,
                    (
                        "Content-Disposition: form-data; name=\"mo\\del\"",
                        "whisper-2",
                    ),
                ],
                "\r\n",
            ),
        ),
        (
            "name hidden in a filename",
            form(
                &[
                    (
                        "Content-Disposition: form-data; filename=\"x; name=model\"; name=\"file\"",
                        "whisper-1",
                    ),
                    ("Content-Disposition: form-data; name=MODEL", "whisper-2"),
                ],
                "\r\n",
            ),
        ),
        ("not multipart at all", b"model=whisper-2".to_vec()),
    ];
    for (what, body) in crafted {
        let (status, err) = post(&gw, TRANSCRIBE, "fk-free", MULTIPART, body).await;
        assert!(
            status == 400 || status == 403,
            "{what}: {status} {err}, expected a refusal"
        );
    }
    // Two boundaries in the content type: which one an upstream takes is anyone's guess.
    let body = form(
        &[
            FILE,
            (
                "Content-Disposition: form-data; name=\"model\"",
                "whisper-1",
            ),
        ],
        "\r\n",
    );
    let (status, _) = post(
        &gw,
        TRANSCRIBE,
        "fk-free",
        "multipart/form-data; boundary=XyZ; boundary=Other",
        body,
    )
    .await;
    assert_eq!(status, 400, "two boundaries");
    // No model at all: a tenant with a model list must name one.
    let (status, err) = post(&gw, TRANSCRIBE, "fk-free", MULTIPART, form(&[FILE], "\r\n")).await;
    assert_eq!((status, error_code(&err).as_str()), (400, "model_required"));
    assert_eq!(
        up.request_count(),
        0,
        "a crafted upload reached the upstream"
    );

    // Well-formed uploads pass, byte for byte: the allowed model, and any model for a tenant
    // without a list.
    let good = form(
        &[
            FILE,
            (
                "Content-Disposition: form-data; name=\"model\"",
                "whisper-1",
            ),
        ],
        "\r\n",
    );
    let (status, echo) = post(&gw, TRANSCRIBE, "fk-free", MULTIPART, good.clone()).await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(echo["body_len"], good.len());
    let (status, _) = post(&gw, TRANSCRIBE, "fk-gold", MULTIPART, form(&[FILE], "\n")).await;
    assert_eq!(status, 200, "an unrestricted tenant's upload is not parsed");
    let (status, _) = post(
        &gw,
        TRANSCRIBE,
        "fk-free",
        MULTIPART,
        form(
            &[
                FILE,
                (
                    "Content-Disposition: form-data; name=\"model\"",
                    "whisper-2",
                ),
            ],
            "\r\n",
        ),
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn json_model_keys_that_decoders_merge_are_refused() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&config(&up.url())).await;
    let path = "/openai/v1/chat/completions";
    for body in [
        r#"{"model":"gpt-4o-mini","MODEL":"gpt-4o","messages":[]}"#,
        r#"{"MODEL":"gpt-4o","model":"gpt-4o-mini","messages":[]}"#,
        r#"{"model":"gpt-4o-mini","Model":"gpt-4o","messages":[]}"#,
        r#"{"model":"gpt-4o-mini","mod\u0045l":"gpt-4o","messages":[]}"#,
        r#"{"model":"gpt-4o-mini","model":"gpt-4o","messages":[]}"#,
        r#"{"Model":"gpt-4o","messages":[]}"#,
    ] {
        for key in ["fk-free", "fk-gold"] {
            let (status, err) = post(&gw, path, key, "application/json", body).await;
            assert_eq!(
                (status, error_code(&err).as_str()),
                (400, "ambiguous_model"),
                "{key} {body}"
            );
        }
    }
    assert_eq!(up.request_count(), 0);
    // A nested `MODEL` is no concern of the upstream's request decoder.
    let body = r#"{"model":"gpt-4o-mini","metadata":{"MODEL":"x"},"messages":[]}"#;
    let (status, _) = post(&gw, path, "fk-free", "application/json", body).await;
    assert_eq!(status, 200);
}

/// A `model` that is not a string could be read as a model by an upstream and as none by the
/// list (which then checks the route's default): refused, whatever bytes it holds.
#[tokio::test]
async fn a_model_that_is_not_a_string_is_refused() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&config(&up.url())).await;
    for body in [
        &br#"{"model":["gpt-4o"],"messages":[]}"#[..],
        br#"{"model":{"id":"gpt-4o"},"messages":[]}"#,
        br#"{"model":4,"messages":[]}"#,
        // Not UTF-8 inside the array: still an array, not a missing model.
        b"{\"model\":[\"gpt-4o\xff\"],\"messages\":[]}",
        b"{\"model\":{\"\xff\":\"gpt-4o\"},\"messages\":[]}",
    ] {
        for path in ["/openai/v1/chat/completions", "/mini/v1/chat/completions"] {
            let (status, err) = post(&gw, path, "fk-free", "application/json", body).await;
            assert_eq!(
                (status, error_code(&err).as_str()),
                (400, "invalid_json"),
                "{path} {}",
                String::from_utf8_lossy(body)
            );
        }
    }
    assert_eq!(up.request_count(), 0);
}

#[tokio::test]
async fn a_missing_model_is_refused_unless_the_route_names_a_default() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&config(&up.url())).await;
    for body in [r#"{"messages":[]}"#, r#"{"model":null,"messages":[]}"#] {
        let (status, err) = post(
            &gw,
            "/openai/v1/chat/completions",
            "fk-free",
            "application/json",
            body,
        )
        .await;
        assert_eq!(
            (status, error_code(&err).as_str()),
            (400, "model_required"),
            "{body}"
        );
        // The route's default model is what the list is checked against.
        let (status, _) = post(
            &gw,
            "/mini/v1/chat/completions",
            "fk-free",
            "application/json",
            body,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let (status, err) = post(
            &gw,
            "/big/v1/chat/completions",
            "fk-free",
            "application/json",
            body,
        )
        .await;
        assert_eq!(
            (status, error_code(&err).as_str()),
            (403, "model_not_allowed"),
            "{body}"
        );
        // A tenant without a list is not concerned.
        let (status, _) = post(
            &gw,
            "/openai/v1/chat/completions",
            "fk-gold",
            "application/json",
            body,
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(up.request_count(), 4);
}

#[tokio::test]
async fn models_named_in_the_path_are_checked() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::Echo);
    let gw = start_gateway(&config(&up.url())).await;
    let denied = [
        "/azure/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
        "/azure/openai/deployments/gpt-4o/embeddings",
        "/gemini/v1beta/models/gemini-1.5-pro:generateContent",
        "/gemini/v1beta/models/gemini-1.5-pro:streamGenerateContent?alt=sse",
        "/gemini/v1beta/models/gemini-1.5-pro%3AgenerateContent",
        "/gemini/v1beta/models/gemini%2D1.5-pro:generateContent",
        "/gemini/v1/projects/p/locations/l/publishers/google/models/gemini-1.5-pro:generateContent",
    ];
    for path in denied {
        let (status, err) = post(
            &gw,
            path,
            "fk-free",
            "application/json",
            r#"{"contents":[]}"#,
        )
        .await;
        assert_eq!(
            (status, error_code(&err).as_str()),
            (403, "model_not_allowed"),
            "{path}"
        );
    }
    // A GET names its model in the path too.
    let resp = client()
        .get(gw.url("/gemini/v1beta/models/gemini-1.5-pro"))
        .bearer_auth("fk-free")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(up.request_count(), 0);

    // An allowed deployment needs no `model` in the body (Azure's bodies have none).
    for path in [
        "/azure/openai/deployments/my-mini/chat/completions?api-version=2024-10-21",
        "/gemini/v1beta/models/gemini-1.5-flash:generateContent",
    ] {
        let (status, echo) = post(
            &gw,
            path,
            "fk-free",
            "application/json",
            r#"{"contents":[]}"#,
        )
        .await;
        assert_eq!(status, 200, "{path}: {echo}");
    }
    let (status, _) = post(
        &gw,
        "/gemini/v1beta/models/gemini-1.5-pro:generateContent",
        "fk-gold",
        "application/json",
        r#"{"contents":[]}"#,
    )
    .await;
    assert_eq!(status, 200);
    let resp = client()
        .get(gw.url("/openai/v1/models"))
        .bearer_auth("fk-free")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "listing models names none");
}
