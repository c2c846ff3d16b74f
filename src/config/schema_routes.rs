//! The schema of `routes`: each route's prefix, kind, upstream(s), auth, access and resilience
//! settings, and the parsers of upstream base URLs and key placements that other sections share.

use super::decode::{Decoder, Node};
use super::model::*;
use super::model_upstream::*;
use super::{schema_auth, schema_upstreams};
use crate::routing::normalize_prefix;
use std::collections::HashMap;
use std::path::PathBuf;

const ROUTE: &[&str] = &[
    "prefix",
    "upstream",
    "upstreams",
    "type",
    "timeouts",
    "retry",
    "ca_file",
    "proxy",
    "auth",
    "access",
    "max_body",
    "default_model",
    "fallbacks",
    "breaker",
    "stream_errors",
    "forward_cookies",
];
const AUTH: &[&str] = &["mode", "pool", "key_header", "forward_org_headers"];

pub(super) fn decode_routes(d: &mut Decoder<'_>, node: &Node<'_>) -> Vec<RouteConfig> {
    let items = d.seq(node);
    if items.is_empty() && node.value.is_sequence() {
        d.problem(&node.path, None, "list at least one route");
    }
    let mut routes = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for item in &items {
        let Some(route) = decode_route(d, item) else {
            continue;
        };
        let path = format!("{}.prefix", item.path);
        if let Some(first) = seen.get(&route.prefix) {
            let why = format!("duplicate prefix; {first} already routes it");
            d.problems.add(path, Some(route.prefix.clone()), why);
            continue;
        }
        seen.insert(route.prefix.clone(), path);
        routes.push(route);
    }
    routes
}

fn decode_route(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<RouteConfig> {
    let f = d.fields(node, ROUTE)?;
    let prefix = match f.get("prefix") {
        Some(n) => d.parsed(&n, normalize_prefix),
        None => {
            d.problem(&f.path_of("prefix"), None, "missing; e.g. `/` or `/openai`");
            None
        }
    };
    let kind = match f.get("type") {
        Some(n) => d.parsed(&n, |s| match s {
            "openai" => Ok(RouteKind::OpenAi),
            "general" => Ok(RouteKind::General),
            "benchmark" => Ok(RouteKind::Benchmark),
            _ => Err("expected `openai`, `general` or `benchmark`".into()),
        }),
        None => Some(RouteKind::OpenAi),
    };
    let benchmark = kind == Some(RouteKind::Benchmark);
    if benchmark {
        for key in ["upstream", "upstreams"] {
            if f.get(key).is_some() {
                let why = "a benchmark route answers itself; it has no upstream";
                d.problem(&f.path_of(key), None, why);
            }
        }
    }
    let upstream = match f.get("upstream") {
        _ if benchmark => Some(UpstreamUrl::none()),
        Some(n) => d.parsed(&n, parse_upstream_url),
        None if f.get("upstreams").is_some() => None,
        None => {
            let why = "missing; the base URL to forward to, e.g. https://api.openai.com (or `upstreams`, a list)";
            d.problem(&f.path_of("upstream"), None, why);
            None
        }
    };
    let timeouts = match f.get("timeouts") {
        Some(n) => schema_upstreams::decode_timeouts(d, &n, Timeouts::default()),
        None => Timeouts::default(),
    };
    let retry = f
        .get("retry")
        .map(|n| schema_upstreams::decode_retry(d, &n))
        .unwrap_or_default();
    let ca_file = f.get("ca_file").and_then(|n| {
        let path = PathBuf::from(d.string(&n)?);
        if !path.is_file() {
            d.problem(&n.path, Some(n.value), "no such file (a PEM CA bundle)");
            return None;
        }
        Some(path)
    });
    let mut auth = f
        .get("auth")
        .map(|n| decode_route_auth(d, &n))
        .unwrap_or_default();
    if benchmark {
        // Nothing goes upstream, so there is no key to swap a forward key for.
        auth.key_placement = KeyPlacement::None;
    }
    let access = f
        .get("access")
        .map(|n| schema_auth::decode_rules(d, &n))
        .unwrap_or_default();
    let max_body = f
        .get("max_body")
        .and_then(|n| d.size(&n))
        .unwrap_or(DEFAULT_MAX_BODY);
    let default_model = f.get("default_model").and_then(|n| {
        let model = d.string(&n)?;
        if model.trim().is_empty() {
            d.problem(&n.path, Some(n.value), "a model name, e.g. gpt-4o-mini");
            return None;
        }
        Some(model)
    });
    let proxy = f
        .get("proxy")
        .and_then(|n| schema_upstreams::proxy_url(d, &n));
    let inherited = schema_upstreams::Inherited {
        timeouts,
        ca_file: ca_file.clone(),
        proxy,
    };
    let upstreams = match (upstream.clone(), f.get("upstreams").filter(|_| !benchmark)) {
        (Some(_), Some(n)) => {
            let why = "give either `upstream` (one) or `upstreams` (a list), not both";
            d.problem(&n.path, None, why);
            None
        }
        (Some(url), None) => Some(vec![inherited.upstream(url)]),
        (None, Some(n)) => schema_upstreams::decode_upstreams(d, &n, &inherited),
        (None, None) => None,
    };
    let upstream = upstreams
        .as_ref()
        .and_then(|u| u.first())
        .map(|u| u.url.clone());
    let resilience = Resilience {
        fallbacks: f
            .get("fallbacks")
            .map(|n| schema_upstreams::decode_fallbacks(d, &n))
            .unwrap_or_default(),
        breaker: f
            .get("breaker")
            .map(|n| schema_upstreams::decode_breaker(d, &n))
            .unwrap_or_default(),
        stream_errors: f
            .get("stream_errors")
            .and_then(|n| {
                d.parsed(&n, |s| match s {
                    "abort" => Ok(StreamErrors::Abort),
                    "event" => Ok(StreamErrors::Event),
                    "continue" => Ok(StreamErrors::Continue),
                    _ => Err("expected `abort`, `event` or `continue`".into()),
                })
            })
            .unwrap_or_default(),
    };
    Some(RouteConfig {
        prefix: prefix?,
        upstreams: upstreams?,
        resilience,
        upstream: upstream?,
        kind: kind?,
        timeouts,
        retry,
        ca_file,
        auth,
        access,
        max_body,
        default_model,
        forward_cookies: f
            .get("forward_cookies")
            .and_then(|n| d.boolean(&n))
            .unwrap_or(false),
    })
}

fn decode_route_auth(d: &mut Decoder<'_>, node: &Node<'_>) -> RouteAuth {
    let mut auth = RouteAuth::default();
    let Some(f) = d.fields(node, AUTH) else {
        return auth;
    };
    if let Some(n) = f.get("mode") {
        auth.mode = d.parsed(&n, |s| match s {
            "passthrough" => Ok(AuthMode::Passthrough),
            "forward_keys" => Ok(AuthMode::ForwardKeys),
            "mixed" => Ok(AuthMode::Mixed),
            "open" => Ok(AuthMode::Open),
            _ => Err("expected passthrough, forward_keys, mixed or open".into()),
        });
    }
    auth.pool = f.get("pool").and_then(|n| d.string(&n));
    if let Some(n) = f.get("key_header") {
        if let Some(p) = d.parsed(&n, parse_key_placement) {
            auth.key_placement = p;
        }
    }
    if let Some(v) = f.get("forward_org_headers").and_then(|n| d.boolean(&n)) {
        auth.forward_org_headers = v;
    }
    auth
}

/// `bearer`, a header name (`api-key`, `x-goog-api-key`), `query:NAME` or `none`.
pub(super) fn parse_key_placement(text: &str) -> Result<KeyPlacement, String> {
    let lower = text.trim().to_ascii_lowercase();
    if lower == "bearer" || lower == "authorization" {
        return Ok(KeyPlacement::Bearer);
    }
    if lower == "none" {
        return Ok(KeyPlacement::None);
    }
    if let Some(param) = lower.strip_prefix("query:") {
        if param.is_empty()
            || !param
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err("expected query:NAME, e.g. query:key".into());
        }
        return Ok(KeyPlacement::Query(param.to_string()));
    }
    http::HeaderName::from_bytes(lower.as_bytes())
        .map(|_| KeyPlacement::Header(lower))
        .map_err(|_| {
            "expected bearer, a header name (api-key, x-goog-api-key) or query:NAME".into()
        })
}

/// Parse an upstream base URL: `http(s)://host[:port][/base/path]`, nothing else.
pub(crate) fn parse_upstream_url(text: &str) -> Result<UpstreamUrl, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|_| "not a URL; expected e.g. https://api.openai.com".to_string())?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        Some(other) => {
            return Err(format!(
                "scheme {other:?} is not supported; use http or https"
            ))
        }
        None => return Err("missing scheme; write http:// or https://".into()),
    };
    let authority = uri.authority().ok_or_else(|| "missing host".to_string())?;
    if authority.as_str().contains('@') {
        return Err("credentials in the URL are not supported; configure keys instead".into());
    }
    if uri.query().is_some() {
        return Err("a base URL cannot carry a query string".into());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err("missing host".into());
    }
    // `http::Uri` takes `host:abc` and drops the port; a typo must not silently mean 80/443.
    let after_host = authority
        .as_str()
        .rsplit_once(']')
        .map_or(authority.as_str(), |(_, rest)| rest);
    if after_host.contains(':') && authority.port_u16().is_none() {
        return Err("the port is not a number from 1 to 65535".into());
    }
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    if port == 0 {
        return Err("port 0 is not a valid upstream port".into());
    }
    let base_path = uri.path().trim_end_matches('/').to_string();
    Ok(UpstreamUrl {
        tls,
        host: host.to_string(),
        port,
        base_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls() {
        let u = parse_upstream_url("https://dashscope.aliyuncs.com/compatible-mode/v1/").unwrap();
        assert!(u.tls);
        assert_eq!(u.port, 443);
        assert_eq!(u.base_path, "/compatible-mode/v1");
        assert_eq!(u.authority(), "dashscope.aliyuncs.com");
        let u = parse_upstream_url("http://127.0.0.1:8080").unwrap();
        assert_eq!((u.tls, u.port, u.base_path.as_str()), (false, 8080, ""));
        assert_eq!(u.authority(), "127.0.0.1:8080");
        let u = parse_upstream_url("http://[::1]:9000/v1").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.authority(), "[::1]:9000");
        for bad in [
            "ftp://x",
            "api.openai.com",
            "https://",
            "http://a/b?c=d",
            "http://u:p@h",
            "http://h:port",
        ] {
            assert!(parse_upstream_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_model() {
        let yaml = |m: &str| {
            format!("routes:\n  - {{prefix: /, upstream: 'http://h', default_model: {m}}}\n")
        };
        let env = |_: &str| None;
        let config = crate::config::parse_bytes(yaml("gpt-4o-mini").as_bytes(), &env).unwrap();
        assert_eq!(
            config.routes[0].default_model.as_deref(),
            Some("gpt-4o-mini")
        );
        for bad in ["''", "[a]"] {
            let problems = crate::config::parse_bytes(yaml(bad).as_bytes(), &env).unwrap_err();
            assert!(
                problems.to_string().contains("routes[0].default_model"),
                "{problems}"
            );
        }
    }
}
