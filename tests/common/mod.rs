//! The integration-test kit: a mock upstream (`mock`) and the real gateway started in-process on
//! a free port (`start_gateway`), stopped when its guard drops.
#![allow(dead_code)]

pub mod connect_proxy;
pub mod mock;
pub mod process;

use llm_forward::config::{parse_bytes, Config};
use llm_forward::server::{spawn, RunningGateway};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

/// A running gateway; dropping it shuts the server down and joins its threads.
pub struct GatewayGuard {
    pub addr: SocketAddr,
    /// The admin listener (`/metrics`), on its own free port unless the test turned it off.
    pub admin: Option<SocketAddr>,
    _running: RunningGateway,
    _dir: tempfile::TempDir,
}

impl GatewayGuard {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        let admin = self.admin.expect("the admin listener is on");
        format!("http://{admin}{path}")
    }
}

/// A port that is free right now on 127.0.0.1, for a server that binds it itself (the gateway,
/// a `redis-server`).
///
/// It is taken from below the kernel's ephemeral range, so no `bind(0)` (the mock upstreams,
/// every outgoing connection) can grab it between this call and the server's bind, and never
/// handed out twice by one test process.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(10_500));
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    let handed = handed.get_or_insert_with(HashSet::new);
    // Start somewhere that differs between test binaries running one after another.
    let mut port = low + (std::process::id() as u16).wrapping_mul(7919) % (high - low);
    for _ in 0..(high - low) {
        port = if port + 1 >= high { low } else { port + 1 };
        if !handed.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed.insert(port);
            return port;
        }
    }
    panic!("no free port below the ephemeral range")
}

/// Parse `yaml` (which leaves `server.listen` out) and start the gateway on a free port.
pub async fn start_gateway(yaml: &str) -> GatewayGuard {
    let config = parse_bytes(yaml.as_bytes(), &|k| std::env::var(k).ok())
        .unwrap_or_else(|p| panic!("test config is invalid:\n{p}"));
    start_gateway_with(config).await
}

pub async fn start_gateway_with(mut config: Config) -> GatewayGuard {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    config.server.listen = vec![addr];
    // Never the default 127.0.0.1:8001: tests run in parallel.
    let admin = config
        .admin
        .listen
        .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())));
    config.admin.listen = admin;
    config.server.threads = 1;
    // Pingora's per-thread runtimes find their handles through a `thread_local::ThreadLocal`
    // whose slots outlive their threads: a second server started in the same process after a
    // first one stopped can pick up the dead runtime's handles and never listen. A process runs
    // one server, so production is unaffected; in-process tests start many, so they use the
    // work-stealing runtime. The tests that run the binary (cli, upgrade, config_check,
    // secrets) exercise the default.
    config.server.work_stealing = true;
    config.server.grace_period = Duration::ZERO;
    config.server.shutdown_timeout = Duration::ZERO;
    config.server.pid_file = Some(dir.path().join("pid").display().to_string());
    config.server.upgrade_sock = Some(dir.path().join("upgrade.sock").display().to_string());
    let running = spawn(config).unwrap_or_else(|p| panic!("gateway did not start:\n{p}"));
    wait_listening(addr).await;
    if let Some(admin) = admin {
        wait_listening(admin).await;
    }
    GatewayGuard {
        addr,
        admin,
        _running: running,
        _dir: dir,
    }
}

/// Readiness: the listener is bound asynchronously by Pingora's service thread, so poll a TCP
/// connect (bounded) rather than sleeping a guessed amount.
pub async fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "gateway never listened on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A client that never pools across tests and never follows redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A one-route config to `upstream` (any extra route keys appended under the route).
pub fn one_route(prefix: &str, upstream: &str, extra: &str) -> String {
    format!(
        r#"routes:
  - prefix: "{prefix}"
    upstream: "{upstream}"
{extra}"#
    )
}

/// Assert an OpenAI-shaped error body and return its `code`.
pub fn error_code(body: &serde_json::Value) -> String {
    let e = &body["error"];
    assert!(e["message"].is_string(), "no error.message in {body}");
    assert!(e["type"].is_string(), "no error.type in {body}");
    assert!(e.get("param").is_some(), "no error.param in {body}");
    e["code"].as_str().unwrap_or_default().to_string()
}

/// A `redis-server` of the test's own on a free port, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        Self::start_on(free_port()).await
    }

    pub async fn start_on(port: u16) -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (.ci/run installs it)");
        wait_listening(SocketAddr::from(([127, 0, 0, 1], port))).await;
        RedisServer {
            port,
            child,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Freeze the server (SIGSTOP): connections stay open, commands queue unanswered and run
    /// after [`resume`](Self::resume) — a GC pause, a slow disk, a saturated network.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Let a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} redis-server failed");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POST a chat-completions body to the gateway's `/v1/chat/completions`.
pub async fn chat(gw: &GatewayGuard, body: serde_json::Value) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// A one-message chat for `model`, streamed or not.
pub fn ask(model: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

/// Which upstream answered (`x-llm-forward-upstream`, on routes with several).
pub fn answered_by(resp: &reqwest::Response) -> String {
    resp.headers()["x-llm-forward-upstream"]
        .to_str()
        .unwrap()
        .to_string()
}

/// Read a streamed body to its end: the text, and whether it ended cleanly (a body error is an
/// abnormal end: a cut connection, no terminating chunk).
pub async fn read_stream(resp: reqwest::Response) -> (String, bool) {
    use futures_util::StreamExt;
    let mut body = resp.bytes_stream();
    let mut text = Vec::new();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => text.extend_from_slice(&c),
            Err(_) => return (String::from_utf8_lossy(&text).into(), false),
        }
    }
    (String::from_utf8_lossy(&text).into(), true)
}

/// A response header as text, if present and visible ASCII.
pub fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The chat-log records of route `slug` in `dir`, once at least `n` have been written (the
/// writer flushes every second, so poll rather than read once).
pub async fn chat_records(dir: &std::path::Path, slug: &str, n: usize) -> Vec<serde_json::Value> {
    let file = dir.join(slug).join("chat.jsonl");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} records in {}",
            lines.len(),
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
