//! The schema of `limits:`: the backend (memory or a shared Redis), what happens when Redis does
//! not answer, and the rules (each with optional conditions, a bucket, a request rate and a
//! concurrency cap).

use super::decode::{Decoder, Node};
use super::model::{ChatLogSettings, LimitBackendConfig, LimitsConfig, LogConfig};
use super::schema_redis::{is_redis_url, redis_url};
use crate::limits::rules::{LimitRule, Per};
use crate::limits::spec::parse_limit;
use crate::limits::OnBackendError;

const LOG: &[&str] = &["chat", "print_chat"];
const CHAT: &[&str] = &["dir", "routes", "messages", "max_file_size", "keep_files"];

/// `log: {chat: {dir, routes, messages, max_file_size, keep_files}, print_chat}`.
pub(super) fn decode_log(d: &mut Decoder<'_>, node: &Node<'_>) -> LogConfig {
    let mut log = LogConfig::default();
    let Some(f) = d.fields(node, LOG) else {
        return log;
    };
    log.print_chat = f
        .get("print_chat")
        .and_then(|n| d.boolean(&n))
        .unwrap_or(false);
    if let Some(c) = f.get("chat").and_then(|n| d.fields(&n, CHAT)) {
        let dir = c
            .get("dir")
            .and_then(|n| d.string(&n))
            .unwrap_or_else(|| "Log/chat".into());
        // Each a route prefix (validate.rs checks that a route has it): a typo must be a
        // problem, not a route whose chat log is silently off.
        let routes = c.get("routes").map(|n| {
            let items = if n.value.is_string() {
                vec![n.clone()]
            } else {
                d.seq(&n)
            };
            items
                .iter()
                .filter_map(|item| d.parsed(item, crate::routing::normalize_prefix))
                .collect()
        });
        log.chat = Some(ChatLogSettings {
            dir: dir.into(),
            routes,
            messages: c
                .get("messages")
                .and_then(|n| d.boolean(&n))
                .unwrap_or(true),
            max_file_bytes: c
                .get("max_file_size")
                .and_then(|n| d.size(&n))
                .unwrap_or(64 << 20),
            keep_files: c
                .get("keep_files")
                .and_then(|n| d.uint(&n, 1, 100_000))
                .unwrap_or(10) as usize,
        });
    }
    log
}

const LIMITS: &[&str] = &[
    "backend",
    "on_backend_error",
    "backend_timeout",
    "concurrency_lease",
    "default_max_tokens",
    "rules",
];
const RULE: &[&str] = &[
    "route",
    "path",
    "tenant",
    "key",
    "per",
    "requests",
    "tokens",
    "cut_streams",
    "concurrency",
    "output_tokens_per_second",
];

pub(super) fn decode_limits(d: &mut Decoder<'_>, node: &Node<'_>) -> LimitsConfig {
    let mut limits = LimitsConfig::default();
    let Some(f) = d.fields(node, LIMITS) else {
        return limits;
    };
    if let Some(n) = f.get("backend") {
        if let Some(b) = d.parsed(&n, |s| match s {
            "memory" => Ok(LimitBackendConfig::Memory),
            url if is_redis_url(url) => redis_url(url).map(LimitBackendConfig::Redis),
            _ => Err("expected `memory` or a redis:// URL".into()),
        }) {
            limits.backend = b;
        }
    }
    if let Some(n) = f.get("on_backend_error") {
        if let Some(p) = d.parsed(&n, |s| match s {
            "allow" => Ok(OnBackendError::Allow),
            "deny" => Ok(OnBackendError::Deny),
            _ => Err("expected `allow` or `deny`".into()),
        }) {
            limits.on_backend_error = p;
        }
    }
    if let Some(t) = f.get("backend_timeout").and_then(|n| d.duration(&n)) {
        limits.backend_timeout = t;
    }
    let lease = f.get("concurrency_lease");
    if let Some(v) = lease.as_ref().and_then(|n| d.duration(n)) {
        limits.concurrency_lease = v;
    }
    // Leases are renewed every third of a lease, each renewal bounded by the timeout: a lease
    // shorter than three timeouts could lapse while its answer still runs.
    if limits.concurrency_lease < limits.backend_timeout * 3 {
        let why = format!(
            "{:?}: must be at least 3 × limits.backend_timeout ({:?}), as leases are renewed every third of a lease",
            limits.concurrency_lease, limits.backend_timeout
        );
        match &lease {
            Some(n) => d.problem(&n.path, Some(n.value), why),
            None => d.problem(&f.path_of("concurrency_lease"), None, why),
        }
    }
    if let Some(n) = f
        .get("default_max_tokens")
        .and_then(|n| d.uint(&n, 0, 10_000_000))
    {
        limits.default_max_tokens = n;
    }
    if let Some(n) = f.get("rules") {
        for item in d.seq(&n) {
            if let Some(rule) = decode_rule(d, &item) {
                limits.rules.push(rule);
            }
        }
    }
    limits
}

fn decode_rule(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<LimitRule> {
    let f = d.fields(node, RULE)?;
    let text = |d: &mut Decoder<'_>, key: &str| f.get(key).and_then(|n| d.string(&n));
    let route = text(d, "route").map(|r| crate::routing::normalize_prefix(&r).unwrap_or(r));
    let path = text(d, "path").map(|p| crate::routing::normalize_prefix(&p).unwrap_or(p));
    let tenant = text(d, "tenant");
    let key = text(d, "key");
    let per = match f.get("per") {
        Some(n) => d.parsed(&n, |s| match s {
            "key" => Ok(Per::Key),
            "ip" => Ok(Per::Ip),
            "tenant" => Ok(Per::Tenant),
            "route" => Ok(Per::Route),
            "all" => Ok(Per::All),
            _ => Err("expected key, ip, tenant, route or all".into()),
        })?,
        None => Per::Key,
    };
    let requests = match f.get("requests") {
        Some(n) => Some(d.parsed(&n, parse_limit)?),
        None => None,
    };
    let tokens = match f.get("tokens") {
        Some(n) => Some(d.parsed(&n, parse_limit)?),
        None => None,
    };
    let cut_streams = f
        .get("cut_streams")
        .and_then(|n| d.boolean(&n))
        .unwrap_or(false);
    let concurrency = match f.get("concurrency") {
        Some(n) => Some(d.uint(&n, 1, 1_000_000)? as u32),
        None => None,
    };
    let output_rate = match f.get("output_tokens_per_second") {
        Some(n) => Some(d.uint(&n, 1, 1_000_000)? as f64),
        None => None,
    };
    if requests.is_none() && tokens.is_none() && concurrency.is_none() && output_rate.is_none() {
        let why = "a rule needs `requests`, `tokens`, `concurrency` or `output_tokens_per_second`";
        d.problem(&node.path, None, why);
        return None;
    }
    Some(LimitRule {
        route,
        path,
        tenant,
        key,
        per,
        requests,
        tokens,
        cut_streams,
        concurrency,
        output_rate,
    })
}
