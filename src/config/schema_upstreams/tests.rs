use super::*;

#[test]
fn proxy_urls() {
    let p = parse_proxy_url("http://u:p%40ss@127.0.0.1:3128").unwrap();
    assert_eq!((p.host.as_str(), p.port), ("127.0.0.1", 3128));
    assert_eq!(p.credentials.as_deref(), Some("u:p%40ss"));
    assert_eq!(p.redacted(), "http://***@127.0.0.1:3128");
    assert!(!format!("{p:?}").contains("p%40ss"));
    let p = parse_proxy_url("http://proxy.local").unwrap();
    assert_eq!(p.port, 80);
    for bad in ["socks5://h:1", "http://", "http://h:1/path", "h:1"] {
        assert!(parse_proxy_url(bad).is_err(), "{bad}");
    }
}

#[test]
fn model_names() {
    let url = parse_upstream_url("http://127.0.0.1:1").unwrap();
    let mut u = UpstreamConfig::new(url, Timeouts::default());
    assert_eq!(u.serves(Some("a")), Some(Some("a")));
    u.models = Some(vec![("gpt-4o".into(), "gpt-4o-2024".into())]);
    assert_eq!(u.serves(Some("gpt-4o")), Some(Some("gpt-4o-2024")));
    assert_eq!(u.serves(Some("other")), None);
    assert_eq!(u.serves(None), Some(None));
    u.models = Some(vec![("*".into(), "*".into())]);
    assert_eq!(u.serves(Some("x")), Some(Some("x")));
    let list = |names: &[&str]| {
        Some(
            names
                .iter()
                .map(|n| (n.to_string(), n.to_string()))
                .collect(),
        )
    };
    u.models = list(&["fb-*", "gpt-4o*", "!gpt-4o-realtime*"]);
    assert_eq!(u.serves(Some("fb-large")), Some(Some("fb-large")));
    assert_eq!(u.serves(Some("gpt-4o")), Some(Some("gpt-4o")));
    assert_eq!(u.serves(Some("gpt-4o-realtime-preview")), None);
    assert_eq!(u.serves(Some("fb")), None);
    u.models = list(&["!o1*"]);
    assert_eq!(u.serves(Some("gpt-4o")), Some(Some("gpt-4o")));
    assert_eq!(u.serves(Some("o1-mini")), None);
    // An exact name wins over a glob listed before it; a glob may map to one deployment.
    u.models = Some(vec![
        ("gpt-4o*".into(), "*".into()),
        ("gpt-4o".into(), "deploy".into()),
        ("claude-*".into(), "claude-proxy".into()),
    ]);
    assert_eq!(u.serves(Some("gpt-4o")), Some(Some("deploy")));
    assert_eq!(u.serves(Some("gpt-4o-mini")), Some(Some("gpt-4o-mini")));
    assert_eq!(u.serves(Some("claude-3")), Some(Some("claude-proxy")));
}

#[test]
fn bad_model_patterns_are_named_with_their_path() {
    let yaml = "routes:\n  - prefix: /\n    upstreams:\n      - {url: 'http://127.0.0.1:1', models: ['fb-*', '!', 'a!b']}\n      - {url: 'http://127.0.0.1:2', models: {'!x': y}}\n";
    let problems = crate::config::parse_bytes(yaml.as_bytes(), &|_| None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        problems.contains("routes[0].upstreams[0].models[1]"),
        "{problems}"
    );
    assert!(
        problems.contains("routes[0].upstreams[0].models[2]"),
        "{problems}"
    );
    assert!(
        problems.contains("routes[0].upstreams[1].models.!x"),
        "{problems}"
    );
    assert!(!problems.contains("models[0]"), "{problems}");
}

#[test]
fn globs() {
    for (p, n, m) in [
        ("*", "", true),
        ("*", "abc", true),
        ("a*", "abc", true),
        ("*c", "abc", true),
        ("a*c", "abbbc", true),
        ("a*b*c", "axbyc", true),
        ("a*b*c", "axbyd", false),
        ("abc", "abc", true),
        ("abc", "abcd", false),
        ("gpt-4o*", "gpt-4", false),
        ("**", "x", true),
        ("*aab", "aaaab", true),
    ] {
        assert_eq!(glob_match(p, n), m, "{p} {n}");
    }
    assert!(model_pattern_problem("!").is_some());
    assert!(model_pattern_problem("a!b").is_some());
    assert!(model_pattern_problem("a b").is_some());
    assert!(model_pattern_problem("!gpt-4o-realtime*").is_none());
}

// A name with a control character passed `check`; its answers then lost their
// `x-llm-forward-upstream` header.
#[test]
fn upstream_names_can_be_sent_as_a_header() {
    for name in [r#""a\x01b""#, r#""a\nb""#, "''"] {
        let yaml = format!(
            "routes:\n  - prefix: /\n    upstreams:\n      - {{url: 'http://127.0.0.1:1', name: {name}}}\n"
        );
        let problems = crate::config::parse_bytes(yaml.as_bytes(), &|_| None)
            .err()
            .map(|p| p.to_string())
            .unwrap_or_default();
        assert!(
            problems.contains("routes[0].upstreams[0].name: a name must be non-empty"),
            "{name}: {problems}"
        );
    }
    let yaml = "routes:\n  - prefix: /\n    upstreams:\n      - {url: 'http://127.0.0.1:1', name: 'eu west (é)'}\n";
    assert!(crate::config::parse_bytes(yaml.as_bytes(), &|_| None).is_ok());
}
