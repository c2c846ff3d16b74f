//! Every variable openai-forward 0.8.1 reads, and what `llm-forward run` does with it: most map
//! onto the config (`openai_forward.rs`); the rest are ignored, each for a stated reason. At
//! start the operator is told about each ignored variable that is set and about each name that
//! looks like a misspelt one (`FORWARD_CONFG` → "did you mean FORWARD_CONFIG?"), so a setting
//! that silently does nothing cannot pass for one in force.

/// Variables mapped onto the config.
pub(super) const MAPPED: &[&str] = &[
    "FORWARD_CONFIG",
    "OPENAI_API_KEY_CONFIG",
    "FORWARD_KEY_CONFIG",
    "LEVEL_MODELS",
    "IP_WHITELIST",
    "IP_BLACKLIST",
    "PROXY",
    "TIMEOUT",
    "REQ_RATE_LIMIT",
    "GLOBAL_RATE_LIMIT",
    "RATE_LIMIT_STRATEGY",
    "REQ_RATE_LIMIT_BACKEND",
    "TOKEN_RATE_LIMIT",
    "LOG_OPENAI",
    "LOG_GENERAL",
    "PRINT_CHAT",
    "CACHE_OPENAI",
    "CACHE_GENERAL",
    "CACHE_BACKEND",
    "CACHE_ROOT_PATH_OR_URL",
    "CACHE_ROUTES",
    "DEFAULT_REQUEST_CACHING_VALUE",
    "BENCHMARK_MODE",
    "CORS_ORIGINS",
    "TRUSTED_PROXIES",
    "AUTH_MODE",
];

/// Variables read but not used, with why.
pub(super) const IGNORED: &[(&str, &str)] = &[
    (
        "ITER_CHUNK_TYPE",
        "chunks go to the client as the upstream sends them; TOKEN_RATE_LIMIT paces by tokens",
    ),
    (
        "DEFAULT_STREAM_RESPONSE",
        "the request's own `stream` field decides (bodies are always read)",
    ),
    (
        "LOG_CACHE_DB_INFO",
        "the cache backends log through the gateway's log",
    ),
    (
        "CHAT_COMPLETION_ROUTE",
        "model lists, caching and logs apply on every path, not only on named ones",
    ),
    (
        "COMPLETION_ROUTE",
        "model lists, caching and logs apply on every path, not only on named ones",
    ),
    (
        "EMBEDDING_ROUTE",
        "model lists, caching and logs apply on every path, not only on named ones",
    ),
    (
        "CUSTOM_GENERAL_ROUTE",
        "model lists apply on every path of every route type",
    ),
    ("WEBUI_RESTART_PORT", "there is no WebUI"),
    ("WEBUI_LOG_PORT", "there is no WebUI"),
    ("OPENAI_FORWARD_WEBUI", "there is no WebUI"),
    ("OPENAI_FORWARD_HOST", "there is no WebUI"),
    (
        "ssl_keyfile",
        "TLS is not served from these variables; put a TLS proxy in front, or use a YAML config",
    ),
    (
        "ssl_certfile",
        "TLS is not served from these variables; put a TLS proxy in front, or use a YAML config",
    ),
];

/// The warnings for a set of variable names: `(name, from_dotenv)`. Every name in a `.env`
/// file is meant for the gateway, so an unknown one is reported; the process environment holds
/// everything else on the machine too, so there only a near miss of a known name is.
pub(super) fn warnings<'a>(names: impl Iterator<Item = (&'a str, bool)>) -> Vec<String> {
    let mut out = Vec::new();
    for (name, from_dotenv) in names {
        if MAPPED.contains(&name) || is_generic(name) {
            continue;
        }
        if let Some((_, why)) = IGNORED.iter().find(|(n, _)| *n == name) {
            out.push(format!("{name} is set but not used by llm-forward: {why}"));
            continue;
        }
        match suggest(name) {
            Some(s) => out.push(format!(
                "{name} is not an openai-forward variable; did you mean {s}? (ignored)"
            )),
            None if from_dotenv => out.push(format!(
                "{name} (in .env) is not an openai-forward variable; ignored"
            )),
            None => {}
        }
    }
    out.sort();
    out
}

/// Variables a `.env` may hold for other programs (the OpenAI SDK, the time zone, logging).
fn is_generic(name: &str) -> bool {
    matches!(
        name,
        "TZ" | "RUST_LOG"
            | "OPENAI_API_KEY"
            | "OPENAI_BASE_URL"
            | "HTTP_PROXY"
            | "HTTPS_PROXY"
            | "SSL_CERT_FILE"
            | "SSL_CERT_DIR"
    )
}

/// The known variable `name` is most likely a misspelling of.
fn suggest(name: &str) -> Option<&'static str> {
    if name.len() < 5 {
        return None;
    }
    let upper = name.to_ascii_uppercase();
    MAPPED
        .iter()
        .copied()
        .chain(IGNORED.iter().map(|(n, _)| *n))
        .map(|k| {
            (
                super::decode::edit_distance(&upper, &k.to_ascii_uppercase()),
                k,
            )
        })
        .filter(|(d, k)| *d <= 2.max(k.len() / 6))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspellings_and_ignored_variables_are_named() {
        let w = warnings(
            [
                ("FORWARD_CONFG", false),
                ("ITER_CHUNK_TYPE", true),
                ("FORWARD_CONFIG", true),
                ("PATH", false),
                ("HOSTNAME", false),
                ("MY_OWN", true),
                ("TZ", true),
            ]
            .into_iter(),
        );
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("did you mean FORWARD_CONFIG?"), "{w:?}");
        assert!(
            w[1].starts_with("ITER_CHUNK_TYPE is set but not used"),
            "{w:?}"
        );
        assert!(w[2].starts_with("MY_OWN (in .env)"), "{w:?}");
        assert_eq!(suggest("log_openia"), Some("LOG_OPENAI"));
        assert_eq!(suggest("SHELL"), None);
    }
}
