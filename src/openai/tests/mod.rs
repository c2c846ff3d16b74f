//! Tests of the OpenAI payload readers and request edits, by concern; the shared fixtures and
//! the property tests (no panic on any input, edits keep every other value) live here.

use super::*;
use proptest::prelude::*;
use serde_json::{json, Value};

pub(crate) mod allocs;
mod edit;
mod request;
mod response;
mod stream;

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
