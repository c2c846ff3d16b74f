//! Config of a route's upstreams and what happens when one fails: the upstream list (priority,
//! weight, keys, timeouts, model names, outbound proxy), the retry policy, fallback models,
//! circuit breakers and how a broken stream ends.

use super::model::{KeyPlacement, Timeouts, UpstreamUrl};
use std::path::PathBuf;
use std::time::Duration;

/// One upstream of a route. A route written with a single `upstream:` has exactly one, built
/// from the route's own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// For logs and the `x-llm-forward-upstream` header (default: the URL's host).
    pub name: String,
    pub url: UpstreamUrl,
    /// Lower goes first; the next priority is a fallback.
    pub priority: u32,
    /// Share among upstreams of the same priority.
    pub weight: u32,
    pub timeouts: Timeouts,
    pub ca_file: Option<PathBuf>,
    /// This upstream's own key pool; `None`: the route's (or the tenant's) pool.
    pub pool: Option<String>,
    /// Where this upstream takes its key; `None`: the route's `auth.key_header`.
    pub key_placement: Option<KeyPlacement>,
    /// The models it serves, each with the name it knows the model by. `None`: every model,
    /// under the requested name. Names may be globs (`*` any run of characters: `fb-*`, `*`);
    /// `!pattern` excludes what it matches. A name of `*` (or containing one) sends the
    /// requested name.
    pub models: Option<Vec<(String, String)>>,
    /// Reach it through this HTTP forward proxy (CONNECT).
    pub proxy: Option<ProxyConfig>,
    /// The models (globs of the names it knows them by) that accept an assistant message as the
    /// last one and continue it (a prefill): how a broken stream is continued here
    /// (`stream_errors: continue`). `prefill: true` is `["*"]`; default none.
    pub prefill: Vec<String>,
}

impl UpstreamConfig {
    pub fn new(url: UpstreamUrl, timeouts: Timeouts) -> Self {
        UpstreamConfig {
            name: url.host.clone(),
            url,
            priority: 1,
            weight: 1,
            timeouts,
            ca_file: None,
            pool: None,
            key_placement: None,
            models: None,
            proxy: None,
            prefill: Vec::new(),
        }
    }

    /// Does a swapped request need the route's (or tenant's) pool to have a key for this
    /// upstream? Not when it has its own pool or takes no key at all.
    pub fn needs_route_pool(&self, route_auth: &super::model::RouteAuth) -> bool {
        let placement = self
            .key_placement
            .as_ref()
            .unwrap_or(&route_auth.key_placement);
        self.pool.is_none() && *placement != KeyPlacement::None
    }

    /// The name this upstream knows `model` by, or `None` when it does not serve it. An
    /// exclusion wins; then an exact name; then the first glob that matches. A list of
    /// exclusions only serves everything else.
    pub fn serves<'a>(&'a self, model: Option<&'a str>) -> Option<Option<&'a str>> {
        let (list, m) = match (&self.models, model) {
            (None, m) => return Some(m),
            (Some(_), None) => return Some(None),
            (Some(list), Some(m)) => (list, m),
        };
        let excluded = |p: &str| p.strip_prefix('!').is_some_and(|p| glob_match(p, m));
        if list.iter().any(|(p, _)| excluded(p)) {
            return None;
        }
        let sent = |s: &'a String| Some(if s.contains('*') { m } else { s.as_str() });
        if let Some((_, s)) = list.iter().find(|(p, _)| p == m) {
            return Some(sent(s));
        }
        let positive = |p: &str| !p.starts_with('!');
        match list.iter().find(|(p, _)| positive(p) && glob_match(p, m)) {
            Some((_, s)) => Some(sent(s)),
            None if !list.iter().any(|(p, _)| positive(p)) => Some(Some(m)),
            None => None,
        }
    }
}

impl UpstreamConfig {
    /// Does `model` (the name this upstream knows it by) take an assistant prefill here?
    pub fn prefills(&self, model: &str) -> bool {
        self.prefill.iter().any(|p| glob_match(p, model))
    }
}

/// Does `name` match `pattern`, where `*` stands for any run of characters (none included)?
/// Iterative, with one backtrack point: linear in practice, no allocation.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && p[i] == b'*' {
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && p[i] == n[j] {
            i += 1;
            j += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == b'*')
}

/// Why a model pattern of an upstream's `models` list is not valid, if it is not.
pub fn model_pattern_problem(pattern: &str) -> Option<&'static str> {
    let body = pattern.strip_prefix('!').unwrap_or(pattern);
    if body.is_empty() {
        return Some("an empty model name or pattern");
    }
    if body.contains('!') {
        return Some("`!` only starts an exclusion (`!gpt-4o-realtime*`)");
    }
    if body.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("a model name or pattern has no whitespace");
    }
    None
}

/// An HTTP forward proxy: `http://[user:password@]host:port`.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    pub host: String,
    pub port: u16,
    /// `user:password`, sent as `Proxy-Authorization: Basic`.
    pub credentials: Option<String>,
}

impl std::fmt::Debug for ProxyConfig {
    /// Never prints the credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProxyConfig({}:{})", self.host, self.port)
    }
}

impl ProxyConfig {
    /// The URL as configured, credentials included (for `import-env`'s YAML only).
    pub fn url(&self) -> String {
        let auth = self
            .credentials
            .as_ref()
            .map_or(String::new(), |c| format!("{c}@"));
        format!("http://{auth}{}:{}", self.host, self.port)
    }

    /// The URL without credentials, for logs and the banner.
    pub fn redacted(&self) -> String {
        let auth = if self.credentials.is_some() {
            "***@"
        } else {
            ""
        };
        format!("http://{auth}{}:{}", self.host, self.port)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after a failed connect (nothing reached the upstream, so any method is safe).
    pub connect_retries: u32,
    /// Retries on the same upstream of what it did not act on: a reset before any response
    /// byte, 429/503/529 (and one 500/502). Then the next upstream or fallback model.
    pub retries: u32,
    /// First backoff; doubles per retry, with jitter in [backoff/2, backoff].
    pub backoff: Duration,
    pub backoff_max: Duration,
    /// A `Retry-After` up to this long is waited out; a longer one moves on to the fallback.
    pub retry_after_max: Duration,
    /// Budget for the whole call, retries and fallbacks included (`None`: unbounded).
    pub total: Option<Duration>,
    /// Upper bound on upstream attempts for one request, whatever else allows.
    pub max_attempts: u32,
    /// Try a non-idempotent request (POST…) again after it was delivered whole and then met a
    /// reset, a close or a timeout before its answer. Off by default: the upstream may have
    /// acted on it (a chat completion billed twice). GET/HEAD/OPTIONS are retried regardless.
    pub on_reset: bool,
    /// An upstream's 429/5xx leads to another attempt (same upstream, another key, the next
    /// upstream). `false`: it is the client's answer at once, as openai-forward did; failed
    /// connects are still retried.
    pub on_status: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            connect_retries: 2,
            retries: 2,
            backoff: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            retry_after_max: Duration::from_secs(10),
            total: None,
            max_attempts: 8,
            on_reset: false,
            on_status: true,
        }
    }
}

/// Models tried when the requested one cannot answer.
#[derive(Debug, Clone, PartialEq)]
pub struct FallbackConfig {
    /// For every model, after its own list.
    pub models: Vec<String>,
    /// Per requested model, in order.
    pub by_model: Vec<(String, Vec<String>)>,
    /// Tried only when an upstream said `context_length_exceeded` (larger context windows).
    pub context_length: Vec<String>,
    /// Clients may name their own list in the `x-fallback-models` header (filtered by their
    /// model allow-list).
    pub from_request: bool,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        FallbackConfig {
            models: Vec::new(),
            by_model: Vec::new(),
            context_length: Vec::new(),
            from_request: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (0: never on this count).
    pub failures: u32,
    /// Failure ratio over `window` that opens it, once `min_requests` were seen (0: off).
    pub error_ratio: f64,
    pub min_requests: u32,
    pub window: Duration,
    /// How long it stays open before one probe request may try the upstream again.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            error_ratio: 0.0,
            min_requests: 20,
            window: Duration::from_secs(30),
            open_for: Duration::from_secs(5),
        }
    }
}

/// How a stream that breaks after bytes reached the client ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamErrors {
    /// The connection is aborted without the terminating chunk.
    #[default]
    Abort,
    /// A `data: {"error": …}` event first, then the abort.
    Event,
    /// The next candidate continues the answer, spliced into the client's stream (chat
    /// completions; see `proxy/continuation.rs`); if that fails too, the abort.
    Continue,
}

impl StreamErrors {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamErrors::Abort => "abort",
            StreamErrors::Event => "event",
            StreamErrors::Continue => "continue",
        }
    }
}

/// Everything a route needs to survive its upstreams.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resilience {
    pub fallbacks: FallbackConfig,
    pub breaker: BreakerConfig,
    pub stream_errors: StreamErrors,
}
