//! The typed configuration of a route: its kind, upstream base URL, timeouts and everything a
//! request on it is subject to.

use super::ip_list::IpRulesConfig;
use super::model_auth::KeyPlacement;
use super::model_auth::RouteAuth;
use super::model_upstream::{Resilience, RetryPolicy, UpstreamConfig};
use std::path::PathBuf;
use std::time::Duration;

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
