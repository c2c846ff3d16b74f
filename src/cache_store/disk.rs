//! The `disk` backend: one file per entry under `<dir>/<2 hex>/<64 hex>`, named by the key's
//! digest (never by anything a client sent), within a byte budget (LRU, like `memory`).
//!
//! Crash safety: an entry is written whole to `<dir>/tmp/` and renamed into place, and rename
//! is atomic, so a reader sees the old state or the new file, never a half-written one; after
//! a `kill -9` the leftovers in `tmp/` are deleted when the store next opens (those older than a
//! minute: a younger one may be another process's write in progress — the old process during a
//! graceful upgrade, or a running server while `check` opens the store). Every file carries a
//! SHA-256 of its contents (see `entry.rs`): a torn or corrupted file (power loss, a bad disk)
//! fails the check, is deleted, and is a miss. No fsync: a lost entry costs one upstream call,
//! a checksum failure the same; nothing wrong is ever served.
//!
//! All file I/O runs on Tokio's blocking pool, never on a proxy thread. The index (which ids
//! exist, their routes and sizes) lives in memory and is rebuilt at startup from the files'
//! headers, so a lookup of an absent key costs no I/O. Processes sharing the directory (the old
//! and the new one during a graceful upgrade) each see the files that existed when they opened
//! plus their own writes; anything else is a miss, never an error.

use super::entry::Entry;
use super::memory::lru_key;
use super::{now_ms, Backend, BackendResult, Usage};
use crate::cache_key::{hex, parse_hex, Digest};
use async_trait::async_trait;
use bytes::Bytes;
use pingora_lru::Lru;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub(crate) struct DiskBackend {
    dir: PathBuf,
    /// id → route, for every file this process knows of.
    index: Mutex<HashMap<Digest, String>>,
    lru: Lru<Digest, 16>,
    budget: usize,
}

impl DiskBackend {
    /// Open (creating) the directory, clear unfinished writes, drop expired and unreadable
    /// entries, index the rest. Runs once at startup.
    pub(crate) fn open(dir: &Path, budget: usize) -> Result<Self, String> {
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp)
            .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        if let Ok(leftovers) = std::fs::read_dir(&tmp) {
            let stale = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
            for f in leftovers.flatten() {
                let old = f
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < stale);
                if old {
                    let _ = std::fs::remove_file(f.path());
                }
            }
        }
        let backend = DiskBackend {
            dir: dir.to_path_buf(),
            index: Mutex::new(HashMap::new()),
            lru: Lru::with_capacity(budget, 1024),
            budget,
        };
        let now = now_ms();
        let shards =
            std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for shard in shards.flatten() {
            let name = shard.file_name();
            if name.len() != 2 || !shard.path().is_dir() {
                continue;
            }
            let Ok(files) = std::fs::read_dir(shard.path()) else {
                continue;
            };
            for f in files.flatten() {
                let path = f.path();
                let id = f.file_name().to_str().and_then(parse_hex);
                let head = read_head(&path);
                let size = f.metadata().map_or(0, |m| m.len() as usize);
                match (id, head) {
                    (Some(id), Some((expires, route))) if expires > now => {
                        backend.admit(id, route, size);
                    }
                    _ => {
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
        }
        Ok(backend)
    }

    fn index(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, String>> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path_of(&self, id: &Digest) -> PathBuf {
        let name = hex(id);
        self.dir.join(&name[..2]).join(name)
    }

    /// Record an entry; returns the files eviction took out of the index (to delete).
    fn admit(&self, id: Digest, route: String, size: usize) -> Vec<PathBuf> {
        let mut index = self.index();
        index.insert(id, route);
        self.lru.admit(lru_key(&id), id, size);
        self.lru
            .evict_to_limit()
            .into_iter()
            .map(|(victim, _)| {
                index.remove(&victim);
                self.path_of(&victim)
            })
            .collect()
    }

    fn forget(&self, ids: &[Digest]) -> Vec<PathBuf> {
        let mut index = self.index();
        ids.iter()
            .filter(|id| index.remove(*id).is_some())
            .map(|id| {
                self.lru.remove(lru_key(id));
                self.path_of(id)
            })
            .collect()
    }
}

/// The expiry and route at the head of a file.
fn read_head(path: &Path) -> Option<(u64, String)> {
    let mut head = [0u8; 512];
    let mut f = std::fs::File::open(path).ok()?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    Entry::peek_header(&head[..n])
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> BackendResult<T> + Send + 'static,
) -> BackendResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("blocking task failed: {e}"))?
}

async fn delete_files(paths: Vec<PathBuf>) -> u64 {
    if paths.is_empty() {
        return 0;
    }
    blocking(move || {
        Ok(paths
            .iter()
            .filter(|p| std::fs::remove_file(p).is_ok())
            .count() as u64)
    })
    .await
    .unwrap_or(0)
}

#[async_trait]
impl Backend for DiskBackend {
    async fn get(&self, id: &Digest) -> BackendResult<Option<Arc<Entry>>> {
        if !self.index().contains_key(id) {
            return Ok(None);
        }
        self.lru.promote(lru_key(id));
        let path = self.path_of(id);
        let read = blocking(move || match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        })
        .await?;
        let entry = read.and_then(|b| Entry::decode(Bytes::from(b)));
        if entry.is_none() {
            // Gone (another process evicted it) or corrupted: forget it, delete what is left.
            delete_files(self.forget(&[*id])).await;
        }
        Ok(entry.map(Arc::new))
    }

    async fn put(&self, id: Digest, entry: Arc<Entry>) -> BackendResult<()> {
        if entry.weight() > self.budget {
            return Ok(());
        }
        let (final_path, dir) = (self.path_of(&id), self.dir.clone());
        let route = entry.route.clone();
        let size = blocking(move || {
            let blob = entry.encode();
            let tmp = dir
                .join("tmp")
                .join(format!("{}.{:016x}", hex(&id), rand::random::<u64>()));
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&blob)?;
                if let Some(parent) = final_path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::rename(&tmp, &final_path)
            };
            write().map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                e.to_string()
            })?;
            Ok(blob.len())
        })
        .await?;
        let evicted = self.admit(id, route, size);
        delete_files(evicted).await;
        Ok(())
    }

    async fn remove(&self, id: &Digest) -> BackendResult<bool> {
        Ok(delete_files(self.forget(&[*id])).await > 0)
    }

    async fn purge_route(&self, route: &str) -> BackendResult<u64> {
        let ids: Vec<Digest> = self
            .index()
            .iter()
            .filter(|(_, r)| r.as_str() == route)
            .map(|(id, _)| *id)
            .collect();
        let paths = self.forget(&ids);
        let n = paths.len() as u64;
        delete_files(paths).await;
        Ok(n)
    }

    async fn purge_all(&self) -> BackendResult<u64> {
        let ids: Vec<Digest> = self.index().keys().copied().collect();
        let paths = self.forget(&ids);
        let n = paths.len() as u64;
        delete_files(paths).await;
        Ok(n)
    }

    async fn usage(&self) -> BackendResult<Usage> {
        Ok(Usage {
            entries: self.index().len() as u64,
            bytes: self.lru.weight() as u64,
        })
    }

    fn name(&self) -> &'static str {
        "disk"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(route: &str) -> Arc<Entry> {
        Arc::new(Entry {
            route: route.into(),
            expires_ms: u64::MAX,
            meta: (Bytes::from_static(b"m"), Bytes::from_static(b"h")).into(),
            body: Bytes::from_static(b"data: [DONE]\n\n"),
            ends: vec![14],
        })
    }

    #[tokio::test]
    async fn survives_a_reopen_and_drops_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            crate::cache_key::sha256(b"a"),
            crate::cache_key::sha256(b"b"),
        );
        {
            let d = DiskBackend::open(dir.path(), 1 << 20).unwrap();
            d.put(a, entry("/x")).await.unwrap();
            d.put(b, entry("/y")).await.unwrap();
        }
        // A torn file for b, a leftover temp file: what a kill -9 mid-write leaves.
        let pb = dir.path().join(&hex(&b)[..2]).join(hex(&b));
        let blob = std::fs::read(&pb).unwrap();
        std::fs::write(&pb, &blob[..blob.len() - 5]).unwrap();
        let partial = dir.path().join("tmp").join("partial");
        std::fs::write(&partial, b"LLMFCE01").unwrap();
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let f = std::fs::File::options().write(true).open(&partial).unwrap();
        f.set_modified(an_hour_ago).unwrap();
        // A fresh one may be another process's write in progress: left alone.
        std::fs::write(dir.path().join("tmp").join("in-progress"), b"LLMFCE01").unwrap();
        let d = DiskBackend::open(dir.path(), 1 << 20).unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["in-progress"]);
        let got = d.get(&a).await.unwrap().unwrap();
        assert_eq!(got.route, "/x");
        assert!(d.get(&b).await.unwrap().is_none());
        assert!(!pb.exists());
        assert_eq!(d.usage().await.unwrap().entries, 1);
        assert_eq!(d.purge_route("/x").await.unwrap(), 1);
        assert!(d.get(&a).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn stays_within_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        let d = DiskBackend::open(dir.path(), 2000).unwrap();
        for n in 0u32..100 {
            d.put(crate::cache_key::sha256(&n.to_be_bytes()), entry("/"))
                .await
                .unwrap();
        }
        let u = d.usage().await.unwrap();
        assert!(u.bytes <= 2000 && u.entries > 5, "{u:?}");
        let files: usize = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|s| s.file_name() != "tmp")
            .map(|s| std::fs::read_dir(s.path()).unwrap().count())
            .sum();
        assert_eq!(files as u64, u.entries);
    }
}
