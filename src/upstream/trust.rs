//! Where certificates of https upstreams are verified against: the system's CAs, looked up one
//! at a time when a chain first needs them rather than all parsed at start-up.
//!
//! OpenSSL's default trust loads the whole system bundle (~140 CAs) into every TLS context, and
//! Pingora builds two contexts (its HTTP/1 and HTTP/2 connectors) whether or not an upstream
//! uses TLS: about 3 MiB of parsed certificates, most of an idle gateway's heap. A gateway talks
//! to a handful of providers whose chains need two or three of those CAs. OpenSSL can instead
//! find a CA in a hashed directory (`<subject hash>.0`, the layout `update-ca-certificates` and
//! `c_rehash` write) when a chain names it, and keeps it once found.
//!
//! So when the process would trust exactly the system's CAs (no `SSL_CERT_FILE` or
//! `SSL_CERT_DIR` of the operator's own; a variable naming the system's location is no choice)
//! and the system's hashed directory holds at least as many CAs as its bundle (a bundle appended
//! to without rehashing fails this), the default bundle is pointed at an empty file and the
//! default directory at the hashed one. The same CAs are trusted, idle RSS drops by ~3 MiB, and
//! the first handshake to a new CA reads one small file. In every other case OpenSSL's defaults
//! stay as they are. A route's own `ca_file` is unaffected (it is handed to each peer).

use std::fmt;
use std::path::{Path, PathBuf};

/// The file that stands for "no bundle": it exists (so OpenSSL's probe keeps it) and holds no
/// certificate (so OpenSSL's default lookup adds none and carries on with the directory).
const EMPTY_BUNDLE: &str = "/dev/null";

/// The trust the process ended up with, for the banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Trust {
    /// CAs read from this hashed directory when first needed.
    HashedDirectory(PathBuf),
    /// OpenSSL's own defaults (the bundle loaded whole at start-up), or the operator's choice.
    Bundle,
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trust::HashedDirectory(dir) => {
                write!(f, "{} (each CA read when first needed)", dir.display())
            }
            Trust::Bundle => {
                f.write_str("OpenSSL's defaults (SSL_CERT_FILE / SSL_CERT_DIR, or the system's)")
            }
        }
    }
}

/// What the decision looks at: the variables as set, and OpenSSL's built-in locations.
#[derive(Debug, Clone, Default)]
pub(crate) struct Locations {
    pub env_bundle: Option<PathBuf>,
    pub env_directory: Option<PathBuf>,
    pub system_bundle: Option<PathBuf>,
    pub system_directory: Option<PathBuf>,
}

/// The decision alone, without side effects (see the module's documentation).
pub(crate) fn choose(at: &Locations) -> Trust {
    let (Some(bundle), Some(dir)) = (
        at.system_bundle.as_deref().and_then(canonical),
        at.system_directory.as_deref().and_then(canonical),
    ) else {
        return Trust::Bundle;
    };
    // A variable is the operator's choice unless it names the system's own location.
    let chosen = |var: &Option<PathBuf>, system: &Path| {
        var.as_deref()
            .is_some_and(|v| canonical(v).as_deref() != Some(system))
    };
    if chosen(&at.env_bundle, &bundle) || chosen(&at.env_directory, &dir) {
        return Trust::Bundle;
    }
    let in_bundle = std::fs::read(&bundle).map_or(0, |pem| {
        memchr::memmem::find_iter(&pem, b"-----BEGIN CERTIFICATE-----").count()
    });
    let hashed = hashed_entries(&dir);
    if hashed > 0 && hashed >= in_bundle {
        Trust::HashedDirectory(dir)
    } else {
        Trust::Bundle
    }
}

/// Decide and point OpenSSL's defaults accordingly. Call it at start-up, before any thread is
/// spawned (it sets process environment variables that OpenSSL reads when Pingora builds its
/// TLS contexts).
pub(crate) fn prefer_hashed_directory() -> Trust {
    let set = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let (system_bundle, system_directory) = openssl_defaults();
    let trust = choose(&Locations {
        env_bundle: set("SSL_CERT_FILE"),
        env_directory: set("SSL_CERT_DIR"),
        system_bundle,
        system_directory,
    });
    if let Trust::HashedDirectory(dir) = &trust {
        // `dir` is canonical, so absolute: `-d` changes the working directory before the first
        // lookup.
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

fn canonical(path: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(path).ok()
}

/// How many `<8 hex digits>.<n>` entries `dir` holds.
fn hashed_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| is_hash_name(&e.file_name().to_string_lossy()))
            .count()
    })
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

    /// A system layout in a temporary directory: a bundle of `certs` certificates and a hashed
    /// directory of `hashed` entries.
    fn system(certs: usize, hashed: usize) -> (tempfile::TempDir, Locations) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("certs");
        std::fs::create_dir(&dir).unwrap();
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        std::fs::write(root.path().join("bundle.crt"), pem.repeat(certs)).unwrap();
        std::fs::write(dir.join("README"), "not a hash").unwrap();
        for i in 0..hashed {
            std::fs::write(dir.join(format!("{i:08x}.0")), pem).unwrap();
        }
        let at = Locations {
            system_bundle: Some(root.path().join("bundle.crt")),
            system_directory: Some(dir),
            ..Locations::default()
        };
        (root, at)
    }

    #[test]
    fn the_system_directory_is_used_when_it_is_as_complete_as_the_bundle() {
        let (_root, at) = system(3, 3);
        let dir = canonical(at.system_directory.as_deref().unwrap()).unwrap();
        assert_eq!(choose(&at), Trust::HashedDirectory(dir.clone()));
        // Variables naming the system's own locations are no choice.
        let named = Locations {
            env_bundle: at.system_bundle.clone(),
            env_directory: Some(dir.clone()),
            ..at.clone()
        };
        assert_eq!(choose(&named), Trust::HashedDirectory(dir));
    }

    #[test]
    fn anything_else_keeps_openssls_defaults() {
        // A bundle appended to without rehashing.
        assert_eq!(choose(&system(4, 3).1), Trust::Bundle);
        // Not hashed at all.
        assert_eq!(choose(&system(0, 0).1), Trust::Bundle);
        let (root, at) = system(3, 3);
        // The operator's own bundle, or own directory (which OpenSSL adds to the bundle).
        let own = root.path().join("corp.pem");
        std::fs::write(&own, "x").unwrap();
        let bundle = Locations {
            env_bundle: Some(own),
            ..at.clone()
        };
        assert_eq!(choose(&bundle), Trust::Bundle);
        let dir = Locations {
            env_directory: Some(root.path().to_path_buf()),
            ..at.clone()
        };
        assert_eq!(choose(&dir), Trust::Bundle);
        // No system bundle to compare with: keep OpenSSL's defaults.
        let missing = Locations {
            system_bundle: Some(root.path().join("missing.crt")),
            ..at
        };
        assert_eq!(choose(&missing), Trust::Bundle);
    }
}
