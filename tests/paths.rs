//! Request paths that try to climb out of their route: dot segments (`..`, `.`, percent-encoded
//! `%2e`), encoded slashes and backslashes. None may reach outside the route's upstream base
//! path, and none may dodge a path-scoped limit by spelling the same path differently. Requests
//! go over a raw socket: HTTP clients normalise such paths before sending them.

use crate::common;

use common::mock::{Behavior, MockUpstream};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `method target` exactly as written and returns the response status.
async fn raw(gw: &GatewayGuard, method: &str, target: &str) -> u16 {
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!("{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{target}: no status in {text:?}"))
}

/// What an upstream makes of a received path: dot segments resolved (RFC 3986 §5.2.4) after
/// decoding `%2e`, and `%2F`/`%5C`/`\` taken as the separators some servers take them for.
fn as_an_upstream_reads_it(path: &str) -> String {
    let path = path.split('?').next().unwrap_or("");
    let decoded = path
        .replace("%2e", ".")
        .replace("%2E", ".")
        .replace("%2f", "/")
        .replace("%2F", "/")
        .replace("%5c", "/")
        .replace("%5C", "/")
        .replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/').skip(1) {
        match seg {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

#[tokio::test]
async fn no_request_path_leaves_the_upstream_base_path() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::Echo);
    let yaml = format!(
        r#"routes:
  - {{prefix: /route, upstream: '{}/base/', type: general}}
"#,
        up.url()
    );
    let gw = start_gateway(&yaml).await;
    let escapes = [
        "/route/../secret",
        "/route/%2e%2e/secret",
        "/route/%2E%2e/secret",
        "/route/%2e%2E/secret?x=1",
        "/route/v1/../../secret",
        "/route/v1/%2e%2e/%2e%2e/secret",
        "/route/v1/.%2e/.%2E/secret",
        "/route/./../secret",
        "/route/%2e/%2e%2e/secret",
        "/route/..%2Fsecret",
        "/route/v1/%2F..%2F..%2Fsecret",
        "/route/v1/%2f..%2f..%2fsecret",
        "/route/v1/%5C..%5C..%5Csecret",
        "/route/v1/..\\..\\secret",
        "/route/%2e%2e%2fsecret",
    ];
    for target in escapes {
        let status = raw(&gw, "GET", target).await;
        assert!(
            status == 400 || status == 404,
            "{target}: {status}, expected a refusal (400) or no route (404)"
        );
    }
    for seen in up.requests() {
        let resolved = as_an_upstream_reads_it(&seen.path);
        assert!(
            resolved.starts_with("/base/") && !resolved.contains("secret"),
            "{} reached the upstream (it reads {resolved})",
            seen.path
        );
    }
    // Dot segments that stay inside the route are resolved, not refused.
    for (target, expected) in [
        ("/route/./v1/models", "/base/v1/models"),
        ("/route/v1/x/../models", "/base/v1/models"),
        ("/route/v1/%2e/models", "/base/v1/models"),
        ("/route/v1/%6Dodels?a=%2F", "/base/v1/models?a=%2F"),
        ("//route//v1//models", "/base/v1/models"),
    ] {
        up.set_recording(true);
        let before = up.requests().len();
        assert_eq!(raw(&gw, "GET", target).await, 200, "{target}");
        let seen = up.requests();
        assert_eq!(seen.len(), before + 1, "{target}");
        assert_eq!(seen[before].path, expected, "{target}");
    }
}

#[tokio::test]
async fn a_path_scoped_limit_holds_for_every_spelling_of_the_path() {
    let up = MockUpstream::start().await;
    let yaml = format!(
        r#"routes:
  - {{prefix: /, upstream: '{}'}}
limits:
  rules:
    - {{path: /v1/models, requests: "2/minute"}}
"#,
        up.url()
    );
    let gw = start_gateway(&yaml).await;
    for _ in 0..2 {
        assert_eq!(raw(&gw, "GET", "/v1/models").await, 200);
    }
    for variant in [
        "/v1/./models",
        "/v1/%2e/models",
        "/v1/x/../models",
        "/v1/x/%2E%2E/models",
        "/./v1/models",
        "/v1/%6dodels",
        "//v1//models",
    ] {
        let status = raw(&gw, "GET", variant).await;
        assert!(
            status == 429 || status == 400,
            "{variant}: {status}; the limit on /v1/models was bypassed"
        );
    }
    assert_eq!(up.request_count(), 2);
}
