//! The typed configuration: what the rest of the gateway reads. Built only by the decoder in
//! `schema.rs`, so every value here has been validated (paths normalised, URLs parsed, ranges
//! checked). Defaults live next to their fields.

pub use super::ip_list::{IpList, IpRulesConfig};
pub use super::model_auth::*;
pub use super::model_route::*;
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
    /// `GET /metrics` then needs `Authorization: Bearer <token>` (`admin.metrics_token`).
    pub metrics_token: Option<Secret>,
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
            metrics_token: None,
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
