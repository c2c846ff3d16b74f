use super::*;

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
