//! The typed configuration of who may use the gateway: upstream key pools and their health
//! rules, tenants, forward keys, IP rules, CORS, and a route's auth settings.

use super::ip_list::{IpList, IpRulesConfig};
use crate::cors::CorsPolicy;
use std::time::Duration;

/// A secret from the config. Its `Debug` never shows the value, so a config dump or a panic
/// message cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    /// Why `text` cannot be a key, if it cannot. A key travels as it is in a header
    /// (`Authorization: Bearer …`, `api-key`) or a query string, or is compared with one a
    /// client sent in a header: only visible ASCII fits all of them. A control character or a
    /// non-ASCII letter (a YAML escape, a pasted key) would pass `check` and then fail every
    /// request that uses the key. The reason never quotes the key.
    pub fn problem(text: &str) -> Option<&'static str> {
        if text.is_empty() || text.chars().any(char::is_whitespace) {
            Some("a key must be non-empty, without spaces")
        } else if !text.bytes().all(|b| b.is_ascii_graphic()) {
            Some("a key must be printable ASCII: no control characters or non-ASCII letters (it goes into an HTTP header as it is)")
        } else {
            None
        }
    }
}

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

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AccessConfig {
    pub rules: IpRulesConfig,
    /// Peers whose `X-Forwarded-For` / `Forwarded` / `X-Real-IP` are believed.
    pub trusted_proxies: IpList,
}

/// Browser access: the settings as written and the [`CorsPolicy`] they make, built together by
/// [`CorsConfig::new`] so that a config that passed `check` cannot run with CORS off.
#[derive(Debug, Clone, PartialEq)]
pub struct CorsConfig {
    allow_origins: Vec<String>,
    allow_credentials: bool,
    max_age: Duration,
    policy: CorsPolicy,
}

impl CorsConfig {
    /// # Errors
    ///
    /// The first origin that is not valid (see [`CorsPolicy::new`]).
    pub fn new(
        allow_origins: Vec<String>,
        allow_credentials: bool,
        max_age: Duration,
    ) -> Result<Self, String> {
        let policy = CorsPolicy::new(&allow_origins, allow_credentials, max_age)?;
        Ok(CorsConfig {
            allow_origins,
            allow_credentials,
            max_age,
            policy,
        })
    }

    /// Any origin, credentials included (openai-forward's behaviour).
    pub fn any_origin(max_age: Duration) -> Self {
        CorsConfig {
            allow_origins: vec!["*".into()],
            allow_credentials: true,
            max_age,
            policy: CorsPolicy::any_origin(true, max_age),
        }
    }

    pub fn allow_origins(&self) -> &[String] {
        &self.allow_origins
    }

    pub fn allow_credentials(&self) -> bool {
        self.allow_credentials
    }

    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// The runtime policy.
    pub fn policy(&self) -> &CorsPolicy {
        &self.policy
    }
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
