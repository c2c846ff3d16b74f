//! Where else a request names its model, besides the JSON `model` field `openai.rs` reads: the
//! case variants of that key, and the path.
//!
//! - **JSON keys.** serde_json matches `model` exactly; Go's `encoding/json` (Ollama, LocalAI
//!   and many gateways) matches field names case-insensitively and keeps the *last* match, so
//!   `{"model":"allowed","MODEL":"denied"}` is two models, and so is a repeated `model` (serde
//!   keeps the last, other parsers the first). [`json_model_is_ambiguous`] finds those: more
//!   than one top-level key that is `model` in any ASCII case, or one spelled otherwise.
//!   (Unicode case folding adds nothing here: only `K` and `S` have non-ASCII folds.)
//! - **Paths.** Azure names the deployment (`/openai/deployments/{name}/…`), Gemini and
//!   Vertex the model (`/v1beta/models/{name}:generateContent`, `…/tunedModels/{name}`), and
//!   OpenAI's model retrieval `/v1/models/{name}`: [`path_models`] gives those names.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Whether `body` is a JSON object whose top-level keys name its model ambiguously: a second
/// key that equals `model` ignoring ASCII case, or one spelled other than `model`. `false` for
/// what is not a JSON object (that is another error).
pub(crate) fn json_model_is_ambiguous(body: &[u8]) -> bool {
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            let mut keys = ModelKeys::default();
            while let Some(key) = map.next_key_seed(ModelKey)? {
                map.next_value::<IgnoredAny>()?;
                if let Some(exact) = key {
                    keys.note(exact);
                }
            }
            Ok(keys.ambiguous())
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    de.deserialize_map(Keys)
        .ok()
        .filter(|_| de.end().is_ok())
        .unwrap_or(false)
}

/// The rule of [`json_model_is_ambiguous`], fed key by key, so that a pass over a request body
/// that reads other fields too (`openai::RequestInfo::scan`) applies exactly the same one.
#[derive(Debug, Default)]
pub(crate) struct ModelKeys {
    /// Top-level keys that are `model` in some ASCII case.
    seen: u32,
    /// One was spelled other than `model`, or there was more than one.
    ambiguous: bool,
}

impl ModelKeys {
    /// A top-level key that is `model` in some ASCII case; `exact` when spelled `model`.
    pub(crate) fn note(&mut self, exact: bool) {
        self.seen = self.seen.saturating_add(1);
        self.ambiguous |= !exact || self.seen > 1;
    }

    pub(crate) fn ambiguous(&self) -> bool {
        self.ambiguous
    }
}

/// How a top-level key names the model: `None` when it is not `model` in any ASCII case, else
/// whether it is spelled exactly `model`.
pub(crate) fn model_key(key: &str) -> Option<bool> {
    key.eq_ignore_ascii_case("model").then_some(key == "model")
}

/// A key: `None` when it is not `model` in any case, else whether it is exactly `model`.
struct ModelKey;

impl<'de> DeserializeSeed<'de> for ModelKey {
    type Value = Option<bool>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for ModelKey {
    type Value = Option<bool>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(model_key(key))
    }
}

/// A path segment names something that cannot be read as a model (not UTF-8 once decoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unreadable;

/// The models a path names: the segment after `deployments`, `models` or `tunedModels` (any
/// case), percent-decoded, up to a `:method` suffix. `/v1/models` (a listing) names none.
pub(crate) fn path_models(path: &str) -> Result<Vec<Cow<'_, str>>, Unreadable> {
    let mut models = Vec::new();
    let mut segments = path.split('/').peekable();
    while let Some(segment) = segments.next() {
        let names_next = ["deployments", "models", "tunedmodels"]
            .iter()
            .any(|s| segment.eq_ignore_ascii_case(s));
        if !names_next {
            continue;
        }
        let Some(next) = segments.peek().filter(|s| !s.is_empty()) else {
            continue;
        };
        let decoded = percent_decode(next)?;
        let model = match decoded {
            Cow::Borrowed(s) => Cow::Borrowed(s.split(':').next().unwrap_or(s)),
            Cow::Owned(s) => Cow::Owned(s.split(':').next().unwrap_or(&s).to_string()),
        };
        if !model.is_empty() {
            models.push(model);
        }
    }
    Ok(models)
}

fn percent_decode(segment: &str) -> Result<Cow<'_, str>, Unreadable> {
    if !segment.contains('%') {
        return Ok(Cow::Borrowed(segment));
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| Unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keys() {
        for clear in [
            &br#"{"model":"a","messages":[]}"#[..],
            br#"{"messages":[{"model":"x","MODEL":"y"}]}"#,
            br#"{"modelx":"a","model":"b","xmodel":1}"#,
            br#"{}"#,
            br#"[{"model":"a","MODEL":"b"}]"#,
            br#"{"model":"a"} {"model":"b"}"#,
            b"not json",
        ] {
            assert!(
                !json_model_is_ambiguous(clear),
                "{}",
                String::from_utf8_lossy(clear)
            );
        }
        for ambiguous in [
            &br#"{"model":"a","MODEL":"b"}"#[..],
            br#"{"Model":"b","model":"a"}"#,
            br#"{"model":"a","model":"b"}"#,
            br#"{"model":"a","mod\u0045l":"b"}"#,
            br#"{"MODEL":"b"}"#,
            br#"{"model":"a","x":{"y":1},"MODEL":null}"#,
        ] {
            assert!(
                json_model_is_ambiguous(ambiguous),
                "{}",
                String::from_utf8_lossy(ambiguous)
            );
        }
    }

    #[test]
    fn models_in_paths() {
        let m = |p| path_models(p).unwrap();
        assert_eq!(m("/openai/deployments/gpt-4o/chat/completions"), ["gpt-4o"]);
        assert_eq!(
            m("/v1beta/models/gemini-1.5-pro:generateContent"),
            ["gemini-1.5-pro"]
        );
        assert_eq!(m("/v1beta/models/gemini%3Aflash%3Ax"), ["gemini"]);
        assert_eq!(m("/v1beta/tunedModels/mine:generateContent"), ["mine"]);
        assert_eq!(m("/v1/models/gpt-4o"), ["gpt-4o"]);
        assert!(m("/v1/models").is_empty());
        assert!(m("/v1/models/").is_empty());
        assert!(m("/v1/chat/completions").is_empty());
        assert_eq!(path_models("/v1/models/%FF"), Err(Unreadable));
    }
}
