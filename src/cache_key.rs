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

#[cfg(test)]
mod tests;
