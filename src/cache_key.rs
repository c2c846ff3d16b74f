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

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
#[cfg(test)]
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::borrow::Cow;

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

/// Canonical bodies up to this size are written once into a buffer and hashed from it; larger
/// ones are written into the hasher twice (once to learn the length prefix), never copied.
const BUFFERED_BODY: usize = 64 * 1024;

/// The key of a request. The body is read into a [`Node`] tree that borrows its strings from
/// the body (no `String` per key and string, no map nodes), and its canonical form is written
/// once into a buffer for a body up to [`BUFFERED_BODY`]; a larger one goes into the hasher
/// piece by piece twice (once to learn its length for the prefix, once for the bytes), so a
/// 30 MiB body costs its parse and no copies.
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
            match serde_json::from_slice::<Node<'_>>(body) {
                Ok(Node::Object(entries)) if body.len() <= BUFFERED_BODY => {
                    let mut canonical = Vec::with_capacity(body.len() + 2);
                    write_entries(&mut canonical, &entries, true);
                    push_part(&mut hasher, &canonical);
                }
                Ok(Node::Object(entries)) => {
                    let mut counter = Counter(0);
                    write_entries(&mut counter, &entries, true);
                    hasher.put(&counter.0.to_be_bytes());
                    write_entries(&mut hasher, &entries, true);
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

impl Sink for Vec<u8> {}

/// The scope of a request's cache entries: the tenant, else the client's own credential (each
/// client of a pass-through route is its own tenant), else anonymous. Hashed, never raw. The
/// request path builds it with [`ScopeHasher`]; this is its definition, for the tests.
#[cfg(test)]
pub(crate) fn scope(tenant: Option<&str>, credential: Option<&[u8]>) -> String {
    let hasher = match (tenant, credential) {
        (Some(t), _) => ScopeHasher::tenant(t),
        (None, Some(c)) => {
            let mut h = ScopeHasher::credential();
            h.put(c);
            h
        }
        (None, None) => ScopeHasher(Sha256::new_with_prefix(b"anonymous")),
    };
    hasher.finish().as_str().to_string()
}

/// [`scope`] fed piece by piece (the credential material straight from the request's headers,
/// no buffer) and kept on the stack: the same text, without building the material or a
/// `String` per request.
pub(crate) struct ScopeHasher(Sha256);

impl ScopeHasher {
    pub(crate) fn tenant(name: &str) -> ScopeHasher {
        let mut h = Sha256::new_with_prefix(b"tenant:");
        h.update(name.as_bytes());
        ScopeHasher(h)
    }

    /// Credential material follows ([`ScopeHasher::put`]), possibly none.
    pub(crate) fn credential() -> ScopeHasher {
        ScopeHasher(Sha256::new_with_prefix(b"credential:"))
    }

    pub(crate) fn put(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub(crate) fn finish(self) -> ScopeText {
        let digest: Digest = self.0.finalize().into();
        let mut text = [0u8; 32];
        hex_into(&digest[..16], &mut text);
        ScopeText(text)
    }
}

/// A hashed scope: 32 lower-case hex digits.
#[derive(Clone, Copy)]
pub(crate) struct ScopeText([u8; 32]);

impl ScopeText {
    pub(crate) fn as_str(&self) -> &str {
        // Only hex digits were written: never the empty fallback.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

pub(crate) fn sha256(data: &[u8]) -> Digest {
    crate::keys::digest(data)
}

/// Lower-case hex, the text form of keys and ids (`x-cache-key`, purge requests, trace ids).
/// A table lookup per nibble into one exact-size buffer: `hex::encode` collects `char`s one by
/// one (~1.7k instructions for a key, three keys per cached request).
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    hex_into(bytes, &mut out);
    // Only ASCII digits were written: never the empty fallback.
    String::from_utf8(out).unwrap_or_default()
}

/// `bytes` in lower-case hex into `out` (twice as long).
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 15)];
    }
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

/// A JSON value as the key reads it: what `serde_json::Value` holds, with strings borrowed
/// from the body where they have no escapes and objects as entry lists sorted by key (a key
/// given twice: the last value, as `Value`'s map keeps). Parsed by serde_json like `Value`, and
/// numbers are `serde_json::Number`s as in `Value`, so the canonical text is the same.
enum Node<'a> {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    Str(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node<'de>, E> {
        Ok(Node::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node<'de>, E> {
        Ok(Node::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node<'de>, E> {
        // As `Value` reads it (JSON text never gives a non-finite number).
        Ok(serde_json::Number::from_f64(v).map_or(Node::Null, Node::Number))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut entries: Vec<(Cow<'de, str>, Node<'de>)> =
            Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
        while let Some(Text(k)) = map.next_key()? {
            entries.push((k, map.next_value()?));
        }
        // Stable: among equal keys the last stays last; it then takes the others' place.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                std::mem::swap(&mut later.1, &mut kept.1);
            }
            same
        });
        Ok(Node::Object(entries))
    }
}

/// An object key, borrowed from the body when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_str(NodeVisitor)? {
            Node::Str(s) => Ok(Text(s)),
            _ => Err(serde::de::Error::custom("an object key is a string")),
        }
    }
}

/// The canonical text of an object's sorted entries (`top`: without [`IGNORED`]).
fn write_entries(out: &mut impl Sink, entries: &[(Cow<'_, str>, Node<'_>)], top: bool) {
    out.put(b"{");
    let mut first = true;
    for (k, v) in entries {
        if top && IGNORED.contains(&k.as_ref()) {
            continue;
        }
        if !first {
            out.put(b",");
        }
        first = false;
        let _ = serde_json::to_writer(&mut *out, k.as_ref());
        out.put(b":");
        write_node(out, v);
    }
    out.put(b"}");
}

fn write_node(out: &mut impl Sink, node: &Node<'_>) {
    match node {
        Node::Null => out.put(b"null"),
        Node::Bool(true) => out.put(b"true"),
        Node::Bool(false) => out.put(b"false"),
        Node::Number(n) => {
            let _ = serde_json::to_writer(&mut *out, n);
        }
        // Written straight into the sink: a long string is escaped as it goes, not copied.
        Node::Str(s) => {
            let _ = serde_json::to_writer(&mut *out, s.as_ref());
        }
        Node::Array(items) => {
            out.put(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.put(b",");
                }
                write_node(out, item);
            }
            out.put(b"]");
        }
        Node::Object(entries) => write_entries(out, entries, false),
    }
}

/// The canonical text as it was first defined, over a `serde_json::Value`: the reference the
/// tests hold [`Node`]'s to.
#[cfg(test)]
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

#[cfg(test)]
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

    /// The scope as it was computed before hashing became incremental (material in one
    /// buffer, hex through the hex crate): stored entries of persistent caches keep their keys.
    #[test]
    fn incremental_scopes_are_the_buffered_ones() {
        let buffered = |material: &[u8]| ::hex::encode(&sha256(material)[..16]);
        assert_eq!(scope(Some("t"), None), buffered(b"tenant:t"));
        assert_eq!(scope(Some("t"), Some(b"x")), buffered(b"tenant:t"));
        assert_eq!(scope(None, Some(b"a=b\n")), buffered(b"credential:a=b\n"));
        assert_eq!(scope(None, Some(b"")), buffered(b"credential:"));
        assert_eq!(scope(None, None), buffered(b"anonymous"));
        let mut h = ScopeHasher::credential();
        h.put(b"a=");
        h.put(b"b\n");
        assert_eq!(h.finish().as_str(), buffered(b"credential:a=b\n"));
    }

    #[test]
    fn hex_is_the_hex_crates() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(hex(&all), ::hex::encode(&all));
        assert_eq!(hex(&[]), "");
    }

    /// The borrowed tree gives `Value`'s canonical text: escapes, numbers of every kind,
    /// keys given twice, nesting, ignored fields at the top only, bodies on both sides of
    /// [`BUFFERED_BODY`], and bodies that are not objects or not JSON.
    #[test]
    fn node_keys_are_value_keys() {
        let big = format!(
            r#"{{"model":"m","messages":[{{"content":"{}"}}]}}"#,
            "x".repeat(BUFFERED_BODY)
        );
        let bodies = [
            r#"{}"#.to_string(),
            r#"{"a":1,"a":2,"b":{"c":3,"c":[4]},"a":3}"#.to_string(),
            r#"{"n":[0,-0,1,-1,18446744073709551615,-9223372036854775808,18446744073709551616,1.5,-2.25e-7,1e300,0.1,100000000000000000000000]}"#.to_string(),
            r#"{"s":"\u00e9\n\t\"\\\/\u0001\ud83d\ude00","\u006b":"é"}"#.to_string(),
            r#"{"caching":{"user":1},"user":null,"x":{"caching":true,"user":"u"}}"#.to_string(),
            r#"{"t":true,"f":false,"z":null,"e":[],"o":{},"deep":[[[[{"a":[{"b":{}}]}]]]]}"#.to_string(),
            r#"{"B":1,"a":2,"é":3,"Z":4,"":5,"aa":6}"#.to_string(),
            "  {\"ws\" : [ 1 , 2 ] }\n".to_string(),
            r#"{"a":1} trailing"#.to_string(),
            r#"{"a":"#.to_string(),
            r#""just a string""#.to_string(),
            r#"[{"b":1,"a":2}]"#.to_string(),
            format!("{}1{}", "[".repeat(200), "]".repeat(200)),
            format!(r#"{{"deep":{}1{}}}"#, "[".repeat(200), "]".repeat(200)),
            big.clone(),
            big.replace(r#""m""#, r#""m","caching":false"#),
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
            assert_eq!(key(&p), buffered_key(&p), "{}", &body[..40.min(body.len())]);
        }
        // A key given twice: the last value counts.
        assert_ne!(k(&bodies[1]), k(r#"{"a":1,"b":{"c":[4]}}"#));
        assert_eq!(k(&bodies[1]), k(r#"{"a":3,"b":{"c":[4]}}"#));
    }

    /// The bench's body (`bench/callgrind.sh`) is read without a `String`: every key and
    /// string borrows from the body; what is allocated is one `Vec` per object and array.
    #[test]
    fn plain_strings_are_borrowed() {
        fn owned(node: &Node<'_>) -> usize {
            match node {
                Node::Str(Cow::Owned(_)) => 1,
                Node::Array(items) => items.iter().map(owned).sum(),
                Node::Object(entries) => entries
                    .iter()
                    .map(|(k, v)| usize::from(matches!(k, Cow::Owned(_))) + owned(v))
                    .sum(),
                _ => 0,
            }
        }
        let body =
            br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello 12-3."}]}"#;
        let node: Node<'_> = serde_json::from_slice(body).unwrap();
        assert_eq!(owned(&node), 0);
        // An escape needs its decoded text: that one string is owned.
        let node: Node<'_> = serde_json::from_slice(br#"{"a":"\n","b":"c"}"#).unwrap();
        assert_eq!(owned(&node), 1);
    }

    /// The key as it was computed before the borrowed tree: the body parsed into a `Value`,
    /// its canonical text written into the hasher twice (length, then bytes).
    fn value_key(parts: &KeyParts<'_>) -> Digest {
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
                    Ok(_) | Err(_) => push_part(&mut hasher, body),
                }
            }
        }
        hasher.0.finalize().into()
    }

    /// Allocations of the bench's request (`bench/callgrind.sh`, a unique body): the
    /// borrowed tree's three `Vec`s (two objects, one array) and the canonical text's buffer,
    /// where the `Value` and its two sorted walks made 14.
    #[test]
    fn the_bench_body_is_keyed_with_four_allocations() {
        use crate::openai::tests::allocs::allocations;
        let body = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello 123456789-42."}]}"#;
        let p = KeyParts {
            scope: "0123456789abcdef0123456789abcdef",
            route: "/",
            upstream: "http://127.0.0.1:8080",
            method: "POST",
            path_and_query: "/v1/chat/completions",
            vary: "",
            body: Some(body),
        };
        let (new, a) = allocations(|| key(&p));
        let (old, b) = allocations(|| value_key(&p));
        assert_eq!(a, b);
        assert_eq!((new, old), (4, 14));
        // The scope: nothing allocated (it was the material, the digest's hex and the
        // credential's buffer).
        let (n, _) = allocations(|| {
            let mut h = ScopeHasher::credential();
            h.put(b"authorization=Bearer sk-bench\n");
            h.finish()
        });
        assert_eq!(n, 0);
    }

    #[test]
    fn hex_round_trips() {
        let d = sha256(b"x");
        assert_eq!(parse_hex(&hex(&d)), Some(d));
        assert_eq!(parse_hex("zz"), None);
    }
}
