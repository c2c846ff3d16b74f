//! One chat-log record → one `aifd convert` entry: the filter (successful, complete chats
//! only), the reshape into openai-forward's eight fields, and the counts of what was skipped.

use serde::Serialize;
use serde_json::{Map, Value};

/// One converted chat, field for field (and in the order of) an `aifd convert` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Conversation {
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
    #[cfg(test)] // a convenience for the tests; the CLI reports per route
    /// As a JSON object. (Key order in a `serde_json::Value` is alphabetical unless the
    /// `preserve_order` feature is on; files are written from the struct, in openai-forward's
    /// order.)
    pub(crate) fn to_value(&self) -> Value {
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
pub(crate) struct ConvertStats {
    /// Became an output entry.
    pub converted: u64,
    /// Well-formed but not a successful, complete chat (other endpoint, error status, cut-off
    /// stream): openai-forward has no result line for these either.
    pub skipped: u64,
    /// Not JSON, not an object, or a chat record without a usable `messages` list.
    pub malformed: u64,
}

/// Record-at-a-time converter that keeps the counts and the route seen, so a whole log never
/// has to be in memory.
#[derive(Debug, Default)]
pub(crate) struct Converter {
    stats: ConvertStats,
    route: Option<String>,
}

/// A record that cannot be converted although it claims to be a chat.
struct Malformed;

impl Converter {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Converts (and counts) one parsed record; `None` when it is not an entry.
    pub(crate) fn convert(&mut self, record: Value) -> Option<Conversation> {
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
    pub(crate) fn convert_line(&mut self, line: &[u8]) -> Option<Conversation> {
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

    pub(crate) fn stats(&self) -> ConvertStats {
        self.stats
    }

    /// The first `route` seen in the records.
    pub(crate) fn route(&self) -> Option<&str> {
        self.route.as_deref()
    }
}

#[cfg(test)] // a convenience for the tests; the CLI reports per route
/// Converts records (in log order) to the JSON array `aifd convert` would write. Records that
/// are not successful complete chats are left out; see [`Converter`] for the counts.
pub(crate) fn convert_records(records: impl Iterator<Item = Value>) -> Value {
    let mut converter = Converter::new();
    let entries = records.filter_map(|r| converter.convert(r));
    Value::Array(entries.map(|c| c.to_value()).collect())
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
pub(super) fn datetime(time: &str) -> String {
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
