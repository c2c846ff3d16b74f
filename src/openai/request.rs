//! The request side: what the gateway reads from a client's JSON body (model, streaming,
//! token limit, `n`, and where the conversation is) without copying it.

use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::lenient::{ModelValue, Num, Scalar};
use super::{from_json, is_object, span_in, Splice};
use crate::model_names::{json_model_is_ambiguous, model_key, ModelKeys};

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

/// What one pass over a JSON request body says (see [`RequestInfo::scan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestScan {
    /// As [`RequestInfo::parse`] reads the body.
    pub info: Option<RequestInfo>,
    /// As `model_names::json_model_is_ambiguous` judges it: a second top-level key that is
    /// `model` in some ASCII case, or one spelled other than `model`.
    pub ambiguous_model: bool,
    /// `info` names no model, yet a `model` is there that is neither a string nor `null`
    /// (`"model": ["gpt-4o"]`): a model list must not let that pass.
    pub odd_model: bool,
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

/// The top-level fields [`RequestInfo`] is made of, as serde reads them.
#[derive(Default, Deserialize)]
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

impl RequestInfo {
    /// Reads a request body. `None` when it is not a JSON object, or when a field read here
    /// appears twice (serde refuses duplicates): treat that as unreadable rather than guess
    /// which `model` the upstream will honour.
    pub fn parse(body: &[u8]) -> Option<RequestInfo> {
        if !is_object(body) {
            return None;
        }
        let raw: Raw = from_json(body)?;
        Some(RequestInfo::from_raw(body, raw))
    }

    /// Reads a request body and judges its `model` in the same pass: what [`RequestInfo::parse`],
    /// `model_names::json_model_is_ambiguous` and [`has_odd_model`] say, each exactly, for the
    /// price of one parse instead of three (the body phase needs all of them for every JSON
    /// request). A body the one pass cannot read (not a JSON object, broken JSON, a string
    /// that is not UTF-8) is judged by those three separately, as before: the verdicts on what
    /// is unreadable stay theirs.
    pub fn scan(body: &[u8]) -> RequestScan {
        if let Some(one) = from_json::<OnePass>(body) {
            let info = (!one.duplicate).then(|| RequestInfo::from_raw(body, one.raw));
            let odd_model = one.odd_model && info.as_ref().is_some_and(|i| i.model.is_none());
            return RequestScan {
                info,
                ambiguous_model: one.model_keys.ambiguous(),
                odd_model,
            };
        }
        let info = RequestInfo::parse(body);
        let odd_model = info.as_ref().is_some_and(|i| i.model.is_none()) && has_odd_model(body);
        RequestScan {
            info,
            ambiguous_model: json_model_is_ambiguous(body),
            odd_model,
        }
    }

    fn from_raw(body: &[u8], raw: Raw<'_>) -> RequestInfo {
        #[derive(Deserialize)]
        struct Options<'a> {
            #[serde(default, borrow)]
            include_usage: Scalar<'a>,
        }
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
        RequestInfo {
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
        }
    }

    /// The body this was read from was edited (`with_include_usage_at`): the conversation's
    /// range moves with the bytes after the splice. A splice inside it (never made: edits touch
    /// other members) forgets the range.
    pub fn spliced(&mut self, splice: &Splice) {
        let (replaced, written) = (&splice.replaced, splice.written);
        let Some((_, range)) = self.input.as_mut() else {
            return;
        };
        if range.end <= replaced.start {
            return;
        }
        if range.start < replaced.end {
            self.input = None;
            return;
        }
        let moved = |at: usize| (at - replaced.len()).checked_add(written);
        match (moved(range.start), moved(range.end)) {
            (Some(start), Some(end)) => *range = start..end,
            _ => self.input = None,
        }
    }

    /// The conversation's length in bytes: that of [`RequestInfo::input_json`], without
    /// checking its text again (it is UTF-8: serde_json checked it, as part of the whole body or
    /// as the raw value it was read as).
    pub fn input_len(&self) -> Option<usize> {
        self.input.as_ref().map(|(_, range)| range.len())
    }

    /// The conversation as the client sent it (raw JSON text), from the body this was parsed
    /// from.
    pub fn input_json<'b>(&self, body: &'b [u8]) -> Option<&'b str> {
        let (_, range) = self.input.as_ref()?;
        std::str::from_utf8(body.get(range.clone())?).ok()
    }
}

/// A `model` that is there but not a string: refused, so a model list cannot be slipped past
/// with `"model": ["gpt-4o"]` and the like. (The separate check; [`RequestInfo::scan`] makes
/// it in its one pass.) The value's type is all that is read: bytes inside an array or object
/// that are not UTF-8 do not make it unreadable, hence not odd.
pub(super) fn has_odd_model(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct ModelKey<'a> {
        #[serde(default, borrow)]
        model: Option<ModelValue<'a>>,
    }
    serde_json::from_slice::<ModelKey<'_>>(body)
        .ok()
        .and_then(|k| k.model)
        .is_some_and(|m| m.odd)
}

/// The one pass of [`RequestInfo::scan`]: the fields of [`Raw`], read as its derived
/// `Deserialize` reads them (same types, same order), except that a repeated field is noted
/// and skipped instead of failing the pass, which goes on to judge every top-level key as
/// `json_model_is_ambiguous` does.
struct OnePass<'a> {
    raw: Raw<'a>,
    /// A field of [`Raw`] appeared twice ([`RequestInfo::parse`] fails on that).
    duplicate: bool,
    model_keys: ModelKeys,
    /// The (first) `model` is neither a string nor `null`.
    odd_model: bool,
}

impl<'de> Deserialize<'de> for OnePass<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(OnePassVisitor)
    }
}

struct OnePassVisitor;

impl<'de> Visitor<'de> for OnePassVisitor {
    type Value = OnePass<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut pass = OnePass {
            raw: Raw::default(),
            duplicate: false,
            model_keys: ModelKeys::default(),
            odd_model: false,
        };
        // Bit per field of `Raw` already read.
        let mut seen = 0u16;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if let Some(exact) = key.model {
                pass.model_keys.note(exact);
            }
            let Some(field) = key.field else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let bit = 1u16 << field as u16;
            if seen & bit != 0 {
                pass.duplicate = true;
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            seen |= bit;
            let raw = &mut pass.raw;
            match field {
                Field::Model => {
                    let model: ModelValue = map.next_value()?;
                    pass.odd_model = model.odd;
                    raw.model = model.value;
                }
                Field::Stream => raw.stream = map.next_value()?,
                Field::StreamOptions => raw.stream_options = map.next_value()?,
                Field::MaxTokens => raw.max_tokens = map.next_value()?,
                Field::MaxCompletionTokens => raw.max_completion_tokens = map.next_value()?,
                Field::MaxOutputTokens => raw.max_output_tokens = map.next_value()?,
                Field::N => raw.n = map.next_value()?,
                Field::Messages => raw.messages = map.next_value()?,
                Field::Prompt => raw.prompt = map.next_value()?,
                Field::Input => raw.input = map.next_value()?,
            }
        }
        Ok(pass)
    }
}

/// The fields of [`Raw`], by their JSON names.
#[derive(Clone, Copy)]
enum Field {
    Model,
    Stream,
    StreamOptions,
    MaxTokens,
    MaxCompletionTokens,
    MaxOutputTokens,
    N,
    Messages,
    Prompt,
    Input,
}

/// A top-level key: the field of [`Raw`] it is, if any, and how it names the model
/// ([`model_key`]).
struct Key {
    field: Option<Field>,
    model: Option<bool>,
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        let field = match key {
            "model" => Some(Field::Model),
            "stream" => Some(Field::Stream),
            "stream_options" => Some(Field::StreamOptions),
            "max_tokens" => Some(Field::MaxTokens),
            "max_completion_tokens" => Some(Field::MaxCompletionTokens),
            "max_output_tokens" => Some(Field::MaxOutputTokens),
            "n" => Some(Field::N),
            "messages" => Some(Field::Messages),
            "prompt" => Some(Field::Prompt),
            "input" => Some(Field::Input),
            _ => None,
        };
        Ok(Key {
            field,
            model: model_key(key),
        })
    }
}
