//! Keys and tenants at run time: upstream key pools with health, forward keys looked up in
//! constant time, and the tenants (levels) that say which models and routes a key may use.
//! Key material lives only here; everything else sees a key's short id.

pub mod forward;
pub mod pool;
pub mod tenant;

use pingora_core::tls::hash::{hash, MessageDigest};

/// SHA-256 of a secret: the lookup key for forward keys and the source of key ids.
pub fn digest(secret: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let Ok(d) = hash(MessageDigest::sha256(), secret) {
        out.copy_from_slice(&d);
    }
    out
}

/// A stable, short, non-reversible id for a key: `k-` and 8 hex digits of its SHA-256.
pub fn key_id(secret: &str) -> String {
    let d = digest(secret.as_bytes());
    format!("k-{:02x}{:02x}{:02x}{:02x}", d[0], d[1], d[2], d[3])
}

/// Equality whose time does not depend on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_reveal_nothing_useful() {
        assert_eq!(key_id("sk-abc"), key_id("sk-abc"));
        assert_ne!(key_id("sk-abc"), key_id("sk-abd"));
        assert_eq!(key_id("sk-abc").len(), 10);
        assert!(!key_id("sk-abc").contains("abc"));
    }

    #[test]
    fn constant_time_equality() {
        assert!(constant_time_eq(b"fk-1", b"fk-1"));
        assert!(!constant_time_eq(b"fk-1", b"fk-2"));
        assert!(!constant_time_eq(b"fk-1", b"fk-10"));
    }
}
