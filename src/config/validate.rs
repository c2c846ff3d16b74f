//! Rules that span sections: every name refers to something that exists, every tenant that may
//! use a route has keys to use there (a forward key must never go upstream for want of a pool
//! key), and no secret is configured twice. Problems name paths, never secret values.

use super::model::*;
use super::problems::Problems;
use std::collections::{HashMap, HashSet};

pub(super) fn cross_check(config: &Config, problems: &mut Problems) {
    // With live fills Pingora ignores the downstream errors that carry the stream deadlines
    // (it keeps filling the cache), so a missed deadline could neither fail over nor end the
    // stream: refuse the combination rather than run without the deadlines.
    if config
        .cache
        .as_ref()
        .is_some_and(|c| c.fill_after_disconnect)
    {
        for (i, r) in config.routes.iter().enumerate() {
            let deadlines = r.retry.total.is_some()
                || r.upstreams.iter().any(|u| {
                    let t = &u.timeouts;
                    t.first_token.is_some() || t.idle.is_some() || t.max_duration.is_some()
                });
            if deadlines {
                problems.add(
                    format!("routes[{i}]"),
                    None,
                    "timeouts.first_token, timeouts.idle, timeouts.max_duration and retry.total cannot be combined with cache.fill_after_disconnect yet; use `read` timeouts on this route, or turn live fills off",
                );
            }
        }
    }
    let pools: HashMap<&str, &KeyPoolConfig> = config
        .upstream_keys
        .iter()
        .map(|p| (p.name.as_str(), p))
        .collect();
    let prefixes: HashSet<&str> = config.routes.iter().map(|r| r.prefix.as_str()).collect();
    let tenants: HashSet<&str> = config.tenants.iter().map(|t| t.name.as_str()).collect();

    let chat_routes = config.log.chat.as_ref().and_then(|c| c.routes.as_ref());
    for (i, prefix) in chat_routes.into_iter().flatten().enumerate() {
        if !prefixes.contains(prefix.as_str()) {
            problems.add(
                format!("log.chat.routes[{i}]"),
                Some(prefix.clone()),
                "no route has this prefix",
            );
        }
    }
    for p in &config.upstream_keys {
        if p.keys.is_empty() {
            problems.add(
                format!("upstream_keys.{}", p.name),
                None,
                "an empty pool; list at least one key",
            );
        }
    }
    for (i, r) in config.routes.iter().enumerate() {
        if let Some(pool) = &r.auth.pool {
            if !pools.contains_key(pool.as_str()) {
                problems.add(
                    format!("routes[{i}].auth.pool"),
                    Some(pool.clone()),
                    "no such pool in upstream_keys",
                );
            }
        }
        for (j, u) in r.upstreams.iter().enumerate() {
            if let Some(pool) = u.pool.as_ref().filter(|p| !pools.contains_key(p.as_str())) {
                problems.add(
                    format!("routes[{i}].upstreams[{j}].pool"),
                    Some(pool.clone()),
                    "no such pool in upstream_keys",
                );
            }
        }
        let mode = config.auth_mode(r);
        if mode == AuthMode::Open && r.auth.pool.is_none() {
            problems.add(
                format!("routes[{i}].auth.pool"),
                None,
                "mode `open` injects a pool key for everyone; name the pool",
            );
        }
        if matches!(mode, AuthMode::ForwardKeys | AuthMode::Mixed) && config.forward_keys.is_empty()
        {
            problems.add(
                format!("routes[{i}].auth.mode"),
                Some(mode.as_str().into()),
                "no forward_keys are configured",
            );
        }
    }
    for t in &config.tenants {
        let at = |k: &str| format!("tenants.{}.{k}", t.name);
        for route in t.routes.iter().flatten() {
            if !prefixes.contains(route.as_str()) {
                problems.add(
                    at("routes"),
                    Some(route.clone()),
                    "no route has this prefix",
                );
            }
        }
        if let Some(pool) = &t.pool {
            if !pools.contains_key(pool.as_str()) {
                problems.add(
                    at("pool"),
                    Some(pool.clone()),
                    "no such pool in upstream_keys",
                );
            }
        }
        for (route, pool) in &t.pools {
            if !prefixes.contains(route.as_str()) {
                problems.add(at("pools"), Some(route.clone()), "no route has this prefix");
            }
            if !pools.contains_key(pool.as_str()) {
                problems.add(
                    at("pools"),
                    Some(pool.clone()),
                    "no such pool in upstream_keys",
                );
            }
        }
        // Each route this tenant may use with a forward key needs a pool to swap the key for.
        for r in &config.routes {
            let mode = config.auth_mode(r);
            if !matches!(mode, AuthMode::ForwardKeys | AuthMode::Mixed) {
                continue;
            }
            if t.routes
                .as_ref()
                .is_some_and(|allowed| !allowed.contains(&r.prefix))
            {
                continue;
            }
            let pool = t
                .pools
                .iter()
                .find(|(prefix, _)| *prefix == r.prefix)
                .map(|(_, p)| p)
                .or(t.pool.as_ref())
                .or(r.auth.pool.as_ref());
            if pool.is_none() && r.upstreams.iter().any(|u| u.needs_route_pool(&r.auth)) {
                let why = format!(
                    "may use route {} but neither the route (auth.pool) nor the tenant (pools) names upstream keys for it; its forward keys would have nothing to be swapped for (limit the tenant's `routes`, or name a pool)",
                    r.prefix
                );
                problems.add(format!("tenants.{}", t.name), None, why);
            }
        }
    }
    let key_names: HashSet<String> = config
        .forward_keys
        .iter()
        .map(|k| {
            k.name
                .clone()
                .unwrap_or_else(|| crate::keys::key_id(&k.key.0))
        })
        .collect();
    for (i, rule) in config.limits.rules.iter().enumerate() {
        let at = |f: &str| format!("limits.rules[{i}].{f}");
        if let Some(r) = &rule.route {
            let route = config.routes.iter().find(|c| c.prefix == *r);
            match route {
                None => problems.add(at("route"), Some(r.clone()), "no route has this prefix"),
                // Token budgets and pacing count tokens in the answers, which only an openai
                // route reads: on a general route such a rule would silently count nothing.
                Some(c) if c.kind == RouteKind::General => {
                    for (field, set) in [
                        ("tokens", rule.tokens.is_some()),
                        ("output_tokens_per_second", rule.output_rate.is_some()),
                    ] {
                        if set {
                            problems.add(
                                at(field),
                                None,
                                format!("route {r} is `type: general`, whose answers the gateway does not read for tokens: this limit would count nothing (make the route `type: openai`)"),
                            );
                        }
                    }
                }
                Some(_) => {}
            }
        }
        if let Some(t) = &rule.tenant {
            if !tenants.contains(t.as_str()) {
                problems.add(at("tenant"), Some(t.clone()), "no such tenant");
            }
        }
        if let Some(k) = &rule.key {
            if !key_names.contains(k) {
                problems.add(
                    at("key"),
                    Some(k.clone()),
                    "no forward key has this name (give the key a `name`)",
                );
            }
        }
    }
    query_keys(config, problems);
    let upstream_secrets: HashSet<&str> = config
        .upstream_keys
        .iter()
        .flat_map(|p| p.keys.iter().map(|k| k.key.0.as_str()))
        .collect();
    let mut seen: HashSet<&str> = HashSet::new();
    for (i, k) in config.forward_keys.iter().enumerate() {
        let at = |f: &str| format!("forward_keys[{i}].{f}");
        if !tenants.contains(k.tenant.as_str()) {
            problems.add(at("tenant"), Some(k.tenant.clone()), "no such tenant");
        }
        if !seen.insert(k.key.0.as_str()) {
            problems.add(at("key"), None, "the same forward key is listed twice");
        }
        if upstream_secrets.contains(k.key.0.as_str()) {
            problems.add(
                at("key"),
                None,
                "this forward key is also an upstream key; a forward key must never be a real key",
            );
        }
    }
}

/// A key sent in the query (`key_header: query:NAME`) goes into the URL as it is: there `&` or
/// `#` would cut it and `%` or `+` change it, so the upstream would get another key, and the
/// masking of error answers, which looks for the key as configured, would miss the form it
/// echoes. Such a pool's keys must be unreserved URL characters. Every pool a query upstream
/// may draw from is checked: its own, its route's, and the pools tenants name for its route.
fn query_keys(config: &Config, problems: &mut Problems) {
    let mut pools: Vec<&str> = Vec::new();
    for r in &config.routes {
        for u in &r.upstreams {
            let placement = u.key_placement.as_ref().unwrap_or(&r.auth.key_placement);
            if !matches!(placement, KeyPlacement::Query(_)) {
                continue;
            }
            pools.extend(u.pool.as_deref());
            pools.extend(r.auth.pool.as_deref());
            for t in &config.tenants {
                pools.extend(t.pool.as_deref());
                let named = t.pools.iter().filter(|(prefix, _)| *prefix == r.prefix);
                pools.extend(named.map(|(_, pool)| pool.as_str()));
            }
        }
    }
    let url_safe = |k: &str| {
        k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    };
    for p in &config.upstream_keys {
        if !pools.contains(&p.name.as_str()) {
            continue;
        }
        for (j, k) in p.keys.iter().enumerate() {
            if !url_safe(&k.key.0) {
                problems.add(
                    format!("upstream_keys.{}[{j}]", p.name),
                    None,
                    "this pool's keys go in a query string (key_header: query:…), where only letters, digits and - . _ ~ travel as they are",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    fn problems(yaml: &str) -> String {
        match crate::config::parse_bytes(yaml.as_bytes(), &|_| None) {
            Ok(_) => String::new(),
            Err(p) => p.to_string(),
        }
    }

    // A chat-log route that names no route used to pass `check` and log nothing there.
    #[test]
    fn chat_log_routes_name_configured_routes() {
        let yaml = |routes: &str| {
            format!("routes: [{{prefix: /openai, upstream: 'http://h'}}]\nlog: {{chat: {{routes: {routes}}}}}\n")
        };
        assert_eq!(problems(&yaml("[/openai/]")), "");
        let p = problems(&yaml("[/openai, /opnai]"));
        assert!(
            p.contains("log.chat.routes[1]: \"/opnai\": no route has this prefix"),
            "{p}"
        );
        assert_eq!(problems(&yaml("openai")), "");
        let p = problems(&yaml("['/a b']"));
        assert!(p.contains("log.chat.routes[0]"), "{p}");
    }

    // A key with `&` or `#` passed `check` and then reached a query upstream cut short.
    #[test]
    fn keys_sent_in_the_query_are_url_safe() {
        let yaml = |key: &str, placement: &str| {
            format!(
                "upstream_keys: {{g: [\"{key}\"]}}\nroutes: [{{prefix: /g, upstream: 'http://h', auth: {{mode: open, pool: g, key_header: \"{placement}\"}}}}]\n"
            )
        };
        assert_eq!(problems(&yaml("AIza_Sy-0.9~x", "query:key")), "");
        assert_eq!(problems(&yaml("sk-a+b/c=#&", "bearer")), "");
        for key in ["AIza&x", "AIza#x", "AIza%41", "AIza+x", "AIza=x"] {
            let p = problems(&yaml(key, "query:key"));
            assert!(
                p.contains("upstream_keys.g[0]: this pool's keys go in a query string"),
                "{key}: {p}"
            );
            assert!(!p.contains("AIza"), "{p}");
        }
    }
}
