//! The web console (`admin.ui`, or `run --webui`): one page served from the admin listener,
//! openai-forward's `--webui` done as a gateway operator needs it. Live rates, percentiles,
//! usage, upstream and key health, a tail of finished requests, and the running config (secrets
//! masked) with a validate button.
//!
//! Nothing but the login page exists without the admin key. Signing in with it sets a random
//! session cookie (`HttpOnly`, `SameSite=Strict`), kept in this process's memory for 12 hours;
//! scripts may send the key as `Authorization: Bearer` instead. Requests that change state
//! (`login`, `check`, `logout`) must say `Content-Type: application/json` or
//! `application/yaml`, which a cross-site form cannot send without a CORS preflight this
//! listener never grants. The assets are compiled into the binary; the page sets a strict CSP
//! and writes every client-chosen string (models, paths) as text, never as HTML.

use super::board::Board;
use super::gate::Gate;
use super::reply::{read_body, Reply};
use crate::state::Gateway;
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const INDEX: &[u8] = include_bytes!("console/index.html");
const SCRIPT: &[u8] = include_bytes!("console/console.js");
const STYLE: &[u8] = include_bytes!("console/console.css");

const COOKIE: &str = "llmf_console";
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Signed-in browsers remembered at once; the oldest session goes first.
const MAX_SESSIONS: usize = 64;
/// Failed sign-ins allowed per minute before the listener stops checking keys for a while.
const MAX_FAILURES_PER_MINUTE: u32 = 10;
/// How often an idle live tail sends a comment, so proxies and browsers keep it open.
const TAIL_HEARTBEAT: Duration = Duration::from_secs(15);

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub(crate) struct Console {
    /// The admin key (kept as its digest; see `gate.rs`).
    key: Gate,
    /// Signed-in sessions: token → expiry.
    sessions: Mutex<HashMap<String, Instant>>,
    /// Failed sign-ins in the current minute: (minute start, count).
    failures: Mutex<(Instant, u32)>,
    pub board: std::sync::Arc<Board>,
    /// Whether the live tail may show the conversation (`admin.ui_messages`).
    pub show_messages: bool,
    /// Where the running config came from: its file (shown masked), or unset (environment or
    /// the built-in default: the running config is shown as YAML).
    config_file: std::sync::OnceLock<std::path::PathBuf>,
}

impl Console {
    pub(crate) fn new(admin_key: &str, show_messages: bool) -> Self {
        Console {
            key: Gate::new(admin_key),
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new((Instant::now(), 0)),
            board: std::sync::Arc::new(Board::new()),
            show_messages,
            config_file: std::sync::OnceLock::new(),
        }
    }

    /// The file the running config was read from (`run -c`), shown masked by the console.
    pub(crate) fn set_config_file(&self, path: std::path::PathBuf) {
        let _ = self.config_file.set(path);
    }

    /// Serve a console request. `None`: not a console path (the admin router goes on).
    pub(crate) async fn serve(
        &self,
        gateway: &Gateway,
        http: &mut ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<Reply> {
        let method = http.req_header().method.clone();
        let path = http.req_header().uri.path().to_string();
        let reply = match (method.as_str(), path.as_str()) {
            ("GET", "/" | "/index.html" | "/console") => page(INDEX, "text/html; charset=utf-8"),
            ("GET", "/console.js") => page(SCRIPT, "text/javascript; charset=utf-8"),
            ("GET", "/console.css") => page(STYLE, "text/css; charset=utf-8"),
            ("POST", "/api/login") => self.login(http).await,
            (_, p) if p.starts_with("/api/") => {
                let Some(token) = self.authorised(http) else {
                    return Some(Reply::error(401, "sign in with the admin key"));
                };
                match (method.as_str(), p) {
                    ("GET", "/api/session") => Reply::empty(204),
                    ("POST", "/api/logout") => self.logout(token),
                    ("GET", "/api/overview") => Reply::json(&self.overview(gateway).await),
                    ("GET", "/api/config") => self.config_text(gateway),
                    ("POST", "/api/check") => self.check(gateway, http).await,
                    ("GET", "/api/tail") => {
                        self.tail(http, shutdown).await;
                        Reply::Streamed
                    }
                    _ => Reply::error(404, "no such console endpoint"),
                }
            }
            _ => return None,
        };
        Some(reply)
    }

    /// The session token (or `""` for a bearer key) of an authorised request.
    fn authorised(&self, http: &ServerSession) -> Option<String> {
        let headers = &http.req_header().headers;
        if let Some(key) = super::gate::bearer(headers) {
            return self.key.opens(key).then(String::new);
        }
        let token = cookie(headers, COOKIE)?;
        let mut sessions = self.sessions.lock().ok()?;
        match sessions.get(token) {
            Some(expiry) if *expiry > Instant::now() => Some(token.to_string()),
            Some(_) => {
                sessions.remove(token);
                None
            }
            None => None,
        }
    }

    async fn login(&self, http: &mut ServerSession) -> Reply {
        if !is_json(http) {
            return Reply::error(415, "send the key as JSON");
        }
        if self.throttled() {
            return Reply::error(429, "too many failed sign-ins; try again in a minute");
        }
        #[derive(serde::Deserialize)]
        struct Login {
            key: String,
        }
        let key = match read_body(http, 4096).await {
            Ok(body) => serde_json::from_slice::<Login>(&body).map(|l| l.key).ok(),
            Err(reply) => return reply,
        };
        let Some(key) = key else {
            return Reply::error(400, "expected {\"key\": \"…\"}");
        };
        if !self.key.opens(&key) {
            self.count_failure();
            return Reply::error(401, "that is not the admin key");
        }
        let token = new_token();
        if let Ok(mut sessions) = self.sessions.lock() {
            let now = Instant::now();
            sessions.retain(|_, expiry| *expiry > now);
            if sessions.len() >= MAX_SESSIONS {
                if let Some(oldest) = sessions
                    .iter()
                    .min_by_key(|(_, e)| **e)
                    .map(|(t, _)| t.clone())
                {
                    sessions.remove(&oldest);
                }
            }
            sessions.insert(token.clone(), now + SESSION_TTL);
        }
        let cookie = format!(
            "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
            SESSION_TTL.as_secs()
        );
        Reply::empty(204).with_header("set-cookie", cookie)
    }

    fn logout(&self, token: String) -> Reply {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(&token);
        }
        Reply::empty(204).with_header(
            "set-cookie",
            format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
        )
    }

    fn throttled(&self) -> bool {
        self.failures.lock().is_ok_and(|f| {
            f.0.elapsed() < Duration::from_secs(60) && f.1 >= MAX_FAILURES_PER_MINUTE
        })
    }

    fn count_failure(&self) {
        if let Ok(mut f) = self.failures.lock() {
            if f.0.elapsed() >= Duration::from_secs(60) {
                *f = (Instant::now(), 0);
            }
            f.1 += 1;
        }
    }

    async fn overview(&self, gateway: &Gateway) -> Overview {
        let now = Instant::now();
        let upstreams = gateway
            .routes
            .iter()
            .flat_map(|r| {
                r.upstreams.iter().map(move |u| UpstreamRow {
                    route: r.config.prefix.clone(),
                    name: u.config.name.clone(),
                    breaker: u.breaker.state(now).as_str(),
                })
            })
            .collect();
        let keys = gateway
            .pools
            .iter()
            .flat_map(|p| {
                p.keys.iter().map(|k| KeyRow {
                    pool: p.name.clone(),
                    id: k.id.clone(),
                    state: match k.health() {
                        0 => "healthy",
                        1 => "cooling",
                        _ => "disabled",
                    },
                })
            })
            .collect();
        let mut cache = None;
        if let Some(c) = &gateway.cache {
            let counters = &c.store.counters;
            // Redis would have to scan every entry for its size (as for the metrics).
            let is_redis = matches!(
                c.config.backend,
                crate::config::CacheBackendConfig::Redis(_)
            );
            let usage = match is_redis {
                true => None,
                false => tokio::time::timeout(Duration::from_secs(1), c.store.backend().usage())
                    .await
                    .ok()
                    .and_then(Result::ok),
            };
            cache = Some(CacheRow {
                hits: counters.hits.load(std::sync::atomic::Ordering::Relaxed),
                misses: counters.misses.load(std::sync::atomic::Ordering::Relaxed),
                entries: usage.map(|u| u.entries),
            });
        }
        Overview {
            version: env!("CARGO_PKG_VERSION"),
            in_flight: gateway.in_flight.load(std::sync::atomic::Ordering::Relaxed),
            board: self.board.snapshot(),
            upstreams,
            keys,
            cache,
        }
    }

    /// The running config's text: its file, or (from the environment or the default) as YAML.
    fn running_config(&self, gateway: &Gateway) -> Result<String, Reply> {
        match self.config_file.get() {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| Reply::error(500, &format!("cannot read the config file: {e}"))),
            None => Ok(crate::config::emit::to_yaml(&gateway.config)),
        }
    }

    fn config_text(&self, gateway: &Gateway) -> Reply {
        let text = match self.running_config(gateway) {
            Ok(text) => text,
            Err(reply) => return reply,
        };
        match super::mask::mask_yaml(&text) {
            Ok(masked) => Reply::text("application/yaml; charset=utf-8", masked),
            Err(_) => Reply::error(500, "the config file is no longer valid YAML"),
        }
    }

    async fn check(&self, gateway: &Gateway, http: &mut ServerSession) -> Reply {
        let content_type = header(http, http::header::CONTENT_TYPE);
        if !(content_type.starts_with("application/yaml") || content_type.starts_with("text/yaml"))
        {
            return Reply::error(415, "send the config as application/yaml");
        }
        let body = match read_body(http, 1 << 20).await {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        #[derive(Serialize)]
        struct Checked {
            ok: bool,
            problems: Vec<String>,
        }
        // What the console showed as `***` is judged as the value it hides.
        let running = self.running_config(gateway).unwrap_or_default();
        let Ok(edited) = std::str::from_utf8(&body) else {
            return Reply::error(400, "the config is not UTF-8 text");
        };
        let (text, secrets) = match super::mask::unmask_yaml(edited, &running) {
            Ok(unmasked) => unmasked,
            // Not YAML: the check itself says where.
            Err(_) => (edited.to_string(), Vec::new()),
        };
        let env = |name: &str| std::env::var(name).ok();
        let list = match crate::config::parse_bytes(text.as_bytes(), &env) {
            Ok(config) => Gateway::build(config).err(),
            Err(list) => Some(list),
        };
        // Never echo a secret the check was given back: scrub each from the problems.
        let problems = list
            .map(|l| l.to_string())
            .unwrap_or_default()
            .lines()
            .map(|line| {
                secrets
                    .iter()
                    .filter(|s| s.len() >= 4)
                    .fold(line.to_string(), |l, s| l.replace(s.as_str(), "***"))
            })
            .collect::<Vec<_>>();
        Reply::json(&Checked {
            ok: problems.is_empty(),
            problems,
        })
    }

    /// The live tail: one `request` event per finished request, until the browser leaves or the
    /// process stops.
    async fn tail(&self, http: &mut ServerSession, shutdown: &ShutdownWatch) {
        let mut rx = self.board.subscribe();
        let mut head = pingora_http::ResponseHeader::build(200, Some(4)).ok();
        if let Some(h) = head.as_mut() {
            let _ = h.insert_header("content-type", "text/event-stream");
            let _ = h.insert_header("cache-control", "no-store");
            let _ = h.insert_header("x-accel-buffering", "no");
        }
        let Some(head) = head else { return };
        http.set_keepalive(None);
        if http.write_response_header(Box::new(head)).await.is_err() {
            return;
        }
        if http
            .write_response_body(bytes::Bytes::from_static(b": live\n\n"), false)
            .await
            .is_err()
        {
            return;
        }
        let mut shutdown = shutdown.clone();
        let mut heartbeat = tokio::time::interval(TAIL_HEARTBEAT);
        heartbeat.tick().await;
        loop {
            let chunk = tokio::select! {
                event = rx.recv() => match event {
                    Ok(line) => {
                        let mut chunk = Vec::with_capacity(line.len() + 24);
                        chunk.extend_from_slice(b"event: request\ndata: ");
                        chunk.extend_from_slice(line.as_bytes());
                        chunk.extend_from_slice(b"\n\n");
                        chunk
                    }
                    // A console that fell behind skips ahead; nothing else to say.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                _ = heartbeat.tick() => b": keep-alive\n\n".to_vec(),
                _ = shutdown.changed() => break,
            };
            if http.write_response_body(chunk.into(), false).await.is_err() {
                break;
            }
        }
        let _ = http.write_response_body(bytes::Bytes::new(), true).await;
    }
}

fn page(body: &'static [u8], content_type: &'static str) -> Reply {
    Reply::Static { body, content_type }
        .with_header("content-security-policy", CSP.to_string())
        .with_header("x-frame-options", "DENY".to_string())
}

fn header(http: &ServerSession, name: http::header::HeaderName) -> &str {
    http.req_header()
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn is_json(http: &ServerSession) -> bool {
    header(http, http::header::CONTENT_TYPE).starts_with("application/json")
}

fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    crate::cache_key::hex(&bytes)
}

#[derive(Serialize)]
struct UpstreamRow {
    route: String,
    name: String,
    breaker: &'static str,
}

#[derive(Serialize)]
struct KeyRow {
    pool: String,
    id: String,
    state: &'static str,
}

#[derive(Serialize)]
struct CacheRow {
    hits: u64,
    misses: u64,
    entries: Option<u64>,
}

#[derive(Serialize)]
struct Overview {
    version: &'static str,
    in_flight: usize,
    #[serde(flatten)]
    board: super::board::Snapshot,
    upstreams: Vec<UpstreamRow>,
    keys: Vec<KeyRow>,
    cache: Option<CacheRow>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_session_cookie_among_others() {
        let mut h = http::HeaderMap::new();
        h.append(
            http::header::COOKIE,
            "a=1; llmf_console=abc".parse().unwrap(),
        );
        h.append(http::header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "zz"), None);
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
