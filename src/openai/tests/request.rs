use super::*;

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
        Some(r#"[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]"#)
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

    let info = RequestInfo::parse(br#"{"stream":true,"stream_options":[true]}"#).expect("parses");
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

/// What the body phase read before [`RequestInfo::scan`]: three separate parses.
fn three_passes(body: &[u8]) -> RequestScan {
    let info = RequestInfo::parse(body);
    let odd_model = info.as_ref().is_some_and(|i| i.model.is_none())
        && super::super::request::has_odd_model(body);
    RequestScan {
        info,
        ambiguous_model: crate::model_names::json_model_is_ambiguous(body),
        odd_model,
    }
}

#[test]
fn one_scan_judges_the_model_as_the_three_passes_did() {
    for body in [
        &br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}]}"#[..],
        br#"{"model":"a","MODEL":"b"}"#,
        br#"{"model":"a","model":"b"}"#,
        br#"{"Model":"b","model":"a"}"#,
        br#"{"model":"a","mod\u0045l":"b"}"#,
        br#"{"mod\u0065l":"a"}"#,
        br#"{"MODEL":"b"}"#,
        br#"{"model":["gpt-4o"]}"#,
        br#"{"model":{"name":"gpt-4o"}}"#,
        br#"{"model":7,"messages":[]}"#,
        br#"{"model":null}"#,
        br#"{"messages":[],"messages":[]}"#,
        br#"{"model":"a","x":{"y":1},"MODEL":null}"#,
        br#"{"model":"a","messages":"\ud800","MODEL":1}"#,
        b"{\"model\":\"a\",\"x\":\"\xff\",\"MODEL\":1}",
        b"{\"model\":\"\xff\"}",
        b"{\"model\":[\"\xe9\"]}",
        br#"{"model":"a"} {"model":"b"}"#,
        br#"[{"model":"a","MODEL":"b"}]"#,
        b"not json",
        b"",
    ] {
        assert_eq!(
            RequestInfo::scan(body),
            three_passes(body),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let scan = RequestInfo::scan(br#"{"model":"a","MODEL":"b"}"#);
    assert!(scan.ambiguous_model);
    let scan = RequestInfo::scan(br#"{"model":["gpt-4o"]}"#);
    assert!(scan.odd_model && scan.info.is_some());
}

/// Top-level members for [`scan_equals_the_three_passes`]: keys the scan reads or judges (case
/// variants and escapes of `model` too) and values of every kind, broken ones included.
fn member() -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![
        Just("model"),
        Just("MODEL"),
        Just("Model"),
        Just("mod\\u0065l"),
        Just("mod\\u0045l"),
        Just("modelx"),
        Just("stream"),
        Just("stream_options"),
        Just("max_tokens"),
        Just("max_completion_tokens"),
        Just("max_output_tokens"),
        Just("n"),
        Just("messages"),
        Just("prompt"),
        Just("input"),
        Just("caching"),
        Just("temperature"),
    ];
    let value = prop_oneof![
        4 => json_value().prop_map(|v| serde_json::to_vec(&v).expect("serialises")),
        1 => Just(b"\"gpt-4o\"".to_vec()),
        1 => Just(b"{\"include_usage\":true}".to_vec()),
        1 => Just(b"\"\\ud800\"".to_vec()),
        1 => Just(b"\"\xff\"".to_vec()),
        // Not UTF-8, inside an array: skipped unchecked by serde_json, never a reason to
        // call a `model` anything but odd.
        1 => Just(b"[\"\xe9\"]".to_vec()),
        1 => Just(b"tru".to_vec()),
        1 => Just(format!("\"{}\"", "x".repeat(1100)).into_bytes()),
    ];
    (key, value).prop_map(|(k, v)| [format!("\"{k}\":").into_bytes(), v].concat())
}

proptest! {
    #[test]
    fn scan_equals_the_three_passes(
        members in proptest::collection::vec(member(), 0..6),
        (open, close) in prop_oneof![
            4 => Just(("{", "}")),
            1 => Just((" \n{", "} ")),
            1 => Just(("[", "]")),
            1 => Just(("{", "} x")),
            1 => Just(("{", "")),
        ],
    ) {
        let body = [open.as_bytes(), &members.join(&b","[..]), close.as_bytes()].concat();
        let scan = RequestInfo::scan(&body);
        prop_assert_eq!(&scan, &three_passes(&body));
        // The prompt estimate reads the length without the text.
        if let Some(info) = &scan.info {
            prop_assert_eq!(info.input_len(), info.input_json(&body).map(str::len));
        }
    }
}

proptest! {
    /// Wherever the usage request is spliced, the conversation's range follows its bytes.
    #[test]
    fn the_conversation_range_follows_the_usage_splice(
        members in proptest::collection::btree_map("[a-z_]{1,8}", json_value(), 0..4),
        options in json_value(),
        options_first in any::<bool>(),
    ) {
        let mut body = String::from(r#"{"stream":true"#);
        let options = format!(r#","stream_options":{}"#, serde_json::to_string(&options).expect("serialises"));
        if options_first {
            body.push_str(&options);
        }
        for (k, v) in &members {
            body.push_str(&format!(r#",{}:{}"#, serde_json::to_string(k).expect("k"), v));
        }
        body.push_str(r#","messages":[{"role":"user","content":"hi \u00e9"}]"#);
        if !options_first {
            body.push_str(&options);
        }
        body.push('}');
        let Some(mut info) = RequestInfo::parse(body.as_bytes()) else {
            // A member named like a field read here, twice.
            return Ok(());
        };
        let before = info.input_json(body.as_bytes()).map(str::to_owned);
        prop_assert!(before.is_some());
        if let Some((out, splice)) = with_include_usage_at(body.as_bytes()) {
            info.spliced(&splice);
            prop_assert_eq!(info.input_json(&out).map(str::to_owned), before);
            prop_assert_eq!(info.input_len(), info.input_json(&out).map(str::len));
        }
    }
}
