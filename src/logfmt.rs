//! Values from the client in a `key=value` log line. A `model`, a path or a key name may hold
//! anything the client chose: a newline would start a forged line, a space and `=` a forged
//! field, an ANSI escape would rewrite the operator's terminal. [`Field`] writes such a value so
//! that it stays one token: as it is when it is plain (the usual case, no allocation), else in
//! double quotes with `\` and `"` escaped and every control character (and the Unicode line
//! and paragraph separators) written as `\n`, `\r`, `\t` or `\u{..}`.

use std::fmt::{self, Write};
use std::time::Duration;

pub mod line;

/// A log value that cannot leave its field (see the module documentation).
pub struct Field<'a>(pub &'a str);

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

fn plain(s: &str) -> bool {
    // Bytes first: printable ASCII is the usual case, and a byte test is a fifth of the cost of
    // decoding chars. Only text with non-ASCII characters is decoded.
    let ascii_plain = |b: u8| b.is_ascii_graphic() && !matches!(b, b'=' | b'"' | b'\\');
    if s.bytes().all(ascii_plain) {
        return !s.is_empty();
    }
    !s.is_empty()
        && !s
            .chars()
            .any(|c| matches!(c, ' ' | '=' | '"' | '\\') || needs_escape(c))
}

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if plain(self.0) {
            return f.write_str(self.0);
        }
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if needs_escape(c) => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

/// `-` for nothing, else the value as it displays (no `String` built for either).
pub struct OrDash<T>(pub Option<T>);

impl<T: fmt::Display> fmt::Display for OrDash<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_char('-'),
        }
    }
}

/// A duration in milliseconds with one decimal (`12.3`), as `{:.1}` prints the `f64`
/// (half a tenth rounds up), in integer arithmetic: float formatting with a precision is a
/// few hundred instructions.
pub struct Millis(pub Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = (self.0.as_nanos() + 50_000) / 100_000;
        write!(f, "{}.{}", tenths / 10, tenths % 10)
    }
}

#[cfg(test)]
mod tests {
    use super::{Field, Millis, OrDash};
    use std::time::Duration;

    #[test]
    fn millis_print_as_one_decimal() {
        for (nanos, text) in [
            (0, "0.0"),
            (49_999, "0.0"),
            (50_000, "0.1"),
            (1_234_567, "1.2"),
            (1_250_001, "1.3"),
            (999_960_000, "1000.0"),
            (61_000_000_000, "61000.0"),
        ] {
            assert_eq!(Millis(Duration::from_nanos(nanos)).to_string(), text);
        }
        assert_eq!(OrDash(Some(3)).to_string(), "3");
        assert_eq!(OrDash::<u8>(None).to_string(), "-");
    }

    #[test]
    fn plain_values_pass_and_others_stay_one_token() {
        assert_eq!(Field("gpt-4o").to_string(), "gpt-4o");
        assert_eq!(
            Field("/v1/chat/completions").to_string(),
            "/v1/chat/completions"
        );
        assert_eq!(Field("").to_string(), r#""""#);
        assert_eq!(
            Field("a\nFAKE status=200").to_string(),
            r#""a\nFAKE status=200""#
        );
        assert_eq!(
            Field("\r\t\u{1b}[2K\u{7f}\u{85}\u{2028}é\"\\").to_string(),
            r#""\r\t\u{1b}[2K\u{7f}\u{85}\u{2028}é\"\\""#
        );
    }
}
