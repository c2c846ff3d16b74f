//! `FORWARD_CONFIG`, openai-forward's list of routes, as `routes`.

use crate::config::model::{RouteConfig, RouteKind};
use crate::config::problems::Problems;
use crate::config::schema::parse_upstream_url;
use crate::routing::normalize_prefix;

/// `FORWARD_CONFIG`: `[{"base_url": …, "route": …, "type": "openai"|"general"}, …]`.
pub(super) fn forward_config(json: &str, problems: &mut Problems) -> Vec<RouteConfig> {
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
