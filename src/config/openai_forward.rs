//! openai-forward compatibility: its environment variables (and `.env` file) as a config, so
//! `llm-forward run` is a drop-in replacement for `aifd run`, and `import-env` prints the YAML.
//!
//! Each variable maps onto the matching section (reference: openai-forward 0.8.1, §2.15). A
//! variable that would change who may use the gateway or how much (keys, IP lists, limits) and
//! that this version cannot honour yet is an error, not a silent no-op: an operator must never
//! believe a restriction is in force when it is not.

use super::dotenv;
use super::model::{Config, RouteConfig, RouteKind};
use super::problems::{ConfigError, Problems};
use super::source::ConfigSource;
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
        cors: Some(super::model::CorsConfig::any_origin(Duration::from_secs(
            600,
        ))),
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
            if let Err(why) = list.push(ip) {
                problems.add(var, Some(ip.to_string()), why);
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

pub(super) fn json_scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

mod cache;
mod extensions;
mod keys;
mod limits;
mod routes;
#[cfg(test)]
mod tests;

use cache::cache;
use extensions::extensions;
use keys::keys;
use limits::limits;
use routes::forward_config;
