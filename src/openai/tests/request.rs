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
