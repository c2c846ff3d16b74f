//! Where clients put API keys, in one list for every place that must know: the forward-key
//! lookup (`proxy::auth`), the marking of secret headers as sensitive so no `Debug` print shows
//! them, the removal of client keys before a pool key is injected (`proxy::forward`), and the
//! per-client scope of cached answers (`proxy::cache`). Several lists used to disagree (one
//! left `x-api-key` visible in request dumps); a carrier added here is handled everywhere.

use http::HeaderName;
use pingora_http::RequestHeader;

/// Request headers that carry a client's API key: OpenAI's `Authorization: Bearer`, Azure's
/// `api-key`, Gemini's `x-goog-api-key`, Anthropic's `x-api-key`. In lookup order: the first
/// present wins (`authorization` only when its token is not empty). Gemini's `?key=` query
/// parameter is the one carrier outside headers.
pub(crate) const CREDENTIAL_HEADERS: [&str; 4] =
    ["authorization", "api-key", "x-goog-api-key", "x-api-key"];

/// Request headers that carry other secrets (the outbound proxy's credentials, sessions).
const OTHER_SECRET_HEADERS: [&str; 2] = ["proxy-authorization", "cookie"];

/// [`CREDENTIAL_HEADERS`] then [`OTHER_SECRET_HEADERS`] as parsed names: a lookup by one is
/// a hash, not a parse and a hash. The first four are [`credential_header_names`].
static SECRET_HEADER_NAMES: [HeaderName; 6] = [
    HeaderName::from_static(CREDENTIAL_HEADERS[0]),
    HeaderName::from_static(CREDENTIAL_HEADERS[1]),
    HeaderName::from_static(CREDENTIAL_HEADERS[2]),
    HeaderName::from_static(CREDENTIAL_HEADERS[3]),
    HeaderName::from_static(OTHER_SECRET_HEADERS[0]),
    HeaderName::from_static(OTHER_SECRET_HEADERS[1]),
];

/// [`CREDENTIAL_HEADERS`] as parsed names, in the same order.
pub(crate) fn credential_header_names() -> &'static [HeaderName] {
    &SECRET_HEADER_NAMES[..CREDENTIAL_HEADERS.len()]
}

/// Mark every header that carries a secret sensitive, so no `Debug` print of the request
/// (Pingora's logs, ours) can show it.
///
/// Every request pays for this, and most carry one of the six names at most: one pass over the
/// head's names finds the ones present (a length check rejects nearly every pair), instead of a
/// parse and a hash lookup per name (~1,000 instructions a request, callgrind).
pub(crate) fn hide(req: &mut RequestHeader) {
    let secrets = CREDENTIAL_HEADERS.into_iter().chain(OTHER_SECRET_HEADERS);
    let mut present = 0u8;
    for key in req.headers.keys() {
        let key = key.as_str();
        if let Some(i) = secrets.clone().position(|name| name == key) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    for (i, name) in secrets.enumerate() {
        if present & (1 << i) == 0 {
            continue;
        }
        let parsed = &SECRET_HEADER_NAMES[i];
        let mut values = req.headers.get_all(parsed).iter();
        let (Some(first), repeated) = (values.next(), values.next().is_some()) else {
            continue;
        };
        if !repeated {
            // The usual case, one value: replaced where it stands.
            if !first.is_sensitive() {
                let mut hidden = first.clone();
                hidden.set_sensitive(true);
                let _ = req.insert_header(name, hidden);
            }
            continue;
        }
        // Repeated (HTTP/2 clients send each cookie as its own field): every value is kept, in
        // order. An insert would keep only the one it is given.
        let hidden: Vec<http::HeaderValue> = req
            .headers
            .get_all(parsed)
            .iter()
            .map(|v| {
                let mut v = v.clone();
                v.set_sensitive(true);
                v
            })
            .collect();
        let _ = req.remove_header(parsed);
        for v in hidden {
            let _ = req.append_header(name, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_with(names: &[&str]) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        for name in names {
            req.insert_header(name.to_string(), "secret-value").unwrap();
        }
        req
    }

    #[test]
    fn every_credential_header_is_marked_sensitive() {
        let all: Vec<&str> = CREDENTIAL_HEADERS
            .into_iter()
            .chain(OTHER_SECRET_HEADERS)
            .collect();
        let mut req = request_with(&all);
        req.insert_header("x-request-id", "not-secret").unwrap();
        hide(&mut req);
        for name in &all {
            let v = req.headers.get(*name).unwrap();
            assert!(v.is_sensitive(), "{name} is not marked sensitive");
            assert_eq!(v.as_bytes(), b"secret-value", "{name} keeps its value");
        }
        assert!(!req.headers.get("x-request-id").unwrap().is_sensitive());
        assert!(!format!("{req:?}").contains("secret-value"), "{req:?}");
    }

    #[test]
    fn parsed_names_follow_the_lists() {
        let all: Vec<&str> = CREDENTIAL_HEADERS
            .into_iter()
            .chain(OTHER_SECRET_HEADERS)
            .collect();
        let parsed: Vec<&str> = SECRET_HEADER_NAMES.iter().map(|n| n.as_str()).collect();
        assert_eq!(all, parsed);
        let credentials: Vec<&str> = credential_header_names()
            .iter()
            .map(|n| n.as_str())
            .collect();
        assert_eq!(credentials, CREDENTIAL_HEADERS);
    }

    /// A head without secrets is left alone; one with them keeps every other header, and each
    /// secret its value, in the order they came.
    #[test]
    fn only_present_secrets_are_touched() {
        let mut plain = request_with(&["content-type", "x-request-id"]);
        let before = format!("{plain:?}");
        hide(&mut plain);
        assert_eq!(format!("{plain:?}"), before);
        let mut mixed = request_with(&["content-type", "cookie", "x-goog-api-key", "accept"]);
        hide(&mut mixed);
        let names: Vec<&str> = mixed.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            ["content-type", "cookie", "x-goog-api-key", "accept"]
        );
        for name in ["cookie", "x-goog-api-key"] {
            assert!(mixed.headers.get(name).unwrap().is_sensitive(), "{name}");
        }
        for name in ["content-type", "accept"] {
            assert!(!mixed.headers.get(name).unwrap().is_sensitive(), "{name}");
        }
    }

    #[test]
    fn repeated_secrets_keep_every_value_in_order() {
        let mut req = request_with(&["content-type"]);
        for cookie in ["a=1", "b=2", "c=3"] {
            req.append_header("cookie", cookie).unwrap();
        }
        hide(&mut req);
        let values: Vec<_> = req.headers.get_all("cookie").iter().collect();
        assert_eq!(values, ["a=1", "b=2", "c=3"]);
        assert!(values.iter().all(|v| v.is_sensitive()));
        assert!(!format!("{req:?}").contains("b=2"), "{req:?}");
    }

    #[test]
    fn x_api_key_is_a_credential_header() {
        // Anthropic's SDKs send their key here; it must be hidden, cleared and scoped like the
        // others.
        assert!(CREDENTIAL_HEADERS.contains(&"x-api-key"));
        let mut req = request_with(&["x-api-key"]);
        hide(&mut req);
        assert!(req.headers.get("x-api-key").unwrap().is_sensitive());
    }

    /// One list: no other source file spells a carrier out as a string of its own (the lists
    /// that used to disagree lived in proxy/auth.rs, proxy/cache.rs and proxy/forward.rs).
    #[test]
    fn no_other_source_file_keeps_its_own_list() {
        let (_, files) = crate::source_tree::rust_sources();
        for file in files.iter().filter(|f| !f.ends_with("credentials.rs")) {
            let text = std::fs::read_to_string(file).unwrap();
            for carrier in CREDENTIAL_HEADERS
                .into_iter()
                .filter(|c| *c != "authorization")
            {
                let literal = format!("\"{carrier}\"");
                assert!(
                    !text.contains(&literal),
                    "{} lists {literal}: use credentials::CREDENTIAL_HEADERS",
                    file.display()
                );
            }
        }
    }
}
