//! Keeping secrets out of what the config prints: `check`'s problems, the start-up banner.
//!
//! Two kinds of secret reach printed text. Credentials and query strings written into URLs
//! (`redis://:password@host`, `https://host/?key=…`): [`redact_url`] masks them wherever a
//! value is echoed in a problem. And `${VAR}` values expanded into URLs, which may sit anywhere
//! in them (a path like `/bot<token>/`): the decoder records each one in [`Secrets`], problems
//! echo a value as written (with `${VAR}`, not expanded), and the banner masks them.

use std::borrow::Cow;
use std::fmt;

/// `***` in place of a URL's credentials and of each query value; other text unchanged.
pub fn redact_url(text: &str) -> Cow<'_, str> {
    let Some(scheme_end) = text.find("://") else {
        return Cow::Borrowed(text);
    };
    let start = scheme_end + 3;
    let rest = &text[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.find('?');
    if !authority.contains('@') && query.is_none() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..start]);
    match authority.rfind('@') {
        Some(at) => {
            out.push_str("***");
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    match query {
        None => out.push_str(tail),
        Some(q) => {
            out.push_str(&tail[..=q]);
            let after = &tail[q + 1..];
            let (params, fragment) = after.split_at(after.find('#').unwrap_or(after.len()));
            let masked: Vec<String> = params
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) => format!("{k}=***"),
                    None if p.is_empty() => String::new(),
                    None => "***".into(),
                })
                .collect();
            out.push_str(&masked.join("&"));
            out.push_str(fragment);
        }
    }
    Cow::Owned(out)
}

/// Values of `${VAR}` expanded into URLs. `Debug` shows only how many there are.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets(Vec<String>);

impl Secrets {
    pub fn add(&mut self, value: &str) {
        if !value.is_empty() && !self.0.iter().any(|s| s == value) {
            self.0.push(value.to_string());
            // Longest first, so a secret that contains another is masked whole.
            self.0.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// `text` with every recorded value replaced by `***`.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for s in &self.0 {
            if out.contains(s.as_str()) {
                out = Cow::Owned(out.replace(s.as_str(), "***"));
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({})", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_and_query_values() {
        for (url, shown) in [
            (
                "redis://:pw@127.0.0.1:6379/0",
                "redis://***@127.0.0.1:6379/0",
            ),
            ("redis://user:pw@h/0", "redis://***@h/0"),
            ("https://h/v1?key=abc&x=1#f", "https://h/v1?key=***&x=***#f"),
            ("https://u:p@h?tok", "https://***@h?***"),
            ("https://api.openai.com/v1", "https://api.openai.com/v1"),
            ("memory", "memory"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn secrets_are_masked_longest_first() {
        let mut s = Secrets::default();
        s.add("abc");
        s.add("abcdef");
        s.add("");
        assert_eq!(s.mask("x/abcdef/abc"), "x/***/***");
        assert_eq!(format!("{s:?}"), "Secrets(2)");
    }
}
