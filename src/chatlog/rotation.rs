//! Size rotation and retention: a full `chat.jsonl` is renamed to `chat.<UTC stamp>.jsonl`
//! (stamps strictly increasing, so names keep write order even when the clock steps back) and
//! the oldest rotated files beyond `keep_files` are deleted.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::files::{is_rotated_name, log_files, rotated_stamp_ms, utc_stamp};
use super::writer::{open_active, Writer};

impl Writer {
    /// `chat.jsonl` → `chat.<stamp>.jsonl`, then retention.
    pub(super) fn rotate(&mut self, i: usize) {
        self.flush_route(i);
        let rf = &mut self.files[i];
        let Some(open) = rf.file.take() else { return };
        // Best effort: a rotated file should be complete on disk before it is renamed.
        let _ = open.file.sync_data();
        drop(open.file);
        let result = rotated_files(&rf.dir).and_then(|mut rotated| {
            // Names must sort in write order even when rotations come faster than one per
            // millisecond, after files were pruned, or when the clock steps back: each stamp is
            // later than every existing one.
            let newest = rotated.last().and_then(|p| rotated_stamp_ms(p));
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            let stamp = newest.map_or(now, |ms| now.max(ms.saturating_add(1)));
            let target = rf.dir.join(format!("chat.{}.jsonl", utc_stamp(stamp)));
            if target.exists() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists", target.display()),
                ));
            }
            fs::rename(&rf.path, &target)?;
            rotated.push(target);
            Ok(rotated)
        });
        match result {
            Ok(rotated) => self.prune(&rotated),
            Err(e) => {
                // Keep writing to the same file; it gets a fresh size budget so a failing
                // rotation is retried after the next `max_file_bytes`, not on every record.
                let path = rf.path.display().to_string();
                if let Ok(mut f) = open_active(&rf.dir, &rf.path) {
                    f.size = 0;
                    rf.file = Some(f);
                }
                self.stats.error();
                self.warn(format_args!("cannot rotate {path}: {e}"));
            }
        }
    }

    /// Deletes the oldest of `rotated` (oldest first) beyond `keep_files`.
    pub(super) fn prune(&mut self, rotated: &[PathBuf]) {
        let excess = rotated.len().saturating_sub(self.cfg.keep_files);
        for old in &rotated[..excess] {
            if let Err(e) = fs::remove_file(old) {
                self.stats.error();
                self.warn(format_args!("cannot delete {}: {e}", old.display()));
            }
        }
    }
}

/// The rotated files of a route directory, oldest first.
fn rotated_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = log_files(dir)?;
    files.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(is_rotated_name)
    });
    Ok(files)
}
