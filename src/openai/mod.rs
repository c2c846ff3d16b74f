//! The few fields of OpenAI-shaped payloads that the gateway reads, and nothing more.
//!
//! Requests and responses pass through the gateway untouched; this module only *looks* at
//! them: which model, streamed or not, the token limit and the conversation (for budgets and
//! chat logs) on the way in; usage, text, tool calls, reasoning and finish reasons on the way
//! out, from Chat Completions, legacy Completions, Embeddings and the Responses API, streamed
//! or not, including what compatible servers add (DeepSeek's and vLLM's `reasoning_content`,
//! DeepSeek's `prompt_cache_hit_tokens`).
//!
//! Upstreams are many and loosely compatible, so parsing is deliberately forgiving: structs
//! borrow from the payload (`Cow<str>` that is only owned when the JSON string has escapes),
//! unknown fields are skipped, and every field we read accepts `null` and unexpected types (a
//! token count sent as `12.0` or `"12"` is still read; an object where a string was expected
//! is ignored) instead of failing the whole payload. Nothing here panics on any input; a
//! stream event that is not a JSON object is counted as malformed and skipped.
//!
//! The writes, all in [`edit`], splice bytes into the request body instead of re-serialising
//! it, so key order, whitespace and number spellings outside the edit are kept byte for byte.
//!
//! Layout: [`request`] (what a request says), [`edit`] (request-body splices), [`response`]
//! and [`stream`] (what an answer says, whole or streamed), over the borrowed `wire` structs
//! and the `lenient` leaf types they are made of.

pub mod edit;
mod lenient;
pub mod request;
pub mod response;
pub mod stream;
mod wire;

#[cfg(test)]
pub(crate) mod tests;

use std::ops::Range;

use serde::Serialize;

pub use edit::{
    include_usage_in_place, take_caching_flag, with_include_usage, with_include_usage_at,
    with_model, Splice,
};
pub use request::{InputField, RequestInfo, RequestScan};
pub use response::{
    cap_choices, parse_response, parse_response_usage, ChoiceOutput, ResponseInfo, ToolCall,
};
pub use stream::{is_usage_only, AccumulateMode, ChunkKind, StreamAccumulator};

/// Token usage as the upstream reported it, normalised across the APIs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// `prompt_tokens` (Chat, Completions, Embeddings) or `input_tokens` (Responses).
    pub prompt_tokens: u64,
    /// `completion_tokens` or `output_tokens`; 0 for embeddings.
    pub completion_tokens: u64,
    /// `total_tokens`, or prompt + completion when the upstream did not send it.
    pub total_tokens: u64,
    /// Prompt tokens served from the upstream's prompt cache: `prompt_tokens_details` /
    /// `input_tokens_details.cached_tokens`, or DeepSeek's `prompt_cache_hit_tokens`.
    pub cached_tokens: Option<u64>,
    /// `completion_tokens_details` / `output_tokens_details.reasoning_tokens`.
    pub reasoning_tokens: Option<u64>,
}

/// Bodies up to this size are checked for UTF-8 once, whole, and parsed as text (see
/// [`from_json`]); larger ones as bytes.
const CHECK_WHOLE_UP_TO: usize = 1024;

/// `T` from a JSON payload, `None` when it does not parse. The same result as
/// `serde_json::from_slice`, at a lower cost on short payloads: parsing bytes, serde_json checks
/// every string it decodes (each key, each value read) for UTF-8 separately, ~90 instructions
/// even for a short key, and skips the rest unchecked; parsing a `&str`, it checks nothing. One
/// check of a whole short payload (~0.5 instruction a byte) costs less than a dozen of those (a
/// 300-byte answer: ~10 decoded strings, measured with callgrind); past a kilobyte or so of
/// skipped text it costs more, so longer payloads are parsed as bytes. Payloads that are not
/// UTF-8 are parsed as bytes too, where the strings that are read are checked as before.
fn from_json<'a, T: serde::Deserialize<'a>>(json: &'a [u8]) -> Option<T> {
    if json.len() <= CHECK_WHOLE_UP_TO {
        if let Ok(text) = std::str::from_utf8(json) {
            return serde_json::from_str(text).ok();
        }
    }
    serde_json::from_slice(json).ok()
}

/// The first non-whitespace byte is `{`. serde would otherwise read a JSON array into a
/// struct positionally.
fn is_object(json: &[u8]) -> bool {
    json.iter().find(|b| !is_json_space(**b)) == Some(&b'{')
}

fn is_json_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The byte range of `part` inside `body`, when `part` is a sub-slice of it (a borrowed
/// `RawValue` is). Pointer arithmetic only; `None` if it is not.
fn span_in(body: &[u8], part: &str) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let range = start..start.checked_add(part.len())?;
    let inside = body.get(range.clone())?;
    (inside.as_ptr() == part.as_ptr()).then_some(range)
}
