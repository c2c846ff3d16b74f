//! Values from the client in a `key=value` log line. A `model`, a path or a key name may hold
//! anything the client chose: a newline would start a forged line, a space and `=` a forged
//! field, an ANSI escape would rewrite the operator's terminal. [`Field`] writes such a value so
//! that it stays one token: as it is when it is plain (the usual case, no allocation), else in
//! double quotes with `\` and `"` escaped and every control character (and the Unicode line
//! and paragraph separators) written as `\n`, `\r`, `\t` or `\u{..}`.

use std::fmt::{self, Write};

/// A log value that cannot leave its field (see the module documentation).
pub struct Field<'a>(pub &'a str);

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

fn plain(s: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::Field;

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
