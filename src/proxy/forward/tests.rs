//! Tests of the upstream request and response heads `forward` rewrites.

use super::*;

fn head(headers: &[(&str, &str)]) -> RequestHeader {
    let mut req = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
    for (name, value) in headers {
        req.append_header(name.to_string(), *value).unwrap();
    }
    req
}

/// A request ctx routed to the first route of `yaml`, with that route's attempt plan.
fn routed_ctx(yaml: &str) -> RequestCtx {
    let config = crate::config::parse_bytes(yaml.as_bytes(), &|_| None).unwrap();
    let gateway = crate::state::Gateway::build(config).ok().unwrap();
    let route = Arc::clone(&gateway.routes[0]);
    let mut ctx = RequestCtx::new(&Arc::new(std::sync::atomic::AtomicUsize::new(0)));
    let plan = Attempts::plan(&route, None, false, None, false, |_| true, Instant::now());
    ctx.failover.plan = Some(plan);
    ctx.routed = Some(Routed {
        route,
        rest: "/v1/chat/completions".into(),
        query: None,
    });
    ctx
}

fn names(req: &RequestHeader) -> Vec<String> {
    req.headers.keys().map(|k| k.to_string()).collect()
}

/// The old way: every name removed in turn, present or not.
fn strip_each(req: &mut RequestHeader, forward_cookies: bool) {
    let listed = connection_listed(req.headers.get_all(header::CONNECTION));
    for name in listed.iter().chain(REQUEST_STRIPPED[..6].iter()) {
        req.remove_header(name);
    }
    req.remove_header(&FALLBACK_HEADER);
    if !forward_cookies {
        req.remove_header(&header::COOKIE);
    }
}

#[test]
fn stripping_only_what_is_present_leaves_the_same_head() {
    let heads: [&[(&str, &str)]; 5] = [
        &[("host", "a"), ("content-type", "x"), ("authorization", "k")],
        &[
            ("cookie", "c"),
            ("host", "a"),
            ("x-fallback-models", "m"),
            ("te", "t"),
        ],
        &[
            ("connection", "x-secret, keep-alive"),
            ("x-secret", "s"),
            ("a", "1"),
            ("keep-alive", "5"),
            ("b", "2"),
            ("upgrade", "h2c"),
            ("cookie", "c"),
            ("cookie", "d"),
        ],
        &[
            ("proxy-connection", "x"),
            ("accept", "*/*"),
            ("proxy-authorization", "p"),
        ],
        &[],
    ];
    for headers in heads {
        for forward_cookies in [false, true] {
            let (mut old, mut new) = (head(headers), head(headers));
            strip_each(&mut old, forward_cookies);
            strip_request(&mut new, forward_cookies);
            assert_eq!(names(&old), names(&new), "{headers:?} {forward_cookies}");
            assert_eq!(format!("{old:?}"), format!("{new:?}"));
        }
    }
}

#[test]
fn present_names_are_found_by_position() {
    let req = head(&[("TE", "x"), ("cookie", "c"), ("accept", "a")]);
    assert_eq!(
        present(&req.headers, &REQUEST_STRIPPED),
        1 << 4 | COOKIE_BIT
    );
    assert_eq!(present(&req.headers, &RESPONSE_STRIPPED), 1 << 4);
    assert_eq!(present(&head(&[]).headers, &REQUEST_STRIPPED), 0);
}

#[test]
fn a_target_is_recognised_without_being_built() {
    let paths = ["/", "/v1", "/v1/chat", "/x/v1/chat", "/v1/", ""];
    let parts = ["", "/", "/v1", "/x", "/chat", "/v1/chat", "/x/v1"];
    for path in paths {
        for base in parts {
            for rest in parts {
                assert_eq!(
                    joins_to(path, base, rest),
                    upstream_target(base, rest, None) == path,
                    "{path:?} {base:?} {rest:?}"
                );
            }
        }
    }
}

#[test]
fn a_declared_length_is_recognised_only_when_exact_and_alone() {
    let with = |h: &[(&str, &str)], len| declares_length(&head(h), len);
    assert!(with(&[("content-length", "42")], 42));
    assert!(with(&[("Content-Length", "0")], 0));
    assert!(with(
        &[("content-length", "18446744073709551615")],
        usize::MAX
    ));
    assert!(!with(&[("content-length", "42")], 43));
    assert!(!with(&[("content-length", "042")], 42));
    assert!(!with(
        &[("content-length", "42"), ("content-length", "42")],
        42
    ));
    assert!(!with(
        &[("content-length", "42"), ("transfer-encoding", "chunked")],
        42
    ));
    assert!(!with(&[], 42));
}

/// A general route's request head, rewritten for the upstream: no allocation once the
/// route's `Host` value is shared (before: the target's String and the Uri's copy of it).
#[test]
fn a_plain_request_is_rewritten_without_allocating() {
    use crate::alloc_count::allocations;
    let mut ctx =
        routed_ctx("routes:\n  - prefix: /\n    upstream: http://127.0.0.1:1\n    type: general\n");
    let client = [
        ("Host", "gateway:8080"),
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer sk-client"),
        ("Content-Length", "75"),
    ];
    upstream_request(&mut ctx, &mut head(&client)).unwrap(); // shares the Host value
    let mut req = head(&client);
    let (n, r) = allocations(|| upstream_request(&mut ctx, &mut req));
    r.unwrap();
    assert_eq!(n, 0);
    assert_eq!(req.raw_path(), b"/v1/chat/completions");
    assert_eq!(req.headers.get(header::HOST).unwrap(), "127.0.0.1:1");
    assert_eq!(req.headers.len(), 4);
}

/// A pool-key attempt (the usual production setup: a forward key swapped for a pool key):
/// the allocations of rewriting its head for the upstream, with the key as a bearer token
/// or in a header of its own (`route_auth`), after a first attempt has shared what is kept.
fn pool_key_attempt_allocations(route_auth: &str) -> (usize, RequestHeader) {
    use crate::alloc_count::allocations;
    let yaml = format!(
        "upstream_keys:\n  main: [sk-upstream-1]\nroutes:\n  - prefix: /\n    upstream: http://127.0.0.1:1\n    type: general\n    auth: {{{route_auth}}}\n"
    );
    let mut ctx = routed_ctx(&yaml);
    ctx.auth.pool = ctx.route().and_then(|r| r.pool.clone());
    ctx.auth.swap_credentials = true;
    let client = [
        ("Host", "gateway:8080"),
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer fk-forward"),
        ("Content-Length", "75"),
    ];
    upstream_request(&mut ctx, &mut head(&client)).unwrap();
    let mut req = head(&client);
    let (n, r) = allocations(|| upstream_request(&mut ctx, &mut req));
    r.unwrap();
    assert_eq!(ctx.attempt.pool_key, Some(0));
    (n, req)
}

/// The pool key's header value is built once per key (before: a `format!` and a
/// `HeaderValue` copy per attempt, 3 allocations), and the header name the key goes in once
/// per upstream (before: a `String` and the secret's copy too, 5 allocations).
#[test]
fn a_pool_key_attempt_reuses_the_keys_built_value() {
    let (n, req) = pool_key_attempt_allocations("pool: main");
    assert_eq!(n, 0);
    let sent = req.headers.get(header::AUTHORIZATION).unwrap();
    assert_eq!(sent, "Bearer sk-upstream-1");
    assert!(sent.is_sensitive());

    let (n, req) = pool_key_attempt_allocations("pool: main, key_header: x-upstream-key");
    // The two allocations left are Pingora's: `insert_header` parses a custom name into a
    // `HeaderName` of its own, whose first clone (for the head's case map) shares it.
    assert_eq!(n, 2);
    assert!(req.headers.get(header::AUTHORIZATION).is_none());
    let sent = req.headers.get("x-upstream-key").unwrap();
    assert_eq!(sent, "sk-upstream-1");
    assert!(sent.is_sensitive());
}

#[test]
fn only_an_origin_form_head_keeps_its_target() {
    let req = head(&[]);
    assert!(is_origin_form(&req, None));
    assert!(!is_origin_form(&req, Some("a=1")));
    let query = RequestHeader::build("GET", b"/v1/models?a=1", None).unwrap();
    assert!(is_origin_form(&query, Some("a=1")));
    assert!(!is_origin_form(&query, None));
    let absolute = RequestHeader::build("GET", b"http://example.com/v1/models", None).unwrap();
    assert!(!is_origin_form(&absolute, None));
    let mut h2 = head(&[]);
    h2.set_uri(http::Uri::from_static(
        "https://example.com/v1/chat/completions",
    ));
    assert!(!is_origin_form(&h2, None));
}
