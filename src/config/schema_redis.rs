//! The schema of `redis:`, what every Redis backend shares (the CA bundle that signs a
//! `rediss://` server's certificate), and the Redis URLs of `limits.backend` and
//! `cache.backend`.

use super::decode::{Decoder, Node};
use super::model::RedisConfig;
use super::schema_upstreams::ca_file;

const REDIS: &[&str] = &["ca_file"];

/// Whether a backend value is meant as a Redis URL.
pub(super) fn is_redis_url(s: &str) -> bool {
    s.starts_with("redis://") || s.starts_with("rediss://") || s.starts_with("redis+unix://")
}

/// Check a Redis URL. Certificate checks of `rediss://` cannot be turned off (`#insecure`):
/// a private CA goes in `redis.ca_file`.
pub(super) fn redis_url(s: &str) -> Result<String, String> {
    let client = redis::Client::open(s).map_err(|e| format!("not a Redis URL: {e}"))?;
    if let redis::ConnectionAddr::TcpTls { insecure: true, .. } =
        client.get_connection_info().addr()
    {
        return Err(
            "`#insecure` turns certificate checks off; trust a private CA with `redis.ca_file`"
                .into(),
        );
    }
    Ok(s.to_string())
}

/// `redis: {ca_file}`.
pub(super) fn decode_redis(d: &mut Decoder<'_>, node: &Node<'_>) -> RedisConfig {
    let mut r = RedisConfig::default();
    let Some(f) = d.fields(node, REDIS) else {
        return r;
    };
    if let Some(n) = f.get("ca_file") {
        r.ca_file = ca_file(d, &n);
    }
    r
}

#[cfg(test)]
mod tests {
    use crate::config::parse_bytes;

    fn problems(yaml: &str) -> String {
        match parse_bytes(yaml.as_bytes(), &|_| None) {
            Ok(_) => String::new(),
            Err(p) => p.to_string(),
        }
    }

    #[test]
    fn tls_urls_are_verified_and_a_ca_file_needs_one() {
        let routes = "routes: [{prefix: /, upstream: 'http://127.0.0.1:9'}]\n";
        let ok = format!("{routes}limits: {{backend: 'rediss://r.example:6380/0'}}\n");
        assert_eq!(problems(&ok), "");
        let insecure =
            format!("{routes}cache: {{backend: 'rediss://r.example:6380/0#insecure'}}\n");
        assert!(
            problems(&insecure).contains("cache.backend"),
            "{}",
            problems(&insecure)
        );
        let ca = tempfile::NamedTempFile::new().unwrap();
        let ca = ca.path().display();
        let unused = format!(
            "{routes}limits: {{backend: 'redis://r:6379/0'}}\nredis: {{ca_file: '{ca}'}}\n"
        );
        assert!(problems(&unused).contains("redis.ca_file"));
        let used = format!(
            "{routes}cache: {{backend: 'rediss://r:6380/0'}}\nredis: {{ca_file: '{ca}'}}\n"
        );
        assert_eq!(problems(&used), "");
        let missing = format!("{routes}cache: {{backend: 'rediss://r:6380/0'}}\nredis: {{ca_file: /nonexistent/ca.pem}}\n");
        assert!(problems(&missing).contains("redis.ca_file"));
    }

    #[test]
    fn a_lease_shorter_than_three_timeouts_is_refused() {
        let routes = "routes: [{prefix: /, upstream: 'http://127.0.0.1:9'}]\n";
        let short = format!("{routes}limits: {{backend_timeout: 500ms, concurrency_lease: 1s}}\n");
        assert!(
            problems(&short).contains("limits.concurrency_lease"),
            "{}",
            problems(&short)
        );
        let default = format!("{routes}limits: {{backend_timeout: 20s}}\n");
        assert!(problems(&default).contains("limits.concurrency_lease"));
        let fine = format!("{routes}limits: {{backend_timeout: 200ms, concurrency_lease: 1s}}\n");
        assert_eq!(problems(&fine), "");
    }
}
