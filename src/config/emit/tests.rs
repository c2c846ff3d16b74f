use super::*;
use crate::config::parse_bytes;

#[test]
fn emitted_yaml_loads_back_to_the_same_config() {
    let yaml = r#"
access: {allow: ["10.0.0.0/8"], trusted_proxies: ["127.0.0.1"]}
upstream_keys:
  main: [{key: sk-odd.1, name: "first \"odd\"", weight: 3}, sk-2]
tenants:
  t: {models: [gpt-4o], routes: [/a], pools: {/a: main}, access: {deny: ["10.0.0.1"]}}
  all: {pool: main}
forward_keys: [{key: fk-1, tenant: t, name: alice}, {key: fk-2, tenant: all}]
cors: {allow_origins: ["https://app.example.com"], max_age: 5m}
limits:
  backend: "redis://127.0.0.1:6379/0"
  on_backend_error: deny
  rules:
    - {requests: "60/minute;600/hour"}
    - {tenant: t, path: /a/v1, per: ip, requests: "100/2minutes", concurrency: 3}
routes:
  - {prefix: /a, upstream: "http://127.0.0.1:1/v1", type: general, timeouts: {connect: 6500ms}, proxy: "http://u:p@127.0.0.1:3128", auth: {pool: main, key_header: "query:key"}, access: {allow: ["::1"]}, max_body: 1MiB}
  - {prefix: /, upstream: "https://api.openai.com", auth: {mode: mixed, pool: main}}
"#;
    let cfg = parse_bytes(yaml.as_bytes(), &|_| None).unwrap();
    let back = parse_bytes(to_yaml(&cfg).as_bytes(), &|_| None).unwrap();
    assert_eq!(back.routes, cfg.routes);
    assert_eq!(back.upstream_keys, cfg.upstream_keys);
    assert_eq!(back.tenants, cfg.tenants);
    assert_eq!(back.forward_keys, cfg.forward_keys);
    assert_eq!(back.access, cfg.access);
    assert_eq!(back.cors, cfg.cors);
    assert_eq!(back.limits, cfg.limits);
    assert_eq!(back.server.listen, cfg.server.listen);
}

/// Every section and option the writer knows, so that a change to its output shows here.
const EVERYTHING: &str = r#"
server: {listen: ["127.0.0.1:8000", "[::1]:8001"]}
access: {deny: ["10.0.0.9"], trusted_proxies: ["127.0.0.1"]}
upstream_keys:
  main: [{key: sk-odd.1, name: "first \"odd\"", weight: 3}, sk-2]
  level-1: [sk-3]
tenants:
  t: {models: [gpt-4o], routes: [/a], pools: {/a: main}, access: {deny: ["10.0.0.1"], allow: ["10.0.0.0/8"]}}
  all: {pool: main}
forward_keys: [{key: fk-1, tenant: t, name: alice, access: {allow: ["::1"]}}, {key: fk-2, tenant: all}]
cors: {allow_origins: ["https://app.example.com", "*"], allow_credentials: true, max_age: 5m}
limits:
  backend: "redis://127.0.0.1:6379/0"
  on_backend_error: allow
  backend_timeout: 80ms
  default_max_tokens: 512
  rules:
    - {requests: "60/minute;600/hour"}
    - {tenant: t, path: /a/v1, per: ip, requests: "100/2minutes", concurrency: 3}
    - {route: /, key: alice, tokens: "1000/minute", cut_streams: true, output_tokens_per_second: 20}
routes:
  - {prefix: /a, upstream: "http://127.0.0.1:1/v1", type: general, timeouts: {connect: 6500ms, read: 2m, write: 7s}, proxy: "http://u:p@127.0.0.1:3128", auth: {pool: main, key_header: "query:key"}, access: {allow: ["::1"]}, max_body: 1MiB, forward_cookies: true}
  - {prefix: /, upstream: "https://api.openai.com", auth: {mode: mixed, pool: main, key_header: api-key}, default_model: gpt-4o-mini, retry: {connect_retries: 2, backoff: 10ms, backoff_max: 1s, on_status: false}}
  - {prefix: /n, upstream: "https://api.openai.com", auth: {mode: passthrough, key_header: none}}
  - {prefix: /benchmark, type: benchmark}
cache:
  backend: disk
  path: /tmp/llm-forward-cache
  default: true
  routes:
    - route: /
      paths: [/v1/chat/completions, /v1/embeddings]
      default: false
    - route: /a
log:
  chat: {dir: Log/chat, routes: [/, /a], messages: false, max_file_size: 1000, keep_files: 3}
  print_chat: true
"#;

/// `import-env`'s output, byte for byte (what operators diff and commit).
#[test]
fn the_written_yaml_is_stable() {
    let cfg = parse_bytes(EVERYTHING.as_bytes(), &|_| None).unwrap();
    let yaml = to_yaml(&cfg);
    let back = parse_bytes(yaml.as_bytes(), &|_| None).unwrap();
    assert_eq!(back.routes, cfg.routes);
    assert_eq!(back.cache, cfg.cache);
    assert_eq!(back.log, cfg.log);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/import_env.yaml"
    );
    if std::env::var_os("WRITE_GOLDEN").is_some() {
        std::fs::write(path, &yaml).unwrap();
    }
    assert_eq!(yaml, std::fs::read_to_string(path).unwrap());
}

#[test]
fn an_empty_cache_route_list_is_written() {
    let yaml = "routes: [{prefix: /, upstream: 'http://h'}]\ncache: {routes: []}\n";
    let cfg = parse_bytes(yaml.as_bytes(), &|_| None).unwrap();
    let out = to_yaml(&cfg);
    assert!(
        out.contains("cache:\n  backend: memory\n  routes: []\n"),
        "{out}"
    );
    assert_eq!(
        parse_bytes(out.as_bytes(), &|_| None).unwrap().cache,
        cfg.cache
    );
}
