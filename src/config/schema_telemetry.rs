//! The `telemetry:` section: distributed tracing exported over OTLP/HTTP (off unless
//! `telemetry.otlp.endpoint` is set).
//!
//! ```yaml
//! telemetry:
//!   otlp:
//!     endpoint: http://127.0.0.1:4318   # spans go to {endpoint}/v1/traces
//!     headers: {authorization: "Bearer ${OTLP_TOKEN}"}
//!     service_name: llm-forward
//!     sample: 1.0                       # share of new traces recorded
//!     timeout: 5s
//! ```

use super::decode::{Decoder, Node};
use crate::telemetry::TracingConfig;
use std::time::Duration;

const TELEMETRY: &[&str] = &["otlp"];
const OTLP: &[&str] = &["endpoint", "headers", "service_name", "sample", "timeout"];

pub(super) fn decode_telemetry(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<TracingConfig> {
    let f = d.fields(node, TELEMETRY)?;
    let otlp = f.get("otlp")?;
    let f = d.fields(&otlp, OTLP)?;
    let Some(n) = f.get("endpoint") else {
        d.problem(
            &format!("{}.endpoint", otlp.path),
            None,
            "required: the collector's base URL (spans go to {endpoint}/v1/traces)",
        );
        return None;
    };
    let endpoint = d.parsed(&n, super::schema::parse_upstream_url)?;
    let mut config = TracingConfig {
        endpoint,
        headers: Vec::new(),
        service_name: "llm-forward".into(),
        sample: 1.0,
        timeout: Duration::from_secs(5),
    };
    if let Some(n) = f.get("headers") {
        for (name, value) in d.entries(&n).unwrap_or_default() {
            let valid = http::HeaderName::from_bytes(name.as_bytes()).is_ok();
            match d.string(&value) {
                Some(v) if valid && http::HeaderValue::from_str(&v).is_ok() => {
                    config.headers.push((name, v))
                }
                Some(_) => d.problem(&value.path, None, "not a valid HTTP header"),
                None => {}
            }
        }
    }
    if let Some(name) = f.get("service_name").and_then(|n| d.string(&n)) {
        config.service_name = name;
    }
    if let Some(n) = f.get("sample") {
        match n.value.as_f64() {
            Some(x) if (0.0..=1.0).contains(&x) => config.sample = x,
            _ => d.problem(&n.path, Some(n.value), "a share from 0.0 to 1.0"),
        }
    }
    if let Some(t) = f.get("timeout").and_then(|n| d.duration(&n)) {
        config.timeout = t.max(Duration::from_millis(1));
    }
    Some(config)
}

#[cfg(test)]
mod tests {
    use crate::config::parse_bytes;

    fn parse(telemetry: &str) -> Result<crate::config::Config, String> {
        let yaml = format!("routes: [{{prefix: /, upstream: 'http://127.0.0.1:9'}}]\n{telemetry}");
        parse_bytes(yaml.as_bytes(), &|_| None).map_err(|p| p.to_string())
    }

    #[test]
    fn off_by_default_and_decoded_when_set() {
        assert!(parse("").unwrap().tracing.is_none());
        let c = parse("telemetry: {otlp: {endpoint: 'http://127.0.0.1:4318', sample: 0.5, headers: {x-token: abc}}}")
            .unwrap()
            .tracing
            .unwrap();
        assert_eq!(c.endpoint.port, 4318);
        assert_eq!(c.sample, 0.5);
        assert_eq!(c.headers, vec![("x-token".to_string(), "abc".to_string())]);
    }

    #[test]
    fn problems_name_their_path() {
        let e = parse("telemetry: {otlp: {sample: 2}}").unwrap_err();
        assert!(e.contains("telemetry.otlp.endpoint"), "{e}");
        let e =
            parse("telemetry: {otlp: {endpoint: 'http://127.0.0.1:4318', sample: 2}}").unwrap_err();
        assert!(e.contains("telemetry.otlp.sample"), "{e}");
        let e = parse("telemetry: {otlp: {endpoint: 'ftp://x'}}").unwrap_err();
        assert!(e.contains("telemetry.otlp.endpoint"), "{e}");
        let e = parse("telemetry: {otlp: {endpoint: 'http://x:1', bogus: 1}}").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
    }
}
