//! llm-forward's own variables, for what openai-forward could not express (`CORS_ORIGINS`,
//! `TRUSTED_PROXIES`, `AUTH_MODE`).

use super::Env;
use crate::config::model::Config;
use crate::config::problems::Problems;

/// llm-forward's own variables, for what openai-forward could not express:
/// `CORS_ORIGINS` (comma-separated origins, or `none` for no CORS at all) replaces its "any
/// origin"; `TRUSTED_PROXIES` (comma-separated CIDRs) are the proxies whose `X-Forwarded-For`
/// is believed; `AUTH_MODE` sets every route's `auth.mode`. Without it a route takes
/// openai-forward's rule once forward keys exist (`mixed`: a key the gateway does not know is
/// passed through, so clients sending their own `sk-` keys keep working).
pub(super) fn extensions(env: &Env, config: &mut Config, problems: &mut Problems) {
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
            let shown = origins.join(",");
            match crate::config::model::CorsConfig::new(origins, c.allow_credentials(), c.max_age())
            {
                Ok(cors) => *c = cors,
                Err(why) => problems.add("CORS_ORIGINS", Some(shown), why),
            }
        }
    }
    for ip in items("TRUSTED_PROXIES") {
        if let Err(why) = config.access.trusted_proxies.push(&ip) {
            problems.add("TRUSTED_PROXIES", Some(ip), why);
        }
    }
    // Only the modes that swap forward keys: `passthrough` would send them upstream as they are.
    let mode = match env.get("AUTH_MODE").map(str::trim) {
        None => Some(crate::config::model::AuthMode::Mixed),
        Some(m) => match m.to_ascii_lowercase().as_str() {
            "mixed" => Some(crate::config::model::AuthMode::Mixed),
            "forward_keys" => Some(crate::config::model::AuthMode::ForwardKeys),
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
