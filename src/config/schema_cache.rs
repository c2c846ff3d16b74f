//! The schema of `cache:`, the response cache: where entries live (memory, a directory, a
//! shared Redis), how big they and the whole store may grow, how long they live, who may purge,
//! and which routes cache (every `openai` route's chat, completion and embedding endpoints
//! unless `routes` lists others).

use super::decode::{Decoder, Node};
use super::model::{RouteConfig, Secret};
use super::schema_redis::{is_redis_url, redis_url};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum CacheBackendConfig {
    /// This process's memory, within `max_size`.
    Memory,
    /// Files under a directory, within `max_size`; survives restarts.
    Disk(PathBuf),
    /// A Redis shared by every node: `redis://host:port/db`.
    Redis(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub backend: CacheBackendConfig,
    /// Byte budget of the memory and disk stores (Redis is bounded by its own `maxmemory`).
    pub max_size: u64,
    /// Larger answers pass through uncached.
    pub max_entry_size: u64,
    /// Default lifetime of an entry.
    pub ttl: Duration,
    /// How long identical requests wait for the first one's answer before going upstream too.
    pub lock_timeout: Duration,
    /// Bound on one Redis call; past it a lookup is a miss.
    pub backend_timeout: Duration,
    /// Count the tokens of cached answers against token budgets (default: hits are free).
    pub charge_hits: bool,
    /// Keep reading an answer into the cache after its client left (the upstream call runs to
    /// its end); identical requests then also follow a fill live. Default: the call is cut.
    pub fill_after_disconnect: bool,
    /// Whether a request that does not say (`caching`) uses the cache.
    pub default: bool,
    /// The key for the admin endpoints (`/_llmf/cache/…`); without it they do not exist.
    pub admin_key: Option<Secret>,
    /// Routes that cache; `None`: every `openai` route at its default paths.
    pub routes: Option<Vec<CacheRouteConfig>>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            backend: CacheBackendConfig::Memory,
            max_size: 256 << 20,
            max_entry_size: 8 << 20,
            ttl: Duration::from_secs(3600),
            lock_timeout: Duration::from_secs(60),
            backend_timeout: Duration::from_millis(100),
            charge_hits: false,
            fill_after_disconnect: false,
            default: false,
            admin_key: None,
            routes: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CacheRouteConfig {
    /// A configured route prefix.
    pub route: String,
    /// Paths below the prefix that cache (exact, query aside); `None`: chat, completions and
    /// embeddings on `openai` routes, every path on `general` ones.
    pub paths: Option<Vec<String>>,
    /// Over `cache.default` for this route.
    pub default: Option<bool>,
    pub ttl: Option<Duration>,
    /// One cache for every tenant of the route (by default each tenant, or each client key on
    /// a pass-through route, has its own).
    pub shared: bool,
}

const CACHE: &[&str] = &[
    "backend",
    "path",
    "max_size",
    "max_entry_size",
    "ttl",
    "lock_timeout",
    "backend_timeout",
    "charge_hits",
    "fill_after_disconnect",
    "default",
    "admin_key",
    "routes",
];
const ROUTE: &[&str] = &["route", "paths", "default", "ttl", "shared"];

pub(super) fn decode_cache(
    d: &mut Decoder<'_>,
    node: &Node<'_>,
    routes: &[RouteConfig],
) -> CacheConfig {
    let mut c = CacheConfig::default();
    let Some(f) = d.fields(node, CACHE) else {
        return c;
    };
    let path = f.get("path").and_then(|n| d.string(&n).map(|s| (n, s)));
    if let Some(n) = f.get("backend") {
        let parsed = d.parsed(&n, |s| match s {
            "memory" => Ok(CacheBackendConfig::Memory),
            "disk" => Ok(CacheBackendConfig::Disk(PathBuf::new())),
            url if is_redis_url(url) => redis_url(url).map(CacheBackendConfig::Redis),
            _ => Err("expected `memory`, `disk` or a redis:// URL".into()),
        });
        match parsed {
            Some(CacheBackendConfig::Disk(_)) => match &path {
                Some((_, p)) => c.backend = CacheBackendConfig::Disk(PathBuf::from(p)),
                None => d.problem(
                    &f.path_of("path"),
                    None,
                    "missing; the `disk` backend needs a directory",
                ),
            },
            Some(b) => c.backend = b,
            None => {}
        }
    }
    if let (Some((n, _)), false) = (&path, matches!(c.backend, CacheBackendConfig::Disk(_))) {
        d.problem(&n.path, Some(n.value), "only the `disk` backend has a path");
    }
    for (key, slot) in [
        ("max_size", &mut c.max_size),
        ("max_entry_size", &mut c.max_entry_size),
    ] {
        if let Some(n) = f.get(key) {
            match d.size(&n) {
                Some(0) => d.problem(&n.path, Some(n.value), "must be above 0"),
                Some(v) => *slot = v,
                None => {}
            }
        }
    }
    if c.max_entry_size > c.max_size {
        if let Some(n) = f.get("max_entry_size") {
            d.problem(&n.path, Some(n.value), "larger than `max_size`");
        }
    }
    for (key, slot) in [
        ("ttl", &mut c.ttl),
        ("lock_timeout", &mut c.lock_timeout),
        ("backend_timeout", &mut c.backend_timeout),
    ] {
        if let Some(n) = f.get(key) {
            match d.duration(&n) {
                Some(v) if v.is_zero() => d.problem(&n.path, Some(n.value), "must be above 0"),
                Some(v) => *slot = v,
                None => {}
            }
        }
    }
    for (key, slot) in [
        ("charge_hits", &mut c.charge_hits),
        ("fill_after_disconnect", &mut c.fill_after_disconnect),
        ("default", &mut c.default),
    ] {
        if let Some(v) = f.get(key).and_then(|n| d.boolean(&n)) {
            *slot = v;
        }
    }
    if let Some(n) = f.get("admin_key") {
        match d.string(&n) {
            Some(k) if k.is_empty() => d.problem(&n.path, None, "empty; leave it out instead"),
            Some(k) => c.admin_key = Some(Secret(k)),
            None => {}
        }
    }
    if let Some(n) = f.get("routes") {
        let mut list = Vec::new();
        for item in d.seq(&n) {
            if let Some(r) = decode_route(d, &item, routes) {
                list.push(r);
            }
        }
        c.routes = Some(list);
    }
    c
}

fn decode_route(
    d: &mut Decoder<'_>,
    node: &Node<'_>,
    routes: &[RouteConfig],
) -> Option<CacheRouteConfig> {
    let f = d.fields(node, ROUTE)?;
    let route = match f.get("route") {
        Some(n) => {
            let text = d.string(&n)?;
            let prefix = crate::routing::normalize_prefix(&text).unwrap_or(text);
            if !routes.iter().any(|r| r.prefix == prefix) {
                let known: Vec<&str> = routes.iter().map(|r| r.prefix.as_str()).collect();
                let why = format!("no route has this prefix (routes: {})", known.join(", "));
                d.problem(&n.path, Some(n.value), why);
                return None;
            }
            prefix
        }
        None => {
            d.problem(
                &f.path_of("route"),
                None,
                "missing; the prefix of a configured route",
            );
            return None;
        }
    };
    let paths = f.get("paths").map(|n| {
        d.seq(&n)
            .iter()
            .filter_map(|p| {
                let s = d.string(p)?;
                if !s.starts_with('/') {
                    d.problem(
                        &p.path,
                        Some(p.value),
                        "a path below the prefix starts with /",
                    );
                    return None;
                }
                Some(s)
            })
            .collect()
    });
    Some(CacheRouteConfig {
        route,
        paths,
        default: f.get("default").and_then(|n| d.boolean(&n)),
        ttl: f.get("ttl").and_then(|n| d.duration(&n)),
        shared: f.get("shared").and_then(|n| d.boolean(&n)).unwrap_or(false),
    })
}
