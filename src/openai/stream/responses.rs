//! Responses API stream events (`response.output_text.delta`, `response.output_item.added`,
//! `response.completed` …) folded into the same choice 0 a Chat Completions stream fills: text,
//! reasoning, function calls (deltas, then the authoritative `.done` arguments), and the final
//! model, usage and finish reason from the `response` object.

use super::StreamAccumulator;
use crate::openai::response::{choice_mut, merge_tool_call, responses_finish};
use crate::openai::wire::StreamChunk;
use crate::openai::AccumulateMode;
use crate::openai::Usage;

impl StreamAccumulator {
    pub(super) fn responses_event(&mut self, kind: &str, chunk: &StreamChunk<'_>) {
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
}
