//! Where the pid file and the upgrade socket live, and who may touch them.
//!
//! At a graceful upgrade the running process connects to `upgrade_sock` and sends its
//! listening sockets to whoever listens there, and the new process accepts sockets from
//! whoever connects. In a directory others can write to (`/tmp`), a local user could put a
//! socket at that path before a reload and receive the listeners. So the default is a private
//! directory, created 0700: `/run/llm-forward` for root or where it exists and is ours
//! (systemd's `RuntimeDirectory=`), else `$XDG_RUNTIME_DIR/llm-forward`, else
//! `<tmp>/llm-forward-<uid>`; and a socket whose directory is writable by group or others, or
//! owned by another user, is refused before anything starts.
//!
//! Two `-u` processes at once would race for the socket path (each unlinks the other's), so
//! `-u` holds an exclusive `flock` on `<upgrade_sock>.lock` while it receives the listeners;
//! a second one gives up at once.

use crate::config::{Problems, ServerConfig};
use std::fs::{DirBuilder, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The paths Pingora is configured with, resolved and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RuntimePaths {
    pub pid_file: String,
    pub upgrade_sock: String,
}

/// Resolve the defaults, create the private directory where needed and check the socket's.
pub(super) fn prepare(server: &ServerConfig) -> Result<RuntimePaths, Problems> {
    let uid = euid();
    let default_dir = || {
        default_dir(
            uid,
            std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
            writable(Path::new(RUN_DIR)),
        )
    };
    let pid_file = match &server.pid_file {
        Some(p) => PathBuf::from(p),
        None => default_dir().join("llm-forward.pid"),
    };
    let upgrade_sock = match &server.upgrade_sock {
        Some(p) => PathBuf::from(p),
        None => default_dir().join("upgrade.sock"),
    };
    let mut problems = Problems::default();
    if let Err(why) = private_dir(parent(&upgrade_sock), uid) {
        problems.add("server.upgrade_sock", Some(display(&upgrade_sock)), why);
    }
    if server.pid_file.is_none() {
        if let Err(why) = private_dir(parent(&pid_file), uid) {
            problems.add("server.pid_file", Some(display(&pid_file)), why);
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(RuntimePaths {
        pid_file: display(&pid_file),
        upgrade_sock: display(&upgrade_sock),
    })
}

const RUN_DIR: &str = "/run/llm-forward";

/// The default directory for the pid file and the upgrade socket.
fn default_dir(uid: u32, xdg_runtime_dir: Option<PathBuf>, run_dir_writable: bool) -> PathBuf {
    if uid == 0 || run_dir_writable {
        return PathBuf::from(RUN_DIR);
    }
    match xdg_runtime_dir.filter(|d| d.is_absolute()) {
        Some(d) => d.join("llm-forward"),
        None => std::env::temp_dir().join(format!("llm-forward-{uid}")),
    }
}

/// Create `dir` (0700) if it is missing; refuse it if others may write to it or it belongs to
/// another user (root excepted).
fn private_dir(dir: &Path, uid: u32) -> Result<(), String> {
    if let Err(e) = DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        return Err(format!(
            "cannot create the directory {}: {e}",
            dir.display()
        ));
    }
    let meta = std::fs::metadata(dir)
        .map_err(|e| format!("cannot read the directory {}: {e}", dir.display()))?;
    check_private(dir, meta.mode(), meta.uid(), uid)
}

fn check_private(dir: &Path, mode: u32, owner: u32, uid: u32) -> Result<(), String> {
    if mode & 0o022 != 0 {
        return Err(format!(
            "the directory {} may be written by group or others (mode {:o}): a local user could take over the listening sockets at the next upgrade; use a private directory (mode 0700, e.g. /run/llm-forward, the default)",
            dir.display(),
            mode & 0o7777
        ));
    }
    if owner != uid && owner != 0 {
        return Err(format!(
            "the directory {} belongs to another user (uid {owner}); use a directory of this user (uid {uid})",
            dir.display()
        ));
    }
    Ok(())
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// Held by a `-u` process while it takes the listeners over; released on drop (or exit).
pub(super) struct UpgradeLock {
    _file: File,
}

impl UpgradeLock {
    pub(super) fn take(upgrade_sock: &str) -> Result<UpgradeLock, String> {
        let path = format!("{upgrade_sock}.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("upgrade: cannot open the lock file {path}: {e}"))?;
        // SAFETY: the descriptor is open for the duration of the call.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !locked {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock {
                return Err(format!(
                    "another upgrade (-u) is already taking the listeners over through {upgrade_sock} ({path} is locked); let it finish first"
                ));
            }
            return Err(format!("upgrade: cannot lock {path}: {e}"));
        }
        Ok(UpgradeLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_private_directories() {
        assert_eq!(default_dir(0, None, false), PathBuf::from(RUN_DIR));
        assert_eq!(default_dir(1000, None, true), PathBuf::from(RUN_DIR));
        assert_eq!(
            default_dir(1000, Some("/run/user/1000".into()), false),
            PathBuf::from("/run/user/1000/llm-forward")
        );
        assert_eq!(
            default_dir(1000, None, false),
            std::env::temp_dir().join("llm-forward-1000")
        );
        // A relative XDG_RUNTIME_DIR is ignored, as the spec says.
        assert_eq!(
            default_dir(1000, Some("rel".into()), false),
            std::env::temp_dir().join("llm-forward-1000")
        );
    }

    #[test]
    fn shared_or_foreign_directories_are_refused() {
        let dir = Path::new("/x");
        assert!(check_private(dir, 0o40700, 1000, 1000).is_ok());
        assert!(check_private(dir, 0o40755, 0, 1000).is_ok());
        assert!(check_private(dir, 0o41777, 0, 1000).is_err());
        assert!(check_private(dir, 0o40770, 1000, 1000).is_err());
        assert!(check_private(dir, 0o40700, 1001, 1000).is_err());
    }

    #[test]
    fn a_missing_directory_is_created_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        private_dir(&dir, euid()).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn one_upgrade_lock_at_a_time() {
        let tmp = tempfile::tempdir().unwrap();
        let sock = tmp.path().join("upgrade.sock").display().to_string();
        let first = UpgradeLock::take(&sock).unwrap();
        let second = UpgradeLock::take(&sock).err().unwrap();
        assert!(second.contains("another upgrade"), "{second}");
        drop(first);
        assert!(UpgradeLock::take(&sock).is_ok());
    }
}
