//! The cache variables (`CACHE_OPENAI`, `CACHE_GENERAL`, `CACHE_ROUTES`, `CACHE_BACKEND`, …)
//! as the `cache` section.

use super::Env;
use crate::config::model::{Config, RouteKind};
use crate::config::problems::Problems;

/// `CACHE_OPENAI` / `CACHE_GENERAL` turn the cache on for openai / general routes (openai-forward
/// only printed the latter); `CACHE_ROUTES` (paths below the prefix) replaces the default
/// paths; `CACHE_BACKEND` `MEMORY` is the memory store, `LMDB` and `LevelDB` (both on-disk
/// stores there) our disk store under `CACHE_ROOT_PATH_OR_URL` (default `.`), or a Redis when
/// that is a `redis://` URL; `DEFAULT_REQUEST_CACHING_VALUE` is the per-request default.
pub(super) fn cache(env: &Env, config: &mut Config, problems: &mut Problems) {
    use crate::config::schema_cache::{CacheBackendConfig, CacheConfig, CacheRouteConfig};
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
