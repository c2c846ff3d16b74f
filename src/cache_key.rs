//! Response-cache keys, as pure functions (no Pingora types, unit-tested alone).
//!
//! A key is the SHA-256 of everything that can change an answer: the tenant scope (a hash of the
//! tenant name or of the client's own credential, or "shared"), the route, the upstream, the
//! method, the path with its query, and the request body in a canonical form — object keys
//! sorted, no whitespace, without the top-level `caching` and `user` fields, which do not change
//! the answer. Every other field counts (`stream`, `tools`, `response_format`, `seed`,
//! `temperature` …). Each part is length-prefixed, so no two different tuples hash alike by
//! shifting bytes from one part to the next. Only the digest is ever stored; no key material
//! and no credential reach a cache key, a file or Redis.
//!
//! The per-request switch `caching` is taken out of the body by
//! [`crate::openai::take_caching_flag`], with the gateway's other request-body edits.

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// A cache key: SHA-256 of the key material.
pub(crate) type Digest = [u8; 32];

/// The parts of a request that select a cached answer.
pub(crate) struct KeyParts<'a> {
    /// Tenant scope: already a hash or the literal "shared"; never a key.
    pub scope: &'a str,
    pub route: &'a str,
    pub upstream: &'a str,
    pub method: &'a str,
    /// Path and query as the client sent them.
    pub path_and_query: &'a str,
    /// Request headers that select a representation (`general` routes: `Accept`,
    /// `Accept-Encoding`; empty where the gateway fixes them, as on `openai` routes).
    pub vary: &'a str,
    /// The body as it goes upstream (`None`: no body).
    pub body: Option<&'a [u8]>,
}

/// The key of a request. Hashed as it is written: the canonical body goes into the hasher
/// piece by piece (twice: once to learn its length for the prefix, once for the bytes), never
/// into a buffer of its own, so a 30 MiB body costs its parse and no copies.
pub(crate) fn key(parts: &KeyParts<'_>) -> Digest {
    let mut hasher = Hasher(Sha256::new());
    hasher.put(b"llmf-cache-v1");
    for part in [
        parts.scope,
        parts.route,
        parts.upstream,
        parts.method,
        parts.path_and_query,
        parts.vary,
    ] {
        push_part(&mut hasher, part.as_bytes());
    }
    match parts.body {
        None => hasher.put(&[0]),
        Some(body) if body.iter().all(u8::is_ascii_whitespace) => hasher.put(&[0]),
        Some(body) => {
            hasher.put(&[1]);
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(map)) => {
                    let mut counter = Counter(0);
                    write_object(&mut counter, &map, true);
                    hasher.put(&counter.0.to_be_bytes());
                    write_object(&mut hasher, &map, true);
                }
                // Not a JSON object (general routes): the bytes themselves.
                Ok(_) | Err(_) => push_part(&mut hasher, body),
            }
        }
    }
    hasher.0.finalize().into()
}

/// Where key material goes: bytes in, nothing kept.
trait Sink: std::io::Write {
    fn put(&mut self, bytes: &[u8]) {
        // Neither sink can fail.
        let _ = self.write_all(bytes);
    }
}

struct Hasher(Sha256);

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink for Hasher {}

/// Counts the bytes written (the length prefix of the canonical body).
struct Counter(u64);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink for Counter {}

#[cfg(test)]
impl Sink for Vec<u8> {}

/// The scope of a request's cache entries: the tenant, else the client's own credential (each
/// client of a pass-through route is its own tenant), else anonymous. Hashed, never raw.
pub(crate) fn scope(tenant: Option<&str>, credential: Option<&[u8]>) -> String {
    let mut material = Vec::with_capacity(64);
    match (tenant, credential) {
        (Some(t), _) => {
            material.extend_from_slice(b"tenant:");
            material.extend_from_slice(t.as_bytes());
        }
        (None, Some(c)) => {
            material.extend_from_slice(b"credential:");
            material.extend_from_slice(c);
        }
        (None, None) => material.extend_from_slice(b"anonymous"),
    }
    hex(&sha256(&material)[..16])
}

pub(crate) fn sha256(data: &[u8]) -> Digest {
    crate::keys::digest(data)
}

/// Lower-case hex, the text form of keys and ids (`x-cache-key`, purge requests, trace ids).
pub(crate) fn hex(bytes: &[u8]) -> String {
    ::hex::encode(bytes)
}

/// A key back from its 64 hex digits (either case); `None` for any other text.
pub(crate) fn parse_hex(text: &str) -> Option<Digest> {
    let mut out = [0u8; 32];
    ::hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

fn push_part(out: &mut impl Sink, part: &[u8]) {
    out.put(&(part.len() as u64).to_be_bytes());
    out.put(part);
}

/// Fields that never change the answer, left out of the key (top level only).
const IGNORED: [&str; 2] = ["caching", "user"];

fn write_object(out: &mut impl Sink, map: &serde_json::Map<String, Value>, top: bool) {
    // Sorted explicitly: serde_json's map keeps insertion order when any crate in the build
    // turns on its `preserve_order` feature.
    let mut entries: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(k, _)| !(top && IGNORED.contains(&k.as_str())))
        .collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.put(b"{");
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.put(b",");
        }
        let _ = serde_json::to_writer(&mut *out, k.as_str());
        out.put(b":");
        write_value(out, v);
    }
    out.put(b"}");
}

fn write_value(out: &mut impl Sink, value: &Value) {
    match value {
        Value::Object(map) => write_object(out, map, false),
        Value::Array(items) => {
            out.put(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.put(b",");
                }
                write_value(out, item);
            }
            out.put(b"]");
        }
        // Written straight into the sink: a long string is escaped as it goes, not copied.
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(body: &str) -> Digest {
        key(&KeyParts {
            scope: "s",
            route: "/",
            upstream: "http://u",
            method: "POST",
            path_and_query: "/v1/chat/completions",
            vary: "",
            body: Some(body.as_bytes()),
        })
    }

    #[test]
    fn order_whitespace_caching_and_user_do_not_matter() {
        let a = k(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0}"#);
        let b = k(
            r#"{ "temperature" : 0, "messages":[{"content":"hi","role":"user"}], "model":"m", "caching":true, "user":"bob" }"#,
        );
        assert_eq!(a, b);
    }

    #[test]
    fn fields_that_change_the_answer_do() {
        let base = k(r#"{"model":"m","messages":[]}"#);
        for other in [
            r#"{"model":"m","messages":[],"stream":true}"#,
            r#"{"model":"m","messages":[],"temperature":0.5}"#,
            r#"{"model":"m","messages":[],"seed":1}"#,
            r#"{"model":"m","messages":[],"tools":[]}"#,
            r#"{"model":"m","messages":[],"response_format":{"type":"json_object"}}"#,
            r#"{"model":"m","messages":[],"top_p":0.1}"#,
            r#"{"model":"m2","messages":[]}"#,
            // `user` below the top level is content.
            r#"{"model":"m","messages":[{"user":1}]}"#,
        ] {
            assert_ne!(base, k(other), "{other}");
        }
    }

    #[test]
    fn every_part_is_in_the_key() {
        let parts = |scope, route, upstream, method, path| KeyParts {
            scope,
            route,
            upstream,
            method,
            path_and_query: path,
            vary: "",
            body: None,
        };
        let base = key(&parts("a", "/", "u", "POST", "/x"));
        for p in [
            parts("b", "/", "u", "POST", "/x"),
            parts("a", "/r", "u", "POST", "/x"),
            parts("a", "/", "v", "POST", "/x"),
            parts("a", "/", "u", "GET", "/x"),
            parts("a", "/", "u", "POST", "/x?q=1"),
            // Length prefixes: moving bytes between parts changes the key.
            parts("a/", "", "u", "POST", "/x"),
        ] {
            assert_ne!(base, key(&p));
        }
    }

    #[test]
    fn scopes_are_hashed() {
        let s = scope(None, Some(b"sk-secret"));
        assert!(!s.contains("secret"));
        assert_ne!(s, scope(None, Some(b"sk-other")));
        assert_ne!(scope(Some("a"), None), scope(Some("b"), None));
        assert_ne!(scope(Some("a"), None), scope(None, Some(b"a")));
    }

    /// The key as it was built before hashing became incremental (material in one buffer):
    /// stored entries of persistent caches must keep their keys.
    fn buffered_key(parts: &KeyParts<'_>) -> Digest {
        let mut material: Vec<u8> = b"llmf-cache-v1".to_vec();
        for part in [
            parts.scope,
            parts.route,
            parts.upstream,
            parts.method,
            parts.path_and_query,
            parts.vary,
        ] {
            push_part(&mut material, part.as_bytes());
        }
        match parts.body.map(serde_json::from_slice::<Value>) {
            None => material.push(0),
            Some(Ok(Value::Object(map))) => {
                material.push(1);
                let mut canonical = Vec::new();
                write_object(&mut canonical, &map, true);
                push_part(&mut material, &canonical);
            }
            Some(_) => {
                material.push(1);
                push_part(&mut material, parts.body.unwrap_or_default());
            }
        }
        sha256(&material)
    }

    #[test]
    fn incremental_hashing_gives_the_same_keys() {
        let long = "é\"\\\n".repeat(10_000);
        let bodies = [
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5,"n":1,"x":null,"b":true}"#.to_string(),
            format!(r#"{{"z":{{"b":[1,2.5,"{long}"],"a":{{}}}},"caching":true,"user":"u"}}"#),
            "[1,2,3]".to_string(),
            "not json".to_string(),
        ];
        for body in &bodies {
            let p = KeyParts {
                scope: "s",
                route: "/r",
                upstream: "http://u",
                method: "POST",
                path_and_query: "/v1/chat/completions",
                vary: "",
                body: Some(body.as_bytes()),
            };
            assert_eq!(key(&p), buffered_key(&p), "{}", &body[..20.min(body.len())]);
        }
    }

    #[test]
    fn hex_round_trips() {
        let d = sha256(b"x");
        assert_eq!(parse_hex(&hex(&d)), Some(d));
        assert_eq!(parse_hex("zz"), None);
    }
}
