//! Token counts for usage the upstream did not report (a stream cut before its usage chunk, a
//! provider without usage): OpenAI's own BPE tokenizers, o200k for the GPT-4o/4.1/5 and o-series
//! families, cl100k otherwise. Loading a tokenizer takes ~0.1 s and tens of MiB, and counting a
//! long history takes milliseconds, so both happen lazily and off the proxy's worker threads
//! (callers use `spawn_blocking`).

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

/// Most bytes of text handed to the tokenizer at once. BPE works on ~50× its input in memory
/// and CPU grows with it; past this the rest is counted at ~4 bytes a token (the counts this
/// module gives are estimates either way, and marked so).
pub const TOKENIZE_CAP: usize = 256 * 1024;

/// The part of `text` the tokenizer reads (at most `cap` bytes, cut at a character boundary)
/// and how many bytes are left to count by size.
pub fn tokenizer_input(text: &str, cap: usize) -> (&str, usize) {
    if text.len() <= cap {
        return (text, 0);
    }
    let mut at = cap;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    (&text[..at], text.len() - at)
}

/// Tokens in `text` for `model` (the first [`TOKENIZE_CAP`] bytes tokenized, the rest by size).
pub fn count(model: &str, text: &str) -> u64 {
    let (head, rest) = tokenizer_input(text, TOKENIZE_CAP);
    let by_size = (rest as u64).div_ceil(4);
    bpe_for(model).map_or((text.len() as u64).div_ceil(4), |bpe| {
        bpe.encode_ordinary(head).len() as u64 + by_size
    })
}

/// Tokens of a request's conversation (`messages`, `prompt` or `input`, as raw JSON): the text
/// of every string in it, plus OpenAI's per-message overhead of 3 tokens for chat messages.
/// Inline media (base64 `data:` URLs, `input_audio`, `file_data`) is skipped: providers bill it
/// by image tiles or audio seconds, not as text, and tokenizing megabytes of base64 is what
/// made a large prompt cost seconds of CPU. The JSON is walked, not built into a tree, and at
/// most [`TOKENIZE_CAP`] bytes of text are collected (the rest is counted by size).
pub fn count_input(model: &str, raw_json: &str) -> u64 {
    let mut text = Collected::default();
    let mut de = serde_json::Deserializer::from_str(raw_json);
    let walked = serde::de::DeserializeSeed::deserialize(
        Walk {
            out: &mut text,
            depth: 0,
        },
        &mut de,
    );
    if walked.is_err() {
        return count(model, raw_json);
    }
    count(model, &text.text) + (text.overflow as u64).div_ceil(4) + 3 * text.messages
}

/// What the walk of a conversation gathers.
#[derive(Default)]
pub struct Collected {
    /// Text to tokenize (at most [`TOKENIZE_CAP`] bytes).
    pub text: String,
    /// Bytes of text past the cap.
    pub overflow: usize,
    /// Chat messages (objects with a `role`) in the top-level list.
    pub messages: u64,
}

impl Collected {
    fn push(&mut self, s: &str) {
        // Inline media: not text.
        if s.starts_with("data:") {
            return;
        }
        let room = TOKENIZE_CAP.saturating_sub(self.text.len());
        let (head, rest) = tokenizer_input(s, room);
        self.text.push_str(head);
        self.overflow += rest;
        if self.text.len() < TOKENIZE_CAP {
            self.text.push('\n');
        }
    }
}

/// Object members whose values are media, never text.
const MEDIA_KEYS: [&str; 2] = ["input_audio", "file_data"];

/// Collects the strings of a JSON value into `out`, depth-first, without building it.
struct Walk<'a> {
    out: &'a mut Collected,
    depth: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        self.out.push(s);
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let depth = self.depth + 1;
        while seq
            .next_element_seed(Walk {
                out: &mut *self.out,
                depth,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let depth = self.depth + 1;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if MEDIA_KEYS.contains(&key.as_ref()) {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            }
            // A message of the top-level list.
            if depth == 2 && key == "role" {
                self.out.messages += 1;
            }
            map.next_value_seed(Walk {
                out: &mut *self.out,
                depth,
            })?;
        }
        Ok(())
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

    #[test]
    fn the_tokenizer_reads_at_most_the_cap() {
        let huge = "word ".repeat(4 * TOKENIZE_CAP / 5);
        let (head, rest) = tokenizer_input(&huge, TOKENIZE_CAP);
        assert_eq!(head.len(), TOKENIZE_CAP);
        assert_eq!(rest, huge.len() - TOKENIZE_CAP);
        // A cut inside a character moves back to its start.
        let (head, rest) = tokenizer_input("aé", 2);
        assert_eq!((head, rest), ("a", 2));
        // The count is the tokenized head plus the rest by size.
        let n = count("gpt-4o", &huge);
        let expected = count("gpt-4o", &huge[..TOKENIZE_CAP]) + (rest_of(&huge) as u64).div_ceil(4);
        assert_eq!(n, expected);
    }

    fn rest_of(s: &str) -> usize {
        s.len() - TOKENIZE_CAP
    }

    #[test]
    fn a_long_conversation_is_collected_up_to_the_cap() {
        let long = "x".repeat(3 * TOKENIZE_CAP);
        let input =
            format!(r#"[{{"role":"user","content":"{long}"}},{{"role":"user","content":"tail"}}]"#);
        let mut text = Collected::default();
        let mut de = serde_json::Deserializer::from_str(&input);
        serde::de::DeserializeSeed::deserialize(
            Walk {
                out: &mut text,
                depth: 0,
            },
            &mut de,
        )
        .unwrap();
        assert!(text.text.len() <= TOKENIZE_CAP, "{}", text.text.len());
        assert!(text.overflow >= 2 * TOKENIZE_CAP);
        assert_eq!(text.messages, 2);
    }

    #[test]
    fn inline_images_and_audio_are_not_tokenized() {
        let b64 = "QUJD".repeat(100_000);
        let input = format!(
            r#"[{{"role":"user","content":[{{"type":"text","text":"what is this"}},{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{b64}"}}}},{{"type":"input_audio","input_audio":{{"data":"{b64}","format":"wav"}}}}]}}]"#
        );
        let mut text = Collected::default();
        let mut de = serde_json::Deserializer::from_str(&input);
        serde::de::DeserializeSeed::deserialize(
            Walk {
                out: &mut text,
                depth: 0,
            },
            &mut de,
        )
        .unwrap();
        assert!(!text.text.contains("QUJD"), "base64 collected");
        assert!(text.text.contains("what is this"));
        assert_eq!(text.overflow, 0);
        let plain = r#"[{"role":"user","content":[{"type":"text","text":"what is this"},{"type":"image_url","image_url":{"url":""}},{"type":"input_audio"}]}]"#;
        assert_eq!(count_input("gpt-4o", &input), count_input("gpt-4o", plain));
    }
}
