use super::*;

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
