//! The request side: what the gateway reads from a client's JSON body (model, streaming,
//! token limit, `n`, and where the conversation is) without copying it.

use std::ops::Range;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::lenient::{Num, Scalar};
use super::{is_object, span_in};

/// Which field of the request holds the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputField {
    /// Chat Completions `messages`.
    Messages,
    /// Completions `prompt`.
    Prompt,
    /// Responses API and Embeddings `input`.
    Input,
}

/// What the gateway reads from a JSON request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    pub model: Option<String>,
    /// `"stream": true` (any other value, or none, is a non-streaming request).
    pub stream: bool,
    /// `stream_options.include_usage` is `true`: the client itself asked for the usage chunk.
    pub include_usage: bool,
    /// `max_completion_tokens`, else `max_tokens`, else `max_output_tokens` (Responses API).
    pub max_tokens: Option<u64>,
    /// `n`, the number of choices asked for.
    pub n: Option<u64>,
    /// The conversation field and its byte range in the body (see [`RequestInfo::input_json`]);
    /// kept as a range so that parsing costs no copy when chat logs are off.
    pub input: Option<(InputField, Range<usize>)>,
}

impl RequestInfo {
    /// Reads a request body. `None` when it is not a JSON object, or when a field read here
    /// appears twice (serde refuses duplicates): treat that as unreadable rather than guess
    /// which `model` the upstream will honour.
    pub fn parse(body: &[u8]) -> Option<RequestInfo> {
        #[derive(Deserialize)]
        struct Raw<'a> {
            #[serde(default, borrow)]
            model: Scalar<'a>,
            #[serde(default, borrow)]
            stream: Scalar<'a>,
            #[serde(default, borrow)]
            stream_options: Option<&'a RawValue>,
            #[serde(default)]
            max_tokens: Num,
            #[serde(default)]
            max_completion_tokens: Num,
            #[serde(default)]
            max_output_tokens: Num,
            #[serde(default)]
            n: Num,
            #[serde(default, borrow)]
            messages: Option<&'a RawValue>,
            #[serde(default, borrow)]
            prompt: Option<&'a RawValue>,
            #[serde(default, borrow)]
            input: Option<&'a RawValue>,
        }
        #[derive(Deserialize)]
        struct Options<'a> {
            #[serde(default, borrow)]
            include_usage: Scalar<'a>,
        }
        if !is_object(body) {
            return None;
        }
        let raw: Raw = serde_json::from_slice(body).ok()?;
        let include_usage = raw
            .stream_options
            // An array would be read positionally into the struct: objects only.
            .filter(|o| o.get().starts_with('{'))
            .and_then(|o| serde_json::from_str::<Options>(o.get()).ok())
            .is_some_and(|o| o.include_usage.as_bool() == Some(true));
        let input = [
            (InputField::Messages, raw.messages),
            (InputField::Prompt, raw.prompt),
            (InputField::Input, raw.input),
        ]
        .into_iter()
        .find_map(|(field, raw)| Some((field, span_in(body, raw?.get())?)));
        Some(RequestInfo {
            model: raw.model.as_str().map(str::to_owned),
            stream: raw.stream.as_bool() == Some(true),
            include_usage,
            max_tokens: raw
                .max_completion_tokens
                .0
                .or(raw.max_tokens.0)
                .or(raw.max_output_tokens.0),
            n: raw.n.0,
            input,
        })
    }

    /// The conversation as the client sent it (raw JSON text), from the body this was parsed
    /// from.
    pub fn input_json<'b>(&self, body: &'b [u8]) -> Option<&'b str> {
        let (_, range) = self.input.as_ref()?;
        std::str::from_utf8(body.get(range.clone())?).ok()
    }
}
