//! Route matching: segment-aware longest prefix over normalised paths, and the rewrite of the
//! matched path onto the upstream's base path. Pure and allocation-free on the common path (a
//! request path without `//`, `%`, `\` or dot segments), so it is unit-tested and benchmarked
//! alone.
//!
//! A request path is normalised once, before routing ([`normalize_path`]), and every later phase
//! (limits, cache, logs, the upstream target) sees only that form: what was matched is what is
//! forwarded, so no spelling of a path (`/v1/./chat`, `/v1/%63hat`, `/route/%2e%2e/x`) can reach
//! another route, another path-scoped limit, or anything above the upstream's base path.

use std::borrow::Cow;

/// Normalise a configured prefix: leading `/`, runs of `/` collapsed, no trailing `/` (but `/`
/// itself). Rejects what can never match a request path.
pub fn normalize_prefix(prefix: &str) -> Result<String, String> {
    if prefix.contains(['?', '#', ' ']) {
        return Err("a prefix is a path: no `?`, `#` or spaces".into());
    }
    let collapsed = collapse_slashes(&format!("/{prefix}")).into_owned();
    let trimmed = collapsed.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    })
}

/// Collapse runs of `/` into one, borrowing when there is nothing to change.
pub fn collapse_slashes(path: &str) -> Cow<'_, str> {
    if !path.contains("//") {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    let mut last_slash = false;
    for c in path.chars() {
        if c == '/' && last_slash {
            continue;
        }
        last_slash = c == '/';
        out.push(c);
    }
    Cow::Owned(out)
}

/// A request path the gateway refuses rather than guess how the upstream reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRefused {
    /// An encoded slash or backslash (`%2F`, `%5C`) or a raw backslash: upstreams differ on
    /// whether these separate segments, so one could hide a `..` from the gateway.
    EncodedSeparator,
}

/// The canonical form of a request path (`/`-rooted; anything else is returned as is):
/// percent-encoded unreserved characters decoded (RFC 3986 §6.2.2.2: `%2e` is `.`, `%41` is
/// `A`), runs of `/` collapsed, then dot segments removed (RFC 3986 §5.2.4; `..` at the root
/// stays at the root). Other percent-encodings are kept as sent. Borrows when there is nothing
/// to change.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathRefused> {
    if !path.starts_with('/') {
        return Ok(Cow::Borrowed(path));
    }
    if is_plain(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    let pieces: Vec<&str> = decoded.split('/').collect();
    let mut kept: Vec<&str> = Vec::with_capacity(pieces.len());
    for piece in &pieces {
        match *piece {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            segment => kept.push(segment),
        }
    }
    // `/a/b/`, `/a/b/.` and `/a/b/c/..` all end in a directory: `/a/b/`.
    let trailing = matches!(pieces.last(), Some(&("" | "." | "..")));
    let mut out = String::with_capacity(decoded.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// A `/`-rooted path with nothing to normalise: no `%`, no `\\`, no `//`, no `.` or `..`
/// segment. One pass over the bytes (every request's path goes through here; four `str`
/// searches cost ~900 instructions a request, callgrind). The ASCII bytes looked for never occur
/// inside a multi-byte UTF-8 character.
fn is_plain(path: &[u8]) -> bool {
    let dot_segment = |s: &[u8]| s == b"." || s == b"..";
    let mut segment_start = 1;
    let mut previous = b'/';
    for (i, &b) in path.iter().enumerate().skip(1) {
        match b {
            b'%' | b'\\' => return false,
            b'/' => {
                if previous == b'/' || dot_segment(&path[segment_start..i]) {
                    return false;
                }
                segment_start = i + 1;
            }
            _ => {}
        }
        previous = b;
    }
    !dot_segment(&path[segment_start..])
}

/// Decode `%XX` where it stands for an unreserved character; refuse encoded separators and
/// backslashes; keep every other byte as sent.
fn decode_unreserved(path: &str) -> Result<String, PathRefused> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\\' {
            return Err(PathRefused::EncodedSeparator);
        }
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
            if let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) {
                let value = (hi * 16 + lo) as u8;
                if value == b'/' || value == b'\\' {
                    return Err(PathRefused::EncodedSeparator);
                }
                if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~') {
                    out.push(value as char);
                    i += 3;
                    continue;
                }
            }
        }
        // Runs of ASCII are copied whole; a multi-byte character is copied with its lead byte.
        let end = path[i..]
            .char_indices()
            .nth(1)
            .map_or(path.len(), |(n, _)| i + n);
        out.push_str(&path[i..end]);
        i = end;
    }
    Ok(out)
}

/// Prefixes sorted so that the first match is the longest one.
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// (prefix, index into the caller's route list), longest prefix first.
    entries: Vec<(String, usize)>,
}

/// A matched route and what remains of the path after its prefix (`""` or starting with `/`).
#[derive(Debug, PartialEq, Eq)]
pub struct RouteMatch<'p> {
    pub index: usize,
    pub rest: &'p str,
}

impl RouteTable {
    /// `prefixes` must already be normalised (see [`normalize_prefix`]).
    pub fn new<'a>(prefixes: impl IntoIterator<Item = &'a str>) -> Self {
        let mut entries: Vec<(String, usize)> = prefixes
            .into_iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), i))
            .collect();
        entries.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        RouteTable { entries }
    }

    /// Match a normalised path (no `//`, no query). `/gen` matches `/gen` and `/gen/x`, never
    /// `/genfoo`; `/` matches everything.
    pub fn find<'p>(&self, path: &'p str) -> Option<RouteMatch<'p>> {
        self.entries.iter().find_map(|(prefix, index)| {
            let rest = if prefix == "/" {
                path
            } else {
                let rest = path.strip_prefix(prefix.as_str())?;
                if !(rest.is_empty() || rest.starts_with('/')) {
                    return None;
                }
                rest
            };
            Some(RouteMatch {
                index: *index,
                rest,
            })
        })
    }
}

/// An owned [`RouteMatch::rest`], kept inline when it fits (nearly every API path does:
/// `/v1/chat/completions` is 20 bytes), so that routing a request allocates nothing. Reads as a
/// `&str`.
#[derive(Clone)]
pub struct Rest(RestRepr);

/// Longest rest held inline.
const INLINE_REST: usize = 94;

#[derive(Clone)]
enum RestRepr {
    Inline { len: u8, buf: [u8; INLINE_REST] },
    Heap(Box<str>),
}

impl From<&str> for Rest {
    fn from(rest: &str) -> Self {
        if rest.len() > INLINE_REST {
            return Rest(RestRepr::Heap(rest.into()));
        }
        let mut buf = [0u8; INLINE_REST];
        buf[..rest.len()].copy_from_slice(rest.as_bytes());
        Rest(RestRepr::Inline {
            len: rest.len() as u8,
            buf,
        })
    }
}

impl std::ops::Deref for Rest {
    type Target = str;

    fn deref(&self) -> &str {
        match &self.0 {
            // Copied whole from a `&str`: the check cannot fail.
            RestRepr::Inline { len, buf } => {
                std::str::from_utf8(&buf[..usize::from(*len)]).unwrap_or_default()
            }
            RestRepr::Heap(rest) => rest,
        }
    }
}

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

/// The upstream request target: base path + the rest after the prefix + the original query.
pub fn upstream_target(base_path: &str, rest: &str, query: Option<&str>) -> String {
    let mut target =
        String::with_capacity(base_path.len() + rest.len() + 2 + query.map_or(0, str::len));
    target.push_str(base_path);
    target.push_str(rest);
    if target.is_empty() {
        target.push('/');
    }
    if let Some(q) = query {
        target.push('?');
        target.push_str(q);
    }
    target
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::new(["/", "/gen", "/gemini", "/localai/v1"])
    }

    #[test]
    fn longest_segment_aware_prefix() {
        let t = table();
        let m = |p| t.find(p).map(|m| (m.index, m.rest));
        assert_eq!(m("/gen/x"), Some((1, "/x")));
        assert_eq!(m("/gen"), Some((1, "")));
        assert_eq!(m("/genfoo"), Some((0, "/genfoo")));
        assert_eq!(m("/gemini/v1beta/models"), Some((2, "/v1beta/models")));
        assert_eq!(m("/localai/v1/chat"), Some((3, "/chat")));
        assert_eq!(m("/localai/v2"), Some((0, "/localai/v2")));
        assert_eq!(m("/"), Some((0, "/")));
        let no_root = RouteTable::new(["/gen"]);
        assert_eq!(no_root.find("/genfoo"), None);
        assert_eq!(no_root.find("/"), None);
    }

    #[test]
    fn prefixes_normalise() {
        assert_eq!(normalize_prefix("gemini").unwrap(), "/gemini");
        assert_eq!(normalize_prefix("//a//b/").unwrap(), "/a/b");
        assert_eq!(normalize_prefix("/").unwrap(), "/");
        assert_eq!(normalize_prefix("").unwrap(), "/");
        assert!(normalize_prefix("/a?b").is_err());
    }

    #[test]
    fn slashes_collapse() {
        assert_eq!(collapse_slashes("//gen//x///"), "/gen/x/");
        assert!(matches!(collapse_slashes("/v1/chat"), Cow::Borrowed(_)));
    }

    #[test]
    fn paths_normalise() {
        let n = |p| normalize_path(p).map(Cow::into_owned);
        assert!(matches!(normalize_path("/v1/chat"), Ok(Cow::Borrowed(_))));
        assert_eq!(n("/v1/./chat/completions").unwrap(), "/v1/chat/completions");
        assert_eq!(n("/route/../secret").unwrap(), "/secret");
        assert_eq!(n("/route/%2e%2E/secret").unwrap(), "/secret");
        assert_eq!(n("/route/.%2e/.%2E/x").unwrap(), "/x");
        assert_eq!(n("/../../x").unwrap(), "/x");
        assert_eq!(n("/a/b/..").unwrap(), "/a/");
        assert_eq!(n("/a/b/.").unwrap(), "/a/b/");
        assert_eq!(n("/..").unwrap(), "/");
        assert_eq!(n("//gen//x///").unwrap(), "/gen/x/");
        assert_eq!(n("/v1/%6Dodels").unwrap(), "/v1/models");
        assert_eq!(n("/a%20b/%C3%A9/%zz/%").unwrap(), "/a%20b/%C3%A9/%zz/%");
        assert_eq!(n("/é/./x").unwrap(), "/é/x");
        assert_eq!(n("/a/...").unwrap(), "/a/...");
        assert_eq!(n("*").unwrap(), "*");
        for refused in ["/a/..%2Fb", "/a/%2f", "/a/%5C..", "/a/%5c", "/a\\..\\b"] {
            assert_eq!(normalize_path(refused), Err(PathRefused::EncodedSeparator));
        }
    }

    /// The one-pass check says "nothing to normalise" exactly when the four searches it
    /// replaced did: every path of up to 7 characters over the bytes that matter.
    #[test]
    fn the_plain_check_agrees_with_its_definition() {
        let searched = |p: &str| {
            !p.contains(['%', '\\'])
                && !p.contains("//")
                && !p.split('/').any(|s| s == "." || s == "..")
        };
        let alphabet = ['/', '.', 'a', '%', '\\', '\u{e9}'];
        let mut paths = vec![String::from("/")];
        let mut checked = 0;
        for _ in 0..6 {
            let mut longer = Vec::new();
            for p in &paths {
                assert_eq!(is_plain(p.as_bytes()), searched(p), "{p:?}");
                checked += 1;
                for c in alphabet {
                    longer.push(format!("{p}{c}"));
                }
            }
            paths = longer;
        }
        assert!(checked > 9_000, "{checked}");
    }

    #[test]
    fn a_rest_reads_as_it_was_given_inline_or_not() {
        let long = format!("/{}", "é".repeat(60));
        for rest in [
            "",
            "/",
            "/v1/chat/completions",
            &"x".repeat(INLINE_REST),
            &long,
        ] {
            let (n, owned) = crate::alloc_count::allocations(|| Rest::from(rest));
            assert_eq!(&*owned, rest);
            assert_eq!(n, usize::from(rest.len() > INLINE_REST), "{rest:?}");
            assert_eq!(&*owned.clone(), rest);
            assert_eq!(format!("{owned:?}"), format!("{rest:?}"));
        }
    }

    #[test]
    fn targets() {
        assert_eq!(upstream_target("", "/v1/chat", None), "/v1/chat");
        assert_eq!(
            upstream_target("/compatible-mode/v1", "/chat/completions", Some("a=1")),
            "/compatible-mode/v1/chat/completions?a=1"
        );
        assert_eq!(upstream_target("", "", None), "/");
        assert_eq!(upstream_target("/v1", "", None), "/v1");
    }
}
