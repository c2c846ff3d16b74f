//! Every edit the gateway makes to a request body, in one place: the model name
//! ([`with_model`]), the usage chunk of a stream ([`with_include_usage`]) and the removal of the
//! per-request `caching` switch ([`take_caching_flag`]).
//!
//! Each is a splice, not a re-serialisation: the body is copied byte for byte except for the
//! edited member, so key order, whitespace and number spellings elsewhere are kept (a model
//! server may read `1e2` or a 30-digit seed differently once re-spelled). The caller fixes
//! `Content-Length`.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::LazyLock;

use bytes::BytesMut;
use memchr::memmem;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::lenient::{Raw, Scalar};
use super::{is_json_space, is_object, span_in};

/// The body with its top-level `model` value replaced by `model` (a fallback, or the name an
/// upstream knows the model by): a splice, every other byte unchanged. `None` when the body is
/// not a JSON object with a `model` member. The caller must fix `Content-Length`.
pub fn with_model(body: &[u8], model: &str) -> Option<Vec<u8>> {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(default, borrow)]
        model: Raw<'a>,
    }
    if !is_object(body) {
        return None;
    }
    let probe: Probe = serde_json::from_slice(body).ok()?;
    let span = span_in(body, probe.model.0?.get())?;
    let value = serde_json::to_string(model).ok()?;
    let mut out = Vec::with_capacity(body.len() + value.len());
    out.extend_from_slice(&body[..span.start]);
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(&body[span.end..]);
    Some(out)
}

/// Rewrites a streaming request so that the upstream sends the usage chunk: sets
/// `"stream_options": {"include_usage": true}`, keeping any other `stream_options` field.
///
/// Returns `None` when nothing is to be done or the body cannot be edited safely: not a JSON
/// object, not `"stream": true`, `include_usage` already `true`, or a duplicated `stream`,
/// `stream_options` or `include_usage` key. The edit
/// is a splice: the body is copied byte for byte except for the inserted member (appended to
/// the object, or at the start of `stream_options`) or the replaced value (`include_usage`, or
/// a `stream_options` that is not an object). Key order and whitespace elsewhere are unchanged.
/// The caller must fix `Content-Length`.
pub fn with_include_usage(body: &[u8]) -> Option<Vec<u8>> {
    with_include_usage_at(body).map(|(out, _)| out)
}

/// Where an edit changed the body: the bytes of the old body in `replaced` became `written`
/// new ones (see [`RequestInfo::spliced`](super::RequestInfo::spliced)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splice {
    pub replaced: Range<usize>,
    pub written: usize,
}

/// [`with_include_usage`], and where it spliced.
pub fn with_include_usage_at(body: &[u8]) -> Option<(Vec<u8>, Splice)> {
    let (at, insert) = include_usage_edit(body)?;
    let mut out = Vec::with_capacity(body.len() + insert.len());
    out.extend_from_slice(&body[..at.start]);
    out.extend_from_slice(insert);
    out.extend_from_slice(&body[at.end..]);
    let splice = Splice {
        replaced: at,
        written: insert.len(),
    };
    Some((out, splice))
}

/// [`with_include_usage_at`] made in `body` itself: the bytes after the edit move by the few
/// the edit adds (the buffer grows if it has no room for them), so a large body is never held
/// twice.
pub fn include_usage_in_place(body: &mut BytesMut) -> Option<Splice> {
    let (at, insert) = include_usage_edit(body)?;
    let old_len = body.len();
    let new_len = old_len - at.len() + insert.len();
    if new_len > old_len {
        body.resize(new_len, 0);
    }
    body.copy_within(at.end..old_len, at.start + insert.len());
    body.truncate(new_len);
    body[at.start..at.start + insert.len()].copy_from_slice(insert);
    Some(Splice {
        replaced: at,
        written: insert.len(),
    })
}

/// The `include_usage` edit: the range of `body` to replace and what goes there.
fn include_usage_edit(body: &[u8]) -> Option<(Range<usize>, &'static [u8])> {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(default, borrow)]
        stream: Scalar<'a>,
        #[serde(default, borrow)]
        stream_options: Raw<'a>,
    }
    #[derive(Deserialize)]
    struct Options<'a> {
        #[serde(default, borrow)]
        include_usage: Raw<'a>,
    }
    if !is_object(body) {
        return None;
    }
    let probe: Probe = serde_json::from_slice(body).ok()?;
    if probe.stream.as_bool() != Some(true) {
        return None;
    }
    let (at, insert): (Range<usize>, &[u8]) = match probe.stream_options.0 {
        None => {
            // Append to the top-level object, which has at least "stream", hence the comma.
            let close = body.iter().rposition(|b| !is_json_space(*b))?;
            (
                close..close,
                b",\"stream_options\":{\"include_usage\":true}",
            )
        }
        Some(options) if options.get().starts_with('{') => {
            let span = span_in(body, options.get())?;
            let parsed: Options = serde_json::from_str(options.get()).ok()?;
            match parsed.include_usage.0 {
                Some(value) if value.get() == "true" => return None,
                Some(value) => (span_in(body, value.get())?, b"true"),
                None => {
                    let open = span.start + 1;
                    let empty = options.get()[1..].trim_start().starts_with('}');
                    let member: &[u8] = if empty {
                        b"\"include_usage\":true"
                    } else {
                        b"\"include_usage\":true,"
                    };
                    (open..open, member)
                }
            }
        }
        // null or a non-object: replace it, so the key is not duplicated.
        Some(other) => (span_in(body, other.get())?, b"{\"include_usage\":true}"),
    };
    Some((at, insert))
}

/// The request's `caching` switch, and the body without the field when it was there (a value
/// other than a boolean is removed too, and counts as not saying).
pub fn take_caching_flag(body: &[u8]) -> (Option<bool>, Option<Vec<u8>>) {
    // Cheap test first: most bodies never mention it. The searcher is built once: building one
    // per call cost more than the search (~450 instructions, callgrind).
    static CACHING: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(b"\"caching\""));
    if CACHING.find(body).is_none() {
        return (None, None);
    }
    let Ok(Members(members)) = serde_json::from_slice::<Members<'_>>(body) else {
        return (None, None);
    };
    let Some(pos) = members.iter().position(|(k, _)| k == "caching") else {
        return (None, None);
    };
    let flag = match members[pos].1.get() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    };
    (flag, Some(rebuild(&members, pos)))
}

fn rebuild(members: &[(Cow<'_, str>, &RawValue)], skip: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        members
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum::<usize>()
            + 2,
    );
    out.push(b'{');
    let mut first = true;
    for (i, (k, v)) in members.iter().enumerate() {
        if i == skip {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        if let Ok(name) = serde_json::to_vec(k.as_ref()) {
            out.extend_from_slice(&name);
        }
        out.push(b':');
        out.extend_from_slice(v.get().as_bytes());
    }
    out.push(b'}');
    out
}

/// A top-level JSON object's members in order, values as raw text.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}
