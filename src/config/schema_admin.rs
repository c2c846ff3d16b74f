//! The `admin:` section: where the admin service listens (`/metrics`), or `enabled: false`; the
//! admin key and the web console (`ui`, `ui_messages`).

use super::decode::{Decoder, Node};
use super::model::AdminConfig;
use std::net::SocketAddr;

const ADMIN: &[&str] = &[
    "enabled",
    "listen",
    "key",
    "metrics_token",
    "ui",
    "ui_messages",
];

pub(super) fn decode_admin(
    d: &mut Decoder<'_>,
    node: &Node<'_>,
    proxy: &[SocketAddr],
) -> AdminConfig {
    let mut admin = AdminConfig::default();
    let Some(f) = d.fields(node, ADMIN) else {
        return admin;
    };
    if let Some(n) = f.get("listen") {
        let Some(addr) = d.parsed(&n, super::schema::parse_listen) else {
            return admin;
        };
        if addr.port() == 0 {
            d.problem(
                &n.path,
                Some(n.value),
                "pick a port; 0 would bind one nobody can find",
            );
        } else if let Some(p) = proxy
            .iter()
            .find(|p| super::schema::listen_overlap(**p, addr))
        {
            let why =
                format!("the proxy listens on {p} already; the admin service needs its own port");
            d.problem(&n.path, Some(n.value), why);
        }
        admin.listen = Some(addr);
    }
    if let Some(n) = f.get("key") {
        match d.string(&n) {
            Some(k) if k.len() < 16 => d.problem(
                &n.path,
                None,
                "too short: the admin key opens the console; use at least 16 characters",
            ),
            Some(k) => admin.key = Some(super::model::Secret(k)),
            None => {}
        }
    }
    if let Some(n) = f.get("metrics_token") {
        admin.metrics_token = metrics_token(d, &n);
    }
    for (key, slot) in [
        ("ui", &mut admin.ui),
        ("ui_messages", &mut admin.ui_messages),
    ] {
        if let Some(v) = f.get(key).and_then(|n| d.boolean(&n)) {
            *slot = v;
        }
    }
    if f.get("enabled").and_then(|n| d.boolean(&n)) == Some(false) {
        admin.listen = None;
    }
    if admin.ui && admin.key.is_none() {
        d.problem(
            &format!("{}.key", node.path),
            None,
            "required with `ui: true`: the console shows usage and config only to whoever holds it",
        );
    }
    if admin.metrics_token.is_some() && admin.listen.is_none() {
        d.problem(
            &format!("{}.metrics_token", node.path),
            None,
            "/metrics is served by the admin listener, which is off",
        );
    }
    if admin.ui && admin.listen.is_none() {
        d.problem(
            &format!("{}.ui", node.path),
            None,
            "the console is served by the admin listener, which is off",
        );
    }
    admin
}

/// The bearer token `/metrics` asks for: a secret like a key (it goes in a header), long
/// enough not to be guessed, and never echoed.
fn metrics_token(d: &mut Decoder<'_>, n: &Node<'_>) -> Option<super::model::Secret> {
    let token = d.string(n)?;
    let why = super::model::Secret::problem(&token).or_else(|| {
        (token.len() < 16).then_some("too short: use at least 16 characters (a random string)")
    });
    match why {
        Some(why) => {
            d.problem(&n.path, None, why);
            None
        }
        None => Some(super::model::Secret(token)),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{parse_bytes, DEFAULT_ADMIN_LISTEN};

    fn parse(admin: &str) -> Result<crate::config::Config, String> {
        let yaml = format!("routes: [{{prefix: /, upstream: 'http://127.0.0.1:9'}}]\n{admin}");
        parse_bytes(yaml.as_bytes(), &|_| None).map_err(|p| p.to_string())
    }

    #[test]
    fn on_by_default_on_loopback() {
        assert_eq!(parse("").unwrap().admin.listen, Some(DEFAULT_ADMIN_LISTEN));
        let custom = parse("admin: {listen: '10.0.0.5:9100'}").unwrap();
        assert_eq!(custom.admin.listen, Some("10.0.0.5:9100".parse().unwrap()));
        assert_eq!(parse("admin: {enabled: false}").unwrap().admin.listen, None);
    }

    #[test]
    fn bad_addresses_are_refused_with_their_path() {
        for (admin, why) in [
            ("admin: {listen: '127.0.0.1:0'}", "pick a port"),
            (
                "admin: {listen: '127.0.0.1:8000'}",
                "the proxy listens on 0.0.0.0:8000",
            ),
            ("admin: {listen: localhost:9100}", "expected IP:PORT"),
            ("admin: {listn: '127.0.0.1:9100'}", "did you mean `listen`"),
            ("admin: {enabled: 'no'}", "expected true or false"),
        ] {
            let err = parse(admin).unwrap_err();
            assert!(
                err.contains("admin.") && err.contains(why),
                "{admin}: {err}"
            );
        }
    }

    #[test]
    fn metrics_token_problems_name_the_path_never_the_token() {
        let ok = parse("admin: {metrics_token: 0123456789abcdef}").unwrap();
        assert!(ok.admin.metrics_token.is_some());
        for (admin, why) in [
            ("admin: {metrics_token: 0123456789abcde}", "too short"),
            (
                "admin: {metrics_token: \"0123456789 abcdef\"}",
                "without spaces",
            ),
            (
                "admin: {metrics_token: \"0123456789abcdef\\x01\"}",
                "printable ASCII",
            ),
            (
                "admin: {enabled: false, metrics_token: 0123456789abcdef}",
                "/metrics is served by the admin listener",
            ),
        ] {
            let err = parse(admin).unwrap_err();
            assert!(
                err.contains("admin.metrics_token: ") && err.contains(why),
                "{admin}: {err}"
            );
            assert!(!err.contains("0123456789"), "{err}");
        }
    }
}
