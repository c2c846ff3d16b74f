//! The running config as the console shows it: the YAML with every secret masked. Values under
//! secret-bearing names (`key`, `keys`, `admin_key`, `password`, …) become `***`, URLs lose
//! their password and their query values, and anything that looks like a provider key does too.
//! `${VAR}` references are kept where they are a whole value: they name a secret without
//! holding it.

use serde_yaml::Value;

/// Names whose values are secrets wherever they appear.
const SECRET_NAMES: &[&str] = &[
    "key",
    "keys",
    "admin_key",
    "metrics_token",
    "password",
    "secret",
    "token",
    "api_key",
    "forward_keys",
    "upstream_keys",
];

const MASK: &str = "***";

pub(super) fn mask_yaml(text: &str) -> Result<String, serde_yaml::Error> {
    let mut value: Value = serde_yaml::from_str(text)?;
    mask_value(&mut value, false);
    serde_yaml::to_string(&value)
}

fn mask_value(value: &mut Value, secret: bool) {
    match value {
        Value::String(s) => {
            if secret && !is_reference(s) {
                *s = MASK.to_string();
            } else {
                *s = mask_string(s);
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|v| mask_value(v, secret)),
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let name = k.as_str().unwrap_or("");
                // Pool and forward-key maps hold their names as keys: keep names, mask values.
                let is_secret = secret || SECRET_NAMES.contains(&name);
                mask_value(
                    v,
                    is_secret && !matches!(name, "name" | "tenant" | "weight"),
                );
            }
        }
        Value::Tagged(t) => mask_value(&mut t.value, secret),
        Value::Number(_) | Value::Bool(_) | Value::Null => {
            if secret {
                *value = Value::String(MASK.to_string());
            }
        }
    }
}

fn is_reference(s: &str) -> bool {
    s.starts_with("${") && s.ends_with('}')
}

/// A string that is not under a secret name, with what still looks secret masked: a URL's
/// credentials and query values (`config::redact`), and provider-style keys (`sk-…`).
fn mask_string(s: &str) -> String {
    if s.starts_with("sk-") || s.starts_with("fk-") {
        return MASK.to_string();
    }
    crate::config::redact::redact_url(s).into_owned()
}

/// The config an operator edited in the console, with each `***` the console showed put back to
/// the value it hides (found at the same place in the running config), so that a check judges
/// the real values. Also returns those values, to scrub from whatever the check says.
pub(super) fn unmask_yaml(
    edited: &str,
    original: &str,
) -> Result<(String, Vec<String>), serde_yaml::Error> {
    let mut edited: Value = serde_yaml::from_str(edited)?;
    let original: Value = serde_yaml::from_str(original).unwrap_or(Value::Null);
    let mut restored = Vec::new();
    restore(&mut edited, &original, &mut restored);
    Ok((serde_yaml::to_string(&edited)?, restored))
}

fn restore(edited: &mut Value, original: &Value, restored: &mut Vec<String>) {
    match (edited, original) {
        (e @ Value::String(_), o) if e.as_str() == Some(MASK) && !o.is_null() => {
            if let Some(text) = o.as_str() {
                restored.push(text.to_string());
            }
            *e = o.clone();
        }
        (Value::Mapping(e), Value::Mapping(o)) => {
            for (k, v) in e.iter_mut() {
                if let Some(ov) = o.get(k) {
                    restore(v, ov, restored);
                }
            }
        }
        (Value::Sequence(e), Value::Sequence(o)) => {
            for (v, ov) in e.iter_mut().zip(o) {
                restore(v, ov, restored);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_values_are_put_back_for_a_check() {
        let original = "admin: {key: a-long-admin-key-123}\nupstream_keys: {main: [sk-1, sk-2]}\n";
        let shown = super::mask_yaml(original).unwrap();
        let edited = shown.replace("main:", "other:");
        let (back, restored) = super::unmask_yaml(&shown, original).unwrap();
        assert!(
            back.contains("a-long-admin-key-123") && back.contains("sk-2"),
            "{back}"
        );
        assert_eq!(restored.len(), 3);
        // A renamed pool is new text: its masked keys stay masked.
        let (back, _) = super::unmask_yaml(&edited, original).unwrap();
        assert!(!back.contains("sk-1"), "{back}");
    }

    #[test]
    fn masks_keys_passwords_and_urls_but_keeps_references() {
        let yaml = r#"
upstream_keys:
  main: [{key: sk-real-1, name: first, weight: 2}, sk-real-2]
  env: ["${OPENAI_KEY}"]
forward_keys: [{key: fk-abc, tenant: pro, name: alice}]
cache: {backend: redis, redis: {url: "redis://:hunter2@127.0.0.1:6379/0"}, admin_key: adm1n}
routes:
  - prefix: /g
    upstream: "https://example.com/v1?key=AIzaSECRET&alt=sse"
    proxy: "http://user:pw@127.0.0.1:3128"
"#;
        let out = mask_yaml(yaml).unwrap();
        for secret in [
            "sk-real",
            "fk-abc",
            "hunter2",
            "adm1n",
            "AIzaSECRET",
            ":pw@",
        ] {
            assert!(!out.contains(secret), "{secret} leaked:\n{out}");
        }
        for kept in [
            "${OPENAI_KEY}",
            "first",
            "alice",
            "pro",
            "example.com/v1?key=***",
            "***@127.0.0.1:3128",
        ] {
            assert!(out.contains(kept), "{kept} missing:\n{out}");
        }
    }

    #[test]
    fn masks_the_metrics_token() {
        let out = mask_yaml("admin: {metrics_token: mtok-0123456789abcdef}\n").unwrap();
        assert!(!out.contains("mtok-0123"), "{out}");
    }
}
