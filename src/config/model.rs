//! The typed configuration: what the rest of the gateway reads. Built only by the decoder in
//! `schema.rs`, so every value here has been validated (paths normalised, URLs parsed, ranges
//! checked). Defaults live next to their fields.

use super::model_upstream::{Resilience, RetryPolicy, UpstreamConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub routes: Vec<RouteConfig>,
    /// Named pools of real upstream keys.
    pub upstream_keys: Vec<KeyPoolConfig>,
    /// Who may do what (openai-forward's "levels").
    pub tenants: Vec<TenantConfig>,
    /// Keys handed to clients, each belonging to a tenant.
    pub forward_keys: Vec<ForwardKeyConfig>,
    /// When a pool key leaves the rotation, comes back, and cools down.
    pub key_health: KeyHealthConfig,
    /// Global IP rules and the proxies whose forwarded headers are believed.
    pub access: AccessConfig,
    /// Browser access (off unless origins are listed).
    pub cors: Option<CorsConfig>,
    /// Request rates and concurrency.
    pub limits: LimitsConfig,
    /// Chat logs and the readable chat print.
    pub log: LogConfig,
    /// The response cache; `None`: off.
    pub cache: Option<super::CacheConfig>,
    /// The admin listener (`/metrics`).
    pub admin: AdminConfig,
    /// What every Redis backend shares.
    pub redis: RedisConfig,
    /// Distributed tracing (`telemetry.otlp`); `None`: off.
    pub tracing: Option<crate::telemetry::TracingConfig>,
    /// `${VAR}` values expanded into URLs, masked wherever the config is printed.
    pub secrets: super::redact::Secrets,
}

/// The admin service: a second listener, apart from the proxy's, for `/metrics` (and, later,
/// the admin API and console).
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// `None`: no admin listener (`admin: {enabled: false}`).
    pub listen: Option<SocketAddr>,
    /// The admin key: signs in to the console (and its API). Without it there is no console.
    pub key: Option<Secret>,
    /// Serve the web console (`admin.ui`, or `run --webui`).
    pub ui: bool,
    /// The console's live tail may show the conversation (`messages`, answer), not only its
    /// metadata.
    pub ui_messages: bool,
}

/// Loopback only by default: metrics name routes, upstreams and models.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8001);

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: Some(DEFAULT_ADMIN_LISTEN),
            key: None,
            ui: false,
            ui_messages: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogConfig {
    /// JSONL chat logs; `None`: off.
    pub chat: Option<ChatLogSettings>,
    /// A readable line per chat on stderr (openai-forward's `PRINT_CHAT`).
    pub print_chat: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatLogSettings {
    pub dir: PathBuf,
    /// Route prefixes to log; `None`: every `openai` route.
    pub routes: Option<Vec<String>>,
    /// Record request messages and the answer text (off: usage and metadata only).
    pub messages: bool,
    pub max_file_bytes: u64,
    pub keep_files: usize,
}

/// `redis:`: settings of every Redis connection (limits and cache).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RedisConfig {
    /// PEM CA bundle a `rediss://` server's certificate must chain to, instead of the system
    /// store.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LimitBackendConfig {
    /// This process's memory (pingora-limits estimators).
    Memory,
    /// A Redis shared by every node: `redis://host:port/db`.
    Redis(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    pub backend: LimitBackendConfig,
    /// When Redis does not answer in time: admit (`Allow`) or refuse (`Deny`) the request.
    pub on_backend_error: crate::limits::OnBackendError,
    /// Bound on one Redis round trip.
    pub backend_timeout: Duration,
    /// How long a concurrency slot in Redis outlives its holder's last renewal (renewed three
    /// times per lease while the answer runs): the longest a lost release or a dead node's
    /// slot stays taken.
    pub concurrency_lease: Duration,
    /// The completion tokens a token budget reserves when the request sets no `max_tokens`.
    pub default_max_tokens: u64,
    pub rules: Vec<crate::limits::rules::LimitRule>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            backend: LimitBackendConfig::Memory,
            on_backend_error: crate::limits::OnBackendError::Allow,
            backend_timeout: Duration::from_millis(50),
            concurrency_lease: Duration::from_secs(30),
            default_max_tokens: 256,
            rules: Vec::new(),
        }
    }
}

/// A secret from the config. Its `Debug` never shows the value, so a config dump or a panic
/// message cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyPoolConfig {
    pub name: String,
    pub keys: Vec<UpstreamKeyConfig>,
}

/// What the upstream's answers do to a pool key (`key_health`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeyHealthConfig {
    /// Refusals (401/403) from this many distinct clients (forward key and address) within
    /// `refusal_window`, with no 2xx in between, take a key out of the rotation.
    pub refusals: u32,
    pub refusal_window: Duration,
    /// A key out of the rotation gets one live request after this long; each refused probe
    /// doubles the wait, up to `probe_max`.
    pub probe_after: Duration,
    pub probe_max: Duration,
    /// How long a 429 without `Retry-After` cools its key for the request's model.
    pub cooldown: Duration,
    /// Bound on any cool-down, whatever `Retry-After` asks for.
    pub cooldown_max: Duration,
}

impl Default for KeyHealthConfig {
    fn default() -> Self {
        KeyHealthConfig {
            refusals: 3,
            refusal_window: Duration::from_secs(300),
            probe_after: Duration::from_secs(30),
            probe_max: Duration::from_secs(600),
            cooldown: Duration::from_secs(10),
            cooldown_max: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamKeyConfig {
    pub key: Secret,
    /// Shown in logs instead of the key; default `k-` + a hash prefix of the key.
    pub name: Option<String>,
    /// Share of requests, relative to the pool's other keys.
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TenantConfig {
    pub name: String,
    /// Allowed models; `None` means every model.
    pub models: Option<Vec<String>>,
    /// Allowed route prefixes; `None` means every route.
    pub routes: Option<Vec<String>>,
    /// The pool this tenant's requests draw from on every route (over the route's own pool).
    pub pool: Option<String>,
    /// Route prefix → pool name, for this tenant on that route (over `pool`).
    pub pools: Vec<(String, String)>,
    pub access: IpRulesConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ForwardKeyConfig {
    pub key: Secret,
    pub tenant: String,
    pub name: Option<String>,
    pub access: IpRulesConfig,
}

/// CIDR lists, already validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IpRulesConfig {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AccessConfig {
    pub rules: IpRulesConfig,
    /// Peers whose `X-Forwarded-For` / `Forwarded` / `X-Real-IP` are believed.
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CorsConfig {
    pub allow_origins: Vec<String>,
    pub allow_credentials: bool,
    pub max_age: Duration,
}

/// How a route treats the credentials a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// The client's own key goes upstream untouched (the default without forward keys).
    Passthrough,
    /// A valid forward key is required; it is swapped for a pool key (the default once forward
    /// keys exist).
    ForwardKeys,
    /// Forward keys are swapped; any other credential passes through (openai-forward's rule).
    Mixed,
    /// No client key needed: a pool key is injected for everyone. Explicit only.
    Open,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Passthrough => "passthrough",
            AuthMode::ForwardKeys => "forward_keys",
            AuthMode::Mixed => "mixed",
            AuthMode::Open => "open",
        }
    }
}

/// Where the upstream expects its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPlacement {
    /// `Authorization: Bearer <key>` (OpenAI and most compatible APIs).
    Bearer,
    /// A header carrying the bare key (`api-key` for Azure, `x-goog-api-key` for Gemini).
    Header(String),
    /// A query parameter (`key` for Gemini).
    Query(String),
    /// No key at all (a local model server): every client credential is removed.
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteAuth {
    /// `None`: decided from the whole config (forward keys exist → `ForwardKeys`).
    pub mode: Option<AuthMode>,
    /// The pool whose keys this route sends upstream.
    pub pool: Option<String>,
    pub key_placement: KeyPlacement,
    /// Forward the client's `OpenAI-Organization` / `OpenAI-Project` with a pool key (off: the
    /// pool's keys belong to the gateway's organization, and a client's would be refused).
    pub forward_org_headers: bool,
}

impl Default for RouteAuth {
    fn default() -> Self {
        RouteAuth {
            mode: None,
            pool: None,
            key_placement: KeyPlacement::Bearer,
            forward_org_headers: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Addresses to listen on (default `0.0.0.0:8000`, like openai-forward).
    pub listen: Vec<SocketAddr>,
    /// Worker threads of the proxy service (default: the number of cores).
    pub threads: usize,
    /// After the listeners close (SIGTERM, or the hand-over to a new process on SIGQUIT),
    /// requests in flight (long streams) have up to this long to finish; the process exits as
    /// soon as the last one has.
    pub grace_period: Duration,
    /// After that, how long the runtime may take to wind down; whatever still runs is cut.
    pub shutdown_timeout: Duration,
    /// `None`: `llm-forward.pid` in the private runtime directory (`server/runtime_dir.rs`).
    pub pid_file: Option<String>,
    /// Unix socket through which a new process (`run -u`) takes over the listeners. `None`:
    /// `upgrade.sock` in the private runtime directory. Its directory must not be writable by
    /// group or others.
    pub upgrade_sock: Option<String>,
    /// Upstream host names are resolved at most this long ago (stale answers are served while a
    /// refresh runs in the background).
    pub dns_ttl: Duration,
    /// Bound on one resolution; past it the request fails with 502.
    pub dns_timeout: Duration,
    /// One work-stealing runtime for all worker threads instead of one single-threaded runtime
    /// per thread (the default, ~10 % less CPU per request).
    pub work_stealing: bool,
    /// A request head must arrive whole within this long (slow-loris clients are cut).
    pub header_timeout: Duration,
    /// A request body may pause this long between bytes; past it the request gets a 408.
    pub body_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// An OpenAI-compatible API: bodies are JSON that later phases read (model, usage, cache keys).
    OpenAi,
    /// Any HTTP API: bytes pass through untouched.
    General,
    /// No upstream: `POST …/v1/chat/completions` gets canned answers (openai-forward's
    /// `BENCHMARK_MODE`), to load-test clients and the gateway itself at no cost.
    Benchmark,
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::OpenAi => "openai",
            RouteKind::General => "general",
            RouteKind::Benchmark => "benchmark",
        }
    }
}

impl UpstreamUrl {
    /// What a benchmark route holds where an upstream would be: never connected to.
    pub fn none() -> UpstreamUrl {
        UpstreamUrl {
            tls: false,
            host: "benchmark.invalid".into(),
            port: 80,
            base_path: String::new(),
        }
    }
}

impl RouteConfig {
    /// A benchmark route at `prefix`: canned answers, no upstream, no key to send anywhere.
    pub fn benchmark(prefix: &str) -> RouteConfig {
        let mut r = RouteConfig::new(prefix, UpstreamUrl::none(), RouteKind::Benchmark);
        r.auth.key_placement = KeyPlacement::None;
        r
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub tls: bool,
    /// Host name or IP literal (without brackets).
    pub host: String,
    pub port: u16,
    /// Path prepended to every forwarded path, without a trailing `/` (empty for none).
    pub base_path: String,
}

impl UpstreamUrl {
    /// The Host header value: the port only when it is not the scheme's default.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default_port = if self.tls { 443 } else { 80 };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl std::fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.base_path)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect (and, for https, the TLS handshake on top of it).
    pub connect: Duration,
    /// Upstream read: bounds the wait for the response head (first byte) and every gap between
    /// body chunks of a stream. Pingora enforces it per read.
    pub read: Duration,
    /// Upstream write: bounds each write of the request (large uploads).
    pub write: Duration,
    /// Streams: the first event must arrive this long after the request went out, or the
    /// attempt fails over (the client has seen nothing yet). `None`: `read` bounds it.
    pub first_token: Option<Duration>,
    /// Streams: the longest gap between two chunks once the first one arrived. `None`: `read`.
    pub idle: Option<Duration>,
    /// The longest a request may take from its arrival to the end of its answer, streaming
    /// included; past it an answer still flowing is cut. `None`: no bound (`idle` bounds a
    /// stream; `retry.total` only bounds the time to the first byte).
    pub max_duration: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        // LLM calls: connecting is quick, generating is not. A non-streamed reasoning answer can
        // take minutes before its first byte.
        Timeouts {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(600),
            write: Duration::from_secs(60),
            first_token: None,
            idle: None,
            max_duration: None,
        }
    }
}

/// 32 MiB: long chat histories with images stay well below it.
pub const DEFAULT_MAX_BODY: u64 = 32 << 20;

#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    /// Normalised: leading `/`, no trailing `/` (except the root), no runs of `/`.
    pub prefix: String,
    pub upstream: UpstreamUrl,
    pub kind: RouteKind,
    pub timeouts: Timeouts,
    pub retry: RetryPolicy,
    /// PEM CA bundle trusted for this upstream instead of the system store.
    pub ca_file: Option<PathBuf>,
    pub auth: RouteAuth,
    pub access: IpRulesConfig,
    /// Largest JSON body the gateway reads before forwarding (model checks, later caching).
    pub max_body: u64,
    /// The model this route's upstream serves when a request names none (`model` missing or
    /// null). A tenant with a model list must either name a model or use a route with one, and
    /// the list is checked against it; the request is forwarded unchanged.
    pub default_model: Option<String>,
    /// Every upstream of the route, the one `upstream` names first; never empty.
    pub upstreams: Vec<UpstreamConfig>,
    pub resilience: Resilience,
    /// Send the client's `Cookie` header upstream. Off by default: a browser's cookies for the
    /// gateway's host are not for a third party.
    pub forward_cookies: bool,
}

impl RouteConfig {
    pub fn new(prefix: &str, upstream: UpstreamUrl, kind: RouteKind) -> Self {
        RouteConfig {
            prefix: prefix.to_string(),
            upstreams: vec![UpstreamConfig::new(upstream.clone(), Timeouts::default())],
            resilience: Resilience::default(),
            upstream,
            kind,
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
            ca_file: None,
            auth: RouteAuth::default(),
            access: IpRulesConfig::default(),
            max_body: DEFAULT_MAX_BODY,
            default_model: None,
            forward_cookies: false,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 8000))],
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            grace_period: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(5),
            pid_file: None,
            upgrade_sock: None,
            dns_ttl: Duration::from_secs(60),
            dns_timeout: Duration::from_secs(5),
            work_stealing: false,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// No routes, no keys: the base that the decoder fills in.
    pub fn empty() -> Self {
        Config {
            server: ServerConfig::default(),
            routes: Vec::new(),
            upstream_keys: Vec::new(),
            tenants: Vec::new(),
            forward_keys: Vec::new(),
            key_health: KeyHealthConfig::default(),
            access: AccessConfig::default(),
            cors: None,
            limits: LimitsConfig::default(),
            log: LogConfig::default(),
            cache: None,
            admin: AdminConfig::default(),
            redis: RedisConfig::default(),
            tracing: None,
            secrets: Default::default(),
        }
    }

    /// The auth mode a route runs with: its own, else forward keys once any exist.
    pub fn auth_mode(&self, route: &RouteConfig) -> AuthMode {
        route.auth.mode.unwrap_or(if self.forward_keys.is_empty() {
            AuthMode::Passthrough
        } else {
            AuthMode::ForwardKeys
        })
    }
}

impl Default for Config {
    /// openai-forward's default: everything on :8000 goes to api.openai.com.
    fn default() -> Self {
        let openai = UpstreamUrl {
            tls: true,
            host: "api.openai.com".into(),
            port: 443,
            base_path: String::new(),
        };
        Config {
            routes: vec![RouteConfig::new("/", openai, RouteKind::OpenAi)],
            ..Config::empty()
        }
    }
}
