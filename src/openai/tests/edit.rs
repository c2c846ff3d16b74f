use super::*;

#[test]
fn model_is_replaced_in_place() {
    let body = br#"{ "messages": [{"role":"user","content":"model"}], "model" : "gpt-4o", "n": 1}"#;
    let out = with_model(body, "gpt-4o-mini").unwrap();
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        r#"{ "messages": [{"role":"user","content":"model"}], "model" : "gpt-4o-mini", "n": 1}"#
    );
    assert!(with_model(br#"{"messages":[]}"#, "x").is_none());
    assert!(with_model(b"[1]", "x").is_none());
    let quoted = with_model(br#"{"model":"a"}"#, "we\"ird").unwrap();
    assert_eq!(&quoted[..], br#"{"model":"we\"ird"}"#);
}

#[test]
fn include_usage_is_added_or_set() {
    for body in [
        &br#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}],"stream":true}"#[..],
        br#"{"stream":true,"stream_options":{}}"#,
        br#"{"stream":true,"stream_options":{ }}"#,
        br#"{"stream":true,"stream_options":{"foo":[1,{"a":null}]}}"#,
        br#"{"stream":true,"stream_options":{"include_usage":false,"x":1}}"#,
        br#"{"stream":true,"stream_options":{"include_usage":null}}"#,
        br#"{"stream":true,"stream_options":null}"#,
        br#"{"stream":true,"stream_options":"bogus"}"#,
        b"{\n  \"stream\" : true ,\n  \"seed\": 123456789012345678901234567890, \"t\": 1e2\n}\n\n",
    ] {
        let out = with_include_usage(body).expect("rewritten");
        let got: Value = serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
        assert_eq!(
            got,
            expected_with_usage(body),
            "{}",
            String::from_utf8_lossy(body)
        );
        // Rewriting again is a no-op.
        assert_eq!(with_include_usage(&out), None);
    }
    // A splice: everything else is byte-identical, even numbers serde would re-spell.
    let body =
        b"{\n  \"stream\" : true ,\n  \"seed\": 123456789012345678901234567890, \"t\": 1e2\n}\n\n";
    assert_eq!(
            with_include_usage(body).map(String::from_utf8),
            Some(Ok("{\n  \"stream\" : true ,\n  \"seed\": 123456789012345678901234567890, \"t\": 1e2\n,\"stream_options\":{\"include_usage\":true}}\n\n".to_owned()))
        );
}

#[test]
fn include_usage_is_left_alone_when_not_needed() {
    for body in [
        &br#"{"stream":true,"stream_options":{"include_usage":true}}"#[..],
        br#"{"stream":false}"#,
        br#"{"stream":"true"}"#,
        br#"{"model":"gpt-4o"}"#,
        br#"[{"stream":true}]"#,
        br#"{"stream":true,"stream":true}"#,
        br#"{"stream":true,"stream_options":{"include_usage":false,"include_usage":false}}"#,
        b"{\"stream\":true",
        b"",
    ] {
        assert_eq!(
            with_include_usage(body),
            None,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn caching_flag_is_taken_out() {
    let (flag, body) = take_caching_flag(br#"{"model":"m", "caching": true ,"n":[1, 2]}"#);
    assert_eq!(flag, Some(true));
    assert_eq!(body.unwrap(), br#"{"model":"m","n":[1, 2]}"#);
    let (flag, body) = take_caching_flag(br#"{"caching":false}"#);
    assert_eq!((flag, body.unwrap()), (Some(false), b"{}".to_vec()));
    assert_eq!(take_caching_flag(br#"{"model":"m"}"#), (None, None));
    // Only the top-level field.
    let nested = br#"{"messages":[{"content":"\"caching\""}]}"#;
    assert_eq!(take_caching_flag(nested), (None, None));
    let (flag, body) = take_caching_flag(br#"{"caching":"yes","a":1}"#);
    assert_eq!((flag, body.unwrap()), (None, br#"{"a":1}"#.to_vec()));
}

#[test]
fn include_usage_in_place_is_the_same_splice() {
    for body in [
        &br#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}],"stream":true}"#[..],
        br#"{"stream":true,"stream_options":{}}"#,
        br#"{"stream":true,"stream_options":{ }}"#,
        br#"{"stream":true,"stream_options":{"foo":[1,{"a":null}]}}"#,
        br#"{"stream":true,"stream_options":{"include_usage":false,"x":1}}"#,
        br#"{"stream":true,"stream_options":{"include_usage":null}}"#,
        br#"{"stream":true,"stream_options":null}"#,
        br#"{"stream":true,"stream_options":"bogus"}"#,
        b"{\n  \"stream\" : true ,\n  \"seed\": 123456789012345678901234567890, \"t\": 1e2\n}\n\n",
        br#"{"stream":true,"stream_options":{"include_usage":true}}"#,
        br#"{"stream":false}"#,
        br#"[{"stream":true}]"#,
        b"",
    ] {
        let copied = with_include_usage_at(body);
        // With room for the edit, and without (the buffer grows).
        for room in [0, 64] {
            let mut own = bytes::BytesMut::with_capacity(body.len() + room);
            own.extend_from_slice(body);
            let splice = include_usage_in_place(&mut own);
            match &copied {
                Some((out, at)) => {
                    assert_eq!(&own[..], &out[..], "{}", String::from_utf8_lossy(body));
                    assert_eq!(splice.as_ref(), Some(at));
                }
                None => {
                    assert_eq!(splice, None);
                    assert_eq!(&own[..], body);
                }
            }
        }
    }
}
