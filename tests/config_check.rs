//! `llm-forward check` and config loading: every shipped config loads, and every kind of bad
//! input is a clear, path-labelled error with exit code 2, never a panic.

use std::io::Write;
use std::process::{Command, Output};

fn check(yaml: &[u8]) -> Output {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(yaml).unwrap();
    Command::new(env!("CARGO_BIN_EXE_llm-forward"))
        .args(["check", "-c"])
        .arg(file.path())
        .env_remove("CONFIG_TEST_SECRET")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn every_shipped_config_is_valid() {
    let mut n = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/conf")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let text = std::fs::read(&path).unwrap();
            // Shipped configs take their secrets from ${VARS}: give each a stand-in.
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_llm-forward"));
            cmd.args(["check", "-c"]).arg(&path);
            let vars = String::from_utf8_lossy(&text)
                .split("${")
                .skip(1)
                .filter_map(|s| s.split('}').next().map(str::to_string))
                .collect::<Vec<_>>();
            for (i, var) in vars.iter().enumerate() {
                cmd.env(var, format!("test-secret-{i}"));
            }
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "{}: {}", path.display(), stderr(&out));
            n += 1;
        }
    }
    assert!(
        n >= 2,
        "conf/ should ship at least minimal.yaml and the example"
    );
}

#[test]
fn all_problems_are_listed_at_once_with_paths() {
    let out = check(
        br#"
server:
  listen: ["0.0.0.0:8000", "localhost:99999"]
  threds: 4
routes:
  - prefix: /a
    upstream: https://api.openai.com
    timeouts: { connect: fast }
  - prefix: /a/
    upstream: ftp://example.com
    type: grpc
  - prefx: /b
    upstream: http://127.0.0.1:8080
  - prefix: /c
    upstream: "${CONFIG_TEST_SECRET}"
"#,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for expected in [
        "server.listen[1]: \"localhost:99999\"",
        "server.threds: unknown key; did you mean `threads`?",
        "routes[0].timeouts.connect: \"fast\"",
        "routes[1].upstream: \"ftp://example.com\"",
        "routes[1].type: \"grpc\": expected `openai`, `general` or `benchmark`",
        "routes[2].prefx: unknown key; did you mean `prefix`?",
        "routes[2].prefix: missing",
        "routes[3].upstream: environment variable CONFIG_TEST_SECRET is not set",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    // The duplicate is reported once the first route with that prefix decodes.
    let dup = check(
        br#"routes:
  - {prefix: /a, upstream: 'http://h'}
  - {prefix: '//a/', upstream: 'http://h'}
"#,
    );
    assert!(
        stderr(&dup).contains(
            "routes[1].prefix: \"/a\": duplicate prefix; routes[0].prefix already routes it"
        ),
        "{}",
        stderr(&dup)
    );
}

#[test]
fn upstream_lists_and_failure_handling_are_checked_with_paths() {
    let out = check(
        br#"
upstream_keys:
  main: [sk-1]
routes:
  - prefix: /a
    upstream: https://api.openai.com
    upstreams: [{url: "http://127.0.0.1:1"}]
  - prefix: /b
    upstreams:
      - {url: "http://127.0.0.1:1", wieght: 2, pool: nope, prefill: maybe}
      - {name: x, proxy: "socks5://127.0.0.1:1080"}
    retry: {retries: 99, total: 0s, retry_after: 5s, on_reset: maybe}
    breaker: {error_ratio: 2, open_for: 0s}
    fallbacks: {models: gpt-4o}
    stream_errors: silent
    timeouts: {first_token: 0s}
"#,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for expected in [
        "routes[0].upstreams: give either `upstream` (one) or `upstreams` (a list), not both",
        "routes[1].upstreams[0].wieght: unknown key; did you mean `weight`?",
        "routes[1].upstreams[1].url: missing",
        r#"routes[1].upstreams[0].prefill: "maybe": expected true, false or a list of models"#,
        "routes[1].upstreams[1].proxy: expected http://[user:password@]host:port",
        r#"routes[1].retry.retries: "99": expected a whole number from 0 to 10"#,
        r#"routes[1].retry.total: "0s": must be above 0"#,
        r#"routes[1].retry.on_reset: "maybe": expected true or false"#,
        "routes[1].retry.retry_after: unknown key; expected one of: connect_retries, retries,",
        r#"routes[1].breaker.error_ratio: "2": expected a ratio from 0 to 1"#,
        r#"routes[1].breaker.open_for: "0s": must be above 0"#,
        r#"routes[1].fallbacks.models: "gpt-4o": expected a list"#,
        r#"routes[1].stream_errors: "silent": expected `abort`, `event` or `continue`"#,
        r#"routes[1].timeouts.first_token: "0s": must be above 0"#,
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    let out = check(
        br#"cache: {fill_after_disconnect: true}
routes:
  - prefix: /
    upstream: 'http://h'
    timeouts: {first_token: 5s}
"#,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot be combined with cache.fill_after_disconnect"),
        "{}",
        stderr(&out)
    );
    // Names are checked once the lists decode.
    let out = check(
        br#"upstream_keys:
  main: [sk-1]
routes:
  - prefix: /
    upstreams: [{url: 'http://h'}, {url: 'http://g', pool: nope}]
"#,
    );
    assert!(
        stderr(&out)
            .contains("routes[0].upstreams[1].pool: \"nope\": no such pool in upstream_keys"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn hostile_inputs_are_errors_not_panics() {
    let bomb = br#"
a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"#;
    let huge = vec![b'#'; 50 << 20];
    let deep = "[".repeat(100_000);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "empty"),
        ("whitespace", b"  \n\n".to_vec(), "empty"),
        ("non-utf8", vec![0xff, 0xfe, 0x00, 0x41], "not UTF-8"),
        ("alias bomb", bomb.to_vec(), "YAML"),
        ("50 MiB", huge, "at most 4 MiB"),
        ("deep nesting", deep.into_bytes(), "YAML"),
        ("scalar document", b"42".to_vec(), "expected a mapping"),
        (
            "routes not a list",
            b"routes: yes".to_vec(),
            "expected a list",
        ),
        (
            "wrong types",
            br#"server: {threads: many}
routes: [{prefix: 1, upstream: [1]}]"#
                .to_vec(),
            "server.threads",
        ),
        (
            "unknown top key",
            b"rotues: []".to_vec(),
            "did you mean `routes`",
        ),
        (
            "bad yaml",
            br#"routes: [
  - {"#
                .to_vec(),
            "line",
        ),
    ];
    for (name, bytes, expected) in cases {
        let out = check(&bytes);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(expected),
            "{name}: expected {expected:?} in {err}"
        );
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
}

// A pool key with a control character (a YAML escape, a pasted key) passed `check`; then every
// request through its pool failed with a 500, as the key cannot go into a header.
#[test]
fn keys_that_cannot_go_into_a_header_are_config_errors() {
    let route = "routes: [{prefix: /, upstream: 'http://127.0.0.1:9', auth: {mode: open, pool: p}}]\ntenants: {t: {}}";
    let cases = [
        (
            r#"upstream_keys: {p: ["sk-ab\x01c"]}"#,
            "upstream_keys.p[0]",
        ),
        (r#"upstream_keys: {p: ["sk-abc\n"]}"#, "upstream_keys.p[0]"),
        (
            r#"upstream_keys: {p: [{key: "sk-ab\x7fc", name: a}]}"#,
            "upstream_keys.p[0].key",
        ),
        (r#"upstream_keys: {p: ["sk-abçd"]}"#, "upstream_keys.p[0]"),
        (
            "upstream_keys: {p: [sk-ok]}\nforward_keys: [{key: \"fk-ab\\x1bc\", tenant: t}]",
            "forward_keys[0].key",
        ),
    ];
    for (keys, path) in cases {
        let out = check(format!("{keys}\n{route}\n").as_bytes());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{keys}: {err}");
        assert!(
            err.contains(&format!("{path}: a key must")),
            "{keys}: {err}"
        );
        assert!(!err.contains("sk-ab") && !err.contains("fk-ab"), "{err}");
    }
    let ok = check(format!("upstream_keys: {{p: [sk-Ok_1.2~3+4/5=]}}\n{route}\n").as_bytes());
    assert!(ok.status.success(), "{}", stderr(&ok));
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_llm-forward"))
        .args(["check", "-c", "/nonexistent/llm-forward.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read /nonexistent/llm-forward.yaml"));
}

#[test]
fn import_env_prints_yaml_that_loads() {
    let dir = tempfile::tempdir().unwrap();
    let dotenv = dir.path().join(".env");
    std::fs::write(
        &dotenv,
        "FORWARD_CONFIG='[{\"base_url\":\"https://api.openai.com\",\"route\":\"/\",\"type\":\"openai\"},\n {\"base_url\":\"http://localhost:8080\",\"route\":\"/localai\",\"type\":\"general\"}]'\nTIMEOUT=6\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_llm-forward"))
        .arg("import-env")
        .arg(&dotenv)
        .env_remove("FORWARD_CONFIG")
        .env_remove("TIMEOUT")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(yaml.contains("prefix: \"/localai\""), "{yaml}");
    assert!(yaml.contains("connect: 6s"), "{yaml}");
    let back = check(yaml.as_bytes());
    assert!(back.status.success(), "{}", stderr(&back));
}

#[test]
fn cache_problems_are_listed_with_paths() {
    let yaml = [
        "routes:",
        "  - prefix: /v1",
        "    upstream: http://127.0.0.1:9",
        "cache:",
        "  backend: dsik",
        "  max_size: 1KiB",
        "  max_entry_size: 1MiB",
        "  ttl: soon",
        "  chache_hits: true",
        "  routes:",
        "    - route: /v2",
        "    - route: /v1",
        "      paths: [chat/completions]",
    ]
    .join("\n");
    let yaml = yaml.as_bytes();
    let out = check(yaml);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for expected in [
        "cache.backend: \"dsik\": expected `memory`, `disk` or a redis:// URL",
        "cache.max_entry_size: \"1MiB\": larger than `max_size`",
        "cache.ttl: \"soon\"",
        "cache.chache_hits: unknown key; did you mean `charge_hits`?",
        "cache.routes[0].route: \"/v2\": no route has this prefix",
        "cache.routes[1].paths[0]: \"chat/completions\": a path below the prefix starts with /",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    let disk = check(
        br#"routes:
  - prefix: /
    upstream: http://127.0.0.1:9
cache:
  backend: disk
"#,
    );
    assert_eq!(disk.status.code(), Some(2));
    assert!(stderr(&disk).contains("cache.path: missing; the `disk` backend needs a directory"));
}

#[test]
fn token_limits_on_a_general_route_are_refused_not_silently_inert() {
    let out = check(
        br#"
routes:
  - {prefix: /g, upstream: "http://127.0.0.1:1", type: general}
  - {prefix: /o, upstream: "http://127.0.0.1:1", type: openai}
limits:
  rules:
    - {route: /g, tokens: "1000/minute", output_tokens_per_second: 10, requests: "10/minute"}
    - {route: /o, tokens: "1000/minute"}
"#,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for field in ["tokens", "output_tokens_per_second"] {
        assert!(
            err.contains(&format!(
                "limits.rules[0].{field}: route /g is `type: general`"
            )),
            "{err}"
        );
    }
    // Request rates on it are fine, and token rules on the openai route too.
    assert!(!err.contains("limits.rules[0].requests"), "{err}");
    assert!(!err.contains("limits.rules[1]"), "{err}");
}

#[test]
fn key_health_problems_are_listed_with_paths() {
    let yaml = [
        "key_health:",
        "  refusals: 0",
        "  refusal_window: 0s",
        "  probe_after: 10m",
        "  probe_max: 1m",
        "  cooldown: later",
        "  cooldwon: 5s",
        "routes:",
        "  - prefix: /",
        "    upstream: http://127.0.0.1:9",
        "    auth: {forward_org_headers: maybe}",
    ]
    .join("\n");
    let out = check(yaml.as_bytes());
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for expected in [
        "key_health.refusals: \"0\": expected a whole number from 1 to 1000",
        "key_health.refusal_window: \"0s\": must be above zero",
        "key_health.probe_max: must be at least probe_after (10m)",
        "key_health.cooldown: \"later\"",
        "key_health.cooldwon: unknown key",
        "routes[0].auth.forward_org_headers: \"maybe\"",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    let fine = check(
        br#"key_health: {refusals: 5, refusal_window: 10m, probe_after: 1m, probe_max: 1h, cooldown: 20s, cooldown_max: 2m}
routes:
  - prefix: /
    upstream: http://127.0.0.1:9
    auth: {forward_org_headers: true}
"#,
    );
    assert!(fine.status.success(), "{}", stderr(&fine));
}
