//! `llm-forward convert`: our JSONL chat logs → the JSON files openai-forward's `aifd convert`
//! writes, so datasets and scripts built on those files keep working.
//!
//! openai-forward logs a request line and a result line per chat and pairs them by `uid`; only
//! chats with a result (a successful, fully received response) reach the output. Our chat log
//! has one record per request that already holds both halves, so the conversion is a filter and
//! a reshape: records with `endpoint: "chat"`, a 2xx `status` and `complete` not false become
//! one entry each, in log order; other endpoints, errors and cut-off streams are skipped. Each
//! entry has openai-forward's eight fields, in its order: `datetime` (`%Y-%m-%d %H:%M:%S`),
//! `ip`, `model`, `temperature` (1 when the request had none), `messages` as `[{role: content}]`,
//! `tools`, `is_tool_calls` and `assistant` (the answer text, or the `tool_calls` list). The file
//! is a JSON array indented by 2 (like orjson's `OPT_INDENT_2`, no trailing newline), named
//! `chat_<name>.json` where `<name>` is the route with `/` turned into `_` and trimmed, and the
//! root route is `openai` ([`output_file_name`]).
//!
//! Deliberate differences, all lossless where openai-forward lost data: non-string message
//! content (vision parts, `null` for tool-call turns) is kept as JSON instead of being
//! stringified as a Python repr; all `tool_calls` of a streamed answer are kept, not just the
//! first; `datetime` is the record's wall-clock time in the offset it was written with (UTC for
//! `...Z` times), where openai-forward used the server's `TZ`. Keys inside objects passed through
//! from the log (`tools`, tool calls, content parts) come out in alphabetical order, not the
//! client's: `serde_json::Value` keeps no key order without its `preserve_order` feature, and
//! JSON readers do not care. Lines that are not JSON, and chat records without a usable
//! `messages` list, are skipped and counted as malformed, never fatal: a log cut off by a crash
//! still converts.
//!
//! [`convert_dir`] reads each route directory's files oldest first (rotated, then active) and
//! streams entries to a temporary file that is renamed into place, so memory stays at one entry
//! however large the logs are, and a reader never sees half a file.
//!
//! Layout: [`entry`] turns one chat-log record into one entry; [`files`] walks the log
//! directories and writes the output files.

pub(crate) mod entry;
pub(crate) mod files;

#[cfg(test)]
mod tests;

#[cfg(test)]
use entry::{convert_records, ConvertStats, Converter};
pub(crate) use files::convert_dir_report;
#[cfg(test)]
use files::{convert_dir, output_file_name};
