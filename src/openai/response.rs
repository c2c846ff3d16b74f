//! The response side, non-streamed: usage, text, reasoning, tool calls and finish reasons of a
//! complete answer (Chat Completions, Completions, Embeddings, Responses API), and the helpers
//! the stream accumulator shares to build the same [`ResponseInfo`].

use serde::{Deserialize, Serialize};

use super::lenient::{Num, Scalar};
use super::wire::{Details, FullResponse, Incomplete, RawUsage};
use super::Usage;
use super::{from_json, is_object};

/// What a response said, streamed or not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ResponseInfo {
    pub model: Option<String>,
    /// One entry per choice index, in index order. The Responses API has one, index 0.
    pub choices: Vec<ChoiceOutput>,
    pub usage: Option<Usage>,
}

/// The output of one choice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChoiceOutput {
    pub index: u32,
    /// Assistant text (`message.content`, Completions `text`, Responses `output_text`).
    pub text: String,
    /// Reasoning text (`reasoning_content`, `reasoning`, Responses reasoning summaries).
    pub reasoning: String,
    pub tool_calls: Vec<ToolCall>,
    /// `finish_reason`; for the Responses API the `incomplete_details.reason` or the `status`.
    pub finish_reason: Option<String>,
}

/// One tool (function) call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ToolCall {
    /// Its position among the choice's tool calls (Responses API: the `output_index`).
    pub index: u32,
    pub id: Option<String>,
    pub name: String,
    /// The arguments as the model wrote them (normally a JSON object as text).
    pub arguments: String,
}

/// Only the model and usage of a non-streamed response, which is all accounting needs when no
/// chat log wants the text: `choices` and `output` are skipped, not built (a third of the cost
/// of [`parse_response`] on a short answer, measured with callgrind). `None` when it is not a
/// JSON object or reports no usage (then the text is needed for an estimate).
pub fn parse_response_usage(body: &[u8]) -> Option<ResponseInfo> {
    #[derive(Deserialize)]
    struct Accounting<'a> {
        #[serde(default, borrow)]
        model: Scalar<'a>,
        #[serde(default)]
        usage: Option<RawUsage>,
    }
    if !is_object(body) {
        return None;
    }
    let raw: Accounting = from_json(body)?;
    let usage = raw.usage.as_ref().and_then(Usage::from_raw)?;
    Some(ResponseInfo {
        model: raw.model.as_str().map(str::to_owned),
        choices: Vec::new(),
        usage: Some(usage),
    })
}

/// Reads a non-streamed response body (Chat Completions, Completions, Embeddings, Responses
/// API). `None` when it is not a JSON object.
pub fn parse_response(body: &[u8]) -> Option<ResponseInfo> {
    if !is_object(body) {
        return None;
    }
    let raw: FullResponse = from_json(body)?;
    let mut info = ResponseInfo {
        model: raw.model.as_str().map(str::to_owned),
        choices: Vec::new(),
        usage: raw.usage.as_ref().and_then(Usage::from_raw),
    };
    for (pos, choice) in raw.choices.iter().flatten().enumerate() {
        let out = choice_mut(&mut info.choices, index_of(choice.index, pos));
        if let Some(t) = choice.text.get() {
            out.text.push_str(t);
        }
        if let Some(finish) = choice.finish_reason.as_str() {
            out.finish_reason = Some(finish.to_owned());
        }
        let Some(message) = &choice.message else {
            continue;
        };
        if let Some(t) = message.content.get() {
            out.text.push_str(t);
        }
        if let Some(t) = message.reasoning_content.get().or(message.reasoning.get()) {
            out.reasoning.push_str(t);
        }
        for (pos, call) in message.tool_calls.iter().flatten().enumerate() {
            let function = call.function.as_ref();
            out.tool_calls.push(ToolCall {
                index: index_of(call.index, pos),
                id: call.id.as_str().map(str::to_owned),
                name: function
                    .and_then(|f| f.name.as_str())
                    .unwrap_or_default()
                    .to_owned(),
                arguments: function
                    .and_then(|f| f.arguments.get())
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
        if let Some(f) = &message.function_call {
            // The deprecated single `function_call`, reported as a tool call.
            out.tool_calls.push(ToolCall {
                index: 0,
                id: None,
                name: f.name.as_str().unwrap_or_default().to_owned(),
                arguments: f.arguments.get().unwrap_or_default().to_owned(),
            });
        }
    }
    if let Some(output) = &raw.output {
        let out = choice_mut(&mut info.choices, 0);
        for (pos, item) in output.iter().enumerate() {
            match item.kind.as_str() {
                Some("message") => out.text.push_str(item.content.get().unwrap_or_default()),
                Some("reasoning") => {
                    out.reasoning
                        .push_str(item.summary.get().unwrap_or_default());
                    out.reasoning
                        .push_str(item.content.get().unwrap_or_default());
                }
                Some("function_call") => out.tool_calls.push(ToolCall {
                    index: u32::try_from(pos).unwrap_or(u32::MAX),
                    id: item
                        .call_id
                        .as_str()
                        .or(item.id.as_str())
                        .map(str::to_owned),
                    name: item.name.as_str().unwrap_or_default().to_owned(),
                    arguments: item.arguments.get().unwrap_or_default().to_owned(),
                }),
                _ => {}
            }
        }
        out.finish_reason = responses_finish(&raw.status, raw.incomplete_details.as_ref());
    }
    Some(info)
}

impl ChoiceOutput {
    /// Bytes of text held: content, reasoning and tool-call arguments.
    pub fn text_bytes(&self) -> usize {
        self.text.len()
            + self.reasoning.len()
            + self
                .tool_calls
                .iter()
                .map(|t| t.name.len() + t.arguments.len())
                .sum::<usize>()
    }
}

/// Cut the choices' text to `cap` bytes in all (in order: content, reasoning, tool arguments;
/// at character boundaries). Returns whether anything was cut.
pub fn cap_choices(choices: &mut [ChoiceOutput], cap: usize) -> bool {
    let mut left = cap;
    let mut cut = false;
    let mut keep = |s: &mut String| {
        if s.len() > left {
            let mut at = left;
            while !s.is_char_boundary(at) {
                at -= 1;
            }
            s.truncate(at);
            cut = true;
        }
        left -= s.len();
    };
    for c in choices.iter_mut() {
        keep(&mut c.text);
        keep(&mut c.reasoning);
        for t in &mut c.tool_calls {
            keep(&mut t.name);
            keep(&mut t.arguments);
        }
    }
    cut
}

/// The choice with this index, created if new. A linear search: there are few choices.
pub(super) fn choice_mut(choices: &mut Vec<ChoiceOutput>, index: u32) -> &mut ChoiceOutput {
    let at = match choices.iter().position(|c| c.index == index) {
        Some(at) => at,
        None => {
            choices.push(ChoiceOutput {
                index,
                ..ChoiceOutput::default()
            });
            choices.len() - 1
        }
    };
    &mut choices[at]
}

/// Adds a streamed tool-call fragment: the id and name arrive once (some servers repeat the
/// name; a repeat is not appended twice), the arguments in pieces.
pub(super) fn merge_tool_call(
    calls: &mut Vec<ToolCall>,
    index: u32,
    id: Option<&str>,
    name: Option<&str>,
    arguments: Option<&str>,
) {
    let at = match calls.iter().position(|c| c.index == index) {
        Some(at) => at,
        None => {
            calls.push(ToolCall {
                index,
                ..ToolCall::default()
            });
            calls.len() - 1
        }
    };
    let call = &mut calls[at];
    if let Some(id) = id.filter(|id| !id.is_empty()) {
        call.id.get_or_insert_with(|| id.to_owned());
    }
    if let Some(name) = name.filter(|n| !n.is_empty() && *n != call.name) {
        call.name.push_str(name);
    }
    call.arguments.push_str(arguments.unwrap_or_default());
}

pub(super) fn responses_finish(
    status: &Scalar<'_>,
    incomplete: Option<&Incomplete<'_>>,
) -> Option<String> {
    incomplete
        .and_then(|i| i.reason.as_str())
        .or(status.as_str())
        .map(str::to_owned)
}

pub(super) fn index_of(index: Num, position: usize) -> u32 {
    index
        .0
        .map_or(u32::try_from(position).ok(), |i| u32::try_from(i).ok())
        .unwrap_or(u32::MAX)
}

impl Usage {
    pub(super) fn from_raw(raw: &RawUsage) -> Option<Usage> {
        let prompt = raw.prompt_tokens.0.or(raw.input_tokens.0);
        let completion = raw.completion_tokens.0.or(raw.output_tokens.0);
        if prompt.is_none() && completion.is_none() && raw.total_tokens.0.is_none() {
            return None;
        }
        let (prompt, completion) = (prompt.unwrap_or(0), completion.unwrap_or(0));
        let detail = |d: &Option<Details>, f: fn(&Details) -> Num| d.as_ref().and_then(|d| f(d).0);
        Some(Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: raw
                .total_tokens
                .0
                .unwrap_or(prompt.saturating_add(completion)),
            cached_tokens: detail(&raw.prompt_tokens_details, |d| d.cached_tokens)
                .or(detail(&raw.input_tokens_details, |d| d.cached_tokens))
                .or(raw.prompt_cache_hit_tokens.0),
            reasoning_tokens: detail(&raw.completion_tokens_details, |d| d.reasoning_tokens)
                .or(detail(&raw.output_tokens_details, |d| d.reasoning_tokens)),
        })
    }
}
