//! The schema of who may use the gateway: upstream key pools, tenants, forward keys, IP rules
//! and CORS. Decoding only; the rules that span sections live in `validate.rs`.

use super::decode::{Decoder, Node};
use super::model::*;
use super::units::format_duration;

const KEY: &[&str] = &["key", "name", "weight"];
const TENANT: &[&str] = &["models", "routes", "pool", "pools", "access"];
const FORWARD_KEY: &[&str] = &["key", "tenant", "name", "access"];
const RULES: &[&str] = &["allow", "deny"];
const ACCESS: &[&str] = &["allow", "deny", "trusted_proxies"];
const CORS: &[&str] = &["allow_origins", "allow_credentials", "max_age"];
const KEY_HEALTH: &[&str] = &[
    "refusals",
    "refusal_window",
    "probe_after",
    "probe_max",
    "cooldown",
    "cooldown_max",
];

/// `upstream_keys: {pool: [key, …]}`; a key is a string or `{key, name, weight}`.
pub(super) fn decode_pools(d: &mut Decoder<'_>, node: &Node<'_>) -> Vec<KeyPoolConfig> {
    let Some(entries) = d.entries(node) else {
        return Vec::new();
    };
    let mut pools = Vec::new();
    for (name, pool_node) in entries {
        let keys = d
            .seq(&pool_node)
            .iter()
            .filter_map(|k| decode_upstream_key(d, k))
            .collect::<Vec<_>>();
        pools.push(KeyPoolConfig { name, keys });
    }
    pools
}

fn decode_upstream_key(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<UpstreamKeyConfig> {
    if node.value.is_string() {
        return Some(UpstreamKeyConfig {
            key: secret(d, node)?,
            name: None,
            weight: 1,
        });
    }
    let f = d.fields(node, KEY)?;
    let key = match f.get("key") {
        Some(n) => secret(d, &n),
        None => {
            d.problem(&f.path_of("key"), None, "missing");
            None
        }
    };
    let name = f.get("name").and_then(|n| d.string(&n));
    let weight = f
        .get("weight")
        .and_then(|n| d.uint(&n, 1, 1000))
        .unwrap_or(1) as u32;
    Some(UpstreamKeyConfig {
        key: key?,
        name,
        weight,
    })
}

/// `key_health: {refusals, refusal_window, probe_after, probe_max, cooldown, cooldown_max}`.
pub(super) fn decode_key_health(d: &mut Decoder<'_>, node: &Node<'_>) -> KeyHealthConfig {
    let mut h = KeyHealthConfig::default();
    let Some(f) = d.fields(node, KEY_HEALTH) else {
        return h;
    };
    if let Some(n) = f.get("refusals") {
        h.refusals = d.uint(&n, 1, 1000).map_or(h.refusals, |v| v as u32);
    }
    let durations = [
        ("refusal_window", &mut h.refusal_window),
        ("probe_after", &mut h.probe_after),
        ("probe_max", &mut h.probe_max),
        ("cooldown", &mut h.cooldown),
        ("cooldown_max", &mut h.cooldown_max),
    ];
    for (key, slot) in durations {
        let Some(n) = f.get(key) else { continue };
        match d.duration(&n) {
            Some(v) if v.is_zero() => d.problem(&n.path, Some(n.value), "must be above zero"),
            Some(v) => *slot = v,
            None => {}
        }
    }
    let pairs = [
        ("probe_max", h.probe_max, "probe_after", h.probe_after),
        ("cooldown_max", h.cooldown_max, "cooldown", h.cooldown),
    ];
    for (max, max_v, min, min_v) in pairs {
        if max_v < min_v {
            let why = format!("must be at least {min} ({})", format_duration(min_v));
            d.problem(&f.path_of(max), None, why);
        }
    }
    h
}

/// `tenants: {name: {models, routes, pools, access}}`.
pub(super) fn decode_tenants(d: &mut Decoder<'_>, node: &Node<'_>) -> Vec<TenantConfig> {
    let Some(entries) = d.entries(node) else {
        return Vec::new();
    };
    let mut tenants = Vec::new();
    for (name, t) in entries {
        let mut tenant = TenantConfig {
            name,
            models: None,
            routes: None,
            pool: None,
            pools: Vec::new(),
            access: IpRulesConfig::default(),
        };
        if let Some(f) = d.fields(&t, TENANT) {
            if let Some(n) = f.get("models") {
                let models = strings(d, &n);
                // `*` anywhere in the list means every model (openai-forward's level 0).
                tenant.models = (!models.iter().any(|m| m == "*")).then_some(models);
            }
            if let Some(n) = f.get("routes") {
                let routes = strings(d, &n)
                    .iter()
                    .map(|r| crate::routing::normalize_prefix(r).unwrap_or_else(|_| r.clone()))
                    .collect();
                tenant.routes = Some(routes);
            }
            tenant.pool = f.get("pool").and_then(|n| d.string(&n));
            if let Some(n) = f.get("pools") {
                for (prefix, pool) in d.entries(&n).unwrap_or_default() {
                    if let Some(pool) = d.string(&pool) {
                        let prefix = crate::routing::normalize_prefix(&prefix).unwrap_or(prefix);
                        tenant.pools.push((prefix, pool));
                    }
                }
            }
            if let Some(n) = f.get("access") {
                tenant.access = decode_rules(d, &n);
            }
        }
        tenants.push(tenant);
    }
    tenants
}

/// `forward_keys: [{key, tenant, name, access}]`.
pub(super) fn decode_forward_keys(d: &mut Decoder<'_>, node: &Node<'_>) -> Vec<ForwardKeyConfig> {
    let mut keys = Vec::new();
    for item in d.seq(node) {
        let Some(f) = d.fields(&item, FORWARD_KEY) else {
            continue;
        };
        let key = match f.get("key") {
            Some(n) => secret(d, &n),
            None => {
                d.problem(&f.path_of("key"), None, "missing");
                None
            }
        };
        let tenant = match f.get("tenant") {
            Some(n) => d.string(&n),
            None => {
                d.problem(
                    &f.path_of("tenant"),
                    None,
                    "missing; which tenant this key belongs to",
                );
                None
            }
        };
        let name = f.get("name").and_then(|n| d.string(&n));
        let access = f
            .get("access")
            .map(|n| decode_rules(d, &n))
            .unwrap_or_default();
        if let (Some(key), Some(tenant)) = (key, tenant) {
            keys.push(ForwardKeyConfig {
                key,
                tenant,
                name,
                access,
            });
        }
    }
    keys
}

/// The top-level `access:` section.
pub(super) fn decode_access(d: &mut Decoder<'_>, node: &Node<'_>) -> AccessConfig {
    let Some(f) = d.fields(node, ACCESS) else {
        return AccessConfig::default();
    };
    AccessConfig {
        rules: IpRulesConfig {
            allow: f.get("allow").map(|n| cidrs(d, &n)).unwrap_or_default(),
            deny: f.get("deny").map(|n| cidrs(d, &n)).unwrap_or_default(),
        },
        trusted_proxies: f
            .get("trusted_proxies")
            .map(|n| cidrs(d, &n))
            .unwrap_or_default(),
    }
}

/// `{allow: [cidr…], deny: [cidr…]}` (routes, tenants, keys).
pub(super) fn decode_rules(d: &mut Decoder<'_>, node: &Node<'_>) -> IpRulesConfig {
    let Some(f) = d.fields(node, RULES) else {
        return IpRulesConfig::default();
    };
    IpRulesConfig {
        allow: f.get("allow").map(|n| cidrs(d, &n)).unwrap_or_default(),
        deny: f.get("deny").map(|n| cidrs(d, &n)).unwrap_or_default(),
    }
}

pub(super) fn decode_cors(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<CorsConfig> {
    let f = d.fields(node, CORS)?;
    let allow_origins = f
        .get("allow_origins")
        .map(|n| strings(d, &n))
        .unwrap_or_default();
    let allow_credentials = f
        .get("allow_credentials")
        .and_then(|n| d.boolean(&n))
        .unwrap_or(false);
    let max_age = f
        .get("max_age")
        .and_then(|n| d.duration(&n))
        .unwrap_or(std::time::Duration::from_secs(600));
    if allow_origins.is_empty() {
        return None;
    }
    match CorsConfig::new(allow_origins, allow_credentials, max_age) {
        Ok(cors) => Some(cors),
        Err(why) => {
            d.problem(&f.path_of("allow_origins"), None, why);
            None
        }
    }
}

/// A list of strings (a single string counts as a list of one).
pub(super) fn strings(d: &mut Decoder<'_>, node: &Node<'_>) -> Vec<String> {
    if node.value.is_string() {
        return d.string(node).into_iter().collect();
    }
    d.seq(node).iter().filter_map(|n| d.string(n)).collect()
}

/// A CIDR list, decoded into the set the gateway enforces (see `ip_list.rs`).
fn cidrs(d: &mut Decoder<'_>, node: &Node<'_>) -> IpList {
    let items = if node.value.is_string() {
        vec![node.clone()]
    } else {
        d.seq(node)
    };
    let mut list = IpList::default();
    for n in &items {
        d.parsed(n, |s| list.push(s));
    }
    list
}

/// A secret value (a pool or forward key): never echoed in problems.
pub(super) fn secret(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<Secret> {
    let value = match node.value {
        serde_yaml::Value::String(_) => d.string(node)?,
        _ => {
            d.problem(&node.path, None, "expected a string");
            return None;
        }
    };
    if let Some(why) = Secret::problem(&value) {
        d.problem(&node.path, None, why);
        return None;
    }
    Some(Secret(value))
}
