//! Values from the client in a `key=value` log line. A `model`, a path or a key name may hold
//! anything the client chose: a newline would start a forged line, a space and `=` a forged
//! field, an ANSI escape would rewrite the operator's terminal. [`Field`] writes such a value so
//! that it stays one token: as it is when it is plain (the usual case, no allocation), else in
//! double quotes with `\` and `"` escaped and every control character (and the Unicode line
//! and paragraph separators) written as `\n`, `\r`, `\t` or `\u{..}`.

use std::fmt::{self, Write};
use std::net::IpAddr;
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

/// Appends the values of a log line one by one, without the `fmt` machinery per value: through
/// `write!` the access line's ~20 values cost ~6,800 instructions a request (callgrind), mostly
/// argument dispatch and padding checks that plain values never need.
pub struct Line<'a>(pub &'a mut String);

impl Line<'_> {
    /// Text of our own (`" status="`, a label, a request id we checked): as it is.
    pub fn raw(&mut self, s: &str) -> &mut Self {
        self.0.push_str(s);
        self
    }

    /// A value that may come from the client: exactly as [`Field`] displays it.
    pub fn field(&mut self, s: &str) -> &mut Self {
        if plain(s) {
            self.0.push_str(s);
        } else {
            let _ = write!(self.0, "{}", Field(s));
        }
        self
    }

    /// A number, in decimal.
    pub fn num(&mut self, n: u64) -> &mut Self {
        push_u64(self.0, n);
        self
    }

    /// A duration in milliseconds with one decimal (`12.3`), as `{:.1}` prints the `f64`
    /// (half a tenth rounds up), in integer arithmetic.
    pub fn ms(&mut self, d: Duration) -> &mut Self {
        let tenths = (d.as_nanos() + 50_000) / 100_000;
        push_u64(self.0, u64::try_from(tenths / 10).unwrap_or(u64::MAX));
        self.0.push('.');
        self.0.push(char::from(b'0' + (tenths % 10) as u8));
        self
    }

    /// An address as `Display` writes it (`10.0.0.1`, `2001:db8::1`).
    pub fn ip(&mut self, ip: IpAddr) -> &mut Self {
        match ip {
            IpAddr::V4(v4) => {
                let [a, b, c, d] = v4.octets();
                self.num(a.into()).raw(".").num(b.into()).raw(".");
                self.num(c.into()).raw(".").num(d.into())
            }
            IpAddr::V6(_) => {
                let _ = write!(self.0, "{ip}");
                self
            }
        }
    }
}

fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits[i..].iter().for_each(|&d| out.push(char::from(d)));
}

#[cfg(test)]
mod tests {
    use super::{Field, Line};
    use std::net::IpAddr;
    use std::time::Duration;

    fn line(f: impl FnOnce(&mut Line<'_>)) -> String {
        let mut out = String::new();
        f(&mut Line(&mut out));
        out
    }

    #[test]
    fn line_values_print_as_display_would() {
        for (nanos, text) in [
            (0, "0.0"),
            (49_999, "0.0"),
            (50_000, "0.1"),
            (1_234_567, "1.2"),
            (1_250_001, "1.3"),
            (999_960_000, "1000.0"),
            (61_000_000_000, "61000.0"),
        ] {
            assert_eq!(
                line(|l| {
                    l.ms(Duration::from_nanos(nanos));
                }),
                text
            );
        }
        for n in [0, 7, 10, 99, 100, 65_535, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(
                line(|l| {
                    l.num(n);
                }),
                n.to_string()
            );
        }
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.255.3",
            "::1",
            "2001:db8::1",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(
                line(|l| {
                    l.ip(ip);
                }),
                ip.to_string()
            );
        }
        for s in [
            "gpt-4o",
            "",
            "a b",
            "x=y",
            "a\nFAKE",
            "\u{1b}[2K",
            "é",
            "\"q\"",
        ] {
            assert_eq!(
                line(|l| {
                    l.field(s);
                }),
                Field(s).to_string()
            );
        }
        assert_eq!(
            line(|l| {
                l.raw(" k=").num(3);
            }),
            " k=3"
        );
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
