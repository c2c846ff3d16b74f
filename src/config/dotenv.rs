//! A `.env` reader with python-dotenv's rules as openai-forward users rely on them: `KEY=VALUE`
//! lines, `#` comments, an optional `export `, and single- or double-quoted values that may span
//! lines (multi-line JSON is common in openai-forward's samples).

/// Parse `.env` text into ordered pairs; a malformed line is reported by its 1-based number.
pub(super) fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: expected KEY=VALUE", n + 1));
        };
        let key = key.trim().to_string();
        let value = value.trim();
        let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'');
        let value = match quote {
            Some(q) => {
                let mut buf = value[1..].to_string();
                while !closes(&buf, q) {
                    let Some((_, next)) = lines.next() else {
                        return Err(format!("line {}: unterminated quoted value", n + 1));
                    };
                    buf.push('\n');
                    buf.push_str(next);
                }
                let end = buf.rfind(q).unwrap_or(buf.len());
                let inner = &buf[..end];
                if q == '"' {
                    inner.replace("\\n", "\n").replace("\\\"", "\"")
                } else {
                    inner.to_string()
                }
            }
            None => strip_comment(value).to_string(),
        };
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// Whether `buf` (the value after its opening quote) contains the closing quote.
fn closes(buf: &str, q: char) -> bool {
    let mut escaped = false;
    for c in buf.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == q {
            return true;
        }
    }
    false
}

fn strip_comment(value: &str) -> &str {
    match value.find(" #") {
        Some(i) => value[..i].trim_end(),
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn reads_dotenv_shapes() {
        let text = "# comment\nA=1\nexport B = two # note\nC='x y'\nD=\"[{\n  \\\"k\\\": 1\n}]\"\n";
        let pairs = parse(text).unwrap();
        assert_eq!(pairs[0], ("A".into(), "1".into()));
        assert_eq!(pairs[1], ("B".into(), "two".into()));
        assert_eq!(pairs[2], ("C".into(), "x y".into()));
        assert_eq!(pairs[3].1, "[{\n  \"k\": 1\n}]");
        assert!(parse("NOEQUALS").is_err());
        assert!(parse("A=\"open").is_err());
    }
}
