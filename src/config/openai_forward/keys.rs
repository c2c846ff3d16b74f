//! The key variables (`OPENAI_API_KEY_CONFIG`, `FORWARD_KEY_CONFIG`, `LEVEL_MODELS`): levels
//! become tenants, each drawing from the pool of its level.

use super::{json_scalar, Env};
use crate::config::model::{
    Config, ForwardKeyConfig, IpRulesConfig, KeyPoolConfig, Secret, TenantConfig, UpstreamKeyConfig,
};
use crate::config::problems::Problems;
use std::collections::HashMap;

/// The tenant name for an openai-forward level.
pub(super) fn level_name(level: &str) -> String {
    format!("level-{level}")
}

/// `OPENAI_API_KEY_CONFIG` `{sk: [levels]}` → one pool per level; `FORWARD_KEY_CONFIG`
/// `{fk: level}` (0.8.1) or `{level: [fk…]}` (later) → forward keys of tenant `level-N`, which
/// draws from pool `level-N`; `LEVEL_MODELS` `{level: [models]}` → the tenant's model list
/// (level 0: every model).
pub(super) fn keys(env: &Env, config: &mut Config, problems: &mut Problems) {
    let mut pools: Vec<KeyPoolConfig> = Vec::new();
    if let Some(json) = env.get("OPENAI_API_KEY_CONFIG") {
        match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json) {
            Ok(map) => {
                for (key, levels) in map {
                    if let Some(why) = Secret::problem(&key) {
                        problems.add("OPENAI_API_KEY_CONFIG", None, why);
                        continue;
                    }
                    let levels: Vec<String> = match levels {
                        serde_json::Value::Array(a) => a.iter().map(json_scalar).collect(),
                        other => vec![json_scalar(&other)],
                    };
                    for level in levels {
                        let name = level_name(&level);
                        let entry = UpstreamKeyConfig {
                            key: Secret(key.clone()),
                            name: None,
                            weight: 1,
                        };
                        match pools.iter_mut().find(|p| p.name == name) {
                            Some(p) => p.keys.push(entry),
                            None => pools.push(KeyPoolConfig {
                                name,
                                keys: vec![entry],
                            }),
                        }
                    }
                }
            }
            Err(_) => problems.add(
                "OPENAI_API_KEY_CONFIG",
                None,
                "expected JSON {\"sk-…\": [level, …]}",
            ),
        }
    }
    let mut forward: Vec<(String, String)> = Vec::new();
    if let Some(json) = env.get("FORWARD_KEY_CONFIG") {
        match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json) {
            Ok(map) => {
                for (k, v) in map {
                    match v {
                        // Later shape: {level: [fk, …]}.
                        serde_json::Value::Array(keys) => {
                            forward.extend(keys.iter().map(|fk| (json_scalar(fk), k.clone())));
                        }
                        // 0.8.1 shape: {fk: level}.
                        level => forward.push((k, json_scalar(&level))),
                    }
                }
            }
            Err(_) => problems.add(
                "FORWARD_KEY_CONFIG",
                None,
                "expected JSON {\"fk-…\": level} or {\"level\": [\"fk-…\"]}",
            ),
        }
    }
    if forward.iter().any(|(fk, _)| fk == "default") {
        problems.add(
            "FORWARD_KEY_CONFIG",
            Some("default".into()),
            "a level for requests without a key is not supported: every request needs its own forward key (or use a route with auth mode `open`)",
        );
        forward.retain(|(fk, _)| fk != "default");
    }
    let mut models: HashMap<String, Vec<String>> = HashMap::new();
    if let Some(json) = env.get("LEVEL_MODELS") {
        match serde_json::from_str::<HashMap<String, Vec<String>>>(json) {
            Ok(map) => models = map,
            Err(_) => problems.add(
                "LEVEL_MODELS",
                None,
                "expected JSON {\"level\": [\"model\", …]}",
            ),
        }
    }
    let mut levels: Vec<String> = forward.iter().map(|(_, l)| l.clone()).collect();
    levels.sort();
    levels.dedup();
    for level in levels {
        let name = level_name(&level);
        let has_pool = pools.iter().any(|p| p.name == name);
        // openai-forward serves such keys by sending them upstream as they are (a leak); a
        // YAML config refuses to start. Here the level gets no route: the gateway starts and
        // its keys get a 403 at request time, never reaching an upstream.
        if !has_pool {
            log::warn!(
                "FORWARD_KEY_CONFIG: level {level} has no upstream key in OPENAI_API_KEY_CONFIG; its forward keys are refused (403 key_not_provisioned)"
            );
        }
        config.tenants.push(TenantConfig {
            name: name.clone(),
            models: if level == "0" {
                None
            } else {
                Some(models.get(&level).cloned().unwrap_or_default())
            },
            routes: (!has_pool).then(Vec::new),
            pool: has_pool.then(|| name.clone()),
            pools: Vec::new(),
            access: IpRulesConfig::default(),
        });
    }
    for (fk, level) in forward {
        if let Some(why) = Secret::problem(&fk) {
            problems.add("FORWARD_KEY_CONFIG", None, why);
            continue;
        }
        config.forward_keys.push(ForwardKeyConfig {
            key: Secret(fk),
            tenant: level_name(&level),
            name: None,
            access: IpRulesConfig::default(),
        });
    }
    config.upstream_keys = pools;
}
