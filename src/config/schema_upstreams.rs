//! Schema of a route's upstreams and failure handling: `upstreams`, `timeouts`, `retry`,
//! `fallbacks`, `breaker` and the outbound `proxy` URL.

use super::decode::{Decoder, Node};
use super::model::*;
use super::model_upstream::*;
use super::schema::{parse_key_placement, parse_upstream_url};
use std::path::PathBuf;

const UPSTREAM: &[&str] = &[
    "url",
    "name",
    "priority",
    "weight",
    "timeouts",
    "ca_file",
    "pool",
    "key_header",
    "models",
    "proxy",
    "prefill",
];
const TIMEOUTS: &[&str] = &[
    "connect",
    "read",
    "write",
    "first_token",
    "idle",
    "max_duration",
];
const RETRY: &[&str] = &[
    "connect_retries",
    "retries",
    "backoff",
    "backoff_max",
    "retry_after_max",
    "on_status",
    "total",
    "max_attempts",
    "on_reset",
];
const FALLBACKS: &[&str] = &["models", "by_model", "context_length", "from_request"];
const BREAKER: &[&str] = &[
    "failures",
    "error_ratio",
    "min_requests",
    "window",
    "open_for",
];

/// What a route's upstreams take from the route unless they say otherwise.
pub(super) struct Inherited {
    pub timeouts: Timeouts,
    pub ca_file: Option<PathBuf>,
    pub proxy: Option<ProxyConfig>,
}

impl Inherited {
    pub(super) fn upstream(&self, url: UpstreamUrl) -> UpstreamConfig {
        let mut u = UpstreamConfig::new(url, self.timeouts);
        u.ca_file = self.ca_file.clone();
        u.proxy = self.proxy.clone();
        u
    }
}

pub(super) fn decode_upstreams(
    d: &mut Decoder<'_>,
    node: &Node<'_>,
    inherited: &Inherited,
) -> Option<Vec<UpstreamConfig>> {
    let items = d.seq(node);
    if items.is_empty() {
        if node.value.is_sequence() {
            d.problem(&node.path, None, "list at least one upstream");
        }
        return None;
    }
    let before = d.problems.len();
    let mut out: Vec<UpstreamConfig> = Vec::with_capacity(items.len());
    for item in &items {
        let Some(f) = d.fields(item, UPSTREAM) else {
            continue;
        };
        let url = match f.get("url") {
            Some(n) => d.parsed(&n, parse_upstream_url),
            None => {
                d.problem(
                    &f.path_of("url"),
                    None,
                    "missing; e.g. https://api.openai.com",
                );
                None
            }
        };
        // The rest is decoded even without a URL, so that every problem is listed at once.
        let placeholder = UpstreamUrl {
            tls: false,
            host: String::new(),
            port: 80,
            base_path: String::new(),
        };
        let mut u = inherited.upstream(url.clone().unwrap_or(placeholder));
        if let Some(n) = f.get("name") {
            if let Some(name) = d.string(&n) {
                // The name is the `x-llm-forward-upstream` header of its answers, where a
                // control character cannot go (the header would silently be missing).
                if name.is_empty() || name.chars().any(char::is_control) {
                    d.problem(
                        &n.path,
                        None,
                        "a name must be non-empty, without control characters (it is sent as a header)",
                    );
                } else if out.iter().any(|o| o.name == name) {
                    d.problem(
                        &n.path,
                        Some(n.value),
                        "another upstream of this route has this name",
                    );
                }
                u.name = name;
            }
        } else if out.iter().any(|o| o.name == u.name) {
            u.name = format!("{}#{}", u.name, out.len() + 1);
        }
        if let Some(v) = f.get("priority").and_then(|n| d.uint(&n, 0, 1000)) {
            u.priority = v as u32;
        }
        if let Some(v) = f.get("weight").and_then(|n| d.uint(&n, 1, 10_000)) {
            u.weight = v as u32;
        }
        if let Some(n) = f.get("timeouts") {
            u.timeouts = decode_timeouts(d, &n, inherited.timeouts);
        }
        if let Some(n) = f.get("ca_file") {
            u.ca_file = ca_file(d, &n);
        }
        u.pool = f.get("pool").and_then(|n| d.string(&n));
        u.key_placement = f
            .get("key_header")
            .and_then(|n| d.parsed(&n, parse_key_placement));
        if let Some(n) = f.get("models") {
            u.models = decode_models(d, &n);
        }
        if let Some(n) = f.get("proxy") {
            u.proxy = proxy_url(d, &n);
        }
        if let Some(n) = f.get("prefill") {
            u.prefill = decode_prefill(d, &n);
        }
        if url.is_some() {
            out.push(u);
        }
    }
    (d.problems.len() == before && !out.is_empty()).then_some(out)
}

/// `true` (every model), `false`, or a list of model globs (names the upstream knows).
fn decode_prefill(d: &mut Decoder<'_>, node: &Node<'_>) -> Vec<String> {
    if node.value.is_sequence() {
        return d.seq(node).iter().filter_map(|n| d.string(n)).collect();
    }
    match node.value.as_bool() {
        Some(true) => vec!["*".to_string()],
        Some(false) => Vec::new(),
        None => {
            d.problem(
                &node.path,
                Some(node.value),
                "expected true, false or a list of models",
            );
            Vec::new()
        }
    }
}

/// `[a, b]` (served under their own names) or `{a: name-upstream-knows, b: b}`; names may be
/// globs (`*` is any, `fb-*`), and `!pattern` (in a list) excludes.
fn decode_models(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<Vec<(String, String)>> {
    if node.value.is_sequence() {
        let items = d.seq(node);
        let mut out = Vec::with_capacity(items.len());
        for item in &items {
            let Some(name) = d.string(item) else {
                continue;
            };
            if let Some(why) = model_pattern_problem(&name) {
                d.problem(&item.path, Some(item.value), why);
            }
            out.push((name.clone(), name));
        }
        return Some(out);
    }
    let entries = d.entries(node)?;
    let mut out = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        let path = format!("{}.{name}", node.path);
        if let Some(why) = model_pattern_problem(&name) {
            d.problem(&path, None, why);
        } else if name.starts_with('!') {
            d.problem(
                &path,
                None,
                "an exclusion names no model to send; list it: models: [\"gpt-4o*\", \"!gpt-4o-realtime*\"]",
            );
        }
        let sent = d.string(&value)?;
        out.push((name, sent));
    }
    Some(out)
}

pub(super) fn ca_file(d: &mut Decoder<'_>, n: &Node<'_>) -> Option<PathBuf> {
    let path = PathBuf::from(d.string(n)?);
    if !path.is_file() {
        d.problem(&n.path, Some(n.value), "no such file (a PEM CA bundle)");
        return None;
    }
    Some(path)
}

/// Timeouts over `base` (the route's, for an upstream's own block).
pub(super) fn decode_timeouts(d: &mut Decoder<'_>, node: &Node<'_>, base: Timeouts) -> Timeouts {
    let mut t = base;
    let Some(f) = d.fields(node, TIMEOUTS) else {
        return t;
    };
    let mut first_token = t.first_token.unwrap_or_default();
    let mut idle = t.idle.unwrap_or_default();
    let mut max_duration = t.max_duration.unwrap_or_default();
    let slots = [
        ("connect", &mut t.connect),
        ("read", &mut t.read),
        ("write", &mut t.write),
        ("first_token", &mut first_token),
        ("idle", &mut idle),
        ("max_duration", &mut max_duration),
    ];
    for (key, slot) in slots {
        if let Some(n) = f.get(key) {
            match d.duration(&n) {
                Some(v) if v.is_zero() => d.problem(&n.path, Some(n.value), "must be above 0"),
                Some(v) => *slot = v,
                None => {}
            }
        }
    }
    t.first_token = (!first_token.is_zero()).then_some(first_token);
    t.idle = (!idle.is_zero()).then_some(idle);
    t.max_duration = (!max_duration.is_zero()).then_some(max_duration);
    t
}

pub(super) fn decode_retry(d: &mut Decoder<'_>, node: &Node<'_>) -> RetryPolicy {
    let mut retry = RetryPolicy::default();
    let Some(f) = d.fields(node, RETRY) else {
        return retry;
    };
    if let Some(v) = f.get("connect_retries").and_then(|n| d.uint(&n, 0, 10)) {
        retry.connect_retries = v as u32;
    }
    if let Some(v) = f.get("retries").and_then(|n| d.uint(&n, 0, 10)) {
        retry.retries = v as u32;
    }
    if let Some(v) = f.get("max_attempts").and_then(|n| d.uint(&n, 1, 50)) {
        retry.max_attempts = v as u32;
    }
    if let Some(v) = f.get("on_reset").and_then(|n| d.boolean(&n)) {
        retry.on_reset = v;
    }
    if let Some(v) = f.get("on_status").and_then(|n| d.boolean(&n)) {
        retry.on_status = v;
    }
    for (key, slot) in [
        ("backoff", &mut retry.backoff),
        ("backoff_max", &mut retry.backoff_max),
        ("retry_after_max", &mut retry.retry_after_max),
    ] {
        if let Some(v) = f.get(key).and_then(|n| d.duration(&n)) {
            *slot = v;
        }
    }
    if let Some(n) = f.get("total") {
        match d.duration(&n) {
            Some(v) if v.is_zero() => d.problem(&n.path, Some(n.value), "must be above 0"),
            Some(v) => retry.total = Some(v),
            None => {}
        }
    }
    retry
}

pub(super) fn decode_fallbacks(d: &mut Decoder<'_>, node: &Node<'_>) -> FallbackConfig {
    let mut fb = FallbackConfig::default();
    let Some(f) = d.fields(node, FALLBACKS) else {
        return fb;
    };
    let names = |d: &mut Decoder<'_>, n: &Node<'_>| -> Vec<String> {
        d.seq(n).iter().filter_map(|n| d.string(n)).collect()
    };
    if let Some(n) = f.get("models") {
        fb.models = names(d, &n);
    }
    if let Some(n) = f.get("context_length") {
        fb.context_length = names(d, &n);
    }
    if let Some(n) = f.get("by_model") {
        for (model, list) in d.entries(&n).unwrap_or_default() {
            let list = names(d, &list);
            fb.by_model.push((model, list));
        }
    }
    if let Some(v) = f.get("from_request").and_then(|n| d.boolean(&n)) {
        fb.from_request = v;
    }
    fb
}

pub(super) fn decode_breaker(d: &mut Decoder<'_>, node: &Node<'_>) -> BreakerConfig {
    let mut b = BreakerConfig::default();
    let Some(f) = d.fields(node, BREAKER) else {
        return b;
    };
    if let Some(v) = f.get("failures").and_then(|n| d.uint(&n, 0, 1000)) {
        b.failures = v as u32;
    }
    if let Some(v) = f.get("min_requests").and_then(|n| d.uint(&n, 1, 100_000)) {
        b.min_requests = v as u32;
    }
    if let Some(n) = f.get("error_ratio") {
        match n.value.as_f64() {
            Some(r) if (0.0..=1.0).contains(&r) => b.error_ratio = r,
            _ => d.problem(
                &n.path,
                Some(n.value),
                "expected a ratio from 0 to 1, e.g. 0.5",
            ),
        }
    }
    for (key, slot) in [("window", &mut b.window), ("open_for", &mut b.open_for)] {
        if let Some(n) = f.get(key) {
            match d.duration(&n) {
                Some(v) if v.is_zero() => d.problem(&n.path, Some(n.value), "must be above 0"),
                Some(v) => *slot = v,
                None => {}
            }
        }
    }
    b
}

/// A `proxy:` value; a bad one is reported without its text (it may carry a password).
pub(super) fn proxy_url(d: &mut Decoder<'_>, n: &Node<'_>) -> Option<ProxyConfig> {
    let text = d.string(n)?;
    match parse_proxy_url(&text) {
        Ok(p) => Some(p),
        Err(why) => {
            d.problem(&n.path, None, why);
            None
        }
    }
}

/// `http://[user:password@]host:port` (openai-forward's `PROXY`). Only HTTP proxies: the
/// gateway tunnels through them with CONNECT.
pub(super) fn parse_proxy_url(text: &str) -> Result<ProxyConfig, String> {
    let rest = text
        .strip_prefix("http://")
        .ok_or_else(|| "expected http://[user:password@]host:port (an HTTP proxy)".to_string())?;
    let rest = rest.trim_end_matches('/');
    let (credentials, hostport) = match rest.rsplit_once('@') {
        Some((c, h)) => (Some(c.to_string()), h),
        None => (None, rest),
    };
    if hostport.contains('/') || hostport.is_empty() {
        return Err("expected http://[user:password@]host:port, without a path".into());
    }
    let authority: http::uri::Authority = hostport
        .parse()
        .map_err(|_| "not a host:port".to_string())?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = authority.port_u16().unwrap_or(80);
    if host.is_empty() || port == 0 {
        return Err("expected a host and a port".into());
    }
    Ok(ProxyConfig {
        host,
        port,
        credentials,
    })
}

#[cfg(test)]
mod tests;
