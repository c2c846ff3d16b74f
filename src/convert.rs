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

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::chatlog::{log_files, route_slug};

/// One converted chat, field for field (and in the order of) an `aifd convert` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conversation {
    /// `YYYY-MM-DD HH:MM:SS`; the raw `time` if it is not RFC 3339; null without one.
    pub datetime: Option<String>,
    /// Client IP; `""` when unknown, as openai-forward wrote it.
    pub ip: String,
    pub model: Value,
    pub temperature: Value,
    /// `[{role: content}]`, one single-key object per message.
    pub messages: Vec<Value>,
    pub tools: Value,
    pub is_tool_calls: bool,
    /// The answer text (or null), or the `tool_calls` list when `is_tool_calls`.
    pub assistant: Value,
}

impl Conversation {
    /// As a JSON object. (Key order in a `serde_json::Value` is alphabetical unless the
    /// `preserve_order` feature is on; files are written from the struct, in openai-forward's
    /// order.)
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "datetime".into(),
            self.datetime.clone().map_or(Value::Null, Value::String),
        );
        m.insert("ip".into(), Value::String(self.ip.clone()));
        m.insert("model".into(), self.model.clone());
        m.insert("temperature".into(), self.temperature.clone());
        m.insert("messages".into(), Value::Array(self.messages.clone()));
        m.insert("tools".into(), self.tools.clone());
        m.insert("is_tool_calls".into(), Value::Bool(self.is_tool_calls));
        m.insert("assistant".into(), self.assistant.clone());
        Value::Object(m)
    }
}

/// What happened to the records of one conversion.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConvertStats {
    /// Became an output entry.
    pub converted: u64,
    /// Well-formed but not a successful, complete chat (other endpoint, error status, cut-off
    /// stream): openai-forward has no result line for these either.
    pub skipped: u64,
    /// Not JSON, not an object, or a chat record without a usable `messages` list.
    pub malformed: u64,
}

/// One written output file.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteOutput {
    /// The route prefix, from the records (or guessed from the directory name).
    pub route: String,
    /// The `chat_<name>.json` file written.
    pub path: PathBuf,
    /// The log files read, oldest first.
    pub sources: Vec<PathBuf>,
    pub stats: ConvertStats,
}

/// Record-at-a-time converter that keeps the counts and the route seen, so a whole log never
/// has to be in memory.
#[derive(Debug, Default)]
pub struct Converter {
    stats: ConvertStats,
    route: Option<String>,
}

/// A record that cannot be converted although it claims to be a chat.
struct Malformed;

impl Converter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Converts (and counts) one parsed record; `None` when it is not an entry.
    pub fn convert(&mut self, record: Value) -> Option<Conversation> {
        let Value::Object(record) = record else {
            self.stats.malformed += 1;
            return None;
        };
        if self.route.is_none() {
            self.route = record
                .get("route")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        match conversation(record) {
            Ok(Some(c)) => {
                self.stats.converted += 1;
                Some(c)
            }
            Ok(None) => {
                self.stats.skipped += 1;
                None
            }
            Err(Malformed) => {
                self.stats.malformed += 1;
                None
            }
        }
    }

    /// Converts one raw log line; blank lines are ignored, unparsable ones counted as malformed.
    pub fn convert_line(&mut self, line: &[u8]) -> Option<Conversation> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        match serde_json::from_slice(line) {
            Ok(record) => self.convert(record),
            Err(_) => {
                self.stats.malformed += 1;
                None
            }
        }
    }

    pub fn stats(&self) -> ConvertStats {
        self.stats
    }

    /// The first `route` seen in the records.
    pub fn route(&self) -> Option<&str> {
        self.route.as_deref()
    }
}

/// Converts records (in log order) to the JSON array `aifd convert` would write. Records that
/// are not successful complete chats are left out; see [`Converter`] for the counts.
pub fn convert_records(records: impl Iterator<Item = Value>) -> Value {
    let mut converter = Converter::new();
    let entries = records.filter_map(|r| converter.convert(r));
    Value::Array(entries.map(|c| c.to_value()).collect())
}

/// The output file name openai-forward gives a route: `chat_<route with / → _, trimmed>.json`,
/// `chat_openai.json` for the root route. Characters other than ASCII letters, digits, `-`, `.`
/// and `_` also become `_`, so the name is always one plain path component.
pub fn output_file_name(route: &str) -> String {
    let name: String = route
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = name.trim_matches('_');
    format!(
        "chat_{}.json",
        if name.is_empty() { "openai" } else { name }
    )
}

/// Converts every route directory under `log_dir` (or `log_dir` itself, when it holds log
/// files) into `out_dir/chat_<name>.json`, reading rotated files oldest first. Returns the
/// files written.
pub fn convert_dir(log_dir: &Path, out_dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(convert_dir_report(log_dir, out_dir)?
        .into_iter()
        .map(|o| o.path)
        .collect())
}

/// [`convert_dir`] with per-route counts, for the CLI to print. Route directories are handled
/// in name order; when two routes map to the same openai-forward name (`/` and `/openai` are
/// both `openai`), the later one is written as `chat_<directory>.json` instead, with a warning.
pub fn convert_dir_report(log_dir: &Path, out_dir: &Path) -> io::Result<Vec<RouteOutput>> {
    let mut route_dirs = Vec::new();
    if log_files(log_dir).map_err(|e| at(log_dir, e))?.is_empty() {
        for entry in fs::read_dir(log_dir).map_err(|e| at(log_dir, e))? {
            let entry = entry.map_err(|e| at(log_dir, e))?;
            if entry
                .file_type()
                .map_err(|e| at(&entry.path(), e))?
                .is_dir()
            {
                route_dirs.push(entry.path());
            }
        }
        route_dirs.sort();
    } else {
        route_dirs.push(log_dir.to_path_buf());
    }

    fs::create_dir_all(out_dir).map_err(|e| at(out_dir, e))?;
    let mut taken = HashSet::new();
    let mut outputs = Vec::new();
    for (n, dir) in route_dirs.into_iter().enumerate() {
        let sources = log_files(&dir).map_err(|e| at(&dir, e))?;
        if sources.is_empty() {
            continue;
        }
        // Entries stream into a temporary file; its final name needs the route, which is only
        // known once records have been read.
        let tmp = out_dir.join(format!(".chat_convert_{n}.tmp"));
        let mut converter = Converter::new();
        if let Err(e) = convert_sources(&sources, &mut converter, &tmp) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let dir_slug = route_slug(&dir.file_name().unwrap_or_default().to_string_lossy());
        let route = match converter.route() {
            Some(route) => route.to_owned(),
            None if dir_slug == "root" => "/".to_owned(),
            None => format!("/{dir_slug}"),
        };
        let name = pick_name(&route, &dir_slug, &mut taken);
        let path = out_dir.join(name);
        fs::rename(&tmp, &path).map_err(|e| at(&path, e))?;
        let stats = converter.stats();
        log::info!(
            "convert {route}: {} chats → {} ({} skipped, {} malformed)",
            stats.converted,
            path.display(),
            stats.skipped,
            stats.malformed
        );
        outputs.push(RouteOutput {
            route,
            path,
            sources,
            stats,
        });
    }
    Ok(outputs)
}

/// The io error, with the path it concerns (a bare "No such file or directory" helps nobody).
fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Converts `sources` in order into the JSON array file `tmp`, fsynced.
fn convert_sources(sources: &[PathBuf], converter: &mut Converter, tmp: &Path) -> io::Result<()> {
    let file = File::create(tmp).map_err(|e| at(tmp, e))?;
    let mut out = ArrayWriter::new(BufWriter::new(file));
    let mut line = Vec::new();
    for source in sources {
        let mut reader = BufReader::new(File::open(source).map_err(|e| at(source, e))?);
        loop {
            line.clear();
            // Bytes, not `lines()`: a line of invalid UTF-8 is a malformed record, not an abort.
            if reader
                .read_until(b'\n', &mut line)
                .map_err(|e| at(source, e))?
                == 0
            {
                break;
            }
            if let Some(entry) = converter.convert_line(&line) {
                out.push(&entry).map_err(|e| at(tmp, e))?;
            }
        }
    }
    let file = out
        .finish()
        .and_then(|w| w.into_inner().map_err(io::IntoInnerError::into_error))
        .map_err(|e| at(tmp, e))?;
    file.sync_all().map_err(|e| at(tmp, e))
}

/// Writes a JSON array one entry at a time, byte for byte as `serde_json::to_writer_pretty`
/// writes the whole array (2-space indent, `[]` when empty, no trailing newline). An entry is
/// pretty-printed on its own and indented one level: raw newlines in pretty JSON only ever
/// separate lines (inside strings they are escaped), so prefixing each line is exact.
struct ArrayWriter<W: Write> {
    out: W,
    entries: u64,
    scratch: Vec<u8>,
}

impl<W: Write> ArrayWriter<W> {
    fn new(out: W) -> Self {
        Self {
            out,
            entries: 0,
            scratch: Vec::new(),
        }
    }

    fn push<T: Serialize>(&mut self, entry: &T) -> io::Result<()> {
        self.scratch.clear();
        serde_json::to_writer_pretty(&mut self.scratch, entry)?;
        self.out
            .write_all(if self.entries == 0 { b"[\n" } else { b",\n" })?;
        for (i, line) in self.scratch.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                self.out.write_all(b"\n")?;
            }
            self.out.write_all(b"  ")?;
            self.out.write_all(line)?;
        }
        self.entries += 1;
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        self.out
            .write_all(if self.entries == 0 { b"[]" } else { b"\n]" })?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn pick_name(route: &str, dir_slug: &str, taken: &mut HashSet<String>) -> String {
    let preferred = output_file_name(route);
    if taken.insert(preferred.clone()) {
        return preferred;
    }
    let mut n = 1u32;
    loop {
        let candidate = if n == 1 {
            format!("chat_{dir_slug}.json")
        } else {
            format!("chat_{dir_slug}_{n}.json")
        };
        if taken.insert(candidate.clone()) {
            log::warn!(
                "convert {route}: {preferred} is taken by another route, writing {candidate}"
            );
            return candidate;
        }
        n += 1;
    }
}

/// One record → `Ok(Some)` entry, `Ok(None)` not a successful chat, `Err` unusable chat record.
fn conversation(mut record: Map<String, Value>) -> Result<Option<Conversation>, Malformed> {
    if record.get("endpoint").and_then(Value::as_str) != Some("chat") {
        return Ok(None);
    }
    match record.get("status") {
        None => {}
        Some(status) => match status.as_u64() {
            Some(200..=299) => {}
            Some(_) => return Ok(None),
            None => return Err(Malformed),
        },
    }
    if record.get("complete") == Some(&Value::Bool(false)) {
        return Ok(None);
    }
    let Some(Value::Object(mut request)) = record.remove("request") else {
        return Err(Malformed);
    };
    let Some(Value::Array(raw_messages)) = request.remove("messages") else {
        return Err(Malformed);
    };
    let messages = raw_messages
        .into_iter()
        .map(|message| {
            let Value::Object(mut message) = message else {
                return Err(Malformed);
            };
            let Some(Value::String(role)) = message.remove("role") else {
                return Err(Malformed);
            };
            let content = message.remove("content").unwrap_or(Value::Null);
            Ok(Value::Object(Map::from_iter([(role, content)])))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let (is_tool_calls, assistant) = match record.remove("tool_calls") {
        Some(Value::Array(calls)) if !calls.is_empty() => (true, Value::Array(calls)),
        _ => (false, record.remove("answer").unwrap_or(Value::Null)),
    };
    let model = match record.remove("model") {
        Some(model) if !model.is_null() => model,
        _ => request.remove("model").unwrap_or(Value::Null),
    };
    Ok(Some(Conversation {
        datetime: record.get("time").and_then(Value::as_str).map(datetime),
        ip: match record.remove("client_ip") {
            Some(Value::String(ip)) => ip,
            _ => String::new(),
        },
        model,
        // openai-forward logged `payload.get("temperature", 1)`: absent → 1, explicit null kept.
        temperature: request
            .remove("temperature")
            .unwrap_or_else(|| Value::from(1)),
        messages,
        tools: request.remove("tools").unwrap_or(Value::Null),
        is_tool_calls,
        assistant,
    }))
}

/// RFC 3339 `2024-05-01T12:34:56.789Z` → `2024-05-01 12:34:56` (its own wall clock); anything
/// else is returned unchanged rather than guessed at.
fn datetime(time: &str) -> String {
    let b = time.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let shaped = digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && matches!(b.get(10), Some(b'T' | b't' | b' '))
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19);
    match (shaped, time.get(..10), time.get(11..19)) {
        (true, Some(date), Some(clock)) => format!("{date} {clock}"),
        _ => time.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chatlog::{ChatLog, ChatLogConfig, ACTIVE_FILE};
    use proptest::prelude::*;
    use serde_json::json;

    fn chat(time: &str, route: &str, user: &str, answer: &str) -> Value {
        json!({
            "time": time, "request_id": "r1", "route": route, "client_ip": "203.0.113.7",
            "key_id": "k1", "model": "gpt-4o-mini", "endpoint": "chat",
            "request": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": user}]},
            "answer": answer, "tool_calls": [], "reasoning": null,
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5,
                      "cached_tokens": 0, "reasoning_tokens": 0, "estimated": false},
            "status": 200, "cache": "miss", "latency_ms": 12.5, "ttft_ms": 3.0,
            "stream": true, "complete": true
        })
    }

    fn samples() -> Vec<Value> {
        let mut first = chat("2024-05-01T12:34:56.789Z", "/openai", "Hi", "Hello!");
        first["request"]["temperature"] = json!(0.7);
        first["request"]["messages"] = json!([{"role": "system", "content": "You are terse."}, {"role": "user", "content": "你好"}]);
        let mut tools = chat("2024-05-01T12:35:00+08:00", "/openai", "Weather?", "");
        tools["answer"] = Value::Null;
        tools["client_ip"] = Value::Null;
        tools["request"]["tools"] =
            json!([{"type": "function", "function": {"name": "get_weather"}}]);
        tools["tool_calls"] = json!([
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
        ]);
        let mut embedding = chat("2024-05-01T12:36:00Z", "/openai", "", "");
        embedding["endpoint"] = json!("embeddings");
        embedding["request"] = json!({"input": "abc"});
        let mut error = chat("2024-05-01T12:37:00Z", "/openai", "Hi", "");
        error["status"] = json!(429);
        let mut cut = chat("2024-05-01T12:38:00Z", "/openai", "Hi", "Hel");
        cut["complete"] = json!(false);
        vec![first, tools, embedding, error, cut]
    }

    /// What `aifd convert` writes for the two successful chats in `samples()`. Entry keys are
    /// in openai-forward's order; keys inside passed-through objects (`tools`, tool calls) come
    /// out sorted, because `serde_json::Value` does not keep their order (see the module doc).
    const EXPECTED: &str = r#"[
  {
    "datetime": "2024-05-01 12:34:56",
    "ip": "203.0.113.7",
    "model": "gpt-4o-mini",
    "temperature": 0.7,
    "messages": [
      {
        "system": "You are terse."
      },
      {
        "user": "你好"
      }
    ],
    "tools": null,
    "is_tool_calls": false,
    "assistant": "Hello!"
  },
  {
    "datetime": "2024-05-01 12:35:00",
    "ip": "",
    "model": "gpt-4o-mini",
    "temperature": 1,
    "messages": [
      {
        "user": "Weather?"
      }
    ],
    "tools": [
      {
        "function": {
          "name": "get_weather"
        },
        "type": "function"
      }
    ],
    "is_tool_calls": true,
    "assistant": [
      {
        "function": {
          "arguments": "{\"city\":\"Paris\"}",
          "name": "get_weather"
        },
        "id": "c1",
        "type": "function"
      }
    ]
  }
]"#;

    #[test]
    fn records_convert_to_aifd_entries() {
        let got = convert_records(samples().into_iter());
        let expected: Value = serde_json::from_str(EXPECTED).unwrap();
        assert_eq!(got, expected);

        let mut converter = Converter::new();
        let entries: Vec<_> = samples()
            .into_iter()
            .filter_map(|r| converter.convert(r))
            .collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(converter.route(), Some("/openai"));
        assert_eq!(
            converter.stats(),
            ConvertStats {
                converted: 2,
                skipped: 3,
                malformed: 0
            }
        );
    }

    #[test]
    fn message_content_and_defaults() {
        let mut r = chat("not a time", "/", "x", "ok");
        r["model"] = Value::Null; // falls back to the request's model
        r["request"]["temperature"] = Value::Null; // explicit null stays null
        r["request"]["messages"] = json!([
            {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                         {"type": "image_url", "image_url": {"url": "data:,"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c0"}]},
            {"role": "tool", "tool_call_id": "c0", "content": "42"},
            {"role": "user"}
        ]);
        let got = convert_records(std::iter::once(r));
        assert_eq!(
            got,
            json!([{
                "datetime": "not a time", "ip": "203.0.113.7", "model": "gpt-4o-mini",
                "temperature": null, "tools": null, "is_tool_calls": false, "assistant": "ok",
                "messages": [
                    {"user": [{"type": "text", "text": "what is this?"},
                              {"type": "image_url", "image_url": {"url": "data:,"}}]},
                    {"assistant": null}, {"tool": "42"}, {"user": null}
                ]
            }])
        );
    }

    #[test]
    fn unusable_records_are_counted_not_fatal() {
        let mut converter = Converter::new();
        let mut conversations = Vec::new();
        for line in [
            &b"not json"[..],
            b"{\"endpoint\":\"chat\",\"status\":200",
            b"[1,2]",
            b"\xff\xfe",
            b"   \n",
            br#"{"endpoint":"chat","status":200,"request":{"prompt":"x"}}"#,
            br#"{"endpoint":"chat","status":"ok","request":{"messages":[]}}"#,
            br#"{"endpoint":"chat","request":{"messages":[{"content":"no role"}]}}"#,
            br#"{"endpoint":"chat","request":{"messages":["not an object"]}}"#,
            br#"{"endpoint":"completions","request":{"prompt":"x"}}"#,
            br#"{"endpoint":"chat","request":{"messages":[]},"answer":"minimal"}"#,
        ] {
            conversations.extend(converter.convert_line(line));
        }
        assert_eq!(
            converter.stats(),
            ConvertStats {
                converted: 1,
                skipped: 1,
                malformed: 8
            }
        );
        assert_eq!(conversations[0].assistant, json!("minimal"));
        assert_eq!(conversations[0].datetime, None);
    }

    #[test]
    fn array_writer_matches_pretty_printing_the_whole_array() {
        let entries = [
            json!({"a": [1, {"b": "line\nbreak \"q\""}], "c": {}}),
            json!([]),
            json!("x"),
            json!({"nested": {"deep": [[], [null]]}}),
        ];
        for n in 0..=entries.len() {
            let mut w = ArrayWriter::new(Vec::new());
            for e in &entries[..n] {
                w.push(e).unwrap();
            }
            let got = String::from_utf8(w.finish().unwrap()).unwrap();
            assert_eq!(got, serde_json::to_string_pretty(&entries[..n]).unwrap());
        }
    }

    #[test]
    fn datetimes() {
        assert_eq!(datetime("2024-05-01T12:34:56Z"), "2024-05-01 12:34:56");
        assert_eq!(
            datetime("2024-05-01t12:34:56.123456-05:00"),
            "2024-05-01 12:34:56"
        );
        assert_eq!(datetime("2024-05-01 12:34:56"), "2024-05-01 12:34:56");
        assert_eq!(datetime("2024-05-01"), "2024-05-01");
        assert_eq!(datetime("2024-05-01T12:34:5é"), "2024-05-01T12:34:5é");
        assert_eq!(datetime(""), "");
    }

    #[test]
    fn output_names_follow_openai_forward() {
        assert_eq!(output_file_name("/"), "chat_openai.json");
        assert_eq!(output_file_name("/openai"), "chat_openai.json");
        assert_eq!(output_file_name("/a/b"), "chat_a_b.json");
        assert_eq!(output_file_name("/v1.beta/"), "chat_v1.beta.json");
        assert_eq!(output_file_name("/x\\..\\y"), "chat_x_.._y.json");
    }

    fn write_lines(path: &Path, records: &[Value]) {
        let mut text = String::new();
        for r in records {
            text.push_str(&serde_json::to_string(r).unwrap());
            text.push('\n');
        }
        fs::write(path, text).unwrap();
    }

    #[test]
    fn dir_reads_rotated_files_in_time_order_and_names_outputs() {
        let tmp = tempfile::tempdir().unwrap();
        let logs = tmp.path().join("Log");
        let openai = logs.join("openai");
        fs::create_dir_all(&openai).unwrap();
        let s = samples();
        // Written out of name order on purpose: the name, not creation order, is the time.
        write_lines(&openai.join(ACTIVE_FILE), &s[3..]);
        write_lines(&openai.join("chat.20240501T123600.000Z.jsonl"), &s[1..3]);
        write_lines(&openai.join("chat.20240501T123500.000Z.jsonl"), &s[..1]);
        fs::write(openai.join("notes.txt"), "ignored").unwrap();
        // A crash left a cut-off line; that line is malformed, the rest converts.
        let mut active = fs::read(openai.join(ACTIVE_FILE)).unwrap();
        active.extend_from_slice(b"{\"endpoint\":\"chat\",\"req");
        fs::write(openai.join(ACTIVE_FILE), active).unwrap();

        let root = logs.join("root");
        fs::create_dir_all(&root).unwrap();
        write_lines(
            &root.join(ACTIVE_FILE),
            &[chat("2024-05-02T00:00:00Z", "/", "a", "b")],
        );
        let ab = logs.join("a_b");
        fs::create_dir_all(&ab).unwrap();
        write_lines(
            &ab.join(ACTIVE_FILE),
            &[chat("2024-05-02T00:00:00Z", "/a/b", "c", "d")],
        );
        fs::create_dir_all(logs.join("empty")).unwrap();

        let out = tmp.path().join("out");
        let report = convert_dir_report(&logs, &out).unwrap();
        let names: Vec<_> = report
            .iter()
            .map(|o| {
                (
                    o.route.as_str(),
                    o.path.file_name().unwrap().to_str().unwrap(),
                )
            })
            .collect();
        // `/` and `/openai` are both "openai" to openai-forward: the later directory yields.
        assert_eq!(
            names,
            [
                ("/a/b", "chat_a_b.json"),
                ("/openai", "chat_openai.json"),
                ("/", "chat_root.json")
            ]
        );
        assert_eq!(report[1].sources.len(), 3);
        assert_eq!(
            report[1].stats,
            ConvertStats {
                converted: 2,
                skipped: 3,
                malformed: 1
            }
        );
        assert_eq!(
            fs::read_to_string(out.join("chat_openai.json")).unwrap(),
            EXPECTED
        );
        let mut leftovers: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        leftovers.sort();
        assert_eq!(
            leftovers,
            ["chat_a_b.json", "chat_openai.json", "chat_root.json"]
        );

        // One route directory can be given directly.
        let single = tmp.path().join("single");
        let paths = convert_dir(&openai, &single).unwrap();
        assert_eq!(paths, [single.join("chat_openai.json")]);

        let missing = convert_dir(&tmp.path().join("nope"), &out).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(missing.to_string().contains("nope"));
    }

    #[test]
    fn route_without_records_is_named_from_its_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("gemini");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(ACTIVE_FILE), "garbage\n").unwrap();
        let report = convert_dir_report(tmp.path(), &tmp.path().join("out")).unwrap();
        assert_eq!(report[0].route, "/gemini");
        assert_eq!(
            fs::read_to_string(tmp.path().join("out/chat_gemini.json")).unwrap(),
            "[]"
        );
    }

    #[tokio::test]
    async fn chat_log_output_converts() {
        let tmp = tempfile::tempdir().unwrap();
        let logs = tmp.path().join("Log");
        let log = ChatLog::start(ChatLogConfig {
            dir: logs.clone(),
            max_file_bytes: 4_000, // force rotations: order must survive them
            ..ChatLogConfig::default()
        });
        for i in 0..30 {
            let record = chat(
                "2024-05-01T00:00:00Z",
                "/",
                &format!("q{i}"),
                &format!("a{i}"),
            );
            log.record_json("/", &record);
        }
        log.flush_and_stop().await;
        assert!(log_files(&logs.join("root")).unwrap().len() >= 2);
        let paths = convert_dir(&logs, &tmp.path().join("out")).unwrap();
        assert_eq!(paths, [tmp.path().join("out/chat_openai.json")]);
        let got: Vec<Value> = serde_json::from_slice(&fs::read(&paths[0]).unwrap()).unwrap();
        let answers: Vec<_> = got.iter().map(|c| c["assistant"].clone()).collect();
        let expected: Vec<_> = (0..30).map(|i| json!(format!("a{i}"))).collect();
        assert_eq!(answers, expected);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            prop::sample::select(vec!["chat", "user", "role", "content", "x"])
                .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop::sample::select(vec![
                            "endpoint",
                            "status",
                            "complete",
                            "request",
                            "messages",
                            "role",
                            "content",
                            "answer",
                            "tool_calls",
                            "model",
                            "time",
                            "client_ip",
                            "temperature",
                            "tools",
                            "route",
                        ]),
                        inner
                    ),
                    0..8
                )
                .prop_map(|kv| Value::Object(
                    kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_record_is_counted_exactly_once(records in prop::collection::vec(arb_json(), 0..20)) {
            let n = records.len() as u64;
            let mut converter = Converter::new();
            let entries = records.into_iter().filter_map(|r| converter.convert(r)).count();
            let stats = converter.stats();
            prop_assert_eq!(stats.converted + stats.skipped + stats.malformed, n);
            prop_assert_eq!(entries as u64, stats.converted);
        }

        #[test]
        fn any_line_bytes_never_panic(lines in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..20)) {
            let mut converter = Converter::new();
            for line in &lines {
                let _ = converter.convert_line(line);
            }
            let stats = converter.stats();
            prop_assert!(stats.converted + stats.skipped + stats.malformed <= lines.len() as u64);
        }
    }
}
