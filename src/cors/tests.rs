use super::*;

const APP: &str = "https://app.example.com";

fn policy(origins: &[&str], credentials: bool) -> CorsPolicy {
    let origins: Vec<String> = origins.iter().map(|s| s.to_string()).collect();
    CorsPolicy::new(&origins, credentials, Duration::from_secs(600)).unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn preflight_req(origin: &str) -> HeaderMap {
    headers(&[
        ("origin", origin),
        ("access-control-request-method", "POST"),
        (
            "access-control-request-headers",
            "authorization, content-type",
        ),
    ])
}

fn get(h: &[(HeaderName, HeaderValue)], name: HeaderName) -> Option<&str> {
    h.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_str().unwrap())
}

fn origin_err(origin: &str) -> String {
    CorsPolicy::new(&[origin.to_string()], false, Duration::ZERO).unwrap_err()
}

// --- construction ----------------------------------------------------------------------

#[test]
fn origins_are_normalised_to_browser_form() {
    let p = policy(
        &[
            "HTTPS://App.Example.com",
            "https://app.example.com:443",
            "http://localhost:3000",
            "http://127.0.0.1:80",
            "https://[2001:DB8:0::1]:8443",
            "chrome-extension://abcdefghijklmnop",
            " https://spaced.example ",
        ],
        false,
    );
    let Origins::List(list) = &p.origins else {
        panic!("expected a list")
    };
    let list: Vec<&str> = list.iter().map(|o| &**o).collect();
    assert_eq!(
        list,
        [
            APP,
            "http://localhost:3000",
            "http://127.0.0.1",
            "https://[2001:db8::1]:8443",
            "chrome-extension://abcdefghijklmnop",
            "https://spaced.example",
        ]
    );
    assert!(p.allows_origin(APP));
    assert!(p.allows_origin("https://APP.example.com"));
    assert!(p.allows_origin("http://127.0.0.1"));
    assert!(
        !p.allows_origin("http://127.0.0.1:80"),
        "browsers never send it"
    );
    assert!(!p.allows_origin("https://app.example.com.evil.test"));
    assert!(!p.allows_origin("https://example.com"));
    assert!(!p.allows_origin("http://app.example.com"), "scheme matters");
    assert!(
        !p.allows_origin("https://app.example.com:8443"),
        "port matters"
    );
}

#[test]
fn invalid_origins_are_refused_with_a_reason() {
    let cases = [
        (
            "https://app.example.com/",
            "did you mean https://app.example.com?",
        ),
        ("https://app.example.com/v1", "no path"),
        ("https://app.example.com?x=1", "query"),
        ("https://app.example.com#top", "fragment"),
        ("app.example.com", "scheme://host"),
        ("https://", "host is missing"),
        ("https://user:pw@app.example.com", "user name"),
        ("https://*.example.com", "wildcard"),
        ("https://bücher.example", "punycode"),
        ("https://app..example.com", "not a valid host"),
        ("https://-app.example.com", "not a valid host"),
        ("https://app.example.com:", "port"),
        ("https://app.example.com:0", "port"),
        ("https://app.example.com:65536", "port"),
        ("https://app.example.com:8o", "port"),
        ("https://[2001:db8::1", "']'"),
        ("https://[nope]", "IPv6"),
        ("https://[::1]x", "after the IPv6"),
        ("1https://x.example", "scheme"),
        ("null", "sandboxed"),
        ("", "empty"),
    ];
    for (origin, why) in cases {
        let err = origin_err(origin);
        assert!(err.contains(why), "{origin}: {err}");
        assert!(err.contains("not a valid origin"), "{origin}: {err}");
    }
}

#[test]
fn empty_wildcard_and_mixed_lists() {
    let none = policy(&[], false);
    assert!(!none.allows_origin(APP));
    assert!(none
        .response_headers(&headers(&[("origin", APP)]))
        .is_none());
    let any = policy(&["*"], false);
    assert!(any.allows_origin("https://anything.test") && any.allows_origin("null"));
    let mixed = policy(&[APP, "*"], false);
    assert_eq!(mixed.origins, Origins::Any);
    // A bad entry fails even next to "*".
    assert!(CorsPolicy::new(&["*".into(), "nope".into()], false, Duration::ZERO).is_err());
}

#[test]
fn max_age_is_whole_seconds() {
    let p = CorsPolicy::new(&[APP.into()], false, Duration::from_millis(90_900)).unwrap();
    let h = p.preflight(&preflight_req(APP)).unwrap();
    assert_eq!(get(&h, ACCESS_CONTROL_MAX_AGE), Some("90"));
    let p = CorsPolicy::new(&[APP.into()], false, Duration::ZERO).unwrap();
    let h = p.preflight(&preflight_req(APP)).unwrap();
    assert_eq!(get(&h, ACCESS_CONTROL_MAX_AGE), Some("0"));
}

// --- is_preflight ----------------------------------------------------------------------

#[test]
fn preflight_detection() {
    let full = preflight_req(APP);
    assert!(is_preflight(&Method::OPTIONS, &full));
    assert!(!is_preflight(&Method::POST, &full));
    assert!(!is_preflight(
        &Method::OPTIONS,
        &headers(&[("origin", APP)])
    ));
    assert!(!is_preflight(
        &Method::OPTIONS,
        &headers(&[("access-control-request-method", "POST")])
    ));
    assert!(!is_preflight(&Method::OPTIONS, &HeaderMap::new()));
}

// --- preflight -------------------------------------------------------------------------

#[test]
fn preflight_for_an_allowed_origin() {
    let p = policy(&[APP], false);
    let h = p.preflight(&preflight_req(APP)).unwrap();
    assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_ORIGIN), Some(APP));
    assert_eq!(
        get(&h, VARY),
        Some("origin, access-control-request-method, access-control-request-headers")
    );
    assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_METHODS), Some("POST"));
    assert_eq!(
        get(&h, ACCESS_CONTROL_ALLOW_HEADERS),
        Some("authorization, content-type")
    );
    assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
    assert_eq!(get(&h, ACCESS_CONTROL_MAX_AGE), Some("600"));
    assert_eq!(get(&h, ACCESS_CONTROL_EXPOSE_HEADERS), None);
    assert_eq!(h.len(), 5);
    // The echo is the request's own spelling.
    let h = p
        .preflight(&preflight_req("https://APP.example.com"))
        .unwrap();
    assert_eq!(
        get(&h, ACCESS_CONTROL_ALLOW_ORIGIN),
        Some("https://APP.example.com")
    );
}

#[test]
fn preflight_refuses_unknown_missing_and_repeated_origins() {
    let p = policy(&[APP], true);
    assert!(p
        .preflight(&preflight_req("https://evil.example"))
        .is_none());
    assert!(p.preflight(&preflight_req("null")).is_none());
    assert!(p
        .preflight(&headers(&[("access-control-request-method", "POST")]))
        .is_none());
    let twice = headers(&[
        ("origin", APP),
        ("origin", "https://evil.example"),
        ("access-control-request-method", "POST"),
    ]);
    assert!(p.preflight(&twice).is_none());
    let mut blank = preflight_req(APP);
    blank.insert(ORIGIN, HeaderValue::from_static(""));
    assert!(p.preflight(&blank).is_none());
    let mut binary = preflight_req(APP);
    binary.insert(ORIGIN, HeaderValue::from_bytes(b"https://\xffapp").unwrap());
    assert!(p.preflight(&binary).is_none());
}

#[test]
fn preflight_with_any_origin() {
    let p = policy(&["*"], false);
    let h = p.preflight(&preflight_req("https://anyone.test")).unwrap();
    assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
    assert_eq!(
        get(&h, VARY),
        Some("access-control-request-method, access-control-request-headers")
    );
    assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
    assert!(!p.varies_by_origin());
}

#[test]
fn any_origin_with_credentials_echoes_never_star() {
    let p = policy(&["*"], true);
    assert!(p.varies_by_origin());
    let h = p.preflight(&preflight_req("https://anyone.test")).unwrap();
    assert_eq!(
        get(&h, ACCESS_CONTROL_ALLOW_ORIGIN),
        Some("https://anyone.test")
    );
    assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_CREDENTIALS), Some("true"));
    assert!(get(&h, VARY).unwrap().starts_with("origin"));
    assert_eq!(h.len(), 6, "the full preflight fits the capacity");
    let h = p
        .response_headers(&headers(&[("origin", "https://anyone.test")]))
        .unwrap();
    assert_eq!(
        get(&h, ACCESS_CONTROL_ALLOW_ORIGIN),
        Some("https://anyone.test")
    );
    assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_CREDENTIALS), Some("true"));
    assert_eq!(get(&h, VARY), Some("origin"));
    // Echoing "null" would let every sandboxed page in with credentials.
    assert!(p.preflight(&preflight_req("null")).is_none());
    assert!(p
        .response_headers(&headers(&[("origin", "null")]))
        .is_none());
    for (_, v) in p.preflight(&preflight_req("https://x.test")).unwrap() {
        assert_ne!(v, "*");
    }
}

#[test]
fn preflight_methods() {
    let p = policy(&[APP], false);
    let with = |m: &str| {
        let h = headers(&[("origin", APP), ("access-control-request-method", m)]);
        let out = p.preflight(&h).unwrap();
        get(&out, ACCESS_CONTROL_ALLOW_METHODS).map(str::to_string)
    };
    assert_eq!(with("PATCH").as_deref(), Some("PATCH"));
    assert_eq!(with("PROPFIND").as_deref(), Some("PROPFIND"));
    let fixed = Some("GET, POST, PUT, PATCH, DELETE, OPTIONS");
    assert_eq!(with("PO ST").as_deref(), fixed);
    assert_eq!(with("").as_deref(), fixed);
    assert_eq!(with("GET,POST").as_deref(), fixed);
    // Absent (not a preflight, but the answer is still well-formed).
    let out = p.preflight(&headers(&[("origin", APP)])).unwrap();
    assert_eq!(get(&out, ACCESS_CONTROL_ALLOW_METHODS), fixed);
}

#[test]
fn preflight_headers_are_echoed_only_when_well_formed() {
    let p = policy(&[APP], false);
    let with = |names: &str| {
        let h = headers(&[
            ("origin", APP),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", names),
        ]);
        let out = p.preflight(&h).unwrap();
        get(&out, ACCESS_CONTROL_ALLOW_HEADERS).map(str::to_string)
    };
    assert_eq!(with("authorization").as_deref(), Some("authorization"));
    assert_eq!(
        with("authorization,content-type,x-stainless-os").as_deref(),
        Some("authorization,content-type,x-stainless-os")
    );
    assert_eq!(
        with(" Authorization ,\tX-Custom ").as_deref(),
        Some(" Authorization ,\tX-Custom ")
    );
    assert_eq!(with("a,,b").as_deref(), Some("a,,b"));
    assert_eq!(with("bad header"), None);
    assert_eq!(with("bad:header"), None);
    assert_eq!(with("x-a, (x-b)"), None);
    assert_eq!(with(""), None);
    assert_eq!(with(" , "), None);
    // Absent: omitted.
    let out = p.preflight(&headers(&[
        ("origin", APP),
        ("access-control-request-method", "GET"),
    ]));
    assert_eq!(get(&out.unwrap(), ACCESS_CONTROL_ALLOW_HEADERS), None);
    // Repeated: neither is echoed.
    let h = headers(&[
        ("origin", APP),
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "a"),
        ("access-control-request-headers", "b"),
    ]);
    assert_eq!(
        get(&p.preflight(&h).unwrap(), ACCESS_CONTROL_ALLOW_HEADERS),
        None
    );
}

// --- response_headers ------------------------------------------------------------------

#[test]
fn actual_response_headers() {
    let p = policy(&[APP], false);
    let h = p.response_headers(&headers(&[("origin", APP)])).unwrap();
    assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_ORIGIN), Some(APP));
    assert_eq!(get(&h, VARY), Some("origin"));
    assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
    let exposed = get(&h, ACCESS_CONTROL_EXPOSE_HEADERS).unwrap();
    for name in [
        "x-request-id",
        "openai-processing-ms",
        "openai-model",
        "openai-organization",
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
        "retry-after",
    ] {
        assert!(exposed.split(", ").any(|n| n == name), "{name}");
    }
    assert!(is_name_list(exposed.as_bytes()));
    assert_eq!(get(&h, ACCESS_CONTROL_MAX_AGE), None);
    assert_eq!(h.len(), 3);

    let p = policy(&[APP], true);
    let h = p.response_headers(&headers(&[("origin", APP)])).unwrap();
    assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_CREDENTIALS), Some("true"));
    assert_eq!(h.len(), 4);

    let any = policy(&["*"], false);
    let h = any.response_headers(&headers(&[("origin", APP)])).unwrap();
    assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
    assert_eq!(get(&h, VARY), None);
}

#[test]
fn actual_response_without_or_with_a_refused_origin_gets_nothing() {
    let p = policy(&[APP], false);
    assert!(p.varies_by_origin());
    assert!(p.response_headers(&HeaderMap::new()).is_none());
    assert!(p
        .response_headers(&headers(&[("origin", "https://evil.example")]))
        .is_none());
    assert!(policy(&["*"], false)
        .response_headers(&HeaderMap::new())
        .is_none());
}

#[test]
fn apply_to_replaces_cors_headers_and_appends_vary() {
    let p = policy(&[APP], true);
    let mut resp = headers(&[
        ("vary", "accept-encoding"),
        ("access-control-allow-origin", "*"),
        ("content-type", "application/json"),
    ]);
    p.response_headers(&headers(&[("origin", APP)]))
        .unwrap()
        .apply_to(&mut resp);
    assert_eq!(resp["access-control-allow-origin"], APP);
    assert_eq!(
        resp.get_all("access-control-allow-origin").iter().count(),
        1
    );
    let vary: Vec<_> = resp.get_all(VARY).iter().collect();
    assert_eq!(vary, ["accept-encoding", "origin"]);
    assert_eq!(resp["access-control-allow-credentials"], "true");
    assert_eq!(resp["content-type"], "application/json");
}

#[test]
fn header_list_iterates_in_order() {
    let p = policy(&[APP], true);
    let h = p.preflight_headers(&preflight_req(APP)).unwrap();
    let names: Vec<&str> = h.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "access-control-allow-origin",
            "vary",
            "access-control-allow-methods",
            "access-control-allow-headers",
            "access-control-allow-credentials",
            "access-control-max-age",
        ]
    );
    let owned: Vec<(HeaderName, HeaderValue)> = h.clone().into_iter().collect();
    assert_eq!(owned.len(), h.len());
    assert!(!h.is_empty() && CorsHeaders::new().is_empty());
    assert_eq!(h.value(&VARY), Some(&VARY_PREFLIGHT_ECHO));
    assert_eq!(h.value(&ACCESS_CONTROL_EXPOSE_HEADERS), None);
    // Both preflight forms give the same answer.
    assert_eq!(
        Vec::from(h.clone()),
        p.preflight(&preflight_req(APP)).unwrap()
    );
}

#[test]
fn headers_fit_the_callers_shapes() {
    // What the proxy does with them: pass as a slice, iterate an `Option` by reference,
    // default to nothing.
    fn takes_slice(extra: &[(HeaderName, HeaderValue)]) -> usize {
        extra.len()
    }
    let p = policy(&[APP], true);
    let stored: Option<Headers> = p.response_headers(&headers(&[("origin", APP)]));
    assert_eq!(stored.iter().flatten().count(), 4);
    for (name, value) in stored.iter().flatten() {
        assert!(!name.as_str().is_empty() && !value.is_empty());
    }
    assert_eq!(takes_slice(&stored.clone().unwrap_or_default()), 4);
    let none: Option<Headers> = p.response_headers(&HeaderMap::new());
    assert_eq!(takes_slice(&none.unwrap_or_default()), 0);
    assert_eq!(CorsHeaders::default(), CorsHeaders::new());
    let refused = p.preflight(&preflight_req("https://evil.example"));
    let (status, list) = match refused {
        Some(h) => (204, h),
        None => (403, Vec::new()),
    };
    assert_eq!((status, takes_slice(&list)), (403, 0));
}
