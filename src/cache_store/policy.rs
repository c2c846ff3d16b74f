//! Which requests of a route may use the cache, and with what lifetime and scope: the route's
//! entry in `cache.routes`, or the defaults (every `openai` route caches its chat, completion
//! and embedding endpoints). Pure; the cache phase asks it per request.

use crate::config::{CacheConfig, RouteConfig, RouteKind};
use std::time::Duration;

/// Endpoints an `openai` route caches unless configured otherwise (matched at the end of the
/// path, so `/v1/chat/completions` and a DashScope-style `/chat/completions` both count).
const OPENAI_DEFAULT: [&str; 3] = ["/chat/completions", "/completions", "/embeddings"];

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RoutePolicy {
    /// Exact paths below the prefix; `None`: the defaults for the route type.
    paths: Option<Vec<String>>,
    kind: RouteKind,
    /// Whether a request that does not say (`caching`) uses the cache.
    pub default: bool,
    pub ttl: Duration,
    /// One cache for all tenants of the route.
    pub shared: bool,
    /// The route's upstream URLs, space-separated: part of every key (a changed list is a new
    /// cache). Written once here rather than formatted per request.
    pub upstreams: String,
}

impl RoutePolicy {
    /// The route's policy; `None`: the route never caches.
    pub(crate) fn of(cache: &CacheConfig, route: &RouteConfig) -> Option<RoutePolicy> {
        if route.kind == RouteKind::Benchmark {
            return None;
        }
        let entry = match &cache.routes {
            None if route.kind == RouteKind::OpenAi => None,
            None => return None,
            Some(list) => Some(list.iter().find(|r| r.route == route.prefix)?),
        };
        Some(RoutePolicy {
            paths: entry.and_then(|e| e.paths.clone()),
            kind: route.kind,
            default: entry.and_then(|e| e.default).unwrap_or(cache.default),
            ttl: entry.and_then(|e| e.ttl).unwrap_or(cache.ttl),
            shared: entry.is_some_and(|e| e.shared),
            upstreams: route
                .upstreams
                .iter()
                .map(|u| u.url.to_string())
                .collect::<Vec<_>>()
                .join(" "),
        })
    }

    /// Whether `method` on `path` (below the prefix, without the query) may be cached.
    pub(crate) fn covers(&self, method: &http::Method, path: &str) -> bool {
        match &self.paths {
            Some(paths) => paths.iter().any(|p| p == path),
            None => match self.kind {
                RouteKind::OpenAi => {
                    method == http::Method::POST && OPENAI_DEFAULT.iter().any(|p| path.ends_with(p))
                }
                RouteKind::General => true,
                RouteKind::Benchmark => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_bytes, CacheRouteConfig};

    fn route(prefix: &str, kind: RouteKind) -> RouteConfig {
        let yaml = format!(
            "routes:\n  - prefix: {prefix}\n    upstream: http://127.0.0.1:1\n    type: {}\n",
            kind.as_str()
        );
        parse_bytes(yaml.as_bytes(), &|_| None).unwrap().routes[0].clone()
    }

    #[test]
    fn openai_routes_cache_their_endpoints_by_default() {
        let c = CacheConfig::default();
        let p = RoutePolicy::of(&c, &route("/", RouteKind::OpenAi)).unwrap();
        assert!(p.covers(&http::Method::POST, "/v1/chat/completions"));
        assert!(p.covers(&http::Method::POST, "/v1/embeddings"));
        assert!(!p.covers(&http::Method::GET, "/v1/chat/completions"));
        assert!(!p.covers(&http::Method::POST, "/v1/images/generations"));
        assert!(!p.default);
        assert!(RoutePolicy::of(&c, &route("/g", RouteKind::General)).is_none());
    }

    #[test]
    fn listed_routes_only() {
        let c = CacheConfig {
            routes: Some(vec![CacheRouteConfig {
                route: "/g".into(),
                paths: None,
                default: Some(true),
                ttl: Some(Duration::from_secs(5)),
                shared: true,
            }]),
            ..CacheConfig::default()
        };
        assert!(RoutePolicy::of(&c, &route("/", RouteKind::OpenAi)).is_none());
        let p = RoutePolicy::of(&c, &route("/g", RouteKind::General)).unwrap();
        assert!(p.covers(&http::Method::GET, "/anything"));
        assert!(p.default && p.shared);
        assert_eq!(p.ttl, Duration::from_secs(5));
    }
}
