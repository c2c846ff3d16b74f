//! The config schema: which keys exist where, their types, defaults and cross-field rules.
//! Decodes a YAML document into [`Config`], collecting every problem (see `decode.rs`).

use super::decode::{Decoder, Node};
use super::model::*;
use super::schema_routes::decode_routes;
pub(super) use super::schema_routes::{parse_key_placement, parse_upstream_url};
use super::{
    schema_admin, schema_auth, schema_cache, schema_limits, schema_redis, schema_telemetry,
    validate,
};
use std::net::SocketAddr;

const TOP: &[&str] = &[
    "server",
    "routes",
    "upstream_keys",
    "tenants",
    "forward_keys",
    "key_health",
    "access",
    "cors",
    "limits",
    "log",
    "cache",
    "admin",
    "redis",
    "telemetry",
];
const SERVER: &[&str] = &[
    "listen",
    "threads",
    "grace_period",
    "shutdown_timeout",
    "pid_file",
    "upgrade_sock",
    "dns_ttl",
    "dns_timeout",
    "work_stealing",
    "header_timeout",
    "body_timeout",
];
/// Decode a whole document. `None` when any problem was recorded.
pub(super) fn decode_config(d: &mut Decoder<'_>, root: &Node<'_>) -> Option<Config> {
    if root.value.is_null() {
        d.problem("", None, "the config is empty; it needs at least `routes`");
        return None;
    }
    let top = d.fields(root, TOP)?;
    let server = match top.get("server") {
        Some(node) => decode_server(d, &node),
        None => ServerConfig::default(),
    };
    let routes = match top.get("routes") {
        Some(node) => decode_routes(d, &node),
        None => {
            d.problem("routes", None, "missing; list at least one route");
            Vec::new()
        }
    };
    let mut config = Config {
        server,
        routes,
        ..Config::empty()
    };
    if let Some(n) = top.get("upstream_keys") {
        config.upstream_keys = schema_auth::decode_pools(d, &n);
    }
    if let Some(n) = top.get("tenants") {
        config.tenants = schema_auth::decode_tenants(d, &n);
    }
    if let Some(n) = top.get("forward_keys") {
        config.forward_keys = schema_auth::decode_forward_keys(d, &n);
    }
    if let Some(n) = top.get("key_health") {
        config.key_health = schema_auth::decode_key_health(d, &n);
    }
    if let Some(n) = top.get("access") {
        config.access = schema_auth::decode_access(d, &n);
    }
    if let Some(n) = top.get("cors") {
        config.cors = schema_auth::decode_cors(d, &n);
    }
    if let Some(n) = top.get("limits") {
        config.limits = schema_limits::decode_limits(d, &n);
    }
    if let Some(n) = top.get("log") {
        config.log = schema_limits::decode_log(d, &n);
    }
    if let Some(n) = top.get("cache") {
        config.cache = Some(schema_cache::decode_cache(d, &n, &config.routes));
    }
    if let Some(n) = top.get("admin") {
        config.admin = schema_admin::decode_admin(d, &n, &config.server.listen);
    }
    if let Some(n) = top.get("telemetry") {
        config.tracing = schema_telemetry::decode_telemetry(d, &n);
    }
    if let Some(n) = top.get("redis") {
        config.redis = schema_redis::decode_redis(d, &n);
        if config.redis.ca_file.is_some() && !uses_tls_redis(&config) {
            let why = "no `limits.backend` or `cache.backend` is a rediss:// URL";
            d.problem("redis.ca_file", None, why);
        }
    }
    if d.problems.is_empty() {
        validate::cross_check(&config, &mut d.problems);
    }
    d.problems.is_empty().then_some(config)
}

/// Whether the limiter or the cache talks to Redis over TLS.
fn uses_tls_redis(config: &Config) -> bool {
    let limits = matches!(&config.limits.backend, LimitBackendConfig::Redis(u) if u.starts_with("rediss://"));
    let cache = config.cache.as_ref().is_some_and(
        |c| matches!(&c.backend, super::CacheBackendConfig::Redis(u) if u.starts_with("rediss://")),
    );
    limits || cache
}

fn decode_server(d: &mut Decoder<'_>, node: &Node<'_>) -> ServerConfig {
    let mut s = ServerConfig::default();
    let Some(f) = d.fields(node, SERVER) else {
        return s;
    };
    if let Some(n) = f.get("listen") {
        let items = match n.value {
            serde_yaml::Value::Sequence(_) => d.seq(&n),
            _ => vec![n.clone()],
        };
        let mut listen: Vec<SocketAddr> = Vec::with_capacity(items.len());
        let mut paths: Vec<&str> = Vec::with_capacity(items.len());
        for item in &items {
            let Some(addr) = d.parsed(item, parse_listen) else {
                continue;
            };
            if let Some(i) = listen.iter().position(|a| listen_overlap(*a, addr)) {
                let why = format!(
                    "overlaps {} ({}): one socket cannot be bound twice; list each address once",
                    paths[i], listen[i]
                );
                d.problems
                    .add(item.path.clone(), Some(addr.to_string()), why);
                continue;
            }
            listen.push(addr);
            paths.push(&item.path);
        }
        if items.is_empty() {
            d.problem(
                &n.path,
                None,
                "list at least one address, e.g. 0.0.0.0:8000",
            );
        }
        s.listen = listen;
    }
    if let Some(v) = f.get("work_stealing").and_then(|n| d.boolean(&n)) {
        s.work_stealing = v;
    }
    if let Some(n) = f.get("threads") {
        s.threads = d.uint(&n, 1, 1024).map_or(s.threads, |v| v as usize);
    }
    let durations = [
        ("grace_period", &mut s.grace_period),
        ("shutdown_timeout", &mut s.shutdown_timeout),
        ("dns_ttl", &mut s.dns_ttl),
        ("dns_timeout", &mut s.dns_timeout),
    ];
    for (key, slot) in durations {
        if let Some(v) = f.get(key).and_then(|n| d.duration(&n)) {
            *slot = v;
        }
    }
    // Client read deadlines: zero would refuse every request.
    for (key, slot) in [
        ("header_timeout", &mut s.header_timeout),
        ("body_timeout", &mut s.body_timeout),
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
        ("pid_file", &mut s.pid_file),
        ("upgrade_sock", &mut s.upgrade_sock),
    ] {
        if let Some(v) = f.get(key).and_then(|n| d.string(&n)) {
            *slot = Some(v);
        }
    }
    s
}

/// Whether two listen addresses claim the same socket: the same port on the same address, or
/// on a wildcard (`0.0.0.0`, or `[::]`, which also takes IPv4 where the system is dual-stack,
/// the Linux default) that covers the other.
pub(super) fn listen_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() {
        return false;
    }
    let (x, y) = (a.ip(), b.ip());
    x == y
        || (x.is_unspecified() && (x.is_ipv6() || y.is_ipv4()))
        || (y.is_unspecified() && (y.is_ipv6() || x.is_ipv4()))
}

pub(super) fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        "expected IP:PORT, e.g. 0.0.0.0:8000 or [::]:8000 (host names are not resolved here)"
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_listen_addresses() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        for (x, y) in [
            ("127.0.0.1:1", "127.0.0.1:1"),
            ("0.0.0.0:1", "127.0.0.1:1"),
            ("127.0.0.1:1", "0.0.0.0:1"),
            ("[::]:1", "0.0.0.0:1"),
            ("[::]:1", "[::1]:1"),
            ("127.0.0.1:1", "[::]:1"),
        ] {
            assert!(listen_overlap(a(x), a(y)), "{x} {y}");
        }
        for (x, y) in [
            ("127.0.0.1:1", "127.0.0.1:2"),
            ("127.0.0.1:1", "127.0.0.2:1"),
            ("127.0.0.1:1", "[::1]:1"),
            ("0.0.0.0:1", "[::1]:1"),
        ] {
            assert!(!listen_overlap(a(x), a(y)), "{x} {y}");
        }
    }
}
