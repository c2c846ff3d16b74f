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
pub(crate) fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
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

    /// The policy of `["*"]`, which needs no parsing and so cannot fail.
    pub fn any_origin(allow_credentials: bool, max_age: Duration) -> Self {
        CorsPolicy {
            origins: Origins::Any,
            credentials: allow_credentials,
            max_age: HeaderValue::from(max_age.as_secs()),
        }
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

mod headers;
mod origin;
#[cfg(test)]
mod tests;

pub(crate) use headers::{CorsHeaders, Headers};
use origin::parse_origin;
