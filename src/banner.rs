//! The start-up banner on stderr: what is listening, where each route goes and who may use it,
//! so an operator sees at a glance what this process will do (openai-forward prints a similar
//! table). Names keys by count and id, never by value, and masks `${VAR}` values expanded
//! into URLs (`config/redact.rs`).

use crate::config::redact::redact_url;
use crate::config::units::format_duration;
use crate::config::{AuthMode, CacheBackendConfig, Config, ConfigSource, LimitBackendConfig};
use std::fmt::Write;

pub(crate) fn render(config: &Config, source: &ConfigSource) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "llm-forward {}", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(out, "  config      {source}");
    for addr in &config.server.listen {
        let _ = writeln!(out, "  listening   http://{addr}");
    }
    if let Some(admin) = config.admin.listen {
        // Whether scraping needs the token, never the token itself.
        let token = match config.admin.metrics_token {
            Some(_) => "  (needs Authorization: Bearer <admin.metrics_token>)",
            None => "",
        };
        let _ = writeln!(out, "  admin       http://{admin}/metrics{token}");
        if config.admin.ui {
            let _ = writeln!(
                out,
                "  console     http://{admin}/ (sign in with the admin key)"
            );
        }
    }
    if let Some(t) = &config.tracing {
        let endpoint = crate::config::redact::redact_url(&t.endpoint.to_string()).into_owned();
        let _ = writeln!(
            out,
            "  traces      OTLP/HTTP to {endpoint}/v1/traces (sample {})",
            t.sample
        );
    }
    let _ = writeln!(out, "  routes");
    let width = config
        .routes
        .iter()
        .map(|r| r.prefix.len())
        .max()
        .unwrap_or(1);
    for r in &config.routes {
        let t = &r.timeouts;
        let keys = match config.auth_mode(r) {
            AuthMode::Passthrough => "client's own".to_string(),
            AuthMode::ForwardKeys => "forward keys required".to_string(),
            AuthMode::Mixed => "forward keys, others passed through".to_string(),
            AuthMode::Open => format!(
                "OPEN: pool {} for anyone",
                r.auth.pool.as_deref().unwrap_or("-")
            ),
        };
        let more = match r.upstreams.len() {
            1 => String::new(),
            n => format!(" (+{} more)", n - 1),
        };
        let proxy = r
            .upstreams
            .iter()
            .find_map(|u| u.proxy.as_ref())
            .map_or(String::new(), |p| format!("  via {}", p.redacted()));
        if r.kind == crate::config::RouteKind::Benchmark {
            let _ = writeln!(
                out,
                "    {:<width$}  ->  canned answers, no upstream  [benchmark]  keys: {keys}",
                r.prefix
            );
            continue;
        }
        let _ = writeln!(
            out,
            "    {:<width$}  ->  {}{more}{proxy}  [{}]  keys: {}  timeouts: connect {} read {}  retries: {}{}",
            r.prefix,
            r.upstream,
            r.kind.as_str(),
            keys,
            format_duration(t.connect),
            format_duration(t.read),
            r.retry.retries,
            if r.retry.on_status {
                ""
            } else {
                " (not on status)"
            },
        );
    }
    if !config.forward_keys.is_empty() || !config.upstream_keys.is_empty() {
        let pooled: usize = config.upstream_keys.iter().map(|p| p.keys.len()).sum();
        let _ = writeln!(
            out,
            "  keys        {} forward keys in {} tenants; {} upstream keys in {} pools",
            config.forward_keys.len(),
            config.tenants.len(),
            pooled,
            config.upstream_keys.len()
        );
    }
    let a = &config.access;
    if !a.rules.allow.is_empty() || !a.rules.deny.is_empty() || !a.trusted_proxies.is_empty() {
        let _ = writeln!(
            out,
            "  access      allow {}  deny {}  trusted proxies {}",
            a.rules.allow.len(),
            a.rules.deny.len(),
            a.trusted_proxies.len()
        );
    }
    if let Some(c) = &config.cors {
        let _ = writeln!(out, "  cors        {}", c.allow_origins().join(", "));
    }
    services(&mut out, config);
    config.secrets.mask(&out).into_owned()
}

/// Limits, cache, chat logs and Redis: what runs beside the routes. Redis URLs go through
/// `redact_url` (a password in `redis://:pw@host` never reaches the terminal).
fn services(out: &mut String, config: &Config) {
    let l = &config.limits;
    if !l.rules.is_empty() {
        let backend = match &l.backend {
            LimitBackendConfig::Memory => "memory (this process)".to_string(),
            LimitBackendConfig::Redis(url) => redact_url(url).into_owned(),
        };
        let _ = writeln!(
            out,
            "  limits      {} rules  backend: {backend}",
            l.rules.len()
        );
    }
    if let Some(c) = &config.cache {
        let backend = match &c.backend {
            CacheBackendConfig::Memory => "memory".to_string(),
            CacheBackendConfig::Disk(p) => format!("disk {}", p.display()),
            CacheBackendConfig::Redis(url) => redact_url(url).into_owned(),
        };
        let routes = c
            .routes
            .as_ref()
            .map_or("every openai route".to_string(), |r| {
                let names: Vec<&str> = r.iter().map(|r| r.route.as_str()).collect();
                format!("routes {}", names.join(", "))
            });
        let _ = writeln!(
            out,
            "  cache       {backend}  {routes}  ttl {}",
            format_duration(c.ttl)
        );
    }
    let log = &config.log;
    if let Some(c) = &log.chat {
        let routes = c
            .routes
            .as_ref()
            .map_or("every openai route".to_string(), |r| {
                format!("routes {}", r.join(", "))
            });
        let _ = writeln!(
            out,
            "  chat logs   {}  {routes}{}",
            c.dir.display(),
            if c.messages { "" } else { "  (metadata only)" }
        );
    }
    if log.print_chat {
        let _ = writeln!(out, "  print_chat  on (a line per chat on stderr)");
    }
    if let Some(ca) = &config.redis.ca_file {
        let _ = writeln!(out, "  redis       rediss:// CA {}", ca.display());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn banner_names_every_route() {
        let source = crate::config::ConfigSource::Default;
        let text = super::render(&crate::config::Config::default(), &source);
        assert!(text.contains("config      built-in default"));
        assert!(text.contains("http://0.0.0.0:8000"));
        assert!(text.contains("admin       http://127.0.0.1:8001/metrics"));
        assert!(text.contains("/  ->  https://api.openai.com  [openai]  keys: client's own"));
    }

    #[test]
    fn banner_says_metrics_needs_the_token_without_printing_it() {
        let yaml = "admin: {metrics_token: mtok-0123456789abcdef}\nroutes: [{prefix: /, upstream: 'https://api.example.com'}]";
        let config = crate::config::parse_bytes(yaml.as_bytes(), &|_| None).unwrap();
        let text = super::render(&config, &crate::config::ConfigSource::File("x.yaml".into()));
        assert!(
            text.contains("admin       http://127.0.0.1:8001/metrics  (needs Authorization: Bearer <admin.metrics_token>)\n"),
            "{text}"
        );
        assert!(!text.contains("mtok-0123456789abcdef"), "{text}");
        assert!(!text.contains("***"), "{text}");
        let open = super::render(
            &crate::config::Config::default(),
            &crate::config::ConfigSource::Default,
        );
        assert!(
            open.contains("admin       http://127.0.0.1:8001/metrics\n"),
            "{open}"
        );
    }

    #[test]
    fn banner_masks_secrets_expanded_into_urls() {
        let env = |k: &str| (k == "TOKEN").then(|| "t0ken-123456".to_string());
        let yaml = "routes: [{prefix: /, upstream: 'https://api.example.com/bot${TOKEN}/v1'}]";
        let config = crate::config::parse_bytes(yaml.as_bytes(), &env).unwrap();
        let text = super::render(&config, &crate::config::ConfigSource::File("x.yaml".into()));
        assert!(text.contains("https://api.example.com/bot***/v1"), "{text}");
        assert!(!text.contains("t0ken-123456"), "{text}");
    }
}
