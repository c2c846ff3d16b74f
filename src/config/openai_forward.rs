//! openai-forward compatibility: its environment variables (and `.env` file) as a config, so
//! `llm-forward run` is a drop-in replacement for `aifd run`, and `import-env` prints the YAML.
//!
//! Each variable maps onto the matching section (reference: openai-forward 0.8.1, §2.15). A
//! variable that would change who may use the gateway or how much (keys, IP lists, limits) and
//! that this version cannot honour yet is an error, not a silent no-op: an operator must never
//! believe a restriction is in force when it is not.

use super::dotenv;
use super::model::{
    Config, ForwardKeyConfig, IpRulesConfig, KeyPoolConfig, RouteConfig, RouteKind, Secret,
    TenantConfig, UpstreamKeyConfig,
};
use super::problems::{ConfigError, Problems};
use super::schema::parse_upstream_url;
use super::source::ConfigSource;
use crate::routing::normalize_prefix;
use std::collections::HashMap;
use std::time::Duration;

/// Variables that make the environment a config (any one of them set).
pub const MARKERS: &[&str] = &[
    "FORWARD_CONFIG",
    "TIMEOUT",
    "OPENAI_API_KEY_CONFIG",
    "FORWARD_KEY_CONFIG",
    "LEVEL_MODELS",
    "IP_WHITELIST",
    "IP_BLACKLIST",
    "REQ_RATE_LIMIT",
    "GLOBAL_RATE_LIMIT",
    "REQ_RATE_LIMIT_BACKEND",
    "LOG_OPENAI",
    "LOG_GENERAL",
    "PRINT_CHAT",
    "TOKEN_RATE_LIMIT",
    "PROXY",
    "CACHE_OPENAI",
    "CACHE_GENERAL",
    "BENCHMARK_MODE",
    // llm-forward's own (README: compatibility table).
    "CORS_ORIGINS",
    "TRUSTED_PROXIES",
    "AUTH_MODE",
];

/// The environment a config is read from: process variables over `.env` entries.
pub struct Env {
    vars: HashMap<String, String>,
    /// The names the `.env` file set (all meant for the gateway).
    from_dotenv: Vec<String>,
    /// The names the process environment set.
    from_process: std::collections::HashSet<String>,
}

impl Env {
    /// The process environment over the pairs of a `.env` file (real variables win, as in
    /// openai-forward).
    pub fn new(
        dotenv_pairs: Vec<(String, String)>,
        process: impl Iterator<Item = (String, String)>,
    ) -> Self {
        let from_dotenv = dotenv_pairs.iter().map(|(k, _)| k.clone()).collect();
        let mut vars: HashMap<String, String> = dotenv_pairs.into_iter().collect();
        let mut from_process = std::collections::HashSet::new();
        for (k, v) in process {
            from_process.insert(k.clone());
            vars.insert(k, v);
        }
        Env {
            vars,
            from_dotenv,
            from_process,
        }
    }

    /// Which of the process environment and `.env` set a variable that makes a config.
    pub fn source(&self) -> ConfigSource {
        let set: Vec<&str> = MARKERS
            .iter()
            .copied()
            .filter(|k| self.get(k).is_some())
            .collect();
        if set.is_empty() {
            return ConfigSource::Default;
        }
        // A variable in both comes from the process (it wins).
        let process = set.iter().any(|k| self.from_process.contains(*k));
        let dotenv = set.iter().any(|k| !self.from_process.contains(*k));
        ConfigSource::Environment { process, dotenv }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }
}

/// The config from the process environment and `./.env` (the built-in default when neither
/// sets any openai-forward variable), and which of them it came from.
pub fn from_process_env() -> Result<(Config, ConfigSource), ConfigError> {
    let env = load_env(None)?;
    let source = env.source();
    let config = to_config(&env).map_err(|list| ConfigError::Invalid {
        path: source.to_string(),
        list,
    })?;
    Ok((config.unwrap_or_default(), source))
}

/// `import-env`: the YAML for openai-forward's environment.
pub fn import(file: Option<&str>) -> Result<String, ConfigError> {
    let env = load_env(file)?;
    let config = to_config(&env)
        .map_err(|list| ConfigError::Invalid {
            path: "environment".into(),
            list,
        })?
        .unwrap_or_default();
    Ok(super::emit::to_yaml(&config))
}

fn load_env(file: Option<&str>) -> Result<Env, ConfigError> {
    let path = file.unwrap_or(".env");
    let pairs = match std::fs::read_to_string(path) {
        Ok(text) => dotenv::parse(&text).map_err(|why| {
            let mut list = Problems::default();
            list.add("", None, why);
            ConfigError::Invalid {
                path: path.to_string(),
                list,
            }
        })?,
        // Only a file named on the command line must exist.
        Err(e) if file.is_some() => {
            return Err(ConfigError::Read {
                path: path.to_string(),
                source: e,
            })
        }
        Err(_) => Vec::new(),
    };
    Ok(Env::new(pairs, std::env::vars()))
}

/// Map the variables onto a config. `Ok(None)`: nothing openai-forward-specific is set.
pub fn to_config(env: &Env) -> Result<Option<Config>, Problems> {
    let mut problems = Problems::default();
    let names = env
        .vars
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, _)| (k.as_str(), env.from_dotenv.contains(k)));
    for warning in super::openai_forward_vars::warnings(names) {
        log::warn!("{warning}");
    }
    if !MARKERS.iter().any(|k| env.get(k).is_some()) && problems.is_empty() {
        return Ok(None);
    }
    let flag = |k: &str| {
        env.get(k)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    };
    let mut config = Config {
        // openai-forward lets any web page call it, credentials included, and answers
        // preflights itself. Keys are bearer tokens a page must hold itself and `Cookie` is
        // never forwarded, so no ambient credential rides along.
        cors: Some(super::model::CorsConfig {
            allow_origins: vec!["*".into()],
            allow_credentials: true,
            max_age: Duration::from_secs(600),
        }),
        ..Config::default()
    };
    if let Some(json) = env.get("FORWARD_CONFIG") {
        config.routes = forward_config(json, &mut problems);
    }
    // openai-forward hands an upstream's 429/5xx to the client on the first attempt (its
    // retries cover broken connections only); clients written for it retry on their own.
    for r in &mut config.routes {
        r.retry.on_status = false;
    }
    if let Some(t) = env.get("TIMEOUT") {
        match t.trim().parse::<f64>() {
            // openai-forward's TIMEOUT is the connect timeout only.
            Ok(secs) if secs > 0.0 && secs < 1e6 => {
                for r in &mut config.routes {
                    r.timeouts.connect = Duration::from_secs_f64(secs);
                    for u in &mut r.upstreams {
                        u.timeouts.connect = r.timeouts.connect;
                    }
                }
            }
            _ => problems.add("TIMEOUT", Some(t.to_string()), "expected seconds, e.g. 10"),
        }
    }
    if let Some(p) = env.get("PROXY").map(str::trim).filter(|p| !p.is_empty()) {
        // openai-forward sends every upstream request through this proxy.
        match super::schema_upstreams::parse_proxy_url(p) {
            Ok(proxy) => {
                for u in config
                    .routes
                    .iter_mut()
                    .flat_map(|r| r.upstreams.iter_mut())
                {
                    u.proxy = Some(proxy.clone());
                }
            }
            // The value is not echoed: it may carry the proxy's password.
            Err(why) => problems.add("PROXY", None, why),
        }
    }
    if flag("BENCHMARK_MODE") {
        // openai-forward's canned answers at /benchmark/v1/chat/completions, for anyone (no
        // key needed: nothing goes upstream); request limits and pacing still apply.
        if config.routes.iter().any(|r| r.prefix == "/benchmark") {
            problems.add(
                "BENCHMARK_MODE",
                Some("true".into()),
                "FORWARD_CONFIG already has the route /benchmark",
            );
        } else {
            let mut bench = RouteConfig::benchmark("/benchmark");
            bench.auth.mode = Some(super::model::AuthMode::Passthrough);
            config.routes.push(bench);
        }
    }
    keys(env, &mut config, &mut problems);
    for (var, list) in [
        ("IP_WHITELIST", &mut config.access.rules.allow),
        ("IP_BLACKLIST", &mut config.access.rules.deny),
    ] {
        for ip in env
            .get(var)
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match ip.parse::<crate::access::Cidr>() {
                Ok(_) => list.push(ip.to_string()),
                Err(why) => problems.add(var, Some(ip.to_string()), why),
            }
        }
    }
    extensions(env, &mut config, &mut problems);
    limits(env, &mut config, &mut problems);
    // Chat logs: openai-forward writes them under ./Log/chat for openai routes (LOG_OPENAI) and
    // general ones (LOG_GENERAL).
    if flag("LOG_OPENAI") || flag("LOG_GENERAL") {
        let routes = config
            .routes
            .iter()
            .filter(|r| match r.kind {
                RouteKind::OpenAi => flag("LOG_OPENAI"),
                RouteKind::General => flag("LOG_GENERAL"),
                RouteKind::Benchmark => false,
            })
            .map(|r| r.prefix.clone())
            .collect();
        config.log.chat = Some(super::model::ChatLogSettings {
            dir: "Log/chat".into(),
            routes: Some(routes),
            messages: true,
            max_file_bytes: 64 << 20,
            keep_files: 10,
        });
    }
    config.log.print_chat = flag("PRINT_CHAT");
    cache(env, &mut config, &mut problems);
    if problems.is_empty() {
        super::validate::cross_check(&config, &mut problems);
    }
    if problems.is_empty() {
        Ok(Some(config))
    } else {
        Err(problems)
    }
}

/// llm-forward's own variables, for what openai-forward could not express:
/// `CORS_ORIGINS` (comma-separated origins, or `none` for no CORS at all) replaces its "any
/// origin"; `TRUSTED_PROXIES` (comma-separated CIDRs) are the proxies whose `X-Forwarded-For`
/// is believed; `AUTH_MODE` sets every route's `auth.mode`. Without it a route takes
/// openai-forward's rule once forward keys exist (`mixed`: a key the gateway does not know is
/// passed through, so clients sending their own `sk-` keys keep working).
fn extensions(env: &Env, config: &mut Config, problems: &mut Problems) {
    let items = |var: &str| -> Vec<String> {
        env.get(var)
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    if env.get("CORS_ORIGINS").is_some() {
        let origins = items("CORS_ORIGINS");
        if origins.len() == 1 && origins[0].eq_ignore_ascii_case("none") {
            config.cors = None;
        } else if let Some(c) = &mut config.cors {
            match crate::cors::CorsPolicy::new(&origins, c.allow_credentials, c.max_age) {
                Ok(_) => c.allow_origins = origins,
                Err(why) => problems.add("CORS_ORIGINS", Some(origins.join(",")), why),
            }
        }
    }
    for ip in items("TRUSTED_PROXIES") {
        match ip.parse::<crate::access::Cidr>() {
            Ok(_) => config.access.trusted_proxies.push(ip),
            Err(why) => problems.add("TRUSTED_PROXIES", Some(ip), why),
        }
    }
    // Only the modes that swap forward keys: `passthrough` would send them upstream as they are.
    let mode = match env.get("AUTH_MODE").map(str::trim) {
        None => Some(super::model::AuthMode::Mixed),
        Some(m) => match m.to_ascii_lowercase().as_str() {
            "mixed" => Some(super::model::AuthMode::Mixed),
            "forward_keys" => Some(super::model::AuthMode::ForwardKeys),
            _ => {
                problems.add(
                    "AUTH_MODE",
                    Some(m.to_string()),
                    "expected mixed or forward_keys",
                );
                None
            }
        },
    };
    if config.forward_keys.is_empty() {
        if env.get("AUTH_MODE").is_some() && mode.is_some() {
            problems.add(
                "AUTH_MODE",
                env.get("AUTH_MODE").map(str::to_string),
                "needs forward keys (FORWARD_KEY_CONFIG); without them clients' own keys pass through",
            );
        }
        return;
    }
    if let Some(mode) = mode {
        // The benchmark route needs no key (nothing goes upstream) and keeps its own mode.
        for r in config.routes.iter_mut().filter(|r| r.auth.mode.is_none()) {
            r.auth.mode = Some(mode);
        }
    }
}

/// `CACHE_OPENAI` / `CACHE_GENERAL` turn the cache on for openai / general routes (openai-forward
/// only printed the latter); `CACHE_ROUTES` (paths below the prefix) replaces the default
/// paths; `CACHE_BACKEND` `MEMORY` is the memory store, `LMDB` and `LevelDB` (both on-disk
/// stores there) our disk store under `CACHE_ROOT_PATH_OR_URL` (default `.`), or a Redis when
/// that is a `redis://` URL; `DEFAULT_REQUEST_CACHING_VALUE` is the per-request default.
fn cache(env: &Env, config: &mut Config, problems: &mut Problems) {
    use super::schema_cache::{CacheBackendConfig, CacheConfig, CacheRouteConfig};
    let flag = |k: &str| {
        env.get(k)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    };
    let (openai, general) = (flag("CACHE_OPENAI"), flag("CACHE_GENERAL"));
    if !openai && !general {
        for key in [
            "CACHE_BACKEND",
            "CACHE_ROUTES",
            "CACHE_ROOT_PATH_OR_URL",
            "DEFAULT_REQUEST_CACHING_VALUE",
        ] {
            if env.get(key).is_some() {
                log::warn!(
                    "{key} is set but neither CACHE_OPENAI nor CACHE_GENERAL is true; ignored"
                );
            }
        }
        return;
    }
    let mut c = CacheConfig {
        default: flag("DEFAULT_REQUEST_CACHING_VALUE"),
        ..CacheConfig::default()
    };
    let root = env.get("CACHE_ROOT_PATH_OR_URL").unwrap_or(".").trim();
    let backend = env.get("CACHE_BACKEND").unwrap_or("MEMORY").trim();
    c.backend = if root.starts_with("redis://") || root.starts_with("rediss://") {
        CacheBackendConfig::Redis(root.to_string())
    } else if root.starts_with("http://") || root.starts_with("https://") {
        problems.add(
            "CACHE_ROOT_PATH_OR_URL",
            Some(root.to_string()),
            "a remote FlaxKV server is not supported; use a redis:// URL for a shared cache",
        );
        return;
    } else {
        match backend.to_ascii_lowercase().as_str() {
            "memory" => CacheBackendConfig::Memory,
            "lmdb" | "leveldb" => {
                CacheBackendConfig::Disk(std::path::Path::new(root).join("llm-forward-cache"))
            }
            _ => {
                problems.add(
                    "CACHE_BACKEND",
                    Some(backend.to_string()),
                    "expected MEMORY, LMDB or LevelDB",
                );
                return;
            }
        }
    };
    let paths = match env.get("CACHE_ROUTES") {
        None => None,
        Some(json) => match serde_json::from_str::<Vec<String>>(json) {
            Ok(list) => Some(
                list.into_iter()
                    .map(|p| {
                        if p.starts_with('/') {
                            p
                        } else {
                            format!("/{p}")
                        }
                    })
                    .collect(),
            ),
            Err(_) => {
                problems.add(
                    "CACHE_ROUTES",
                    None,
                    "expected a JSON list of paths, e.g. [\"/v1/chat/completions\"]",
                );
                return;
            }
        },
    };
    let routes = config
        .routes
        .iter()
        .filter(|r| match r.kind {
            RouteKind::OpenAi => openai,
            RouteKind::General => general,
            RouteKind::Benchmark => false,
        })
        .map(|r| CacheRouteConfig {
            route: r.prefix.clone(),
            paths: paths.clone(),
            // A general route has no `caching` switch in openai-forward: identical requests
            // are always answered from the cache.
            default: (r.kind == RouteKind::General).then_some(true),
            ttl: None,
            shared: false,
        })
        .collect();
    c.routes = Some(routes);
    config.cache = Some(c);
}

/// The tenant name for an openai-forward level.
fn level_name(level: &str) -> String {
    format!("level-{level}")
}

/// `OPENAI_API_KEY_CONFIG` `{sk: [levels]}` → one pool per level; `FORWARD_KEY_CONFIG`
/// `{fk: level}` (0.8.1) or `{level: [fk…]}` (later) → forward keys of tenant `level-N`, which
/// draws from pool `level-N`; `LEVEL_MODELS` `{level: [models]}` → the tenant's model list
/// (level 0: every model).
fn keys(env: &Env, config: &mut Config, problems: &mut Problems) {
    let mut pools: Vec<KeyPoolConfig> = Vec::new();
    if let Some(json) = env.get("OPENAI_API_KEY_CONFIG") {
        match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json) {
            Ok(map) => {
                for (key, levels) in map {
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
        config.forward_keys.push(ForwardKeyConfig {
            key: Secret(fk),
            tenant: level_name(&level),
            name: None,
            access: IpRulesConfig::default(),
        });
    }
    config.upstream_keys = pools;
}

/// `REQ_RATE_LIMIT` `{path: [{level, limit}]}` → one rule per entry (level 0: every client
/// without a more specific rule); `GLOBAL_RATE_LIMIT` → the rule without conditions;
/// `REQ_RATE_LIMIT_BACKEND` → the Redis backend. Buckets are per forward key (per client IP
/// without one), as openai-forward's were per Authorization header.
fn limits(env: &Env, config: &mut Config, problems: &mut Problems) {
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
            config.limits.backend = super::model::LimitBackendConfig::Redis(url.to_string());
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

fn json_scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `FORWARD_CONFIG`: `[{"base_url": …, "route": …, "type": "openai"|"general"}, …]`.
fn forward_config(json: &str, problems: &mut Problems) -> Vec<RouteConfig> {
    let entries: Vec<serde_json::Value> = match serde_json::from_str(json) {
        Ok(serde_json::Value::Array(a)) => a,
        _ => {
            problems.add(
                "FORWARD_CONFIG",
                None,
                "expected a JSON list of {\"base_url\", \"route\", \"type\"}",
            );
            return Vec::new();
        }
    };
    let mut routes: Vec<RouteConfig> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let at = |k: &str| format!("FORWARD_CONFIG[{i}].{k}");
        let field = |k: &str| entry.get(k).and_then(|v| v.as_str());
        let upstream = match field("base_url").map(parse_upstream_url) {
            Some(Ok(u)) => Some(u),
            Some(Err(why)) => {
                problems.add(at("base_url"), field("base_url").map(str::to_string), why);
                None
            }
            None => {
                problems.add(at("base_url"), None, "missing");
                None
            }
        };
        let prefix = match normalize_prefix(field("route").unwrap_or("/")) {
            Ok(p) => Some(p),
            Err(why) => {
                problems.add(at("route"), field("route").map(str::to_string), why);
                None
            }
        };
        let kind = match field("type").unwrap_or("openai") {
            "openai" => Some(RouteKind::OpenAi),
            "general" => Some(RouteKind::General),
            other => {
                problems.add(
                    at("type"),
                    Some(other.to_string()),
                    "expected openai or general",
                );
                None
            }
        };
        if let (Some(u), Some(p), Some(k)) = (upstream, prefix, kind) {
            if routes.iter().any(|r| r.prefix == p) {
                problems.add(at("route"), Some(p), "duplicate route");
                continue;
            }
            routes.push(RouteConfig::new(&p, u, k));
        }
    }
    if routes.is_empty() && problems.is_empty() {
        problems.add("FORWARD_CONFIG", None, "no routes");
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            std::iter::empty(),
        )
    }

    #[test]
    fn auth_mode_is_checked_against_the_forward_keys() {
        let err = to_config(&env(&[("AUTH_MODE", "forward_keys")])).unwrap_err();
        assert!(err.to_string().contains("AUTH_MODE"), "{err}");
        let err = to_config(&env(&[
            ("FORWARD_KEY_CONFIG", r#"{"fk-a": 0}"#),
            ("OPENAI_API_KEY_CONFIG", r#"{"sk-a": [0]}"#),
            ("AUTH_MODE", "passthrough"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string().contains("expected mixed or forward_keys"),
            "{err}"
        );
    }

    #[test]
    fn the_source_names_where_the_variables_came_from() {
        let both = Env::new(
            vec![("TIMEOUT".into(), "3".into())],
            [("PROXY".to_string(), "http://p:3128".to_string())].into_iter(),
        );
        assert_eq!(
            both.source(),
            ConfigSource::Environment {
                process: true,
                dotenv: true
            }
        );
        assert_eq!(env(&[("PATH", "/bin")]).source(), ConfigSource::Default);
    }

    #[test]
    fn nothing_set_means_no_env_config() {
        assert_eq!(to_config(&env(&[("PATH", "/bin")])).unwrap(), None);
    }

    #[test]
    fn forward_config_and_timeout() {
        let cfg = to_config(&env(&[
            ("FORWARD_CONFIG", r#"[{"base_url":"https://api.openai.com","route":"/","type":"openai"},{"base_url":"http://localhost:8080","route":"localai","type":"general"}]"#),
            ("TIMEOUT", "6"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(cfg.routes.len(), 2);
        assert_eq!(cfg.routes[1].prefix, "/localai");
        assert_eq!(cfg.routes[1].kind, RouteKind::General);
        assert_eq!(cfg.routes[0].timeouts.connect, Duration::from_secs(6));
        assert_eq!(cfg.server.listen[0].port(), 8000);
        assert!(cfg.routes.iter().all(|r| !r.retry.on_status));
        // The YAML import-env prints keeps it.
        let yaml = super::super::emit::to_yaml(&cfg);
        let back = crate::config::parse_bytes(yaml.as_bytes(), &|_| None).unwrap();
        assert_eq!(back.routes[0].retry, cfg.routes[0].retry);
    }

    #[test]
    fn proxy_applies_to_every_upstream() {
        let cfg = to_config(&env(&[
            ("PROXY", "http://u:secret@127.0.0.1:7890"),
            ("TIMEOUT", "6"),
        ]))
        .unwrap()
        .unwrap();
        let u = &cfg.routes[0].upstreams[0];
        assert_eq!(u.proxy.as_ref().map(|p| p.port), Some(7890));
        assert_eq!(u.timeouts.connect, Duration::from_secs(6));
        let err = to_config(&env(&[("PROXY", "socks5://u:secret@h:1")])).unwrap_err();
        assert_eq!(err.0[0].path, "PROXY");
        assert!(!format!("{err:?}").contains("secret"));
    }

    #[test]
    fn rate_limit_variables() {
        let cfg = to_config(&env(&[
            ("OPENAI_API_KEY_CONFIG", r#"{"sk-1": [1]}"#),
            ("FORWARD_KEY_CONFIG", r#"{"fk-a": 1}"#),
            ("REQ_RATE_LIMIT", r#"{"/v1/chat/completions": [{"level": 0, "limit": "100/2minutes"}, {"level": 1, "limit": "60/minute;600/hour"}, {"level": 7, "limit": "1/minute"}]}"#),
            ("GLOBAL_RATE_LIMIT", "200/minute"),
            ("REQ_RATE_LIMIT_BACKEND", "redis://127.0.0.1:6379/0"),
        ]))
        .unwrap()
        .unwrap();
        let rules = &cfg.limits.rules;
        assert_eq!(rules.len(), 3, "level 7 has no keys: its rule is dropped");
        assert_eq!(rules[0].path.as_deref(), Some("/v1/chat/completions"));
        assert_eq!(rules[0].tenant, None);
        assert_eq!(rules[1].tenant.as_deref(), Some("level-1"));
        assert_eq!(rules[1].requests.as_ref().unwrap().0.len(), 2);
        assert!(rules[2].path.is_none() && rules[2].tenant.is_none());
        assert_eq!(
            cfg.limits.backend,
            super::super::model::LimitBackendConfig::Redis("redis://127.0.0.1:6379/0".into())
        );
    }

    #[test]
    fn keys_levels_and_ip_lists() {
        for forward in [
            r#"{"fk-a": 1, "fk-b": 0}"#,
            r#"{"1": ["fk-a"], "0": ["fk-b"]}"#,
        ] {
            let cfg = to_config(&env(&[
                ("OPENAI_API_KEY_CONFIG", r#"{"sk-1": [0, 1], "sk-2": [1]}"#),
                ("FORWARD_KEY_CONFIG", forward),
                ("LEVEL_MODELS", r#"{"1": ["gpt-4o-mini"]}"#),
                ("IP_WHITELIST", "127.0.0.1, 10.0.0.0/8"),
                ("IP_BLACKLIST", "10.0.0.9"),
            ]))
            .unwrap()
            .unwrap();
            let pool1 = cfg
                .upstream_keys
                .iter()
                .find(|p| p.name == "level-1")
                .unwrap();
            assert_eq!(pool1.keys.len(), 2);
            let t1 = cfg.tenants.iter().find(|t| t.name == "level-1").unwrap();
            assert_eq!(t1.models.as_deref(), Some(&["gpt-4o-mini".to_string()][..]));
            assert_eq!(t1.pool.as_deref(), Some("level-1"));
            let t0 = cfg.tenants.iter().find(|t| t.name == "level-0").unwrap();
            assert_eq!(t0.models, None);
            let fk_a = cfg.forward_keys.iter().find(|k| k.key.0 == "fk-a").unwrap();
            assert_eq!(fk_a.tenant, "level-1");
            assert_eq!(cfg.access.rules.allow, ["127.0.0.1", "10.0.0.0/8"]);
            assert_eq!(cfg.access.rules.deny, ["10.0.0.9"]);
        }
    }

    #[test]
    fn a_level_without_upstream_keys_may_use_no_route_rather_than_leak() {
        let cfg = to_config(&env(&[("FORWARD_KEY_CONFIG", r#"{"fk-a": 2}"#)]))
            .unwrap()
            .unwrap();
        let t = cfg.tenants.iter().find(|t| t.name == "level-2").unwrap();
        assert_eq!(t.routes.as_deref(), Some(&[][..]));
        assert_eq!(t.pool, None);
        // The YAML import-env prints is valid and keeps the level unusable.
        let yaml = super::super::emit::to_yaml(&cfg);
        let back = crate::config::parse_bytes(yaml.as_bytes(), &|_| None).unwrap();
        assert_eq!(back.tenants, cfg.tenants);
    }

    #[test]
    fn bad_values_are_listed_with_their_variable() {
        let err = to_config(&env(&[
            (
                "FORWARD_CONFIG",
                r#"[{"base_url":"ftp://x","route":"/"},{"route":"/b"}]"#,
            ),
            ("TIMEOUT", "soon"),
        ]))
        .unwrap_err();
        let paths: Vec<_> = err.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "FORWARD_CONFIG[0].base_url",
                "FORWARD_CONFIG[1].base_url",
                "TIMEOUT"
            ]
        );
    }

    #[test]
    fn cache_variables() {
        use crate::config::CacheBackendConfig;
        let forward = r#"[{"base_url":"https://api.openai.com","route":"/","type":"openai"},{"base_url":"http://localhost:8080","route":"/g","type":"general"}]"#;
        let cfg = to_config(&env(&[
            ("FORWARD_CONFIG", forward),
            ("CACHE_OPENAI", "true"),
            ("CACHE_BACKEND", "LMDB"),
            ("CACHE_ROOT_PATH_OR_URL", "/var/cache/aifd"),
            (
                "CACHE_ROUTES",
                r#"["/v1/chat/completions", "v1/embeddings"]"#,
            ),
            ("DEFAULT_REQUEST_CACHING_VALUE", "true"),
        ]))
        .unwrap()
        .unwrap();
        let c = cfg.cache.as_ref().unwrap();
        assert_eq!(
            c.backend,
            CacheBackendConfig::Disk("/var/cache/aifd/llm-forward-cache".into())
        );
        assert!(c.default);
        let routes = c.routes.as_ref().unwrap();
        assert_eq!(routes.len(), 1, "CACHE_GENERAL is off");
        assert_eq!(routes[0].route, "/");
        assert_eq!(
            routes[0].paths.as_deref().unwrap(),
            ["/v1/chat/completions", "/v1/embeddings"]
        );
        // The YAML import-env prints loads back to the same cache settings.
        let yaml = super::super::emit::to_yaml(&cfg);
        let back = crate::config::parse_bytes(yaml.as_bytes(), &|_| None).unwrap();
        assert_eq!(back.cache, cfg.cache);

        let cfg = to_config(&env(&[
            ("FORWARD_CONFIG", forward),
            ("CACHE_GENERAL", "true"),
            ("CACHE_ROOT_PATH_OR_URL", "redis://127.0.0.1:6379/1"),
        ]))
        .unwrap()
        .unwrap();
        let yaml = super::super::emit::to_yaml(&cfg);
        let back = crate::config::parse_bytes(yaml.as_bytes(), &|_| None).unwrap();
        assert_eq!(back.cache, cfg.cache);
        let c = cfg.cache.unwrap();
        assert_eq!(
            c.backend,
            CacheBackendConfig::Redis("redis://127.0.0.1:6379/1".into())
        );
        let routes = c.routes.unwrap();
        assert_eq!(routes[0].route, "/g");
        assert_eq!(routes[0].default, Some(true), "general routes always cache");
        assert!(!c.default);

        for bad in [
            ("CACHE_BACKEND", "sqlite"),
            ("CACHE_ROOT_PATH_OR_URL", "http://flaxkv:8000"),
        ] {
            let err = to_config(&env(&[("CACHE_OPENAI", "true"), bad])).unwrap_err();
            assert_eq!(err.0[0].path, bad.0);
        }
        // Without a switch, the rest is ignored.
        assert!(to_config(&env(&[
            ("FORWARD_CONFIG", forward),
            ("CACHE_BACKEND", "LMDB")
        ]))
        .unwrap()
        .unwrap()
        .cache
        .is_none());
    }
}
