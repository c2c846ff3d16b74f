//! Token counts for usage the upstream did not report (a stream cut before its usage chunk, a
//! provider without usage): OpenAI's own BPE tokenizers, o200k for the GPT-4o/4.1/5 and o-series
//! families, cl100k otherwise. Loading a tokenizer takes ~0.1 s and tens of MiB, and counting a
//! long history takes milliseconds, so both happen lazily and off the proxy's worker threads
//! (callers use `spawn_blocking`).

use serde_json::Value;
use tiktoken_rs::CoreBPE;

fn bpe_for(model: &str) -> Option<&'static CoreBPE> {
    let m = model.to_ascii_lowercase();
    let o200k = [
        "gpt-4o",
        "gpt-4.1",
        "gpt-4.5",
        "gpt-5",
        "o1",
        "o3",
        "o4",
        "chatgpt-4o",
    ]
    .iter()
    .any(|p| m.starts_with(p));
    Some(if o200k {
        tiktoken_rs::o200k_base_singleton()
    } else {
        tiktoken_rs::cl100k_base_singleton()
    })
}

/// Tokens in `text` for `model`.
pub fn count(model: &str, text: &str) -> u64 {
    bpe_for(model).map_or((text.len() as u64).div_ceil(4), |bpe| {
        bpe.encode_ordinary(text).len() as u64
    })
}

/// Tokens of a request's conversation (`messages`, `prompt` or `input`, as raw JSON): the text
/// of every string in it, plus OpenAI's per-message overhead of 3 tokens for chat messages.
pub fn count_input(model: &str, raw_json: &str) -> u64 {
    let Ok(value) = serde_json::from_str::<Value>(raw_json) else {
        return count(model, raw_json);
    };
    let mut text = String::new();
    collect_strings(&value, &mut text);
    let messages = match &value {
        Value::Array(items) => items.iter().filter(|m| m.get("role").is_some()).count() as u64,
        _ => 0,
    };
    count(model, &text) + 3 * messages
}

fn collect_strings(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        Value::Object(map) => map.values().for_each(|i| collect_strings(i, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_with_the_models_tokenizer() {
        // "hello world" is two tokens in both encodings.
        assert_eq!(count("gpt-4o", "hello world"), 2);
        assert_eq!(count("gpt-3.5-turbo", "hello world"), 2);
        let input = r#"[{"role":"user","content":"hello world"}]"#;
        // "user", "hello world" and the per-message overhead.
        assert_eq!(
            count_input("gpt-4o", input),
            count("gpt-4o", "user\nhello world\n") + 3
        );
    }
}
