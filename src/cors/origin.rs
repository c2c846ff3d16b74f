//! Configured origins: what a CORS allow-list entry may be, and its browser serialisation
//! (lowercase, default port dropped), so the configured spelling does not matter.

use super::*;

/// A configured origin in browser serialisation, or why it is not one.
pub(super) fn parse_origin(text: &str) -> Result<Box<str>, String> {
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
