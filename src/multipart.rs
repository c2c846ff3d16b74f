//! The `model` field of a `multipart/form-data` upload (audio transcriptions and translations),
//! read so that no upstream can read another one.
//!
//! Multipart parsers disagree at the edges: unquoted or upper-case `NAME=model`, RFC 2231
//! `name*=`, quoted-pairs (`"mo\del"` is `model` to Go's `mime` package), LF-only line endings
//! (Go accepts them), a boundary-like line inside a file, duplicate fields (first or last wins).
//! A model list is only as good as the agreement between the gateway's reading and the
//! upstream's, so the body is read twice and must give one answer:
//! - structurally, with `multer` (the parser behind axum's `Multipart`): every part whose
//!   name is `model` in any case;
//! - lexically, over every byte of the body: each `name` parameter (any case, before an `=`)
//!   whose value is `model` in any case, quoted, single-quoted or bare, after quoted-pair
//!   unescaping — wherever it sits, inside a file or not.
//!
//! Both must count the same, at most one; any `name*` parameter (RFC 2231, which some parsers
//! decode and others ignore), a second `boundary` in the content type, a `model` part with a
//! `Content-Transfer-Encoding` (Go decodes quoted-printable), or a body multer does not parse
//! is [`Ambiguous`]. The lexical pass over-approximates on purpose: a file or prompt
//! that contains the text `name="model"` is refused too, which only costs a tenant with a model
//! list that rare upload.

use bytes::Bytes;
use futures_util::FutureExt;

/// The body may name a model to some parser that the gateway did not see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ambiguous;

/// A model name longer than this is not one: refused rather than buffered.
const MAX_MODEL_LEN: usize = 1024;

/// The value of the form's `model` field (`None`: the form has none), given the request's
/// `Content-Type` and its whole body.
pub(crate) fn model_field(content_type: &str, body: Bytes) -> Result<Option<String>, Ambiguous> {
    let boundaries = content_type
        .to_ascii_lowercase()
        .matches("boundary")
        .count();
    if boundaries != 1 {
        return Err(Ambiguous);
    }
    let boundary = multer::parse_boundary(content_type).map_err(|_| Ambiguous)?;
    let mentions = model_mentions(&body)?;
    let mut values = parsed_model_values(boundary, body)?;
    if values.len() != mentions || values.len() > 1 {
        return Err(Ambiguous);
    }
    Ok(values.pop())
}

/// The values of the parts named `model` (any case), as multer reads the body.
fn parsed_model_values(boundary: String, body: Bytes) -> Result<Vec<String>, Ambiguous> {
    let whole = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut form = multer::Multipart::new(whole, boundary);
    let mut values = Vec::new();
    // The stream is one ready chunk, so no future here ever waits: `now_or_never` runs each to
    // completion (a `None` would be a bug, and is treated as unreadable, never as a pass).
    loop {
        let next = form.next_field().now_or_never().ok_or(Ambiguous)?;
        let Some(mut field) = next.map_err(|_| Ambiguous)? else {
            break;
        };
        let is_model = field
            .name()
            .is_some_and(|n| n.eq_ignore_ascii_case("model"));
        // Go's reader decodes a quoted-printable part (`whisper=2D2` is `whisper-2`); multer
        // does not. A model field has no business being encoded.
        if is_model && field.headers().contains_key("content-transfer-encoding") {
            return Err(Ambiguous);
        }
        let mut value = Vec::new();
        loop {
            let chunk = field.chunk().now_or_never().ok_or(Ambiguous)?;
            let Some(chunk) = chunk.map_err(|_| Ambiguous)? else {
                break;
            };
            if is_model {
                if value.len() + chunk.len() > MAX_MODEL_LEN {
                    return Err(Ambiguous);
                }
                value.extend_from_slice(&chunk);
            }
        }
        if is_model {
            values.push(String::from_utf8(value).map_err(|_| Ambiguous)?);
        }
    }
    Ok(values)
}

/// How many `name=model` parameters the body holds anywhere, as lenient parsers would read
/// them; `Err` on any RFC 2231 `name*` parameter.
fn model_mentions(body: &[u8]) -> Result<usize, Ambiguous> {
    let mut count = 0;
    for eq in memchr::memchr_iter(b'=', body) {
        let mut end = eq;
        while end > 0 && body[end - 1].is_ascii_whitespace() {
            end -= 1;
        }
        // RFC 2231 suffixes: `name*=`, `name*0=`, `name*0*=`.
        let mut start = end;
        while start > 0 && (body[start - 1] == b'*' || body[start - 1].is_ascii_digit()) {
            start -= 1;
        }
        let suffix = &body[start..end];
        let Some(name) = start.checked_sub(4).map(|s| &body[s..start]) else {
            continue;
        };
        if !name.eq_ignore_ascii_case(b"name") || (start > 4 && is_tchar(body[start - 5])) {
            continue;
        }
        if suffix.contains(&b'*') {
            return Err(Ambiguous);
        }
        if suffix.is_empty() && value_is_model(&body[eq + 1..]) {
            count += 1;
        }
    }
    Ok(count)
}

/// Whether a parameter value (what follows its `=`) reads as `model` in any case: bare, or
/// in double or single quotes with backslash escapes removed.
fn value_is_model(rest: &[u8]) -> bool {
    let rest = match rest.iter().position(|b| !b.is_ascii_whitespace()) {
        Some(i) => &rest[i..],
        None => return false,
    };
    let mut value = [0u8; 5];
    let mut len = 0;
    let mut push = |b: u8| {
        if len < value.len() {
            value[len] = b;
        }
        len += 1;
    };
    match rest.first() {
        Some(&quote @ (b'"' | b'\'')) => {
            let mut escaped = false;
            let mut closed = false;
            for &b in rest.iter().skip(1).take(64) {
                if escaped {
                    push(b);
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == quote {
                    closed = true;
                    break;
                } else {
                    push(b);
                }
            }
            if !closed {
                return false;
            }
        }
        _ => {
            for &b in rest.iter().take(64) {
                if !is_tchar(b) {
                    break;
                }
                push(b);
            }
        }
    }
    len == value.len() && value.eq_ignore_ascii_case(b"model")
}

/// An RFC 9110 token character: what can continue a parameter name.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "multipart/form-data; boundary=XyZ";

    fn form(parts: &[(&str, &str)]) -> Bytes {
        let mut body = String::new();
        for (head, value) in parts {
            body.push_str(&format!("--XyZ\r\n{head}\r\n\r\n{value}\r\n"));
        }
        body.push_str("--XyZ--\r\n");
        Bytes::from(body)
    }

    const FILE: (&str, &str) = (
        "Content-Disposition: form-data; name=\"file\"; filename=\"a.wav\"",
        "RIFF..name=\"modelx\"..",
    );

    #[test]
    fn reads_the_model_field() {
        let body = form(&[
            FILE,
            (
                "Content-Disposition: form-data; name=\"model\"",
                "whisper-1",
            ),
        ]);
        assert_eq!(model_field(CT, body), Ok(Some("whisper-1".into())));
        let quoted = "multipart/form-data; BOUNDARY=\"XyZ\"";
        let body = form(&[("Content-Disposition: form-data; name=\"model\"", " w ")]);
        assert_eq!(model_field(quoted, body), Ok(Some(" w ".into())));
        assert_eq!(model_field(CT, form(&[FILE])), Ok(None));
        // `filename=model` and `x-name=model` are other parameters.
        let body = form(&[(
            "Content-Disposition: form-data; name=\"f\"; filename=model; x-name=model",
            "",
        )]);
        assert_eq!(model_field(CT, body), Ok(None));
    }

    #[test]
    fn refuses_what_parsers_read_differently() {
        let model = |head: &str| form(&[FILE, (head, "whisper-2")]);
        // Unquoted is read as every parser reads it: checked, not refused.
        assert_eq!(
            model_field(CT, model("Content-Disposition: form-data; name=model")),
            Ok(Some("whisper-2".into()))
        );
        for body in [
            model("Content-Disposition: form-data; NAME=\"model\""),
            model("Content-Disposition: form-data; name = 'MODEL'"),
            model("Content-Disposition: form-data; name=\"mo\\del\""),
            model("Content-Disposition: form-data; name*=UTF-8''model"),
            model("Content-Disposition: form-data; name*0=mo; name*1=del"),
            model("Content-Disposition: form-data; name=\"file\"; name=\"model\""),
            model("Content-Disposition: form-data; filename=\"x; name=model\"; name=\"f\""),
            form(&[
                (
                    "Content-Disposition: form-data; name=\"model\"",
                    "whisper-1",
                ),
                (
                    "Content-Disposition: form-data; name=\"model\"",
                    "whisper-2",
                ),
            ]),
            form(&[
                (
                    "Content-Disposition: form-data; name=\"model\"",
                    "whisper-1",
                ),
                (
                    "Content-Disposition: form-data; name=\"Model\"",
                    "whisper-2",
                ),
            ]),
            form(&[(
                FILE.0,
                "RIFF--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1",
            )]),
            Bytes::from_static(
                b"--XyZ\nContent-Disposition: form-data; name=\"model\"\n\nwhisper-2\n--XyZ--\n",
            ),
            Bytes::from_static(b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nw"),
            Bytes::from_static(b"model=whisper-2"),
        ] {
            assert_eq!(
                model_field(CT, body.clone()),
                Err(Ambiguous),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
        let ok = form(&[("Content-Disposition: form-data; name=\"model\"", "w")]);
        for ct in [
            "multipart/form-data; boundary=XyZ; boundary=Other",
            "multipart/form-data",
            "multipart/mixed; boundary=XyZ",
        ] {
            assert_eq!(model_field(ct, ok.clone()), Err(Ambiguous), "{ct}");
        }
        let encoded = form(&[(
            "Content-Disposition: form-data; name=\"model\"\r\nContent-Transfer-Encoding: quoted-printable",
            "whisper=2D2",
        )]);
        assert_eq!(model_field(CT, encoded), Err(Ambiguous));
        let long = "m".repeat(MAX_MODEL_LEN + 1);
        let body = form(&[("Content-Disposition: form-data; name=\"model\"", &long)]);
        assert_eq!(model_field(CT, body), Err(Ambiguous));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = model_field(CT, Bytes::from(body));
        }
    }
}
