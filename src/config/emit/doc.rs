//! The YAML document `import-env` writes, as serde-derived structs: one field per key, in the
//! order written, each skipped when it holds the default. Built from a [`Config`] by
//! [`Doc::of`]; printed by `emit.rs`, which reads the [`Style`] marks.

use super::Style::{self, Bare, Flow, Name};
use crate::config::model::*;
use crate::config::model_upstream::RetryPolicy;
use crate::config::schema_cache::{CacheBackendConfig, CacheConfig};
use crate::config::units::format_duration;
use crate::limits::spec::LimitSpec;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

/// Entries keyed by an operator's names (pools, tenants), in config order.
struct Names<'a, V>(Vec<(&'a str, V)>);

impl<V: Serialize> Serialize for Names<'_, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(&Name(*k), v)?;
        }
        map.end()
    }
}

impl<V> Names<'_, V> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A string either quoted or written as is.
#[derive(Serialize)]
#[serde(untagged)]
enum Text<'a> {
    Quoted(String),
    Bare(Style<&'a str>),
}

type Strings<'a> = Style<&'a [String]>;

fn duration(d: std::time::Duration) -> Style<String> {
    Bare(format_duration(d))
}

fn strings(items: &[String]) -> Option<Strings<'_>> {
    (!items.is_empty()).then_some(Flow(items))
}

#[derive(Serialize)]
pub(super) struct Doc<'a> {
    server: Server,
    #[serde(skip_serializing_if = "Option::is_none")]
    access: Option<Access<'a>>,
    #[serde(skip_serializing_if = "Names::is_empty")]
    upstream_keys: Names<'a, Vec<Style<PoolKey<'a>>>>,
    #[serde(skip_serializing_if = "Names::is_empty")]
    tenants: Names<'a, Tenant<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    forward_keys: Vec<Style<ForwardKey<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cors: Option<Cors<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limits: Option<Limits<'a>>,
    routes: Vec<Route<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<Cache<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<Log<'a>>,
}

#[derive(Serialize)]
struct Server {
    listen: Vec<String>,
}

#[derive(Serialize)]
struct Access<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    allow: Option<Strings<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deny: Option<Strings<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trusted_proxies: Option<Strings<'a>>,
}

/// `{allow, deny}` of a tenant, a forward key or a route; `None` when both are empty.
#[derive(Serialize)]
struct Rules<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    allow: Option<Strings<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deny: Option<Strings<'a>>,
}

fn rules(r: &IpRulesConfig) -> Option<Style<Rules<'_>>> {
    let allow = strings(r.allow.written());
    let deny = strings(r.deny.written());
    (allow.is_some() || deny.is_some()).then_some(Flow(Rules { allow, deny }))
}

#[derive(Serialize)]
struct PoolKey<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    weight: Option<u32>,
}

#[derive(Serialize)]
struct Tenant<'a> {
    models: Style<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    routes: Option<Strings<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pools: Option<Style<Names<'a, &'a str>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access: Option<Style<Rules<'a>>>,
}

#[derive(Serialize)]
struct ForwardKey<'a> {
    key: &'a str,
    tenant: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access: Option<Style<Rules<'a>>>,
}

#[derive(Serialize)]
struct Cors<'a> {
    allow_origins: Strings<'a>,
    allow_credentials: bool,
    max_age: Style<String>,
}

#[derive(Serialize)]
struct Limits<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    backend: Option<&'a str>,
    on_backend_error: Style<&'static str>,
    backend_timeout: Style<String>,
    default_max_tokens: u64,
    rules: Vec<Style<Rule<'a>>>,
}

#[derive(Serialize)]
struct Rule<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    per: Style<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requests: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cut_streams: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    concurrency: Option<u32>,
    /// Written as Rust prints it (`20`, `2.5`), not as YAML's float (`20.0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    output_tokens_per_second: Option<Style<String>>,
}

/// `60/60seconds;600/3600seconds`: every window in seconds, so nothing is lost to rounding.
fn spec(spec: &LimitSpec) -> String {
    let windows: Vec<String> = spec
        .0
        .iter()
        .map(|w| format!("{}/{}seconds", w.count, w.window.as_secs()))
        .collect();
    windows.join(";")
}

#[derive(Serialize)]
struct Route<'a> {
    prefix: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<String>,
    #[serde(rename = "type")]
    kind: Style<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeouts: Option<RouteTimeouts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proxy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry: Option<Retry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<Style<Auth<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access: Option<Style<Rules<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_body: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    default_model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    forward_cookies: Option<bool>,
}

#[derive(Serialize)]
struct RouteTimeouts {
    #[serde(skip_serializing_if = "Option::is_none")]
    connect: Option<Style<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    read: Option<Style<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    write: Option<Style<String>>,
}

#[derive(Serialize)]
struct Retry {
    connect_retries: u32,
    backoff: Style<String>,
    backoff_max: Style<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_status: Option<bool>,
}

#[derive(Serialize)]
struct Auth<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<Style<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_header: Option<Text<'static>>,
}

#[derive(Serialize)]
struct Cache<'a> {
    backend: Text<'static>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    default: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    routes: Option<Vec<CacheRoute<'a>>>,
}

#[derive(Serialize)]
struct CacheRoute<'a> {
    route: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    paths: Option<Strings<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    default: Option<bool>,
}

#[derive(Serialize)]
struct Log<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    chat: Option<Chat<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    print_chat: Option<bool>,
}

#[derive(Serialize)]
struct Chat<'a> {
    dir: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    routes: Option<Strings<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<bool>,
    max_file_size: u64,
    keep_files: usize,
}

impl<'a> Doc<'a> {
    pub(super) fn of(config: &'a Config) -> Self {
        let a = &config.access;
        let access = Access {
            allow: strings(a.rules.allow.written()),
            deny: strings(a.rules.deny.written()),
            trusted_proxies: strings(a.trusted_proxies.written()),
        };
        let any = access.allow.is_some() || access.deny.is_some();
        Doc {
            server: Server {
                listen: config.server.listen.iter().map(|a| a.to_string()).collect(),
            },
            access: (any || access.trusted_proxies.is_some()).then_some(access),
            upstream_keys: Names(
                config
                    .upstream_keys
                    .iter()
                    .map(|p| (p.name.as_str(), p.keys.iter().map(pool_key).collect()))
                    .collect(),
            ),
            tenants: Names(
                config
                    .tenants
                    .iter()
                    .map(|t| (t.name.as_str(), tenant(t)))
                    .collect(),
            ),
            forward_keys: config.forward_keys.iter().map(forward_key).collect(),
            cors: config.cors.as_ref().map(|c| Cors {
                allow_origins: Flow(c.allow_origins()),
                allow_credentials: c.allow_credentials(),
                max_age: duration(c.max_age()),
            }),
            limits: (config.limits != LimitsConfig::default()).then(|| limits(&config.limits)),
            routes: config.routes.iter().map(route).collect(),
            cache: config.cache.as_ref().map(cache),
            log: log(&config.log),
        }
    }
}

fn pool_key(k: &UpstreamKeyConfig) -> Style<PoolKey<'_>> {
    Flow(PoolKey {
        key: &k.key.0,
        name: k.name.as_deref(),
        weight: (k.weight != 1).then_some(k.weight),
    })
}

fn tenant(t: &TenantConfig) -> Tenant<'_> {
    Tenant {
        // `["*"]` for every model: written out so the reader sees the choice.
        models: Flow(
            t.models
                .as_ref()
                .map_or_else(|| vec!["*"], |m| m.iter().map(String::as_str).collect()),
        ),
        routes: t.routes.as_deref().map(Flow),
        pool: t.pool.as_deref(),
        pools: (!t.pools.is_empty()).then(|| {
            Flow(Names(
                t.pools
                    .iter()
                    .map(|(r, p)| (r.as_str(), p.as_str()))
                    .collect(),
            ))
        }),
        access: rules(&t.access),
    }
}

fn forward_key(k: &ForwardKeyConfig) -> Style<ForwardKey<'_>> {
    Flow(ForwardKey {
        key: &k.key.0,
        tenant: &k.tenant,
        name: k.name.as_deref(),
        access: rules(&k.access),
    })
}

fn limits(l: &LimitsConfig) -> Limits<'_> {
    Limits {
        backend: match &l.backend {
            LimitBackendConfig::Redis(url) => Some(url.as_str()),
            _ => None,
        },
        on_backend_error: Bare(match l.on_backend_error {
            crate::limits::OnBackendError::Allow => "allow",
            crate::limits::OnBackendError::Deny => "deny",
        }),
        backend_timeout: duration(l.backend_timeout),
        default_max_tokens: l.default_max_tokens,
        rules: l
            .rules
            .iter()
            .map(|r| {
                Flow(Rule {
                    route: r.route.as_deref(),
                    path: r.path.as_deref(),
                    tenant: r.tenant.as_deref(),
                    key: r.key.as_deref(),
                    per: Bare(r.per.as_str()),
                    // No window at all is no limit: `inf`.
                    requests: r.requests.as_ref().map(|s| match spec(s) {
                        text if text.is_empty() => "inf".to_string(),
                        text => text,
                    }),
                    tokens: r.tokens.as_ref().map(spec),
                    cut_streams: (r.tokens.is_some() && r.cut_streams).then_some(true),
                    concurrency: r.concurrency,
                    output_tokens_per_second: r.output_rate.map(|rate| Bare(rate.to_string())),
                })
            })
            .collect(),
    }
}

fn route(r: &RouteConfig) -> Route<'_> {
    let (t, d) = (r.timeouts, Timeouts::default());
    let changed = |v, dv| (v != dv).then(|| duration(v));
    Route {
        prefix: &r.prefix,
        upstream: (r.kind != RouteKind::Benchmark).then(|| r.upstream.to_string()),
        kind: Bare(r.kind.as_str()),
        timeouts: (t != d).then(|| RouteTimeouts {
            connect: changed(t.connect, d.connect),
            read: changed(t.read, d.read),
            write: changed(t.write, d.write),
        }),
        proxy: r
            .upstreams
            .first()
            .and_then(|u| u.proxy.as_ref())
            .map(|p| p.url()),
        retry: (r.retry != RetryPolicy::default()).then(|| Retry {
            connect_retries: r.retry.connect_retries,
            backoff: duration(r.retry.backoff),
            backoff_max: duration(r.retry.backoff_max),
            on_status: (!r.retry.on_status).then_some(false),
        }),
        auth: (r.auth != RouteAuth::default()).then(|| {
            Flow(Auth {
                mode: r.auth.mode.map(|m| Bare(m.as_str())),
                pool: r.auth.pool.as_deref(),
                key_header: match &r.auth.key_placement {
                    KeyPlacement::Bearer => None,
                    KeyPlacement::None => Some(Text::Bare(Bare("none"))),
                    KeyPlacement::Header(h) => Some(Text::Quoted(h.clone())),
                    KeyPlacement::Query(p) => Some(Text::Quoted(format!("query:{p}"))),
                },
            })
        }),
        access: rules(&r.access),
        max_body: (r.max_body != DEFAULT_MAX_BODY).then_some(r.max_body),
        default_model: r.default_model.as_deref(),
        forward_cookies: r.forward_cookies.then_some(true),
    }
}

fn cache(c: &CacheConfig) -> Cache<'_> {
    let (backend, path) = match &c.backend {
        CacheBackendConfig::Memory => (Text::Bare(Bare("memory")), None),
        CacheBackendConfig::Disk(p) => (Text::Bare(Bare("disk")), Some(p.display().to_string())),
        CacheBackendConfig::Redis(u) => (Text::Quoted(u.clone()), None),
    };
    Cache {
        backend,
        path,
        default: (c.default != CacheConfig::default().default).then_some(c.default),
        routes: c.routes.as_ref().map(|routes| {
            routes
                .iter()
                .map(|r| CacheRoute {
                    route: &r.route,
                    paths: r.paths.as_deref().map(Flow),
                    default: r.default,
                })
                .collect()
        }),
    }
}

fn log(l: &LogConfig) -> Option<Log<'_>> {
    if l.chat.is_none() && !l.print_chat {
        return None;
    }
    Some(Log {
        chat: l.chat.as_ref().map(|c| Chat {
            dir: c.dir.display().to_string(),
            routes: c.routes.as_deref().map(Flow),
            messages: (!c.messages).then_some(false),
            max_file_size: c.max_file_bytes,
            keep_files: c.keep_files,
        }),
        print_chat: l.print_chat.then_some(true),
    })
}
