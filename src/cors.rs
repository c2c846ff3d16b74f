//! CORS for browser clients. Pure logic on `std` and `http`: no Pingora types.
//!
//! A [`CorsPolicy`] is built once from config (allowed origins, whether credentials are allowed,
//! how long browsers may cache a preflight). Per request it answers two questions: the headers
//! of a locally answered preflight ([`CorsPolicy::preflight`], for requests that
//! [`is_preflight`]) and the headers to add to an actual response
//! ([`CorsPolicy::response_headers`]). Actual responses get a [`CorsHeaders`], a fixed-capacity
//! list that derefs to `[(HeaderName, HeaderValue)]`: the constant values are `'static` or built
//! at construction and the echoed ones are clones of request header values, so answering
//! allocates nothing new. Preflights, rare thanks to `Access-Control-Max-Age`, get a `Vec` (or a
//! [`CorsHeaders`] from [`CorsPolicy::preflight_headers`]).
//!
//! Origins are matched exactly (scheme, host and port, as browsers serialise them), or `"*"`
//! allows any. Credentialed CORS forbids the literal `*` (browsers reject
//! `Access-Control-Allow-Origin: *` together with `Access-Control-Allow-Credentials: true`), so
//! `"*"` with credentials is served by echoing the request's origin with `Vary: Origin`. That
//! lets every web page make credentialed requests (cookies, HTTP auth) to the gateway: fine for
//! bearer-token APIs, where the browser holds no ambient credential, dangerous otherwise.

use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS,
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::Method;
use std::net::Ipv6Addr;
use std::time::Duration;

/// Methods offered when the preflight names none we can echo.
const ALLOW_METHODS: HeaderValue =
    HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS");
/// Response headers the OpenAI-style SDKs read: request ids, processing time, rate limits.
const EXPOSE_HEADERS: HeaderValue = HeaderValue::from_static(
    "x-request-id, x-upstream-request-id, openai-processing-ms, openai-model, openai-organization, \
     x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, \
     x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens, \
     retry-after",
);
const ANY: HeaderValue = HeaderValue::from_static("*");
const TRUE: HeaderValue = HeaderValue::from_static("true");
const VARY_ORIGIN: HeaderValue = HeaderValue::from_static("origin");
/// A preflight answer echoes the requested method and headers, so it varies by them too.
const VARY_PREFLIGHT_ECHO: HeaderValue = HeaderValue::from_static(
    "origin, access-control-request-method, access-control-request-headers",
);
const VARY_PREFLIGHT_ANY: HeaderValue =
    HeaderValue::from_static("access-control-request-method, access-control-request-headers");

/// Whether a request is a CORS preflight: `OPTIONS` with both `Origin` and
/// `Access-Control-Request-Method`. A plain `OPTIONS` (no such headers) is an ordinary request.
/// Also available as [`CorsPolicy::is_preflight`].
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(ORIGIN)
        && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// Which origins may read responses.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origins {
    /// `"*"` was configured.
    Any,
    /// Exact origins in browser serialisation (lowercase, default port dropped).
    List(Box<[Box<str>]>),
}

/// The CORS rules of the gateway, built once from config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPolicy {
    origins: Origins,
    credentials: bool,
    /// `Access-Control-Max-Age` in whole seconds, built once.
    max_age: HeaderValue,
}

/// What to do with the request's origin.
enum Grant {
    /// `Access-Control-Allow-Origin: *` (any origin, no credentials).
    Any,
    /// Echo this value (an allowed origin, or any origin with credentials).
    Echo(HeaderValue),
}

impl CorsPolicy {
    /// A policy from config.
    ///
    /// Each origin is `"*"` (any origin) or `scheme://host[:port]`: no path, query, fragment or
    /// user info, no wildcard subdomains, host in ASCII (punycode for international names). The
    /// scheme is usually `https` or `http`, but any valid scheme is taken so that
    /// `chrome-extension://…` or `tauri://localhost` clients can be listed. Origins are stored
    /// as browsers serialise them (lowercase, `:443` on https and `:80` on http dropped), so the
    /// configured spelling does not matter. `"null"` is refused: sandboxed frames and `file:`
    /// pages send it, and allowing it would allow all of them.
    ///
    /// An empty list is valid and allows no origin. `"*"` among exact origins allows any.
    /// `max_age` is sent in whole seconds (browsers cap it: Chromium at 2 h, Firefox at 24 h).
    ///
    /// # Errors
    ///
    /// The first origin that is not valid, quoted, with the reason and, for a path or a
    /// trailing slash, the origin that was probably meant.
    pub fn new(
        allow_origins: &[String],
        allow_credentials: bool,
        max_age: Duration,
    ) -> Result<Self, String> {
        let mut list: Vec<Box<str>> = Vec::with_capacity(allow_origins.len());
        let mut any = false;
        for origin in allow_origins {
            if origin.trim() == "*" {
                any = true;
                continue;
            }
            let origin = parse_origin(origin)?;
            if !list.contains(&origin) {
                list.push(origin);
            }
        }
        let origins = if any {
            Origins::Any
        } else {
            Origins::List(list.into_boxed_slice())
        };
        Ok(CorsPolicy {
            origins,
            credentials: allow_credentials,
            max_age: HeaderValue::from(max_age.as_secs()),
        })
    }

    /// Whether a request is a CORS preflight (the same as the free function [`is_preflight`]).
    pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        is_preflight(method, headers)
    }

    /// Whether `origin` (an `Origin` header value) may read responses.
    pub fn allows_origin(&self, origin: &str) -> bool {
        match &self.origins {
            // Credentialed wildcard echoes the origin, and echoing `null` would hand every
            // sandboxed page credentialed access (see `new`).
            Origins::Any => !(self.credentials && origin.eq_ignore_ascii_case("null")),
            // Browsers send lowercase origins; comparing without case costs nothing extra.
            Origins::List(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }

    /// Whether `Access-Control-Allow-Origin` depends on the request's `Origin` (anything but a
    /// plain `*`). If so, a response that may be cached should carry `Vary: Origin` even when
    /// [`CorsPolicy::response_headers`] returns `None` (no or a refused `Origin`), so a cache
    /// does not hand that answer to an allowed origin, or the reverse.
    pub fn varies_by_origin(&self) -> bool {
        self.origins != Origins::Any || self.credentials
    }

    /// The headers answering a preflight (see [`is_preflight`]), or `None` when the request has
    /// no single readable `Origin` or the origin is not allowed; the caller decides whether to
    /// refuse (403) or forward.
    ///
    /// - `Access-Control-Allow-Origin`: the origin echoed, or `*` for any origin without
    ///   credentials.
    /// - `Vary`: `origin` when echoing, plus the two request headers echoed below.
    /// - `Access-Control-Allow-Methods`: the requested method when it is a valid method token,
    ///   otherwise `GET, POST, PUT, PATCH, DELETE, OPTIONS`.
    /// - `Access-Control-Allow-Headers`: `Access-Control-Request-Headers` echoed when it is a
    ///   well-formed list of header names, omitted otherwise (the browser then refuses the
    ///   request itself). Echoing rather than `*` matters: `Authorization` is never covered by
    ///   the wildcard, and with credentials `*` is just a literal name.
    /// - `Access-Control-Allow-Credentials: true` when credentials are allowed.
    /// - `Access-Control-Max-Age`.
    ///
    /// Preflights are rare (browsers cache them for `max_age`), so this returns a plain `Vec`;
    /// [`CorsPolicy::preflight_headers`] is the same answer without the allocation.
    pub fn preflight(&self, headers: &HeaderMap) -> Option<Vec<(HeaderName, HeaderValue)>> {
        self.preflight_headers(headers).map(Vec::from)
    }

    /// [`CorsPolicy::preflight`] as a fixed-capacity [`CorsHeaders`].
    pub fn preflight_headers(&self, headers: &HeaderMap) -> Option<CorsHeaders> {
        let grant = self.grant(headers)?;
        let mut out = CorsHeaders::new();
        let echo = matches!(grant, Grant::Echo(_));
        out.push_origin(grant);
        out.push(
            VARY,
            if echo {
                VARY_PREFLIGHT_ECHO
            } else {
                VARY_PREFLIGHT_ANY
            },
        );
        let method = single(headers, &ACCESS_CONTROL_REQUEST_METHOD)
            .filter(|v| Method::from_bytes(v.as_bytes()).is_ok())
            .cloned()
            .unwrap_or(ALLOW_METHODS);
        out.push(ACCESS_CONTROL_ALLOW_METHODS, method);
        if let Some(names) =
            single(headers, &ACCESS_CONTROL_REQUEST_HEADERS).filter(|v| is_name_list(v.as_bytes()))
        {
            out.push(ACCESS_CONTROL_ALLOW_HEADERS, names.clone());
        }
        if self.credentials {
            out.push(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        }
        out.push(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        Some(out)
    }

    /// The headers to add to an actual (non-preflight) response, or `None` when the request
    /// has no single readable `Origin` (not a CORS request) or the origin is not allowed:
    /// `Access-Control-Allow-Origin`, `Vary: origin` when echoing, `Access-Control-Allow-
    /// Credentials` when allowed, and `Access-Control-Expose-Headers` with the request-id and
    /// rate-limit headers SDKs read.
    pub fn response_headers(&self, request_headers: &HeaderMap) -> Option<CorsHeaders> {
        let grant = self.grant(request_headers)?;
        let mut out = CorsHeaders::new();
        if matches!(grant, Grant::Echo(_)) {
            out.push(VARY, VARY_ORIGIN);
        }
        out.push_origin(grant);
        if self.credentials {
            out.push(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        }
        out.push(ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE_HEADERS);
        Some(out)
    }

    /// How the request's origin is answered, if at all.
    fn grant(&self, headers: &HeaderMap) -> Option<Grant> {
        let value = single(headers, &ORIGIN)?;
        let origin = value.to_str().ok().filter(|o| !o.is_empty())?;
        if !self.allows_origin(origin) {
            return None;
        }
        Some(if self.varies_by_origin() {
            Grant::Echo(value.clone())
        } else {
            Grant::Any
        })
    }
}

/// The one value of `name`; `None` when absent or repeated (two `Origin` headers, say, are
/// contradictory and neither is believed).
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => Some(value),
        _ => None,
    }
}

/// A comma-separated list of header names (RFC 9110 tokens), optional whitespace around each,
/// empty elements ignored, at least one name.
fn is_name_list(value: &[u8]) -> bool {
    let mut names = 0;
    for element in value.split(|&b| b == b',') {
        let name = element.trim_ascii();
        if name.is_empty() {
            continue;
        }
        if !name.iter().all(|&b| is_tchar(b)) {
            return false;
        }
        names += 1;
    }
    names > 0
}

/// RFC 9110 `tchar`: the characters of a token.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A configured origin in browser serialisation, or why it is not one.
fn parse_origin(text: &str) -> Result<Box<str>, String> {
    let text = text.trim();
    let bad = |why: &str| Err(format!("{text:?} is not a valid origin: {why}"));
    if text.is_empty() {
        return bad("it is empty");
    }
    if text.eq_ignore_ascii_case("null") {
        return bad("\"null\" is sent by sandboxed frames and file: pages and cannot be allowed");
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return bad("expected scheme://host[:port], like https://app.example.com");
    };
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return bad("the scheme is not valid");
    }
    if let Some(cut) = rest.find(['/', '?', '#']) {
        let authority = rest.get(..cut).unwrap_or(rest);
        let mut hint = format!("{scheme}://{authority}");
        hint.make_ascii_lowercase();
        return Err(format!(
            "{text:?} is not a valid origin: an origin has no path, query or fragment; \
             did you mean {hint}?"
        ));
    }
    if rest.contains('@') {
        return bad("an origin has no user name or password");
    }
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let Some((inside, after)) = bracketed.split_once(']') else {
            return bad("missing ']' after the IPv6 address");
        };
        let Ok(v6) = inside.parse::<Ipv6Addr>() else {
            return bad("the IPv6 address is not valid");
        };
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return bad("unexpected text after the IPv6 address"),
            },
        };
        // Browsers serialise IPv6 hosts in compressed lowercase form, as `Display` does.
        (format!("[{v6}]"), port)
    } else {
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        };
        if let Err(why) = check_host(host) {
            return bad(why);
        }
        (host.to_ascii_lowercase(), port)
    };
    let scheme = scheme.to_ascii_lowercase();
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => match p.parse() {
            Ok(0) | Err(_) => return bad("the port must be 1 to 65535"),
            Ok(p) => default_port_dropped(&scheme, p),
        },
        Some(_) => return bad("the port must be 1 to 65535"),
    };
    Ok(match port {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    }
    .into_boxed_str())
}

/// Browsers leave the scheme's default port out of `Origin`, so a configured `:443` would never
/// match; drop it instead.
fn default_port_dropped(scheme: &str, port: u16) -> Option<u16> {
    match (scheme, port) {
        ("https" | "wss", 443) | ("http" | "ws", 80) => None,
        _ => Some(port),
    }
}

/// A host name or IPv4 address: dot-separated labels of ASCII letters, digits, `-` and `_`.
fn check_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("the host is missing");
    }
    if host.contains('*') {
        return Err("wildcard origins are not supported: list each origin, or use \"*\" alone");
    }
    if !host.is_ascii() {
        return Err("use the ASCII (punycode, xn--) form of an international host name");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    };
    if host.split('.').all(label_ok) {
        Ok(())
    } else {
        Err("the host is not a valid host name")
    }
}

/// At most this many headers are ever produced (a preflight's six).
const CAPACITY: usize = 6;

/// What the unused slots of a [`CorsHeaders`] hold; never visible.
const UNUSED: (HeaderName, HeaderValue) = (VARY, HeaderValue::from_static(""));

/// A small fixed-capacity list of CORS response headers: no heap allocation of its own.
///
/// It derefs to a slice of `(name, value)` pairs, so it goes wherever a
/// `&[(HeaderName, HeaderValue)]` does, and `&CorsHeaders` iterates like one.
///
/// Every name except `Vary` should replace what the response already has (an upstream's own
/// CORS headers would contradict the gateway's); `Vary` should be appended so the upstream's
/// `Vary` (say `accept-encoding`) survives. [`CorsHeaders::apply_to`] does exactly that for an
/// `http::HeaderMap`.
#[derive(Debug, Clone)]
pub struct CorsHeaders {
    entries: [(HeaderName, HeaderValue); CAPACITY],
    len: usize,
}

/// The name the gateway's callers use for the response-header list.
pub type Headers = CorsHeaders;

impl CorsHeaders {
    /// An empty list.
    pub const fn new() -> Self {
        CorsHeaders {
            entries: [UNUSED; CAPACITY],
            len: 0,
        }
    }

    /// Adds a header; past the capacity it is dropped, which the tests prove never happens.
    fn push(&mut self, name: HeaderName, value: HeaderValue) {
        if let Some(slot) = self.entries.get_mut(self.len) {
            *slot = (name, value);
            self.len += 1;
        }
    }

    fn push_origin(&mut self, grant: Grant) {
        let value = match grant {
            Grant::Any => ANY,
            Grant::Echo(origin) => origin,
        };
        self.push(ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }

    /// The value of `name`, if present.
    pub fn value(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Writes the headers into `map`: `Vary` appended, everything else replacing what is there.
    pub fn apply_to(self, map: &mut HeaderMap) {
        for (name, value) in self {
            if name == VARY {
                map.append(name, value);
            } else {
                map.insert(name, value);
            }
        }
    }
}

impl Default for CorsHeaders {
    fn default() -> Self {
        Self::new()
    }
}

impl std::ops::Deref for CorsHeaders {
    type Target = [(HeaderName, HeaderValue)];

    fn deref(&self) -> &Self::Target {
        // `len` never exceeds the capacity (see `push`); the fallback only avoids a panic path.
        self.entries.get(..self.len).unwrap_or(&[])
    }
}

impl PartialEq for CorsHeaders {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for CorsHeaders {}

impl IntoIterator for CorsHeaders {
    type Item = (HeaderName, HeaderValue);
    type IntoIter = std::iter::Take<std::array::IntoIter<Self::Item, CAPACITY>>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter().take(self.len)
    }
}

impl<'a> IntoIterator for &'a CorsHeaders {
    type Item = &'a (HeaderName, HeaderValue);
    type IntoIter = std::slice::Iter<'a, (HeaderName, HeaderValue)>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl From<CorsHeaders> for Vec<(HeaderName, HeaderValue)> {
    fn from(headers: CorsHeaders) -> Self {
        headers.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "https://app.example.com";

    fn policy(origins: &[&str], credentials: bool) -> CorsPolicy {
        let origins: Vec<String> = origins.iter().map(|s| s.to_string()).collect();
        CorsPolicy::new(&origins, credentials, Duration::from_secs(600)).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn preflight_req(origin: &str) -> HeaderMap {
        headers(&[
            ("origin", origin),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization, content-type",
            ),
        ])
    }

    fn get(h: &[(HeaderName, HeaderValue)], name: HeaderName) -> Option<&str> {
        h.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_str().unwrap())
    }

    fn origin_err(origin: &str) -> String {
        CorsPolicy::new(&[origin.to_string()], false, Duration::ZERO).unwrap_err()
    }

    // --- construction ----------------------------------------------------------------------

    #[test]
    fn origins_are_normalised_to_browser_form() {
        let p = policy(
            &[
                "HTTPS://App.Example.com",
                "https://app.example.com:443",
                "http://localhost:3000",
                "http://127.0.0.1:80",
                "https://[2001:DB8:0::1]:8443",
                "chrome-extension://abcdefghijklmnop",
                " https://spaced.example ",
            ],
            false,
        );
        let Origins::List(list) = &p.origins else {
            panic!("expected a list")
        };
        let list: Vec<&str> = list.iter().map(|o| &**o).collect();
        assert_eq!(
            list,
            [
                APP,
                "http://localhost:3000",
                "http://127.0.0.1",
                "https://[2001:db8::1]:8443",
                "chrome-extension://abcdefghijklmnop",
                "https://spaced.example",
            ]
        );
        assert!(p.allows_origin(APP));
        assert!(p.allows_origin("https://APP.example.com"));
        assert!(p.allows_origin("http://127.0.0.1"));
        assert!(
            !p.allows_origin("http://127.0.0.1:80"),
            "browsers never send it"
        );
        assert!(!p.allows_origin("https://app.example.com.evil.test"));
        assert!(!p.allows_origin("https://example.com"));
        assert!(!p.allows_origin("http://app.example.com"), "scheme matters");
        assert!(
            !p.allows_origin("https://app.example.com:8443"),
            "port matters"
        );
    }

    #[test]
    fn invalid_origins_are_refused_with_a_reason() {
        let cases = [
            (
                "https://app.example.com/",
                "did you mean https://app.example.com?",
            ),
            ("https://app.example.com/v1", "no path"),
            ("https://app.example.com?x=1", "query"),
            ("https://app.example.com#top", "fragment"),
            ("app.example.com", "scheme://host"),
            ("https://", "host is missing"),
            ("https://user:pw@app.example.com", "user name"),
            ("https://*.example.com", "wildcard"),
            ("https://bücher.example", "punycode"),
            ("https://app..example.com", "not a valid host"),
            ("https://-app.example.com", "not a valid host"),
            ("https://app.example.com:", "port"),
            ("https://app.example.com:0", "port"),
            ("https://app.example.com:65536", "port"),
            ("https://app.example.com:8o", "port"),
            ("https://[2001:db8::1", "']'"),
            ("https://[nope]", "IPv6"),
            ("https://[::1]x", "after the IPv6"),
            ("1https://x.example", "scheme"),
            ("null", "sandboxed"),
            ("", "empty"),
        ];
        for (origin, why) in cases {
            let err = origin_err(origin);
            assert!(err.contains(why), "{origin}: {err}");
            assert!(err.contains("not a valid origin"), "{origin}: {err}");
        }
    }

    #[test]
    fn empty_wildcard_and_mixed_lists() {
        let none = policy(&[], false);
        assert!(!none.allows_origin(APP));
        assert!(none
            .response_headers(&headers(&[("origin", APP)]))
            .is_none());
        let any = policy(&["*"], false);
        assert!(any.allows_origin("https://anything.test") && any.allows_origin("null"));
        let mixed = policy(&[APP, "*"], false);
        assert_eq!(mixed.origins, Origins::Any);
        // A bad entry fails even next to "*".
        assert!(CorsPolicy::new(&["*".into(), "nope".into()], false, Duration::ZERO).is_err());
    }

    #[test]
    fn max_age_is_whole_seconds() {
        let p = CorsPolicy::new(&[APP.into()], false, Duration::from_millis(90_900)).unwrap();
        let h = p.preflight(&preflight_req(APP)).unwrap();
        assert_eq!(get(&h, ACCESS_CONTROL_MAX_AGE), Some("90"));
        let p = CorsPolicy::new(&[APP.into()], false, Duration::ZERO).unwrap();
        let h = p.preflight(&preflight_req(APP)).unwrap();
        assert_eq!(get(&h, ACCESS_CONTROL_MAX_AGE), Some("0"));
    }

    // --- is_preflight ----------------------------------------------------------------------

    #[test]
    fn preflight_detection() {
        let full = preflight_req(APP);
        assert!(is_preflight(&Method::OPTIONS, &full));
        assert!(!is_preflight(&Method::POST, &full));
        assert!(!is_preflight(
            &Method::OPTIONS,
            &headers(&[("origin", APP)])
        ));
        assert!(!is_preflight(
            &Method::OPTIONS,
            &headers(&[("access-control-request-method", "POST")])
        ));
        assert!(!is_preflight(&Method::OPTIONS, &HeaderMap::new()));
    }

    // --- preflight -------------------------------------------------------------------------

    #[test]
    fn preflight_for_an_allowed_origin() {
        let p = policy(&[APP], false);
        let h = p.preflight(&preflight_req(APP)).unwrap();
        assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_ORIGIN), Some(APP));
        assert_eq!(
            get(&h, VARY),
            Some("origin, access-control-request-method, access-control-request-headers")
        );
        assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_METHODS), Some("POST"));
        assert_eq!(
            get(&h, ACCESS_CONTROL_ALLOW_HEADERS),
            Some("authorization, content-type")
        );
        assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
        assert_eq!(get(&h, ACCESS_CONTROL_MAX_AGE), Some("600"));
        assert_eq!(get(&h, ACCESS_CONTROL_EXPOSE_HEADERS), None);
        assert_eq!(h.len(), 5);
        // The echo is the request's own spelling.
        let h = p
            .preflight(&preflight_req("https://APP.example.com"))
            .unwrap();
        assert_eq!(
            get(&h, ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("https://APP.example.com")
        );
    }

    #[test]
    fn preflight_refuses_unknown_missing_and_repeated_origins() {
        let p = policy(&[APP], true);
        assert!(p
            .preflight(&preflight_req("https://evil.example"))
            .is_none());
        assert!(p.preflight(&preflight_req("null")).is_none());
        assert!(p
            .preflight(&headers(&[("access-control-request-method", "POST")]))
            .is_none());
        let twice = headers(&[
            ("origin", APP),
            ("origin", "https://evil.example"),
            ("access-control-request-method", "POST"),
        ]);
        assert!(p.preflight(&twice).is_none());
        let mut blank = preflight_req(APP);
        blank.insert(ORIGIN, HeaderValue::from_static(""));
        assert!(p.preflight(&blank).is_none());
        let mut binary = preflight_req(APP);
        binary.insert(ORIGIN, HeaderValue::from_bytes(b"https://\xffapp").unwrap());
        assert!(p.preflight(&binary).is_none());
    }

    #[test]
    fn preflight_with_any_origin() {
        let p = policy(&["*"], false);
        let h = p.preflight(&preflight_req("https://anyone.test")).unwrap();
        assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
        assert_eq!(
            get(&h, VARY),
            Some("access-control-request-method, access-control-request-headers")
        );
        assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
        assert!(!p.varies_by_origin());
    }

    #[test]
    fn any_origin_with_credentials_echoes_never_star() {
        let p = policy(&["*"], true);
        assert!(p.varies_by_origin());
        let h = p.preflight(&preflight_req("https://anyone.test")).unwrap();
        assert_eq!(
            get(&h, ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("https://anyone.test")
        );
        assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_CREDENTIALS), Some("true"));
        assert!(get(&h, VARY).unwrap().starts_with("origin"));
        assert_eq!(h.len(), 6, "the full preflight fits the capacity");
        let h = p
            .response_headers(&headers(&[("origin", "https://anyone.test")]))
            .unwrap();
        assert_eq!(
            get(&h, ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("https://anyone.test")
        );
        assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_CREDENTIALS), Some("true"));
        assert_eq!(get(&h, VARY), Some("origin"));
        // Echoing "null" would let every sandboxed page in with credentials.
        assert!(p.preflight(&preflight_req("null")).is_none());
        assert!(p
            .response_headers(&headers(&[("origin", "null")]))
            .is_none());
        for (_, v) in p.preflight(&preflight_req("https://x.test")).unwrap() {
            assert_ne!(v, "*");
        }
    }

    #[test]
    fn preflight_methods() {
        let p = policy(&[APP], false);
        let with = |m: &str| {
            let h = headers(&[("origin", APP), ("access-control-request-method", m)]);
            let out = p.preflight(&h).unwrap();
            get(&out, ACCESS_CONTROL_ALLOW_METHODS).map(str::to_string)
        };
        assert_eq!(with("PATCH").as_deref(), Some("PATCH"));
        assert_eq!(with("PROPFIND").as_deref(), Some("PROPFIND"));
        let fixed = Some("GET, POST, PUT, PATCH, DELETE, OPTIONS");
        assert_eq!(with("PO ST").as_deref(), fixed);
        assert_eq!(with("").as_deref(), fixed);
        assert_eq!(with("GET,POST").as_deref(), fixed);
        // Absent (not a preflight, but the answer is still well-formed).
        let out = p.preflight(&headers(&[("origin", APP)])).unwrap();
        assert_eq!(get(&out, ACCESS_CONTROL_ALLOW_METHODS), fixed);
    }

    #[test]
    fn preflight_headers_are_echoed_only_when_well_formed() {
        let p = policy(&[APP], false);
        let with = |names: &str| {
            let h = headers(&[
                ("origin", APP),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", names),
            ]);
            let out = p.preflight(&h).unwrap();
            get(&out, ACCESS_CONTROL_ALLOW_HEADERS).map(str::to_string)
        };
        assert_eq!(with("authorization").as_deref(), Some("authorization"));
        assert_eq!(
            with("authorization,content-type,x-stainless-os").as_deref(),
            Some("authorization,content-type,x-stainless-os")
        );
        assert_eq!(
            with(" Authorization ,\tX-Custom ").as_deref(),
            Some(" Authorization ,\tX-Custom ")
        );
        assert_eq!(with("a,,b").as_deref(), Some("a,,b"));
        assert_eq!(with("bad header"), None);
        assert_eq!(with("bad:header"), None);
        assert_eq!(with("x-a, (x-b)"), None);
        assert_eq!(with(""), None);
        assert_eq!(with(" , "), None);
        // Absent: omitted.
        let out = p.preflight(&headers(&[
            ("origin", APP),
            ("access-control-request-method", "GET"),
        ]));
        assert_eq!(get(&out.unwrap(), ACCESS_CONTROL_ALLOW_HEADERS), None);
        // Repeated: neither is echoed.
        let h = headers(&[
            ("origin", APP),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "a"),
            ("access-control-request-headers", "b"),
        ]);
        assert_eq!(
            get(&p.preflight(&h).unwrap(), ACCESS_CONTROL_ALLOW_HEADERS),
            None
        );
    }

    // --- response_headers ------------------------------------------------------------------

    #[test]
    fn actual_response_headers() {
        let p = policy(&[APP], false);
        let h = p.response_headers(&headers(&[("origin", APP)])).unwrap();
        assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_ORIGIN), Some(APP));
        assert_eq!(get(&h, VARY), Some("origin"));
        assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
        let exposed = get(&h, ACCESS_CONTROL_EXPOSE_HEADERS).unwrap();
        for name in [
            "x-request-id",
            "openai-processing-ms",
            "openai-model",
            "openai-organization",
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
            "retry-after",
        ] {
            assert!(exposed.split(", ").any(|n| n == name), "{name}");
        }
        assert!(is_name_list(exposed.as_bytes()));
        assert_eq!(get(&h, ACCESS_CONTROL_MAX_AGE), None);
        assert_eq!(h.len(), 3);

        let p = policy(&[APP], true);
        let h = p.response_headers(&headers(&[("origin", APP)])).unwrap();
        assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_CREDENTIALS), Some("true"));
        assert_eq!(h.len(), 4);

        let any = policy(&["*"], false);
        let h = any.response_headers(&headers(&[("origin", APP)])).unwrap();
        assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
        assert_eq!(get(&h, VARY), None);
    }

    #[test]
    fn actual_response_without_or_with_a_refused_origin_gets_nothing() {
        let p = policy(&[APP], false);
        assert!(p.varies_by_origin());
        assert!(p.response_headers(&HeaderMap::new()).is_none());
        assert!(p
            .response_headers(&headers(&[("origin", "https://evil.example")]))
            .is_none());
        assert!(policy(&["*"], false)
            .response_headers(&HeaderMap::new())
            .is_none());
    }

    #[test]
    fn apply_to_replaces_cors_headers_and_appends_vary() {
        let p = policy(&[APP], true);
        let mut resp = headers(&[
            ("vary", "accept-encoding"),
            ("access-control-allow-origin", "*"),
            ("content-type", "application/json"),
        ]);
        p.response_headers(&headers(&[("origin", APP)]))
            .unwrap()
            .apply_to(&mut resp);
        assert_eq!(resp["access-control-allow-origin"], APP);
        assert_eq!(
            resp.get_all("access-control-allow-origin").iter().count(),
            1
        );
        let vary: Vec<_> = resp.get_all(VARY).iter().collect();
        assert_eq!(vary, ["accept-encoding", "origin"]);
        assert_eq!(resp["access-control-allow-credentials"], "true");
        assert_eq!(resp["content-type"], "application/json");
    }

    #[test]
    fn header_list_iterates_in_order() {
        let p = policy(&[APP], true);
        let h = p.preflight_headers(&preflight_req(APP)).unwrap();
        let names: Vec<&str> = h.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "access-control-allow-origin",
                "vary",
                "access-control-allow-methods",
                "access-control-allow-headers",
                "access-control-allow-credentials",
                "access-control-max-age",
            ]
        );
        let owned: Vec<(HeaderName, HeaderValue)> = h.clone().into_iter().collect();
        assert_eq!(owned.len(), h.len());
        assert!(!h.is_empty() && CorsHeaders::new().is_empty());
        assert_eq!(h.value(&VARY), Some(&VARY_PREFLIGHT_ECHO));
        assert_eq!(h.value(&ACCESS_CONTROL_EXPOSE_HEADERS), None);
        // Both preflight forms give the same answer.
        assert_eq!(
            Vec::from(h.clone()),
            p.preflight(&preflight_req(APP)).unwrap()
        );
    }

    #[test]
    fn headers_fit_the_callers_shapes() {
        // What the proxy does with them: pass as a slice, iterate an `Option` by reference,
        // default to nothing.
        fn takes_slice(extra: &[(HeaderName, HeaderValue)]) -> usize {
            extra.len()
        }
        let p = policy(&[APP], true);
        let stored: Option<Headers> = p.response_headers(&headers(&[("origin", APP)]));
        assert_eq!(stored.iter().flatten().count(), 4);
        for (name, value) in stored.iter().flatten() {
            assert!(!name.as_str().is_empty() && !value.is_empty());
        }
        assert_eq!(takes_slice(&stored.clone().unwrap_or_default()), 4);
        let none: Option<Headers> = p.response_headers(&HeaderMap::new());
        assert_eq!(takes_slice(&none.unwrap_or_default()), 0);
        assert_eq!(CorsHeaders::default(), CorsHeaders::new());
        let refused = p.preflight(&preflight_req("https://evil.example"));
        let (status, list) = match refused {
            Some(h) => (204, h),
            None => (403, Vec::new()),
        };
        assert_eq!((status, takes_slice(&list)), (403, 0));
    }
}
