//! Keys and tenants at run time: upstream key pools with health, forward keys looked up in
//! constant time, and the tenants (levels) that say which models and routes a key may use.
//! Key material lives only here; everything else sees a key's short id.

pub mod forward;
pub mod pool;
pub mod tenant;

use sha2::{Digest, Sha256};

/// SHA-256 of a secret: the lookup key for forward keys, the source of key ids, and the hash of
/// cache keys and cache entries. Pure Rust and infallible: OpenSSL's hash can fail (allocation,
/// a FIPS provider that refuses), and a failure turned into a fixed value would make every
/// forward key collide.
pub fn digest(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// A stable, short, non-reversible id for a key: `k-` and 8 hex digits of its SHA-256.
pub fn key_id(secret: &str) -> String {
    let d = digest(secret.as_bytes());
    format!("k-{:02x}{:02x}{:02x}{:02x}", d[0], d[1], d[2], d[3])
}

/// Equality whose time does not depend on where the inputs differ (only on their lengths).
/// `subtle` keeps the comparison out of the optimiser's reach, which a hand-written fold cannot
/// promise.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
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
    fn digest_is_sha256_and_distinct_inputs_differ() {
        let hex = |d: [u8; 32]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        // FIPS 180-2 test vectors: the ids and cache files of earlier versions stay valid.
        assert_eq!(
            hex(digest(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let digests: std::collections::HashSet<[u8; 32]> = (0..1000)
            .map(|i| digest(format!("fk-{i}").as_bytes()))
            .collect();
        assert_eq!(digests.len(), 1000);
        assert!(!digests.contains(&[0u8; 32]));
    }

    #[test]
    fn constant_time_equality() {
        assert!(constant_time_eq(b"fk-1", b"fk-1"));
        assert!(!constant_time_eq(b"fk-1", b"fk-2"));
        assert!(!constant_time_eq(b"fk-1", b"fk-10"));
    }
}
