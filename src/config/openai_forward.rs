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
use super::schema::parse_upstream_url;
use crate::routing::normalize_prefix;
use std::collections::HashMap;
use std::time::Duration;

/// Variables that restrict access or usage; refusing them beats ignoring them.
const NOT_YET_ENFORCED: &[&str] = &[
    "OPENAI_API_KEY_CONFIG",
    "FORWARD_KEY_CONFIG",
    "LEVEL_MODELS",
    "IP_WHITELIST",
    "IP_BLACKLIST",
    "REQ_RATE_LIMIT",
    "GLOBAL_RATE_LIMIT",
    "TOKEN_RATE_LIMIT",
    "PROXY",
];

/// Variables that only change observability or caching; ignored with a warning.
const NOT_YET_USED: &[&str] = &[
    "LOG_OPENAI",
    "LOG_GENERAL",
    "PRINT_CHAT",
    "CACHE_OPENAI",
    "CACHE_GENERAL",
    "CACHE_BACKEND",
    "CACHE_ROUTES",
    "CACHE_ROOT_PATH_OR_URL",
    "DEFAULT_REQUEST_CACHING_VALUE",
    "RATE_LIMIT_STRATEGY",
    "REQ_RATE_LIMIT_BACKEND",
    "ITER_CHUNK_TYPE",
    "BENCHMARK_MODE",
];

/// Variables that make the environment a config (any one of them set).
const MARKERS: &[&str] = &["FORWARD_CONFIG", "TIMEOUT"];

/// The environment a config is read from: process variables over `.env` entries.
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// The process environment over the pairs of a `.env` file (real variables win, as in
    /// openai-forward).
    pub fn new(
        dotenv_pairs: Vec<(String, String)>,
        process: impl Iterator<Item = (String, String)>,
    ) -> Self {
        let mut vars: HashMap<String, String> = dotenv_pairs.into_iter().collect();
        vars.extend(process);
        Env { vars }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }
}

/// The config from the process environment and `./.env`, or `None` when neither sets any
/// openai-forward variable.
pub fn from_process_env() -> Result<Option<Config>, ConfigError> {
    let env = load_env(None)?;
    to_config(&env).map_err(|list| ConfigError::Invalid {
        path: "environment".into(),
        list,
    })
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
    for key in NOT_YET_ENFORCED {
        if env.get(key).is_some() {
            problems.add(
                *key,
                None,
                "not supported by this version of llm-forward yet; refusing to start rather than run without it (write the equivalent YAML once supported, or unset it)",
            );
        }
    }
    for key in NOT_YET_USED {
        if env.get(key).is_some() {
            log::warn!("{key} is set but not used by this version of llm-forward; ignored");
        }
    }
    if !MARKERS.iter().any(|k| env.get(k).is_some()) && problems.is_empty() {
        return Ok(None);
    }
    let mut config = Config::default();
    if let Some(json) = env.get("FORWARD_CONFIG") {
        config.routes = forward_config(json, &mut problems);
    }
    if let Some(t) = env.get("TIMEOUT") {
        match t.trim().parse::<f64>() {
            // openai-forward's TIMEOUT is the connect timeout only.
            Ok(secs) if secs > 0.0 && secs < 1e6 => {
                for r in &mut config.routes {
                    r.timeouts.connect = Duration::from_secs_f64(secs);
                }
            }
            _ => problems.add("TIMEOUT", Some(t.to_string()), "expected seconds, e.g. 10"),
        }
    }
    if problems.is_empty() {
        Ok(Some(config))
    } else {
        Err(problems)
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
    }

    #[test]
    fn restrictions_we_cannot_enforce_are_refused() {
        let err = to_config(&env(&[("IP_WHITELIST", "127.0.0.1")])).unwrap_err();
        assert_eq!(err.0[0].path, "IP_WHITELIST");
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
}
