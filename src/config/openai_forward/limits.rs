//! The rate-limit variables (`REQ_RATE_LIMIT`, `GLOBAL_RATE_LIMIT`, `TOKEN_RATE_LIMIT`, …) as
//! `limits` rules.

use super::keys::level_name;
use super::{json_scalar, Env};
use crate::config::model::Config;
use crate::config::problems::Problems;
use std::collections::HashMap;

/// `REQ_RATE_LIMIT` `{path: [{level, limit}]}` → one rule per entry (level 0: every client
/// without a more specific rule); `GLOBAL_RATE_LIMIT` → the rule without conditions;
/// `REQ_RATE_LIMIT_BACKEND` → the Redis backend. Buckets are per forward key (per client IP
/// without one), as openai-forward's were per Authorization header.
pub(super) fn limits(env: &Env, config: &mut Config, problems: &mut Problems) {
    use crate::limits::rules::{LimitRule, Per};
    use crate::limits::spec::parse_limit;
    let rule = |path: Option<String>, tenant: Option<String>, spec| LimitRule {
        route: None,
        path,
        tenant,
        key: None,
        per: Per::Key,
        requests: Some(spec),
        tokens: None,
        cut_streams: false,
        concurrency: None,
        output_rate: None,
    };
    if let Some(json) = env.get("REQ_RATE_LIMIT") {
        #[derive(serde::Deserialize)]
        struct Entry {
            level: serde_json::Value,
            limit: String,
        }
        match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json) {
            Ok(map) => {
                for (path, entries) in map {
                    let entries: Vec<Entry> = match serde_json::from_value(entries) {
                        Ok(e) => e,
                        Err(_) => {
                            problems.add(
                                format!("REQ_RATE_LIMIT.{path}"),
                                None,
                                "expected [{\"level\": 0, \"limit\": \"60/minute\"}, …]",
                            );
                            continue;
                        }
                    };
                    for e in entries {
                        let level = json_scalar(&e.level);
                        let spec = match parse_limit(&e.limit) {
                            Ok(s) => s,
                            Err(why) => {
                                problems.add(
                                    format!("REQ_RATE_LIMIT.{path}"),
                                    Some(e.limit.clone()),
                                    why,
                                );
                                continue;
                            }
                        };
                        let tenant = (level != "0").then(|| level_name(&level));
                        if tenant
                            .as_ref()
                            .is_some_and(|t| !config.tenants.iter().any(|x| &x.name == t))
                        {
                            log::warn!("REQ_RATE_LIMIT: no forward key has level {level}; its limit for {path} never applies");
                            continue;
                        }
                        let path = crate::routing::normalize_prefix(&path)
                            .unwrap_or_else(|_| path.clone());
                        config.limits.rules.push(rule(Some(path), tenant, spec));
                    }
                }
            }
            Err(_) => problems.add(
                "REQ_RATE_LIMIT",
                None,
                "expected JSON {\"/path\": [{\"level\": 0, \"limit\": \"60/minute\"}]}",
            ),
        }
    }
    // TOKEN_RATE_LIMIT `{path: [{level, limit: "60/second"}]}`: output pacing per path and level.
    if let Some(json) = env.get("TOKEN_RATE_LIMIT") {
        match serde_json::from_str::<HashMap<String, Vec<serde_json::Value>>>(json) {
            Ok(map) => {
                for (path, entries) in map {
                    for e in entries {
                        let level = e
                            .get("level")
                            .map(json_scalar)
                            .unwrap_or_else(|| "0".into());
                        let limit = e.get("limit").and_then(|l| l.as_str()).unwrap_or("");
                        let rate = match parse_limit(limit).map(|s| s.0.first().copied()) {
                            Ok(Some(w)) => w.count as f64 / w.window.as_secs_f64(),
                            _ => {
                                problems.add(
                                    format!("TOKEN_RATE_LIMIT.{path}"),
                                    Some(limit.to_string()),
                                    "expected e.g. 60/second",
                                );
                                continue;
                            }
                        };
                        let tenant = (level != "0").then(|| level_name(&level));
                        if tenant
                            .as_ref()
                            .is_some_and(|t| !config.tenants.iter().any(|x| &x.name == t))
                        {
                            log::warn!("TOKEN_RATE_LIMIT: no forward key has level {level}; its pacing for {path} never applies");
                            continue;
                        }
                        let mut r = rule(
                            Some(
                                crate::routing::normalize_prefix(&path)
                                    .unwrap_or_else(|_| path.clone()),
                            ),
                            tenant,
                            Default::default(),
                        );
                        r.requests = None;
                        r.output_rate = Some(rate);
                        config.limits.rules.push(r);
                    }
                }
            }
            Err(_) => problems.add(
                "TOKEN_RATE_LIMIT",
                None,
                "expected JSON {\"/path\": [{\"level\": 0, \"limit\": \"60/second\"}]}",
            ),
        }
    }
    if let Some(limit) = env.get("GLOBAL_RATE_LIMIT") {
        match parse_limit(limit) {
            Ok(spec) if spec.is_unlimited() => {}
            Ok(spec) => config.limits.rules.push(rule(None, None, spec)),
            Err(why) => problems.add("GLOBAL_RATE_LIMIT", Some(limit.to_string()), why),
        }
    }
    if let Some(url) = env.get("REQ_RATE_LIMIT_BACKEND") {
        if url.starts_with("redis://") || url.starts_with("rediss://") {
            config.limits.backend =
                crate::config::model::LimitBackendConfig::Redis(url.to_string());
        } else if url != "memory://" {
            problems.add(
                "REQ_RATE_LIMIT_BACKEND",
                None,
                "only memory:// and redis:// backends are supported",
            );
        }
    }
    if let Some(strategy) = env.get("RATE_LIMIT_STRATEGY") {
        if strategy != "fixed-window" {
            log::warn!("RATE_LIMIT_STRATEGY={strategy}: llm-forward counts in fixed windows");
        }
    }
}
