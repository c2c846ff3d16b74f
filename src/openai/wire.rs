//! The wire structs: the OpenAI-shaped objects as serde reads them, borrowed from the payload,
//! every field optional and lenient (see [`super::lenient`]), unknown fields skipped. Only the
//! fields the gateway uses are declared; serde skips the rest without building them.

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::lenient::{Few, JsonText, Num, Scalar, Text};

#[derive(Deserialize)]
pub(super) struct StreamChunk<'a> {
    #[serde(rename = "type", default, borrow)]
    pub(super) kind: Scalar<'a>,
    #[serde(default, borrow)]
    pub(super) model: Scalar<'a>,
    #[serde(default, borrow)]
    pub(super) choices: Option<Few<ChunkChoice<'a>>>,
    // The rare and large members are boxed: serde moves this struct around by value, and
    // keeping it small measurably speeds up every chunk.
    #[serde(default)]
    pub(super) usage: Option<Box<RawUsage>>,
    #[serde(default)]
    pub(super) error: Option<IgnoredAny>,
    // Responses API events.
    #[serde(default, borrow)]
    pub(super) delta: Text<'a>,
    #[serde(default)]
    pub(super) output_index: Num,
    #[serde(default, borrow)]
    pub(super) item: Option<Box<ResponseItem<'a>>>,
    #[serde(default, borrow)]
    pub(super) arguments: JsonText<'a>,
    #[serde(default, borrow)]
    pub(super) response: Option<Box<ResponseMeta<'a>>>,
}

#[derive(Deserialize)]
pub(super) struct ChunkChoice<'a> {
    #[serde(default)]
    pub(super) index: Num,
    #[serde(default, borrow)]
    pub(super) delta: Option<Delta<'a>>,
    /// Legacy Completions stream.
    #[serde(default, borrow)]
    pub(super) text: Text<'a>,
    #[serde(default, borrow)]
    pub(super) finish_reason: Scalar<'a>,
}

/// A streamed `delta` or a complete `message`: the same fields.
#[derive(Deserialize)]
pub(super) struct Delta<'a> {
    #[serde(default, borrow)]
    pub(super) content: Text<'a>,
    #[serde(default, borrow)]
    pub(super) reasoning_content: Text<'a>,
    #[serde(default, borrow)]
    pub(super) reasoning: Text<'a>,
    /// A `Vec`: allocates only in tool-call chunks, and keeps content chunks small.
    #[serde(default, borrow)]
    pub(super) tool_calls: Option<Vec<RawToolCall<'a>>>,
    #[serde(default, borrow)]
    pub(super) function_call: Option<Box<RawFunction<'a>>>,
}

#[derive(Deserialize)]
pub(super) struct RawToolCall<'a> {
    #[serde(default)]
    pub(super) index: Num,
    #[serde(default, borrow)]
    pub(super) id: Scalar<'a>,
    #[serde(default, borrow)]
    pub(super) function: Option<RawFunction<'a>>,
}

#[derive(Deserialize)]
pub(super) struct RawFunction<'a> {
    #[serde(default, borrow)]
    pub(super) name: Scalar<'a>,
    #[serde(default, borrow)]
    pub(super) arguments: JsonText<'a>,
}

#[derive(Deserialize)]
pub(super) struct ResponseItem<'a> {
    #[serde(rename = "type", default, borrow)]
    pub(super) kind: Scalar<'a>,
    #[serde(default, borrow)]
    pub(super) id: Scalar<'a>,
    #[serde(default, borrow)]
    pub(super) call_id: Scalar<'a>,
    #[serde(default, borrow)]
    pub(super) name: Scalar<'a>,
    #[serde(default, borrow)]
    pub(super) arguments: JsonText<'a>,
    /// Message content parts, or reasoning text parts.
    #[serde(default, borrow)]
    pub(super) content: Text<'a>,
    /// Reasoning summary parts.
    #[serde(default, borrow)]
    pub(super) summary: Text<'a>,
}

/// The `response` object of Responses API stream events, without its `output` (the deltas
/// already carried it).
#[derive(Deserialize)]
pub(super) struct ResponseMeta<'a> {
    #[serde(default, borrow)]
    pub(super) model: Scalar<'a>,
    #[serde(default, borrow)]
    pub(super) status: Scalar<'a>,
    #[serde(default)]
    pub(super) usage: Option<RawUsage>,
    #[serde(default, borrow)]
    pub(super) incomplete_details: Option<Incomplete<'a>>,
}

#[derive(Deserialize)]
pub(super) struct Incomplete<'a> {
    #[serde(default, borrow)]
    pub(super) reason: Scalar<'a>,
}

#[derive(Deserialize)]
pub(super) struct FullResponse<'a> {
    #[serde(default, borrow)]
    pub(super) model: Scalar<'a>,
    #[serde(default, borrow)]
    pub(super) choices: Option<Vec<FullChoice<'a>>>,
    #[serde(default)]
    pub(super) usage: Option<RawUsage>,
    // Responses API.
    #[serde(default, borrow)]
    pub(super) output: Option<Vec<ResponseItem<'a>>>,
    #[serde(default, borrow)]
    pub(super) status: Scalar<'a>,
    #[serde(default, borrow)]
    pub(super) incomplete_details: Option<Incomplete<'a>>,
}

#[derive(Deserialize)]
pub(super) struct FullChoice<'a> {
    #[serde(default)]
    pub(super) index: Num,
    #[serde(default, borrow)]
    pub(super) message: Option<Delta<'a>>,
    #[serde(default, borrow)]
    pub(super) text: Text<'a>,
    #[serde(default, borrow)]
    pub(super) finish_reason: Scalar<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawUsage {
    pub(super) prompt_tokens: Num,
    pub(super) completion_tokens: Num,
    pub(super) total_tokens: Num,
    pub(super) input_tokens: Num,
    pub(super) output_tokens: Num,
    pub(super) prompt_tokens_details: Option<Details>,
    pub(super) completion_tokens_details: Option<Details>,
    pub(super) input_tokens_details: Option<Details>,
    pub(super) output_tokens_details: Option<Details>,
    /// DeepSeek.
    pub(super) prompt_cache_hit_tokens: Num,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Details {
    pub(super) cached_tokens: Num,
    pub(super) reasoning_tokens: Num,
}
