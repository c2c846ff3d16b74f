//! Moving from openai-forward: the banner says where the config came from, `import-env` writes
//! every section the environment sets, and the llm-forward-only variables (`CORS_ORIGINS`,
//! `TRUSTED_PROXIES`, `AUTH_MODE`) work from a `.env` as they do in YAML. All through the binary.

use crate::common;

use common::mock::MockUpstream;
use common::process::{gateway_command, server_yaml, Process};
use common::*;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

/// The gateway started in `dir` with `vars` and `args`; its address and the process.
async fn start(
    dir: &std::path::Path,
    vars: &[(&str, &str)],
    args: &[&str],
) -> (Process, SocketAddr) {
    let port = free_port();
    let mut cmd = gateway_command(dir);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.arg("run").args(args);
    if !args.contains(&"-c") {
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()]);
    }
    let proc = Process::spawn(&mut cmd);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    (proc, addr)
}

fn forward_config(up: &MockUpstream) -> String {
    format!(
        r#"[{{"base_url":"{}","route":"/","type":"openai"}}]"#,
        up.url()
    )
}

/// The banner names the source of the config: a file, the process environment, a `.env` file
/// or the built-in default, so an operator never wonders which one is in force.
#[tokio::test]
async fn the_banner_names_where_the_config_came_from() {
    let up = MockUpstream::start().await;
    let forward = forward_config(&up);

    // Built-in default.
    let dir = tempfile::tempdir().unwrap();
    let (mut proc, addr) = start(dir.path(), &[], &[]).await;
    wait_listening(addr).await;
    let out = proc.kill_for_stderr();
    assert!(out.contains("config      built-in default"), "{out}");

    // Process environment.
    let dir = tempfile::tempdir().unwrap();
    let (mut proc, addr) = start(dir.path(), &[("FORWARD_CONFIG", &forward)], &[]).await;
    wait_listening(addr).await;
    let out = proc.kill_for_stderr();
    assert!(
        out.contains("config      openai-forward variables from the process environment"),
        "{out}"
    );

    // `.env` in the working directory.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        format!("FORWARD_CONFIG='{forward}'\n"),
    )
    .unwrap();
    let (mut proc, addr) = start(dir.path(), &[], &[]).await;
    wait_listening(addr).await;
    let out = proc.kill_for_stderr();
    assert!(
        out.contains("config      openai-forward variables from ./.env"),
        "{out}"
    );

    // A file.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = server_yaml(
        dir.path(),
        port,
        &format!(
            r#"routes:
  - {{prefix: /, upstream: '{}'}}
"#,
            up.url()
        ),
    );
    let path = dir.path().join("gw.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let (mut proc, _) = start(dir.path(), &[], &["-c", path.to_str().unwrap()]).await;
    wait_listening(SocketAddr::from(([127, 0, 0, 1], port))).await;
    let out = proc.kill_for_stderr();
    assert!(
        out.contains(&format!("config      {}", path.display())),
        "{out}"
    );
}

/// The banner says what is in force beyond the routes: limits, cache, chat logs and Redis, with
/// the Redis password masked.
#[tokio::test]
async fn the_banner_lists_limits_cache_chat_logs_and_masks_redis_passwords() {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra = format!(
        r#"routes:
  - {{prefix: /, upstream: '{}'}}
limits:
  backend: 'redis://:hunter2-secret@127.0.0.1:1/0'
  rules:
    - {{per: key, requests: 10/minute}}
cache:
  backend: memory
log:
  chat: {{dir: '{}'}}
  print_chat: true
"#,
        up.url(),
        dir.path().join("chat").display()
    );
    let yaml = server_yaml(dir.path(), port, &extra);
    let path = dir.path().join("gw.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let (mut proc, _) = start(dir.path(), &[], &["-c", path.to_str().unwrap()]).await;
    wait_listening(SocketAddr::from(([127, 0, 0, 1], port))).await;
    let out = proc.kill_for_stderr();
    for expected in [
        "limits      1 rules",
        "backend: redis://***@127.0.0.1:1/0",
        "cache       memory",
        "chat logs   ",
        "print_chat",
    ] {
        assert!(out.contains(expected), "{expected}\n{out}");
    }
    assert!(!out.contains("hunter2-secret"), "{out}");
}

/// `import-env` writes the `log:` section when the environment turns chat logs on, and the YAML
/// it prints loads back.
#[test]
fn import_env_writes_the_log_section() {
    let dir = tempfile::tempdir().unwrap();
    let dotenv = dir.path().join(".env");
    std::fs::write(
        &dotenv,
        "FORWARD_CONFIG='[{\"base_url\":\"https://api.openai.com\",\"route\":\"/\",\"type\":\"openai\"},{\"base_url\":\"http://localhost:8080\",\"route\":\"/localai\",\"type\":\"general\"}]'\nLOG_OPENAI=true\nPRINT_CHAT=true\n",
    )
    .unwrap();
    let mut cmd = gateway_command(dir.path());
    let out = cmd
        .arg("import-env")
        .arg(&dotenv)
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(
        yaml.contains("log:\n  chat:\n    dir: \"Log/chat\"\n"),
        "{yaml}"
    );
    assert!(yaml.contains("    routes: [\"/\"]\n"), "{yaml}");
    assert!(yaml.contains("  print_chat: true\n"), "{yaml}");
    let file = dir.path().join("out.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let back = Command::new(env!("CARGO_BIN_EXE_llm-forward"))
        .args(["check", "-c", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        back.status.success(),
        "{}",
        String::from_utf8_lossy(&back.stderr)
    );
}

/// openai-forward passes every key it does not know through: a `.env` user whose clients send
/// their own `sk-` keys keeps working once forward keys exist (`AUTH_MODE` defaults to `mixed`
/// from the environment); `AUTH_MODE=forward_keys` makes a forward key required.
#[tokio::test]
async fn own_keys_pass_through_from_the_environment_unless_auth_mode_requires_forward_keys() {
    let up = MockUpstream::start().await;
    let forward = forward_config(&up);
    let base = [
        ("FORWARD_CONFIG", forward.as_str()),
        ("OPENAI_API_KEY_CONFIG", r#"{"sk-pool-0": [0]}"#),
        ("FORWARD_KEY_CONFIG", r#"{"fk-zero": 0}"#),
    ];
    let chat = |addr: SocketAddr, key: &'static str| {
        client()
            .post(format!("http://{addr}/v1/chat/completions"))
            .bearer_auth(key)
            .json(&serde_json::json!({"model": "gpt-4o-mini", "messages": []}))
            .send()
    };

    let dir = tempfile::tempdir().unwrap();
    let (mut proc, addr) = start(dir.path(), &base, &[]).await;
    wait_listening(addr).await;
    assert_eq!(chat(addr, "sk-client-own").await.unwrap().status(), 200);
    assert_eq!(chat(addr, "fk-zero").await.unwrap().status(), 200);
    let seen: Vec<_> = up
        .requests()
        .iter()
        .map(|r| r.header("authorization").map(str::to_string))
        .collect();
    assert_eq!(
        seen,
        [
            Some("Bearer sk-client-own".to_string()),
            Some("Bearer sk-pool-0".to_string())
        ]
    );
    let out = proc.kill_for_stderr();
    assert!(
        out.contains("keys: forward keys, others passed through"),
        "{out}"
    );

    let mut strict = base.to_vec();
    strict.push(("AUTH_MODE", "forward_keys"));
    let dir = tempfile::tempdir().unwrap();
    let (_proc, addr) = start(dir.path(), &strict, &[]).await;
    wait_listening(addr).await;
    assert_eq!(chat(addr, "sk-client-own").await.unwrap().status(), 401);
    assert_eq!(chat(addr, "fk-zero").await.unwrap().status(), 200);
    assert_eq!(up.request_count(), 3);
}

/// `CORS_ORIGINS` replaces openai-forward's "any origin" and `TRUSTED_PROXIES` lets the IP
/// lists see the client behind a proxy; `import-env` writes both.
#[tokio::test]
async fn cors_origins_and_trusted_proxies_are_read_from_the_environment() {
    let up = MockUpstream::start().await;
    let forward = forward_config(&up);
    let vars = [
        ("FORWARD_CONFIG", forward.as_str()),
        (
            "CORS_ORIGINS",
            "https://app.example.com, https://b.example.com",
        ),
        ("TRUSTED_PROXIES", "127.0.0.1"),
        ("IP_WHITELIST", "203.0.113.7"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let (_proc, addr) = start(dir.path(), &vars, &[]).await;
    wait_listening(addr).await;
    let get = |origin: &'static str, xff: &'static str| {
        client()
            .get(format!("http://{addr}/v1/models"))
            .header("origin", origin)
            .header("x-forwarded-for", xff)
            .send()
    };
    let resp = get("https://app.example.com", "203.0.113.7").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let resp = get("https://evil.example.net", "203.0.113.7")
        .await
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    // The proxy (127.0.0.1) is trusted, so the client is the address it names.
    assert_eq!(
        get("https://app.example.com", "198.51.100.1")
            .await
            .unwrap()
            .status(),
        403
    );

    let mut cmd = gateway_command(dir.path());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd
        .arg("import-env")
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(yaml.contains("trusted_proxies: [\"127.0.0.1\"]"), "{yaml}");
    assert!(
        yaml.contains("allow_origins: [\"https://app.example.com\", \"https://b.example.com\"]"),
        "{yaml}"
    );
}

/// `check` without `-c` reads `./.env` as `run` does, warns about a misspelt variable and says
/// where the config came from.
#[test]
fn check_reads_the_dotenv_file_and_warns_about_misspelt_variables() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "FORWARD_CONFIG='[{\"base_url\":\"https://api.openai.com\",\"route\":\"/\",\"type\":\"openai\"}]'\nCORS_ORIGIN=https://a.example.com\n",
    )
    .unwrap();
    let out = gateway_command(dir.path())
        .arg("check")
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("openai-forward variables from ./.env: ok"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains("did you mean CORS_ORIGINS?"), "{err}");
}
