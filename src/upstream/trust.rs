//! Where certificates of https upstreams are verified against: the system's CAs, looked up one
//! at a time when a chain first needs them rather than all parsed at start-up.
//!
//! OpenSSL's default trust loads the whole system bundle (~140 CAs) into every TLS context, and
//! Pingora builds two contexts (its HTTP/1 and HTTP/2 connectors) whether or not an upstream
//! uses TLS: about 3 MiB of parsed certificates, most of an idle gateway's heap. A gateway talks
//! to a handful of providers whose chains need two or three of those CAs. OpenSSL can instead
//! find a CA in a hashed directory (`<subject hash>.0`, the layout `update-ca-certificates` and
//! `c_rehash` write) when a chain names it, and keeps it once found. So unless the operator chose
//! a bundle of their own (`SSL_CERT_FILE` naming another file than the system's), the default
//! bundle is pointed at an empty file and the default directory at the hashed one
//! (`SSL_CERT_DIR`, else OpenSSL's built-in one): the same CAs are trusted,
//! idle RSS drops by ~3 MiB, and the first handshake to a new CA reads one small file.
//! A route's own `ca_file` is unaffected (it is handed to each peer).

use std::fmt;
use std::path::{Path, PathBuf};

/// The file that stands for "no bundle": it exists (so OpenSSL's probe keeps it) and holds no
/// certificate (so OpenSSL's default lookup adds none and carries on with the directory).
const EMPTY_BUNDLE: &str = "/dev/null";

/// The trust the process ended up with, for the banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// CAs read from this hashed directory when first needed.
    HashedDirectory(PathBuf),
    /// OpenSSL's own default: the bundle named by `SSL_CERT_FILE` or found by probing, loaded
    /// whole at start-up.
    Bundle,
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trust::HashedDirectory(dir) => {
                write!(f, "{} (each CA read when first needed)", dir.display())
            }
            Trust::Bundle => f.write_str("the CA bundle (SSL_CERT_FILE or OpenSSL's default)"),
        }
    }
}

/// The decision alone: the operator's bundle wins; otherwise a directory that really is hashed
/// (an unhashed one would make OpenSSL find nothing and refuse every upstream).
pub fn choose(bundle_set: bool, directory: Option<&Path>) -> Trust {
    match directory {
        Some(dir) if !bundle_set && is_hashed(dir) => Trust::HashedDirectory(dir.to_path_buf()),
        _ => Trust::Bundle,
    }
}

/// Decide and point OpenSSL's defaults accordingly. Call it at start-up, before any thread is
/// spawned (it sets process environment variables that OpenSSL reads when Pingora builds its
/// TLS contexts).
pub fn prefer_hashed_directory() -> Trust {
    let set = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let (system_bundle, system_directory) = openssl_defaults();
    // Many images export SSL_CERT_FILE naming the system bundle itself: that is no choice of
    // CAs, and the hashed directory holds the same ones.
    let bundle_set = set("SSL_CERT_FILE").is_some_and(|file| {
        let file = std::fs::canonicalize(&file).unwrap_or(file);
        system_bundle.and_then(|b| std::fs::canonicalize(b).ok()) != Some(file)
    });
    let directory = set("SSL_CERT_DIR").or(system_directory);
    let trust = choose(bundle_set, directory.as_deref());
    if let Trust::HashedDirectory(dir) = &trust {
        std::env::set_var("SSL_CERT_FILE", EMPTY_BUNDLE);
        std::env::set_var("SSL_CERT_DIR", dir);
    }
    trust
}

/// OpenSSL's built-in bundle file and hashed directory (what it uses when no variable is set).
fn openssl_defaults() -> (Option<PathBuf>, Option<PathBuf>) {
    let path = |p: *const std::ffi::c_char| {
        // SAFETY: both functions return a pointer to a static NUL-terminated string compiled
        // into libcrypto (or null), valid for the life of the process.
        (!p.is_null())
            .then(|| unsafe { std::ffi::CStr::from_ptr(p) }.to_str().ok())
            .flatten()
            .map(PathBuf::from)
    };
    // SAFETY: plain getters without arguments or side effects.
    unsafe {
        (
            path(openssl_sys::X509_get_default_cert_file()),
            path(openssl_sys::X509_get_default_cert_dir()),
        )
    }
}

/// Whether `dir` holds at least one `<8 hex digits>.<n>` entry.
fn is_hashed(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries
        .flatten()
        .any(|e| is_hash_name(&e.file_name().to_string_lossy()))
}

fn is_hash_name(name: &str) -> bool {
    match name.split_once('.') {
        Some((hash, n)) => {
            hash.len() == 8
                && hash.bytes().all(|b| b.is_ascii_hexdigit())
                && !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_names() {
        assert!(is_hash_name("002c0b4f.0"));
        assert!(is_hash_name("9d04f354.12"));
        assert!(!is_hash_name("ca-certificates.crt"));
        assert!(!is_hash_name("002c0b4f"));
        assert!(!is_hash_name("002c0b4f."));
        assert!(!is_hash_name("002c0b4g.0"));
        assert!(!is_hash_name("002c0b4f.r0"));
    }

    #[test]
    fn a_hashed_directory_is_used_unless_a_bundle_was_chosen() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("README"), "no hashes here").unwrap();
        // Not hashed: OpenSSL would find nothing in it, so the bundle stays.
        assert_eq!(choose(false, Some(dir.path())), Trust::Bundle);
        std::fs::write(dir.path().join("5ad8a5d6.0"), "a CA").unwrap();
        assert_eq!(
            choose(false, Some(dir.path())),
            Trust::HashedDirectory(dir.path().to_path_buf())
        );
        assert_eq!(choose(true, Some(dir.path())), Trust::Bundle);
        assert_eq!(choose(false, None), Trust::Bundle);
        assert_eq!(
            choose(false, Some(Path::new("/nonexistent"))),
            Trust::Bundle
        );
    }
}
