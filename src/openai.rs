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
//! The one write, [`with_include_usage`], splices bytes into the request body instead of
//! re-serialising it, so key order, whitespace and number spellings outside the edit are kept
//! byte for byte.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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
    let mut out = Vec::with_capacity(body.len() + insert.len());
    out.extend_from_slice(&body[..at.start]);
    out.extend_from_slice(insert);
    out.extend_from_slice(&body[at.end..]);
    Some(out)
}

/// Whether a stream event's data is the usage-only chunk that `include_usage` adds at the end
/// of a Chat Completions stream: an empty `choices` array and a non-null `usage`. (Azure's
/// first chunk also has empty `choices`, but no usage: it is not this chunk.)
pub fn is_usage_only(event_data: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        choices: Option<SeqLen>,
        #[serde(default)]
        usage: Option<IgnoredAny>,
    }
    is_object(event_data)
        && serde_json::from_slice::<Probe>(event_data)
            .is_ok_and(|p| p.choices == Some(SeqLen(Some(0))) && p.usage.is_some())
}

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
    let raw: Accounting = serde_json::from_slice(body).ok()?;
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
    let raw: FullResponse = serde_json::from_slice(body).ok()?;
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

/// Whether [`StreamAccumulator`] reassembles the text (for chat logs) or only counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccumulateMode {
    /// Usage, model, finish reasons and byte counts only: no text is copied.
    CountOnly,
    /// Everything in [`ResponseInfo`]: text, reasoning and tool calls per choice.
    Full,
}

/// What [`StreamAccumulator::observe`] made of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    /// A chat/completions chunk or a Responses API event.
    Chunk,
    /// The usage-only chunk (see [`is_usage_only`]).
    UsageOnly,
    /// `[DONE]`.
    Done,
    /// Empty data: nothing to read.
    Empty,
    /// Not a JSON object (or not one we can read): counted and skipped.
    Malformed,
}

/// Folds a stream's events into a [`ResponseInfo`]: feed it each SSE event's data.
#[derive(Debug, Clone)]
pub struct StreamAccumulator {
    mode: AccumulateMode,
    model: Option<String>,
    usage: Option<Usage>,
    choices: Vec<ChoiceOutput>,
    events: u64,
    malformed: u64,
    output_bytes: u64,
    delta_events: u64,
    done: bool,
    error: bool,
    /// Most bytes of text (content, reasoning, tool arguments) kept in `Full` mode; past it the
    /// accumulator only counts, and `truncated` says so.
    keep_cap: usize,
    truncated: bool,
}

impl StreamAccumulator {
    pub fn new(mode: AccumulateMode) -> Self {
        StreamAccumulator {
            keep_cap: usize::MAX,
            truncated: false,
            mode,
            model: None,
            usage: None,
            choices: Vec::new(),
            events: 0,
            malformed: 0,
            output_bytes: 0,
            delta_events: 0,
            done: false,
            error: false,
        }
    }

    /// Keep at most `cap` bytes of text; the rest of the stream is counted, not copied (a
    /// long answer must not be held whole in memory).
    pub fn with_text_cap(mut self, cap: usize) -> Self {
        self.keep_cap = cap;
        self
    }

    /// The text kept was cut at the cap.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Reads one event's data (the SSE `data`, joined). Never panics; unreadable data is
    /// counted in [`StreamAccumulator::malformed_events`].
    pub fn observe(&mut self, data: &[u8]) -> ChunkKind {
        let kind = self.observe_event(data);
        if self.mode == AccumulateMode::Full && self.keep_cap != usize::MAX {
            let kept: usize = self.choices.iter().map(ChoiceOutput::text_bytes).sum();
            if kept > self.keep_cap {
                // From here on only counts; what is kept is cut back to the cap.
                self.mode = AccumulateMode::CountOnly;
                self.truncated = true;
                cap_choices(&mut self.choices, self.keep_cap);
            }
        }
        kind
    }

    fn observe_event(&mut self, data: &[u8]) -> ChunkKind {
        self.events += 1;
        let data = data.trim_ascii();
        if data.is_empty() {
            return ChunkKind::Empty;
        }
        if data == b"[DONE]" {
            self.done = true;
            return ChunkKind::Done;
        }
        let chunk = match is_object(data).then(|| serde_json::from_slice::<StreamChunk>(data)) {
            Some(Ok(chunk)) => chunk,
            _ => {
                self.malformed += 1;
                return ChunkKind::Malformed;
            }
        };
        if chunk.error.is_some() {
            self.error = true;
        }
        if let Some(kind) = chunk.kind.as_str().filter(|k| k.starts_with("response.")) {
            self.responses_event(kind, &chunk);
            return ChunkKind::Chunk;
        }
        if chunk.kind.as_str() == Some("error") {
            self.error = true;
        }
        if self.model.is_none() {
            // Azure's first chunk has `"model": ""`; wait for a real name.
            self.model = chunk
                .model
                .as_str()
                .filter(|m| !m.is_empty())
                .map(str::to_owned);
        }
        if let Some(usage) = chunk.usage.as_deref().and_then(Usage::from_raw) {
            // vLLM's continuous usage stats repeat it in every chunk; the last one is the total.
            self.usage = Some(usage);
        }
        let Some(choices) = &chunk.choices else {
            return ChunkKind::Chunk;
        };
        if choices.len == 0 && chunk.usage.is_some() {
            return ChunkKind::UsageOnly;
        }
        let full = self.mode == AccumulateMode::Full;
        for (pos, choice) in choices.iter().enumerate() {
            let mut bytes = 0;
            let delta = choice.delta.as_ref();
            // Chat streams put text in `delta.content`, legacy Completions in `text`.
            let text = delta.and_then(|d| d.content.get()).or(choice.text.get());
            let reasoning = delta.and_then(|d| d.reasoning_content.get().or(d.reasoning.get()));
            let finish = choice.finish_reason.as_str();
            let calls = delta.and_then(|d| d.tool_calls.as_ref());
            let legacy = delta.and_then(|d| d.function_call.as_ref());
            bytes += text.map_or(0, str::len) + reasoning.map_or(0, str::len);
            for call in calls.into_iter().flatten() {
                bytes += call
                    .function
                    .as_ref()
                    .and_then(|f| f.arguments.get())
                    .map_or(0, str::len);
            }
            bytes += legacy.and_then(|f| f.arguments.get()).map_or(0, str::len);
            self.count(bytes);
            if !full && finish.is_none() {
                continue;
            }
            let out = choice_mut(&mut self.choices, index_of(choice.index, pos));
            if let Some(finish) = finish {
                out.finish_reason = Some(finish.to_owned());
            }
            if !full {
                continue;
            }
            out.text.push_str(text.unwrap_or_default());
            out.reasoning.push_str(reasoning.unwrap_or_default());
            for (pos, call) in calls.into_iter().flatten().enumerate() {
                let function = call.function.as_ref();
                merge_tool_call(
                    &mut out.tool_calls,
                    index_of(call.index, pos),
                    call.id.as_str(),
                    function.and_then(|f| f.name.as_str()),
                    function.and_then(|f| f.arguments.get()),
                );
            }
            if let Some(f) = legacy {
                merge_tool_call(
                    &mut out.tool_calls,
                    0,
                    None,
                    f.name.as_str(),
                    f.arguments.get(),
                );
            }
        }
        ChunkKind::Chunk
    }

    fn responses_event(&mut self, kind: &str, chunk: &StreamChunk<'_>) {
        let full = self.mode == AccumulateMode::Full;
        let index = chunk
            .output_index
            .0
            .map_or(0, |i| u32::try_from(i).unwrap_or(u32::MAX));
        match kind {
            "response.output_text.delta" => {
                let delta = chunk.delta.get().unwrap_or_default();
                self.count(delta.len());
                if full {
                    choice_mut(&mut self.choices, 0).text.push_str(delta);
                }
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                let delta = chunk.delta.get().unwrap_or_default();
                self.count(delta.len());
                if full {
                    choice_mut(&mut self.choices, 0).reasoning.push_str(delta);
                }
            }
            "response.output_item.added" => {
                let Some(item) = chunk.item.as_ref() else {
                    return;
                };
                if full && item.kind.as_str() == Some("function_call") {
                    let id = item.call_id.as_str().or(item.id.as_str());
                    let calls = &mut choice_mut(&mut self.choices, 0).tool_calls;
                    merge_tool_call(calls, index, id, item.name.as_str(), item.arguments.get());
                }
            }
            "response.output_item.done" => {
                // The finished item; its arguments fill in for servers that sent no deltas.
                let Some(item) = chunk.item.as_ref() else {
                    return;
                };
                if full && item.kind.as_str() == Some("function_call") {
                    let id = item.call_id.as_str().or(item.id.as_str());
                    let calls = &mut choice_mut(&mut self.choices, 0).tool_calls;
                    merge_tool_call(calls, index, id, item.name.as_str(), None);
                    if let Some(call) = calls.iter_mut().find(|c| c.index == index) {
                        if call.arguments.is_empty() {
                            call.arguments
                                .push_str(item.arguments.get().unwrap_or_default());
                        }
                    }
                }
            }
            "response.function_call_arguments.delta" => {
                let delta = chunk.delta.get().unwrap_or_default();
                self.count(delta.len());
                if full {
                    let calls = &mut choice_mut(&mut self.choices, 0).tool_calls;
                    merge_tool_call(calls, index, None, None, Some(delta));
                }
            }
            "response.function_call_arguments.done" => {
                // The complete arguments: authoritative over the concatenated deltas.
                if let (true, Some(args)) = (full, chunk.arguments.get()) {
                    let calls = &mut choice_mut(&mut self.choices, 0).tool_calls;
                    merge_tool_call(calls, index, None, None, None);
                    if let Some(call) = calls.iter_mut().find(|c| c.index == index) {
                        args.clone_into(&mut call.arguments);
                    }
                }
            }
            _ => {}
        }
        let Some(response) = chunk.response.as_ref() else {
            return;
        };
        if let Some(model) = response.model.as_str() {
            model.clone_into(self.model.get_or_insert_with(String::new));
        }
        if let Some(usage) = response.usage.as_ref().and_then(Usage::from_raw) {
            self.usage = Some(usage);
        }
        match kind {
            "response.completed" | "response.incomplete" | "response.failed" => {
                self.done |= kind != "response.failed";
                self.error |= kind == "response.failed";
                choice_mut(&mut self.choices, 0).finish_reason =
                    responses_finish(&response.status, response.incomplete_details.as_ref());
            }
            _ => {}
        }
    }

    fn count(&mut self, bytes: usize) {
        if bytes > 0 {
            self.delta_events += 1;
            self.output_bytes += bytes as u64;
        }
    }

    pub fn mode(&self) -> AccumulateMode {
        self.mode
    }

    /// The last usage the stream reported, if any.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// The choices so far (text only in [`AccumulateMode::Full`]; finish reasons in both).
    pub fn choices(&self) -> &[ChoiceOutput] {
        &self.choices
    }

    /// The stream reached its end marker: `[DONE]`, or `response.completed` /
    /// `response.incomplete` for the Responses API.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// An error object (`"error": {...}` chunk, `error` or `response.failed` event) was seen.
    pub fn saw_error(&self) -> bool {
        self.error
    }

    /// Events observed, malformed ones included.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Events whose data could not be read.
    pub fn malformed_events(&self) -> u64 {
        self.malformed
    }

    /// Bytes of generated text (content, reasoning, tool arguments), counted in both modes:
    /// the basis for an estimate when the upstream reports no usage.
    pub fn output_bytes(&self) -> u64 {
        self.output_bytes
    }

    /// Deltas (per choice) that carried generated text. Upstreams usually send about one
    /// token per delta, which makes this a second estimate.
    pub fn delta_events(&self) -> u64 {
        self.delta_events
    }

    /// The result, choices in index order.
    pub fn into_response(mut self) -> ResponseInfo {
        self.choices.sort_by_key(|c| c.index);
        for choice in &mut self.choices {
            choice.tool_calls.sort_by_key(|c| c.index);
        }
        ResponseInfo {
            model: self.model,
            choices: self.choices,
            usage: self.usage,
        }
    }
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
fn choice_mut(choices: &mut Vec<ChoiceOutput>, index: u32) -> &mut ChoiceOutput {
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
fn merge_tool_call(
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

fn responses_finish(status: &Scalar<'_>, incomplete: Option<&Incomplete<'_>>) -> Option<String> {
    incomplete
        .and_then(|i| i.reason.as_str())
        .or(status.as_str())
        .map(str::to_owned)
}

fn index_of(index: Num, position: usize) -> u32 {
    index
        .0
        .map_or(u32::try_from(position).ok(), |i| u32::try_from(i).ok())
        .unwrap_or(u32::MAX)
}

impl Usage {
    fn from_raw(raw: &RawUsage) -> Option<Usage> {
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

// ---- Wire structs: borrowed, all fields optional and lenient, unknown fields skipped. ----

#[derive(Deserialize)]
struct StreamChunk<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Scalar<'a>,
    #[serde(default, borrow)]
    model: Scalar<'a>,
    #[serde(default, borrow)]
    choices: Option<Few<ChunkChoice<'a>>>,
    // The rare and large members are boxed: serde moves this struct around by value, and
    // keeping it small measurably speeds up every chunk.
    #[serde(default)]
    usage: Option<Box<RawUsage>>,
    #[serde(default)]
    error: Option<IgnoredAny>,
    // Responses API events.
    #[serde(default, borrow)]
    delta: Text<'a>,
    #[serde(default)]
    output_index: Num,
    #[serde(default, borrow)]
    item: Option<Box<ResponseItem<'a>>>,
    #[serde(default, borrow)]
    arguments: JsonText<'a>,
    #[serde(default, borrow)]
    response: Option<Box<ResponseMeta<'a>>>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
    #[serde(default)]
    index: Num,
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    /// Legacy Completions stream.
    #[serde(default, borrow)]
    text: Text<'a>,
    #[serde(default, borrow)]
    finish_reason: Scalar<'a>,
}

/// A streamed `delta` or a complete `message`: the same fields.
#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Text<'a>,
    #[serde(default, borrow)]
    reasoning_content: Text<'a>,
    #[serde(default, borrow)]
    reasoning: Text<'a>,
    /// A `Vec`: allocates only in tool-call chunks, and keeps content chunks small.
    #[serde(default, borrow)]
    tool_calls: Option<Vec<RawToolCall<'a>>>,
    #[serde(default, borrow)]
    function_call: Option<Box<RawFunction<'a>>>,
}

#[derive(Deserialize)]
struct RawToolCall<'a> {
    #[serde(default)]
    index: Num,
    #[serde(default, borrow)]
    id: Scalar<'a>,
    #[serde(default, borrow)]
    function: Option<RawFunction<'a>>,
}

#[derive(Deserialize)]
struct RawFunction<'a> {
    #[serde(default, borrow)]
    name: Scalar<'a>,
    #[serde(default, borrow)]
    arguments: JsonText<'a>,
}

#[derive(Deserialize)]
struct ResponseItem<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Scalar<'a>,
    #[serde(default, borrow)]
    id: Scalar<'a>,
    #[serde(default, borrow)]
    call_id: Scalar<'a>,
    #[serde(default, borrow)]
    name: Scalar<'a>,
    #[serde(default, borrow)]
    arguments: JsonText<'a>,
    /// Message content parts, or reasoning text parts.
    #[serde(default, borrow)]
    content: Text<'a>,
    /// Reasoning summary parts.
    #[serde(default, borrow)]
    summary: Text<'a>,
}

/// The `response` object of Responses API stream events, without its `output` (the deltas
/// already carried it).
#[derive(Deserialize)]
struct ResponseMeta<'a> {
    #[serde(default, borrow)]
    model: Scalar<'a>,
    #[serde(default, borrow)]
    status: Scalar<'a>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default, borrow)]
    incomplete_details: Option<Incomplete<'a>>,
}

#[derive(Deserialize)]
struct Incomplete<'a> {
    #[serde(default, borrow)]
    reason: Scalar<'a>,
}

#[derive(Deserialize)]
struct FullResponse<'a> {
    #[serde(default, borrow)]
    model: Scalar<'a>,
    #[serde(default, borrow)]
    choices: Option<Vec<FullChoice<'a>>>,
    #[serde(default)]
    usage: Option<RawUsage>,
    // Responses API.
    #[serde(default, borrow)]
    output: Option<Vec<ResponseItem<'a>>>,
    #[serde(default, borrow)]
    status: Scalar<'a>,
    #[serde(default, borrow)]
    incomplete_details: Option<Incomplete<'a>>,
}

#[derive(Deserialize)]
struct FullChoice<'a> {
    #[serde(default)]
    index: Num,
    #[serde(default, borrow)]
    message: Option<Delta<'a>>,
    #[serde(default, borrow)]
    text: Text<'a>,
    #[serde(default, borrow)]
    finish_reason: Scalar<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawUsage {
    prompt_tokens: Num,
    completion_tokens: Num,
    total_tokens: Num,
    input_tokens: Num,
    output_tokens: Num,
    prompt_tokens_details: Option<Details>,
    completion_tokens_details: Option<Details>,
    input_tokens_details: Option<Details>,
    output_tokens_details: Option<Details>,
    /// DeepSeek.
    prompt_cache_hit_tokens: Num,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Details {
    cached_tokens: Num,
    reasoning_tokens: Num,
}

// ---- Lenient leaf types. ----

/// Any JSON value, keeping only what a scalar field can use; objects and arrays are skipped
/// and read as absent, so an unexpected type never fails the payload.
#[derive(Debug, Clone, Default, PartialEq)]
enum Scalar<'a> {
    #[default]
    Absent,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'a, str>),
}

impl Scalar<'_> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    fn as_bool(&self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Counts sent as floats (`12.0`) or strings (`"12"`) are accepted; negatives are not.
    fn as_u64(&self) -> Option<u64> {
        match self {
            Scalar::U64(n) => Some(*n),
            Scalar::I64(n) => u64::try_from(*n).ok(),
            // `as` saturates; a fraction is truncated.
            Scalar::F64(f) if f.is_finite() && *f >= 0.0 => Some(*f as u64),
            Scalar::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor(PhantomData))
    }
}

struct ScalarVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ScalarVisitor<'a> {
    type Value = Scalar<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::U64(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::I64(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::F64(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Absent)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Absent)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Scalar::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Absent)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Absent)
    }
}

/// A count, read leniently (see [`Scalar::as_u64`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Num(Option<u64>);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Scalar::deserialize(d).map(|s| Num(s.as_u64()))
    }
}

/// Visitor methods for the JSON types a lenient visitor reads as "nothing here".
macro_rules! read_as {
    ($value:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// Text content: a string, or an array of content parts whose text is concatenated (parts
/// of type `text` or `*_text`, or plain strings; images, refusals, "thinking" parts and the
/// like are skipped). Anything else reads as no text.
#[derive(Debug, Default)]
struct Text<'a>(Option<Cow<'a, str>>);

impl Text<'_> {
    fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("text or content parts")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                Text::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut text: Option<Cow<'a, str>> = None;
                while let Some(Part(part)) = seq.next_element::<Part>()? {
                    match (&mut text, part) {
                        (_, None) => {}
                        (None, Some(part)) => text = Some(part),
                        (Some(text), Some(part)) => text.to_mut().push_str(&part),
                    }
                }
                Ok(Text(text))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
            read_as!(Text(None));
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// One content part's text, if it is a text part.
struct Part<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Part<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Typed<'a> {
            #[serde(rename = "type", default, borrow)]
            kind: Scalar<'a>,
            #[serde(default, borrow)]
            text: Scalar<'a>,
        }
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Part<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a content part")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Part(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Part(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let part = Typed::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let is_text = match part.kind.as_str() {
                    None => true,
                    Some(kind) => kind == "text" || kind.ends_with("_text"),
                };
                Ok(Part(match (is_text, part.text) {
                    (true, Scalar::Str(text)) => Some(text),
                    _ => None,
                }))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Part(None))
            }
            read_as!(Part(None));
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A sequence where one element is the common case: the first is kept inline so that a
/// chunk's `choices` (or `tool_calls`) costs no allocation.
struct Few<T> {
    first: Option<T>,
    rest: Vec<T>,
    len: usize,
}

impl<T> Few<T> {
    fn iter(&self) -> impl Iterator<Item = &T> {
        self.first.iter().chain(self.rest.iter())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Few<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Few<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut few = Few {
                    first: None,
                    rest: Vec::new(),
                    len: 0,
                };
                while let Some(item) = seq.next_element()? {
                    if few.first.is_none() {
                        few.first = Some(item);
                    } else {
                        few.rest.push(item);
                    }
                    few.len += 1;
                }
                Ok(few)
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// The length of an array, without reading its elements; `None` for other types.
#[derive(Debug, PartialEq, Eq)]
struct SeqLen(Option<usize>);

impl<'de> Deserialize<'de> for SeqLen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SeqLen;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(SeqLen(Some(n)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(SeqLen(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(SeqLen(None))
            }
            read_as!(SeqLen(None));
        }
        d.deserialize_any(V)
    }
}

/// A field's raw JSON text, `null` included (serde's `Option<&RawValue>` reads `null` as
/// absent, but [`with_include_usage`] must replace a `null`, not add a second key).
#[derive(Default)]
struct Raw<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Raw<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(|raw| Raw(Some(raw)))
    }
}

/// Tool-call arguments: a JSON string (the norm) decoded to its text, or any other JSON
/// value kept as its raw text (some servers send an object).
#[derive(Default)]
struct JsonText<'a>(Option<Cow<'a, str>>);

impl JsonText<'_> {
    fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonText<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'a RawValue>::deserialize(d)?.get();
        if raw == "null" {
            return Ok(JsonText(None));
        }
        if !raw.starts_with('"') {
            return Ok(JsonText(Some(Cow::Borrowed(raw))));
        }
        // A string without escapes borrows; one with escapes is decoded.
        let text = match serde_json::from_str::<&'a str>(raw) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => Cow::Owned(serde_json::from_str::<String>(raw).map_err(de::Error::custom)?),
        };
        Ok(JsonText(Some(text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_replaced_in_place() {
        let body =
            br#"{ "messages": [{"role":"user","content":"model"}], "model" : "gpt-4o", "n": 1}"#;
        let out = with_model(body, "gpt-4o-mini").unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{ "messages": [{"role":"user","content":"model"}], "model" : "gpt-4o-mini", "n": 1}"#
        );
        assert!(with_model(br#"{"messages":[]}"#, "x").is_none());
        assert!(with_model(b"[1]", "x").is_none());
        let quoted = with_model(br#"{"model":"a"}"#, "we\"ird").unwrap();
        assert_eq!(&quoted[..], br#"{"model":"we\"ird"}"#);
    }
    use proptest::prelude::*;
    use serde_json::{json, Value};

    /// Feeds each `data:` payload of an SSE text to an accumulator (no SSE parser needed:
    /// these fixtures have one data line per event).
    fn accumulate(mode: AccumulateMode, sse: &str) -> (StreamAccumulator, Vec<ChunkKind>) {
        let mut acc = StreamAccumulator::new(mode);
        let kinds = sse
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|data| acc.observe(data.as_bytes()))
            .collect();
        (acc, kinds)
    }

    // ---- Usage ----

    #[test]
    fn usage_from_chat_completion_with_details() {
        let body = br#"{
          "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
          "object": "chat.completion",
          "created": 1741570283,
          "model": "gpt-4o-2024-08-06",
          "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "The image shows a wooden boardwalk.", "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop"
          }],
          "usage": {
            "prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
            "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
          },
          "service_tier": "default",
          "system_fingerprint": "fp_fc9f1d7035"
        }"#;
        let info = parse_response(body).expect("parses");
        assert_eq!(info.model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(
            info.usage,
            Some(Usage {
                prompt_tokens: 1117,
                completion_tokens: 46,
                total_tokens: 1163,
                cached_tokens: Some(1024),
                reasoning_tokens: Some(0),
            })
        );
        assert_eq!(info.choices.len(), 1);
        assert_eq!(info.choices[0].text, "The image shows a wooden boardwalk.");
        assert_eq!(info.choices[0].finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn usage_from_completions_and_embeddings() {
        let completions = br#"{"id":"cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7","object":"text_completion",
          "created":1589478378,"model":"gpt-3.5-turbo-instruct",
          "choices":[{"text":"\n\nThis is indeed a test","index":0,"logprobs":null,"finish_reason":"length"}],
          "usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#;
        let info = parse_response(completions).expect("parses");
        assert_eq!(info.choices[0].text, "\n\nThis is indeed a test");
        assert_eq!(info.choices[0].finish_reason.as_deref(), Some("length"));
        assert_eq!(
            info.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
            Some((5, 7))
        );

        let embeddings = br#"{"object":"list","data":[{"object":"embedding",
          "embedding":[0.0023064255,-0.009327292,-0.0028842222],"index":0}],
          "model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        let info = parse_response(embeddings).expect("parses");
        assert!(info.choices.is_empty());
        assert_eq!(
            info.usage,
            Some(Usage {
                prompt_tokens: 8,
                completion_tokens: 0,
                total_tokens: 8,
                cached_tokens: None,
                reasoning_tokens: None,
            })
        );
    }

    #[test]
    fn usage_is_lenient_about_types_and_nulls() {
        let info = parse_response(
            br#"{"usage":{"prompt_tokens":12.0,"completion_tokens":"3","total_tokens":null,
                 "prompt_tokens_details":null,"completion_tokens_details":{"reasoning_tokens":-1}},
                 "choices":null,"model":null}"#,
        )
        .expect("parses");
        let usage = info.usage.expect("usage");
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.total_tokens
            ),
            (12, 3, 15)
        );
        assert_eq!((usage.cached_tokens, usage.reasoning_tokens), (None, None));
        assert_eq!(info.model, None);
        // An empty or null usage is no usage.
        assert_eq!(
            parse_response(br#"{"usage":{}}"#).and_then(|i| i.usage),
            None
        );
        assert_eq!(
            parse_response(br#"{"usage":null}"#).and_then(|i| i.usage),
            None
        );
        // Not an object: nothing.
        assert_eq!(parse_response(b"[1,2]"), None);
        assert_eq!(parse_response(b"not json"), None);
        assert_eq!(parse_response(b""), None);
    }

    #[test]
    fn deepseek_cache_hit_tokens_count_as_cached() {
        let info = parse_response(
            br#"{"id":"930c60df","object":"chat.completion","created":1705651092,"model":"deepseek-reasoner",
                 "choices":[{"index":0,"message":{"role":"assistant","content":"9.11 is smaller.",
                   "reasoning_content":"Compare 9.11 and 9.8: 0.11 < 0.8."},"logprobs":null,"finish_reason":"stop"}],
                 "usage":{"prompt_tokens":16,"completion_tokens":120,"total_tokens":136,
                   "prompt_tokens_details":{"cached_tokens":0},
                   "completion_tokens_details":{"reasoning_tokens":100},
                   "prompt_cache_hit_tokens":0,"prompt_cache_miss_tokens":16},
                 "system_fingerprint":"fp_7e73fd9a08"}"#,
        )
        .expect("parses");
        let choice = &info.choices[0];
        assert_eq!(choice.text, "9.11 is smaller.");
        assert_eq!(choice.reasoning, "Compare 9.11 and 9.8: 0.11 < 0.8.");
        assert_eq!(info.usage.and_then(|u| u.reasoning_tokens), Some(100));
        // prompt_cache_hit_tokens is the fallback when no cached_tokens detail is sent.
        let info = parse_response(
            br#"{"usage":{"prompt_tokens":100,"completion_tokens":1,"prompt_cache_hit_tokens":64}}"#,
        );
        assert_eq!(
            info.and_then(|i| i.usage).and_then(|u| u.cached_tokens),
            Some(64)
        );
    }

    // ---- Non-streamed responses ----

    #[test]
    fn chat_response_with_tool_calls() {
        let body = br#"{
          "id": "chatcmpl-abc123", "object": "chat.completion", "created": 1699896916,
          "model": "gpt-4o-mini",
          "choices": [{
            "index": 0,
            "message": {
              "role": "assistant", "content": null,
              "tool_calls": [
                {"id": "call_abc123", "type": "function",
                 "function": {"name": "get_current_weather", "arguments": "{\n\"location\": \"Boston, MA\"\n}"}},
                {"id": "call_def456", "type": "function",
                 "function": {"name": "get_time", "arguments": {"tz": "EST"}}}
              ]
            },
            "logprobs": null, "finish_reason": "tool_calls"
          }],
          "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99}
        }"#;
        let info = parse_response(body).expect("parses");
        let choice = &info.choices[0];
        assert_eq!(choice.text, "");
        assert_eq!(choice.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(
            choice.tool_calls,
            vec![
                ToolCall {
                    index: 0,
                    id: Some("call_abc123".into()),
                    name: "get_current_weather".into(),
                    arguments: "{\n\"location\": \"Boston, MA\"\n}".into(),
                },
                ToolCall {
                    index: 1,
                    id: Some("call_def456".into()),
                    name: "get_time".into(),
                    // An object instead of a string is kept as its JSON text.
                    arguments: "{\"tz\": \"EST\"}".into(),
                },
            ]
        );
    }

    #[test]
    fn chat_response_with_several_choices_content_parts_and_legacy_function_call() {
        let body = br#"{"model":"m","choices":[
            {"index":1,"message":{"role":"assistant","content":[{"type":"text","text":"B1"},{"type":"image_url","image_url":{}},{"type":"text","text":"B2"}]},"finish_reason":"stop"},
            {"index":0,"message":{"role":"assistant","content":"A","reasoning":"why"},"finish_reason":"length"},
            {"index":2,"message":{"role":"assistant","content":null,"function_call":{"name":"f","arguments":"{}"}},"finish_reason":"function_call"}
        ]}"#;
        let info = parse_response(body).expect("parses");
        let by_index = |i: u32| info.choices.iter().find(|c| c.index == i).expect("choice");
        assert_eq!(by_index(0).text, "A");
        assert_eq!(by_index(0).reasoning, "why");
        assert_eq!(by_index(1).text, "B1B2");
        assert_eq!(by_index(2).tool_calls[0].name, "f");
        assert_eq!(by_index(2).tool_calls[0].arguments, "{}");
    }

    #[test]
    fn responses_api_response() {
        let body = br#"{
          "id": "resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41",
          "object": "response", "created_at": 1741476777, "status": "completed",
          "error": null, "incomplete_details": null, "instructions": null,
          "max_output_tokens": null, "model": "gpt-4o-2024-08-06",
          "output": [
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Thinking about the image."}]},
            {"type": "message", "id": "msg_67ccd3acc8d48190a77525dc6de64b4104becb25c45c1d41",
             "status": "completed", "role": "assistant",
             "content": [{"type": "output_text", "text": "The image depicts a scenic landscape.", "annotations": []}]},
            {"type": "function_call", "id": "fc_12345xyz", "call_id": "call_12345xyz",
             "name": "get_weather", "arguments": "{\"location\":\"Paris, France\"}"}
          ],
          "parallel_tool_calls": true, "previous_response_id": null,
          "reasoning": {"effort": null, "summary": null}, "store": true, "temperature": 1.0,
          "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
          "truncation": "disabled",
          "usage": {"input_tokens": 328, "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": 52, "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": 380},
          "user": null, "metadata": {}
        }"#;
        let info = parse_response(body).expect("parses");
        assert_eq!(info.model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(
            info.usage,
            Some(Usage {
                prompt_tokens: 328,
                completion_tokens: 52,
                total_tokens: 380,
                cached_tokens: Some(0),
                reasoning_tokens: Some(0),
            })
        );
        let choice = &info.choices[0];
        assert_eq!(choice.text, "The image depicts a scenic landscape.");
        assert_eq!(choice.reasoning, "Thinking about the image.");
        assert_eq!(choice.finish_reason.as_deref(), Some("completed"));
        assert_eq!(choice.tool_calls.len(), 1);
        assert_eq!(choice.tool_calls[0].id.as_deref(), Some("call_12345xyz"));
        assert_eq!(
            choice.tool_calls[0].arguments,
            "{\"location\":\"Paris, France\"}"
        );

        let incomplete = parse_response(
            br#"{"object":"response","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"output":[]}"#,
        )
        .expect("parses");
        assert_eq!(
            incomplete.choices[0].finish_reason.as_deref(),
            Some("max_output_tokens")
        );
    }

    // ---- Streams ----

    /// An OpenAI Chat Completions stream with parallel tool calls and `include_usage`
    /// (every chunk carries `"usage":null`, then the usage-only chunk).
    const OPENAI_TOOL_STREAM: &str = r#"data: {"id":"chatcmpl-AbC","object":"chat.completion.chunk","created":1727000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_1bb46167f9","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_Xa1","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-AbC","object":"chat.completion.chunk","created":1727000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_1bb46167f9","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"lo"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-AbC","object":"chat.completion.chunk","created":1727000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_1bb46167f9","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"cation\": \"Paris\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-AbC","object":"chat.completion.chunk","created":1727000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_1bb46167f9","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_Yb2","type":"function","function":{"name":"get_time","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-AbC","object":"chat.completion.chunk","created":1727000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_1bb46167f9","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"tz\": \"CET\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-AbC","object":"chat.completion.chunk","created":1727000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_1bb46167f9","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}

data: {"id":"chatcmpl-AbC","object":"chat.completion.chunk","created":1727000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_1bb46167f9","choices":[],"usage":{"prompt_tokens":80,"completion_tokens":44,"total_tokens":124,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}

data: [DONE]
"#;

    #[test]
    fn openai_stream_with_tool_calls_and_usage_chunk() {
        let (acc, kinds) = accumulate(AccumulateMode::Full, OPENAI_TOOL_STREAM);
        use ChunkKind::*;
        assert_eq!(
            kinds,
            [Chunk, Chunk, Chunk, Chunk, Chunk, Chunk, UsageOnly, Done]
        );
        assert!(acc.is_done());
        assert_eq!(acc.malformed_events(), 0);
        assert_eq!(acc.model(), Some("gpt-4o-mini-2024-07-18"));
        assert_eq!(
            acc.usage().map(|u| (u.prompt_tokens, u.completion_tokens)),
            Some((80, 44))
        );
        let info = acc.into_response();
        let calls = &info.choices[0].tool_calls;
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (
                calls[0].id.as_deref(),
                calls[0].name.as_str(),
                calls[0].arguments.as_str()
            ),
            (Some("call_Xa1"), "get_weather", "{\"location\": \"Paris\"}")
        );
        assert_eq!(
            (
                calls[1].id.as_deref(),
                calls[1].name.as_str(),
                calls[1].arguments.as_str()
            ),
            (Some("call_Yb2"), "get_time", "{\"tz\": \"CET\"}")
        );
        assert_eq!(info.choices[0].finish_reason.as_deref(), Some("tool_calls"));
    }

    #[test]
    fn count_only_mode_keeps_usage_and_finish_but_no_text() {
        let (full, _) = accumulate(AccumulateMode::Full, OPENAI_TOOL_STREAM);
        let (count, kinds) = accumulate(AccumulateMode::CountOnly, OPENAI_TOOL_STREAM);
        assert_eq!(kinds.last(), Some(&ChunkKind::Done));
        assert_eq!(count.usage(), full.usage());
        assert_eq!(count.output_bytes(), full.output_bytes());
        assert_eq!(count.delta_events(), full.delta_events());
        assert_eq!(count.output_bytes(), 34);
        let info = count.into_response();
        assert_eq!(info.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        assert!(info.choices[0].tool_calls.is_empty() && info.choices[0].text.is_empty());
    }

    #[test]
    fn openai_text_stream_with_two_choices() {
        let sse = r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null},{"index":1,"delta":{"role":"assistant","content":""},"finish_reason":null}]}
data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":1,"delta":{"content":"Bon"},"finish_reason":null}]}
data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}
data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"lo \"world\"\n"},"finish_reason":null}]}
data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":1,"delta":{"content":"jour"},"finish_reason":"stop"}]}
data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}
data: [DONE]"#;
        let (acc, _) = accumulate(AccumulateMode::Full, sse);
        assert_eq!(acc.usage(), None);
        let info = acc.into_response();
        assert_eq!(info.choices.len(), 2);
        assert_eq!(info.choices[0].text, "Hello \"world\"\n");
        assert_eq!(info.choices[0].finish_reason.as_deref(), Some("length"));
        assert_eq!(info.choices[1].text, "Bonjour");
        assert_eq!(info.choices[1].finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn deepseek_reasoning_stream() {
        let sse = r#"data: {"id":"a1","object":"chat.completion.chunk","created":1738000000,"model":"deepseek-reasoner","system_fingerprint":"fp_5417b77867_prod","choices":[{"index":0,"delta":{"role":"assistant","content":null,"reasoning_content":""},"logprobs":null,"finish_reason":null}]}
data: {"id":"a1","object":"chat.completion.chunk","created":1738000000,"model":"deepseek-reasoner","system_fingerprint":"fp_5417b77867_prod","choices":[{"index":0,"delta":{"content":null,"reasoning_content":"Okay"},"logprobs":null,"finish_reason":null}]}
data: {"id":"a1","object":"chat.completion.chunk","created":1738000000,"model":"deepseek-reasoner","system_fingerprint":"fp_5417b77867_prod","choices":[{"index":0,"delta":{"content":null,"reasoning_content":", 9.11 vs 9.8."},"logprobs":null,"finish_reason":null}]}
data: {"id":"a1","object":"chat.completion.chunk","created":1738000000,"model":"deepseek-reasoner","system_fingerprint":"fp_5417b77867_prod","choices":[{"index":0,"delta":{"content":"9.8","reasoning_content":null},"logprobs":null,"finish_reason":null}]}
data: {"id":"a1","object":"chat.completion.chunk","created":1738000000,"model":"deepseek-reasoner","system_fingerprint":"fp_5417b77867_prod","choices":[{"index":0,"delta":{"content":" is larger.","reasoning_content":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":13,"completion_tokens":250,"total_tokens":263,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":240},"prompt_cache_hit_tokens":0,"prompt_cache_miss_tokens":13}}
data: [DONE]"#;
        let (acc, kinds) = accumulate(AccumulateMode::Full, sse);
        // DeepSeek puts usage on the last content chunk: not a usage-only chunk.
        assert!(!kinds.contains(&ChunkKind::UsageOnly));
        let usage = acc.usage().expect("usage");
        assert_eq!(
            (usage.total_tokens, usage.reasoning_tokens),
            (263, Some(240))
        );
        let info = acc.into_response();
        assert_eq!(info.choices[0].reasoning, "Okay, 9.11 vs 9.8.");
        assert_eq!(info.choices[0].text, "9.8 is larger.");
    }

    #[test]
    fn vllm_stream_with_continuous_usage_and_reasoning() {
        let sse = r#"data: {"id":"chatcmpl-9f2","object":"chat.completion.chunk","created":1730000000,"model":"Qwen/QwQ-32B","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":{"prompt_tokens":10,"total_tokens":10,"completion_tokens":0}}
data: {"id":"chatcmpl-9f2","object":"chat.completion.chunk","created":1730000000,"model":"Qwen/QwQ-32B","choices":[{"index":0,"delta":{"reasoning_content":"Hmm"},"logprobs":null,"finish_reason":null}],"usage":{"prompt_tokens":10,"total_tokens":11,"completion_tokens":1}}
data: {"id":"chatcmpl-9f2","object":"chat.completion.chunk","created":1730000000,"model":"Qwen/QwQ-32B","choices":[{"index":0,"delta":{"reasoning":"."},"logprobs":null,"finish_reason":null}],"usage":{"prompt_tokens":10,"total_tokens":12,"completion_tokens":2}}
data: {"id":"chatcmpl-9f2","object":"chat.completion.chunk","created":1730000000,"model":"Qwen/QwQ-32B","choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":"stop","stop_reason":null}],"usage":{"prompt_tokens":10,"total_tokens":13,"completion_tokens":3}}
data: {"id":"chatcmpl-9f2","object":"chat.completion.chunk","created":1730000000,"model":"Qwen/QwQ-32B","choices":[],"usage":{"prompt_tokens":10,"total_tokens":13,"completion_tokens":3}}
data: [DONE]"#;
        let (acc, kinds) = accumulate(AccumulateMode::Full, sse);
        assert_eq!(kinds[4], ChunkKind::UsageOnly);
        assert_eq!(acc.usage().map(|u| u.total_tokens), Some(13));
        let info = acc.into_response();
        assert_eq!(info.choices[0].reasoning, "Hmm.");
        assert_eq!(info.choices[0].text, "Hi");
    }

    #[test]
    fn completions_stream() {
        let sse = r#"data: {"id":"cmpl-1","object":"text_completion","created":1,"choices":[{"text":"Once","index":0,"logprobs":null,"finish_reason":null}],"model":"gpt-3.5-turbo-instruct"}
data: {"id":"cmpl-1","object":"text_completion","created":1,"choices":[{"text":" upon","index":0,"logprobs":null,"finish_reason":"length"}],"model":"gpt-3.5-turbo-instruct"}
data: [DONE]"#;
        let (acc, _) = accumulate(AccumulateMode::Full, sse);
        assert_eq!(acc.into_response().choices[0].text, "Once upon");
    }

    #[test]
    fn responses_api_stream() {
        let sse = r#"event: response.created
data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","created_at":1741290958,"status":"in_progress","model":"gpt-4.1-2025-04-14","output":[],"usage":null}}

event: response.output_item.added
data: {"type":"response.output_item.added","sequence_number":1,"output_index":0,"item":{"id":"msg_1","type":"message","status":"in_progress","role":"assistant","content":[]}}

event: response.output_text.delta
data: {"type":"response.output_text.delta","sequence_number":2,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hi"}

event: response.output_text.delta
data: {"type":"response.output_text.delta","sequence_number":3,"item_id":"msg_1","output_index":0,"content_index":0,"delta":" there!"}

event: response.output_item.added
data: {"type":"response.output_item.added","sequence_number":4,"output_index":1,"item":{"type":"function_call","id":"fc_1","call_id":"call_1","name":"get_weather","arguments":""}}

event: response.function_call_arguments.delta
data: {"type":"response.function_call_arguments.delta","sequence_number":5,"item_id":"fc_1","output_index":1,"delta":"{\"city\":"}

event: response.function_call_arguments.delta
data: {"type":"response.function_call_arguments.delta","sequence_number":6,"item_id":"fc_1","output_index":1,"delta":"\"Paris\"}"}

event: response.function_call_arguments.done
data: {"type":"response.function_call_arguments.done","sequence_number":7,"item_id":"fc_1","output_index":1,"arguments":"{\"city\":\"Paris\"}"}

event: response.reasoning_summary_text.delta
data: {"type":"response.reasoning_summary_text.delta","sequence_number":8,"item_id":"rs_1","output_index":2,"summary_index":0,"delta":"Greeting."}

event: response.completed
data: {"type":"response.completed","sequence_number":9,"response":{"id":"resp_1","object":"response","created_at":1741290958,"status":"completed","model":"gpt-4.1-2025-04-14","output":[{"id":"msg_1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hi there!","annotations":[]}]}],"usage":{"input_tokens":37,"input_tokens_details":{"cached_tokens":0},"output_tokens":11,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":48}}}
"#;
        let (acc, kinds) = accumulate(AccumulateMode::Full, sse);
        assert!(kinds.iter().all(|k| *k == ChunkKind::Chunk));
        assert!(acc.is_done());
        assert!(!acc.saw_error());
        assert_eq!(acc.model(), Some("gpt-4.1-2025-04-14"));
        assert_eq!(
            acc.usage(),
            Some(Usage {
                prompt_tokens: 37,
                completion_tokens: 11,
                total_tokens: 48,
                cached_tokens: Some(0),
                reasoning_tokens: Some(0),
            })
        );
        let info = acc.into_response();
        let choice = &info.choices[0];
        assert_eq!(choice.text, "Hi there!");
        assert_eq!(choice.reasoning, "Greeting.");
        assert_eq!(choice.finish_reason.as_deref(), Some("completed"));
        assert_eq!(choice.tool_calls.len(), 1);
        assert_eq!(choice.tool_calls[0].name, "get_weather");
        assert_eq!(choice.tool_calls[0].id.as_deref(), Some("call_1"));
        assert_eq!(choice.tool_calls[0].arguments, "{\"city\":\"Paris\"}");
    }

    #[test]
    fn responses_function_call_without_argument_deltas() {
        let mut acc = StreamAccumulator::new(AccumulateMode::Full);
        acc.observe(br#"{"type":"response.output_item.added","output_index":0,"item":{"type":"function_call","id":"fc_9","call_id":"call_9","name":"lookup","arguments":""}}"#);
        acc.observe(br#"{"type":"response.output_item.done","output_index":0,"item":{"type":"function_call","id":"fc_9","call_id":"call_9","name":"lookup","arguments":"{\"q\":1}"}}"#);
        let info = acc.into_response();
        let call = &info.choices[0].tool_calls[0];
        assert_eq!(
            (call.name.as_str(), call.arguments.as_str()),
            ("lookup", "{\"q\":1}")
        );
        assert_eq!(call.id.as_deref(), Some("call_9"));
    }

    #[test]
    fn azure_empty_model_in_first_chunk_is_skipped() {
        let mut acc = StreamAccumulator::new(AccumulateMode::CountOnly);
        let first = br#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}"#;
        assert_eq!(acc.observe(first), ChunkKind::Chunk);
        acc.observe(
            br#"{"choices":[{"index":0,"delta":{"content":"Hi"}}],"model":"gpt-4o-2024-11-20"}"#,
        );
        assert_eq!(acc.model(), Some("gpt-4o-2024-11-20"));
    }

    #[test]
    fn responses_failed_and_error_chunks_are_flagged() {
        let mut acc = StreamAccumulator::new(AccumulateMode::CountOnly);
        acc.observe(br#"{"type":"response.failed","response":{"status":"failed","error":{"code":"server_error","message":"x"},"usage":null}}"#);
        assert!(acc.saw_error() && !acc.is_done());
        let mut acc = StreamAccumulator::new(AccumulateMode::CountOnly);
        acc.observe(br#"{"error":{"message":"The server had an error","type":"server_error"}}"#);
        assert!(acc.saw_error());
    }

    #[test]
    fn malformed_events_are_counted_and_skipped() {
        let mut acc = StreamAccumulator::new(AccumulateMode::Full);
        let good = br#"{"choices":[{"index":0,"delta":{"content":"ok"}}]}"#;
        for bad in [
            &b"{\"choices\":[{\"delta\":{\"content\":\"cut"[..],
            b"not json",
            b"[1,2,3]",
            b"\"str\"",
            b"{\"choices\":{\"a\":1}}",
            b"{\"choices\":[1]}",
            b"\xff\xfe",
        ] {
            assert_eq!(acc.observe(bad), ChunkKind::Malformed, "{bad:?}");
        }
        assert_eq!(acc.observe(good), ChunkKind::Chunk);
        assert_eq!(acc.observe(b"  "), ChunkKind::Empty);
        assert_eq!(acc.malformed_events(), 7);
        assert_eq!(acc.events(), 9);
        assert_eq!(acc.into_response().choices[0].text, "ok");
    }

    #[test]
    fn nulls_and_odd_types_inside_chunks_are_tolerated() {
        let mut acc = StreamAccumulator::new(AccumulateMode::Full);
        let chunk = br#"{"model":{"weird":true},"choices":[{"index":"0","delta":null,"finish_reason":null},
            {"index":null,"delta":{"content":{"x":1},"tool_calls":[{"index":0,"function":null}],"reasoning_content":7}}],
            "usage":{"prompt_tokens":"n/a"}}"#;
        assert_eq!(acc.observe(chunk), ChunkKind::Chunk);
        assert_eq!(acc.malformed_events(), 0);
        assert_eq!(acc.model(), None);
        assert_eq!(acc.usage(), None);
    }

    #[test]
    fn usage_only_detection() {
        assert!(is_usage_only(
            br#"{"id":"x","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#
        ));
        // Azure's first chunk: empty choices, prompt filter results, no usage.
        assert!(!is_usage_only(
            br#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}"#
        ));
        assert!(!is_usage_only(br#"{"choices":[],"usage":null}"#));
        assert!(!is_usage_only(
            br#"{"choices":[{"index":0,"delta":{}}],"usage":{"total_tokens":3}}"#
        ));
        assert!(!is_usage_only(br#"{"usage":{"total_tokens":3}}"#));
        assert!(!is_usage_only(br#"[[],{"total_tokens":3}]"#));
        assert!(!is_usage_only(b"[DONE]"));
        assert!(!is_usage_only(b"{"));
    }

    // ---- Requests ----

    #[test]
    fn request_info_chat() {
        let body = br#"{
          "model": "gpt-4o",
          "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
          "stream": true,
          "stream_options": {"include_usage": true},
          "max_completion_tokens": 256, "max_tokens": 100, "n": 2, "temperature": 0.2
        }"#;
        let info = RequestInfo::parse(body).expect("parses");
        assert_eq!(info.model.as_deref(), Some("gpt-4o"));
        assert!(info.stream && info.include_usage);
        assert_eq!((info.max_tokens, info.n), (Some(256), Some(2)));
        assert_eq!(info.input.as_ref().map(|i| i.0), Some(InputField::Messages));
        assert_eq!(
            info.input_json(body),
            Some(
                r#"[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]"#
            )
        );
    }

    #[test]
    fn request_info_completions_responses_and_defaults() {
        let body =
            br#"{"model":"gpt-3.5-turbo-instruct","prompt":"Say this is a test","max_tokens":7}"#;
        let info = RequestInfo::parse(body).expect("parses");
        assert!(!info.stream && !info.include_usage);
        assert_eq!(info.max_tokens, Some(7));
        assert_eq!(info.input_json(body), Some("\"Say this is a test\""));

        let body = br#"{"model":"gpt-4.1","input":[{"role":"user","content":"Hi"}],"max_output_tokens":50,"stream":"yes"}"#;
        let info = RequestInfo::parse(body).expect("parses");
        assert!(!info.stream, "only a boolean true streams");
        assert_eq!(info.max_tokens, Some(50));
        assert_eq!(info.input.as_ref().map(|i| i.0), Some(InputField::Input));

        let info =
            RequestInfo::parse(br#"{"stream":true,"stream_options":[true]}"#).expect("parses");
        assert!(
            info.stream && !info.include_usage,
            "an array is not stream options"
        );
        let info = RequestInfo::parse(br#"{"model":null,"stream_options":null,"messages":null}"#)
            .expect("parses");
        assert_eq!(info.model, None);
        assert_eq!(info.input, None);
        assert_eq!(RequestInfo::parse(b"[]"), None);
        assert_eq!(RequestInfo::parse(br#"{"model":"a","model":"b"}"#), None);
    }

    /// `body` with `stream_options.include_usage` set, the way a reader would expect.
    fn expected_with_usage(body: &[u8]) -> Value {
        let mut v: Value = serde_json::from_slice(body).expect("json");
        let options = &mut v["stream_options"];
        if !options.is_object() {
            *options = json!({});
        }
        options["include_usage"] = json!(true);
        v
    }

    #[test]
    fn include_usage_is_added_or_set() {
        for body in [
            &br#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}],"stream":true}"#[..],
            br#"{"stream":true,"stream_options":{}}"#,
            br#"{"stream":true,"stream_options":{ }}"#,
            br#"{"stream":true,"stream_options":{"foo":[1,{"a":null}]}}"#,
            br#"{"stream":true,"stream_options":{"include_usage":false,"x":1}}"#,
            br#"{"stream":true,"stream_options":{"include_usage":null}}"#,
            br#"{"stream":true,"stream_options":null}"#,
            br#"{"stream":true,"stream_options":"bogus"}"#,
            b"{\n  \"stream\" : true ,\n  \"seed\": 123456789012345678901234567890, \"t\": 1e2\n}\n\n",
        ] {
            let out = with_include_usage(body).expect("rewritten");
            let got: Value = serde_json::from_slice(&out)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
            assert_eq!(got, expected_with_usage(body), "{}", String::from_utf8_lossy(body));
            // Rewriting again is a no-op.
            assert_eq!(with_include_usage(&out), None);
        }
        // A splice: everything else is byte-identical, even numbers serde would re-spell.
        let body = b"{\n  \"stream\" : true ,\n  \"seed\": 123456789012345678901234567890, \"t\": 1e2\n}\n\n";
        assert_eq!(
            with_include_usage(body).map(String::from_utf8),
            Some(Ok("{\n  \"stream\" : true ,\n  \"seed\": 123456789012345678901234567890, \"t\": 1e2\n,\"stream_options\":{\"include_usage\":true}}\n\n".to_owned()))
        );
    }

    #[test]
    fn include_usage_is_left_alone_when_not_needed() {
        for body in [
            &br#"{"stream":true,"stream_options":{"include_usage":true}}"#[..],
            br#"{"stream":false}"#,
            br#"{"stream":"true"}"#,
            br#"{"model":"gpt-4o"}"#,
            br#"[{"stream":true}]"#,
            br#"{"stream":true,"stream":true}"#,
            br#"{"stream":true,"stream_options":{"include_usage":false,"include_usage":false}}"#,
            b"{\"stream\":true",
            b"",
        ] {
            assert_eq!(
                with_include_usage(body),
                None,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// Arbitrary JSON values, for the property tests.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            (-1e6f64..1e6).prop_map(|f| json!(f)),
            "[a-z\\\\\"\u{e9}\u{1F980} ]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z_]{1,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn include_usage_preserves_every_other_value(
            mut body in proptest::collection::btree_map("[a-z_]{1,8}", json_value(), 0..6)
                .prop_map(|m| m.into_iter().collect::<serde_json::Map<String, Value>>()),
            options in prop_oneof![Just(None), json_value().prop_map(Some)],
            pretty in any::<bool>(),
        ) {
            body.insert("stream".into(), Value::Bool(true));
            if let Some(options) = options {
                body.insert("stream_options".into(), options);
            }
            let body = Value::Object(body);
            let text = if pretty {
                serde_json::to_vec_pretty(&body)
            } else {
                serde_json::to_vec(&body)
            }
            .expect("serialises");
            let already = body["stream_options"]["include_usage"] == Value::Bool(true);
            match with_include_usage(&text) {
                None => prop_assert!(already),
                Some(out) => {
                    let got: Value = serde_json::from_slice(&out).expect("valid JSON");
                    prop_assert_eq!(got, expected_with_usage(&text));
                }
            }
        }

        #[test]
        fn observe_and_parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut acc = StreamAccumulator::new(AccumulateMode::Full);
            acc.observe(&data);
            is_usage_only(&data);
            parse_response(&data);
            RequestInfo::parse(&data);
            with_include_usage(&data);
        }

        #[test]
        fn observe_never_panics_on_mutated_chunks(
            cut in 0usize..2000,
            flip in 0usize..2000,
            byte in any::<u8>(),
        ) {
            for line in OPENAI_TOOL_STREAM.lines().filter_map(|l| l.strip_prefix("data: ")) {
                let mut data = line.as_bytes().to_vec();
                if !data.is_empty() {
                    let at = flip % data.len();
                    data[at] = byte;
                }
                data.truncate(cut.max(1));
                let mut acc = StreamAccumulator::new(AccumulateMode::Full);
                acc.observe(&data);
                is_usage_only(&data);
                parse_response(&data);
            }
        }
    }
}
