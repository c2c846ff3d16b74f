//! CORS for browser clients: preflights answered by the gateway, and the headers that let a page
//! read responses (including the rate-limit and request-id headers SDKs look at). Pure: takes
//! and returns `http` headers; the constant values are built once.

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use std::time::Duration;

const EXPOSED: &str = "x-request-id, openai-processing-ms, openai-model, openai-organization, \
    x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, \
    x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens, retry-after";
const METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";

pub type Headers = Vec<(HeaderName, HeaderValue)>;

#[derive(Debug, Clone)]
pub struct CorsPolicy {
    any_origin: bool,
    origins: Vec<HeaderValue>,
    credentials: bool,
    max_age: HeaderValue,
}

impl CorsPolicy {
    /// `allow_origins`: exact origins (`https://app.example.com`) or `*`. With credentials, `*`
    /// is answered by echoing the request's origin: browsers refuse a literal `*` there.
    pub fn new(
        allow_origins: &[String],
        credentials: bool,
        max_age: Duration,
    ) -> Result<Self, String> {
        let mut origins = Vec::new();
        let mut any_origin = false;
        for o in allow_origins {
            if o == "*" {
                any_origin = true;
                continue;
            }
            let uri: http::Uri = o.parse().map_err(|_| format!("{o:?} is not an origin"))?;
            let valid = matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.authority().is_some()
                && matches!(uri.path(), "" | "/")
                && !o.ends_with('/');
            if !valid {
                return Err(format!("{o:?} is not an origin; write scheme://host[:port], e.g. https://app.example.com"));
            }
            origins.push(HeaderValue::from_str(o).map_err(|_| format!("{o:?} is not an origin"))?);
        }
        Ok(CorsPolicy {
            any_origin,
            origins,
            credentials,
            max_age: HeaderValue::from(max_age.as_secs()),
        })
    }

    pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS
            && headers.contains_key(header::ORIGIN)
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The allow-origin value for this request, or `None` when its origin is not allowed.
    fn allow_origin(&self, headers: &HeaderMap) -> Option<(HeaderValue, bool)> {
        let origin = headers.get(header::ORIGIN)?;
        if self.origins.iter().any(|o| o == origin) {
            return Some((origin.clone(), true));
        }
        if self.any_origin {
            return Some(if self.credentials {
                (origin.clone(), true)
            } else {
                (HeaderValue::from_static("*"), false)
            });
        }
        None
    }

    /// Headers answering a preflight; `None` when the origin is not allowed.
    pub fn preflight(&self, headers: &HeaderMap) -> Option<Headers> {
        let mut out = self.common(headers)?;
        out.push((
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(METHODS),
        ));
        if let Some(requested) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            let valid = requested.to_str().is_ok_and(|v| {
                v.split(',')
                    .all(|n| HeaderName::from_bytes(n.trim().as_bytes()).is_ok())
            });
            if valid {
                out.push((header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone()));
            }
        }
        out.push((header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone()));
        Some(out)
    }

    /// Headers for an actual response to an allowed origin.
    pub fn response_headers(&self, headers: &HeaderMap) -> Option<Headers> {
        let mut out = self.common(headers)?;
        out.push((
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED),
        ));
        Some(out)
    }

    fn common(&self, headers: &HeaderMap) -> Option<Headers> {
        let (origin, echoed) = self.allow_origin(headers)?;
        let mut out = Vec::with_capacity(5);
        out.push((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin));
        if echoed {
            out.push((header::VARY, HeaderValue::from_static("Origin")));
        }
        if self.credentials {
            out.push((
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(origin: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, origin.parse().unwrap());
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            "POST".parse().unwrap(),
        );
        h.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization, content-type".parse().unwrap(),
        );
        h
    }

    fn get(h: &Headers, name: HeaderName) -> Option<&str> {
        h.iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.to_str().ok())
    }

    #[test]
    fn exact_origins() {
        let p = CorsPolicy::new(
            &["https://app.example.com".into()],
            false,
            Duration::from_secs(600),
        )
        .unwrap();
        assert!(CorsPolicy::is_preflight(
            &Method::OPTIONS,
            &req("https://x")
        ));
        let h = p.preflight(&req("https://app.example.com")).unwrap();
        assert_eq!(
            get(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("https://app.example.com")
        );
        assert_eq!(
            get(&h, header::ACCESS_CONTROL_ALLOW_HEADERS),
            Some("authorization, content-type")
        );
        assert_eq!(get(&h, header::ACCESS_CONTROL_MAX_AGE), Some("600"));
        assert!(p.preflight(&req("https://evil.example")).is_none());
    }

    #[test]
    fn any_origin_with_and_without_credentials() {
        let open = CorsPolicy::new(&["*".into()], false, Duration::ZERO).unwrap();
        let h = open.response_headers(&req("https://a.example")).unwrap();
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
        let cred = CorsPolicy::new(&["*".into()], true, Duration::ZERO).unwrap();
        let h = cred.response_headers(&req("https://a.example")).unwrap();
        assert_eq!(
            get(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("https://a.example")
        );
        assert_eq!(
            get(&h, header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
            Some("true")
        );
    }

    #[test]
    fn bad_origins_are_refused() {
        for bad in [
            "app.example.com",
            "https://a.example/path",
            "https://a.example/",
            "ftp://a",
        ] {
            assert!(
                CorsPolicy::new(&[bad.into()], false, Duration::ZERO).is_err(),
                "{bad}"
            );
        }
    }
}
