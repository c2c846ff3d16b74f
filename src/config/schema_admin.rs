//! The `admin:` section: where the admin service listens (`/metrics`), or `enabled: false`.

use super::decode::{Decoder, Node};
use super::model::AdminConfig;
use std::net::SocketAddr;

const ADMIN: &[&str] = &["enabled", "listen"];

pub fn decode_admin(d: &mut Decoder<'_>, node: &Node<'_>, proxy: &[SocketAddr]) -> AdminConfig {
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
        } else if let Some(p) = proxy.iter().find(|p| overlaps(**p, addr)) {
            let why =
                format!("the proxy listens on {p} already; the admin service needs its own port");
            d.problem(&n.path, Some(n.value), why);
        }
        admin.listen = Some(addr);
    }
    if f.get("enabled").and_then(|n| d.boolean(&n)) == Some(false) {
        admin.listen = None;
    }
    admin
}

/// Two listen addresses that cannot both be bound: same port, and the same IP or a wildcard.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}
