use super::*;

fn env(pairs: &[(&str, &str)]) -> Env {
    Env::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        std::iter::empty(),
    )
}

#[test]
fn auth_mode_is_checked_against_the_forward_keys() {
    let err = to_config(&env(&[("AUTH_MODE", "forward_keys")])).unwrap_err();
    assert!(err.to_string().contains("AUTH_MODE"), "{err}");
    let err = to_config(&env(&[
        ("FORWARD_KEY_CONFIG", r#"{"fk-a": 0}"#),
        ("OPENAI_API_KEY_CONFIG", r#"{"sk-a": [0]}"#),
        ("AUTH_MODE", "passthrough"),
    ]))
    .unwrap_err();
    assert!(
        err.to_string().contains("expected mixed or forward_keys"),
        "{err}"
    );
}

#[test]
fn the_source_names_where_the_variables_came_from() {
    let both = Env::new(
        vec![("TIMEOUT".into(), "3".into())],
        [("PROXY".to_string(), "http://p:3128".to_string())].into_iter(),
    );
    assert_eq!(
        both.source(),
        ConfigSource::Environment {
            process: true,
            dotenv: true
        }
    );
    assert_eq!(env(&[("PATH", "/bin")]).source(), ConfigSource::Default);
}

#[test]
fn nothing_set_means_no_env_config() {
    assert_eq!(to_config(&env(&[("PATH", "/bin")])).unwrap(), None);
}

#[test]
fn forward_config_and_timeout() {
    let cfg = to_config(&env(&[
            ("FORWARD_CONFIG", r#"[{"base_url":"https://api.openai.com","route":"/","type":"openai"},{"base_url":"http://localhost:8080","route":"localai","type":"general"}]"#),
            ("TIMEOUT", "6"),
        ]))
        .unwrap()
        .unwrap();
    assert_eq!(cfg.routes.len(), 2);
    assert_eq!(cfg.routes[1].prefix, "/localai");
    assert_eq!(cfg.routes[1].kind, RouteKind::General);
    assert_eq!(cfg.routes[0].timeouts.connect, Duration::from_secs(6));
    assert_eq!(cfg.server.listen[0].port(), 8000);
    assert!(cfg.routes.iter().all(|r| !r.retry.on_status));
    // The YAML import-env prints keeps it.
    let yaml = super::super::emit::to_yaml(&cfg);
    let back = crate::config::parse_bytes(yaml.as_bytes(), &|_| None).unwrap();
    assert_eq!(back.routes[0].retry, cfg.routes[0].retry);
}

#[test]
fn proxy_applies_to_every_upstream() {
    let cfg = to_config(&env(&[
        ("PROXY", "http://u:secret@127.0.0.1:7890"),
        ("TIMEOUT", "6"),
    ]))
    .unwrap()
    .unwrap();
    let u = &cfg.routes[0].upstreams[0];
    assert_eq!(u.proxy.as_ref().map(|p| p.port), Some(7890));
    assert_eq!(u.timeouts.connect, Duration::from_secs(6));
    let err = to_config(&env(&[("PROXY", "socks5://u:secret@h:1")])).unwrap_err();
    assert_eq!(err.0[0].path, "PROXY");
    assert!(!format!("{err:?}").contains("secret"));
}

#[test]
fn rate_limit_variables() {
    let cfg = to_config(&env(&[
            ("OPENAI_API_KEY_CONFIG", r#"{"sk-1": [1]}"#),
            ("FORWARD_KEY_CONFIG", r#"{"fk-a": 1}"#),
            ("REQ_RATE_LIMIT", r#"{"/v1/chat/completions": [{"level": 0, "limit": "100/2minutes"}, {"level": 1, "limit": "60/minute;600/hour"}, {"level": 7, "limit": "1/minute"}]}"#),
            ("GLOBAL_RATE_LIMIT", "200/minute"),
            ("REQ_RATE_LIMIT_BACKEND", "redis://127.0.0.1:6379/0"),
        ]))
        .unwrap()
        .unwrap();
    let rules = &cfg.limits.rules;
    assert_eq!(rules.len(), 3, "level 7 has no keys: its rule is dropped");
    assert_eq!(rules[0].path.as_deref(), Some("/v1/chat/completions"));
    assert_eq!(rules[0].tenant, None);
    assert_eq!(rules[1].tenant.as_deref(), Some("level-1"));
    assert_eq!(rules[1].requests.as_ref().unwrap().0.len(), 2);
    assert!(rules[2].path.is_none() && rules[2].tenant.is_none());
    assert_eq!(
        cfg.limits.backend,
        super::super::model::LimitBackendConfig::Redis("redis://127.0.0.1:6379/0".into())
    );
}

#[test]
fn keys_levels_and_ip_lists() {
    for forward in [
        r#"{"fk-a": 1, "fk-b": 0}"#,
        r#"{"1": ["fk-a"], "0": ["fk-b"]}"#,
    ] {
        let cfg = to_config(&env(&[
            ("OPENAI_API_KEY_CONFIG", r#"{"sk-1": [0, 1], "sk-2": [1]}"#),
            ("FORWARD_KEY_CONFIG", forward),
            ("LEVEL_MODELS", r#"{"1": ["gpt-4o-mini"]}"#),
            ("IP_WHITELIST", "127.0.0.1, 10.0.0.0/8"),
            ("IP_BLACKLIST", "10.0.0.9"),
        ]))
        .unwrap()
        .unwrap();
        let pool1 = cfg
            .upstream_keys
            .iter()
            .find(|p| p.name == "level-1")
            .unwrap();
        assert_eq!(pool1.keys.len(), 2);
        let t1 = cfg.tenants.iter().find(|t| t.name == "level-1").unwrap();
        assert_eq!(t1.models.as_deref(), Some(&["gpt-4o-mini".to_string()][..]));
        assert_eq!(t1.pool.as_deref(), Some("level-1"));
        let t0 = cfg.tenants.iter().find(|t| t.name == "level-0").unwrap();
        assert_eq!(t0.models, None);
        let fk_a = cfg.forward_keys.iter().find(|k| k.key.0 == "fk-a").unwrap();
        assert_eq!(fk_a.tenant, "level-1");
        assert_eq!(cfg.access.rules.allow, ["127.0.0.1", "10.0.0.0/8"]);
        assert_eq!(cfg.access.rules.deny, ["10.0.0.9"]);
    }
}

#[test]
fn a_level_without_upstream_keys_may_use_no_route_rather_than_leak() {
    let cfg = to_config(&env(&[("FORWARD_KEY_CONFIG", r#"{"fk-a": 2}"#)]))
        .unwrap()
        .unwrap();
    let t = cfg.tenants.iter().find(|t| t.name == "level-2").unwrap();
    assert_eq!(t.routes.as_deref(), Some(&[][..]));
    assert_eq!(t.pool, None);
    // The YAML import-env prints is valid and keeps the level unusable.
    let yaml = super::super::emit::to_yaml(&cfg);
    let back = crate::config::parse_bytes(yaml.as_bytes(), &|_| None).unwrap();
    assert_eq!(back.tenants, cfg.tenants);
}

#[test]
fn bad_values_are_listed_with_their_variable() {
    let err = to_config(&env(&[
        (
            "FORWARD_CONFIG",
            r#"[{"base_url":"ftp://x","route":"/"},{"route":"/b"}]"#,
        ),
        ("TIMEOUT", "soon"),
    ]))
    .unwrap_err();
    let paths: Vec<_> = err.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "FORWARD_CONFIG[0].base_url",
            "FORWARD_CONFIG[1].base_url",
            "TIMEOUT"
        ]
    );
}

#[test]
fn cache_variables() {
    use crate::config::CacheBackendConfig;
    let forward = r#"[{"base_url":"https://api.openai.com","route":"/","type":"openai"},{"base_url":"http://localhost:8080","route":"/g","type":"general"}]"#;
    let cfg = to_config(&env(&[
        ("FORWARD_CONFIG", forward),
        ("CACHE_OPENAI", "true"),
        ("CACHE_BACKEND", "LMDB"),
        ("CACHE_ROOT_PATH_OR_URL", "/var/cache/aifd"),
        (
            "CACHE_ROUTES",
            r#"["/v1/chat/completions", "v1/embeddings"]"#,
        ),
        ("DEFAULT_REQUEST_CACHING_VALUE", "true"),
    ]))
    .unwrap()
    .unwrap();
    let c = cfg.cache.as_ref().unwrap();
    assert_eq!(
        c.backend,
        CacheBackendConfig::Disk("/var/cache/aifd/llm-forward-cache".into())
    );
    assert!(c.default);
    let routes = c.routes.as_ref().unwrap();
    assert_eq!(routes.len(), 1, "CACHE_GENERAL is off");
    assert_eq!(routes[0].route, "/");
    assert_eq!(
        routes[0].paths.as_deref().unwrap(),
        ["/v1/chat/completions", "/v1/embeddings"]
    );
    // The YAML import-env prints loads back to the same cache settings.
    let yaml = super::super::emit::to_yaml(&cfg);
    let back = crate::config::parse_bytes(yaml.as_bytes(), &|_| None).unwrap();
    assert_eq!(back.cache, cfg.cache);

    let cfg = to_config(&env(&[
        ("FORWARD_CONFIG", forward),
        ("CACHE_GENERAL", "true"),
        ("CACHE_ROOT_PATH_OR_URL", "redis://127.0.0.1:6379/1"),
    ]))
    .unwrap()
    .unwrap();
    let yaml = super::super::emit::to_yaml(&cfg);
    let back = crate::config::parse_bytes(yaml.as_bytes(), &|_| None).unwrap();
    assert_eq!(back.cache, cfg.cache);
    let c = cfg.cache.unwrap();
    assert_eq!(
        c.backend,
        CacheBackendConfig::Redis("redis://127.0.0.1:6379/1".into())
    );
    let routes = c.routes.unwrap();
    assert_eq!(routes[0].route, "/g");
    assert_eq!(routes[0].default, Some(true), "general routes always cache");
    assert!(!c.default);

    for bad in [
        ("CACHE_BACKEND", "sqlite"),
        ("CACHE_ROOT_PATH_OR_URL", "http://flaxkv:8000"),
    ] {
        let err = to_config(&env(&[("CACHE_OPENAI", "true"), bad])).unwrap_err();
        assert_eq!(err.0[0].path, bad.0);
    }
    // Without a switch, the rest is ignored.
    assert!(to_config(&env(&[
        ("FORWARD_CONFIG", forward),
        ("CACHE_BACKEND", "LMDB")
    ]))
    .unwrap()
    .unwrap()
    .cache
    .is_none());
}

// A key with a control character passed and then failed every request with a 500.
#[test]
fn keys_that_cannot_go_into_a_header_are_refused_without_echo() {
    let err = to_config(&env(&[
        ("OPENAI_API_KEY_CONFIG", r#"{"sk-ab\u0001c": [0]}"#),
        ("FORWARD_KEY_CONFIG", r#"{"fk-\u00e9t\u00e9": 0}"#),
    ]))
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("OPENAI_API_KEY_CONFIG"), "{text}");
    assert!(text.contains("FORWARD_KEY_CONFIG"), "{text}");
    assert!(text.contains("printable ASCII"), "{text}");
    assert!(!text.contains("sk-ab") && !text.contains("fk-"), "{text}");
}
