//! Tests of failover's pure parts.

use super::says_key_invalid;

#[test]
fn only_openais_own_words_call_a_key_invalid() {
    let openai = br#"{"error":{"message":"Incorrect API key provided: sk-ab***cd.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
    assert!(says_key_invalid(openai));
    let no_code = br#"{"error":{"message":"Incorrect API key provided: sk-ab***cd.","type":"invalid_request_error","param":null,"code":null}}"#;
    assert!(says_key_invalid(no_code));
    for about_the_request in [
        &br#"{"error":{"message":"OpenAI-Organization header should match organization for API key","type":"invalid_request_error","param":null,"code":"mismatched_organization"}}"#[..],
        br#"{"error":{"message":"You have insufficient permissions for this operation. Missing scopes: api.model.read.","type":"invalid_request_error","param":null,"code":null}}"#,
        br#"{"error":{"message":"Incorrect API key provided","type":"server_error"}}"#,
        br#"invalid_api_key"#,
        b"",
    ] {
        assert!(!says_key_invalid(about_the_request));
    }
}
