use super::entry::datetime;
use super::files::ArrayWriter;
use super::*;
use crate::chatlog::{log_files, ChatLog, ChatLogConfig, ACTIVE_FILE};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::fs;
use std::io;
use std::path::Path;

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
    tools["request"]["tools"] = json!([{"type": "function", "function": {"name": "get_weather"}}]);
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
        prop::sample::select(vec!["chat", "user", "role", "content", "x"]).prop_map(Value::from),
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
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
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
