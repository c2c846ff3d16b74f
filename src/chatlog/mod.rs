//! Chat log: a bounded, asynchronous JSONL writer with per-route files, size rotation and
//! retention.
//!
//! The request path hands over one already-serialised record (one JSON value, no newline) with
//! [`ChatLog::record`]; that call only does a `try_send` on a bounded queue, so it never blocks
//! and never fails the request: when the queue is full the record is dropped and counted
//! ([`ChatLog::dropped`]) and a rate-limited warning is logged. One writer drains the queue on a
//! dedicated thread (its own single-threaded tokio runtime): file I/O is blocking, and keeping it
//! there means it never stalls a proxy worker and does not depend on which (Pingora service)
//! runtime created the log or on that runtime still running. Records are buffered per route and
//! written with one `write` per buffer (64 KiB), per flush interval (1 s by default) or per
//! explicit [`ChatLog::flush`], not one syscall per record. A record larger than the buffer is
//! written as soon as it arrives, with one `writev` of its parts (see [`Line`]), not copied.
//!
//! Layout: `dir/<route-slug>/chat.jsonl` (see [`route_slug`]). When the active file would grow
//! past `max_file_bytes` it is renamed to `chat.<UTC timestamp>.jsonl` (fixed width, so names
//! sort in time order, see [`log_files`]) and the oldest rotated files beyond `keep_files` are
//! deleted. Failures never stop the writer: a directory or file removed underneath it is
//! recreated at the next flush, and a write error (full disk, read-only mount) drops the affected
//! records, increments `dropped` and `errors`, and the next flush tries again. A record that was
//! cut short by a crash or a failed write is followed by a newline before new records are
//! appended, so one bad line never swallows the next.
//!
//! The file's identity (device, inode) is checked at every flush, so an old and a new process
//! sharing the directory during a graceful upgrade, or an outside tool moving `chat.jsonl`,
//! lead to a reopen rather than writes into a renamed file; each flush is one `O_APPEND` write
//! of whole lines.
//!
//! [`ChatLog::flush_and_stop`] drains everything queued before it, fsyncs and returns; it is
//! meant for graceful stop and reload. Dropping the last handle also drains and flushes, but
//! nobody waits for it.
//!
//! Layout: this module is the handle (queue, counters, warnings); [`files`] names the
//! directories and files and their UTC stamps; `writer` is the thread that buffers and writes,
//! and `rotation` renames full files and prunes old ones.

pub(crate) mod files;
mod rotation;
mod writer;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

#[cfg(test)]
pub(crate) use files::{is_rotated_name, ACTIVE_FILE};
pub(crate) use files::{log_files, rfc3339_utc, route_slug};
use writer::{writer_thread, Writer};

/// At most one warning of each kind per this interval, so a full disk or a flood does not turn
/// the log itself into the next bottleneck.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Settings of a [`ChatLog`]. Zero values are clamped to the smallest working value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLogConfig {
    /// Base directory; each route gets `dir/<route-slug>/`.
    pub dir: PathBuf,
    /// Rotate before the active file would exceed this many bytes (a single larger record still
    /// gets a file of its own). Default 64 MiB.
    pub max_file_bytes: u64,
    /// Rotated files kept per route, besides the active `chat.jsonl`; older ones are deleted.
    /// Default 10.
    pub keep_files: usize,
    /// Records the queue holds before [`ChatLog::record`] starts dropping. Default 10 000.
    pub queue_capacity: usize,
    /// Buffered records reach the file at least this often. Default 1 s.
    pub flush_interval: Duration,
}

impl Default for ChatLogConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("Log"),
            max_file_bytes: 64 * 1024 * 1024,
            keep_files: 10,
            queue_capacity: 10_000,
            flush_interval: Duration::from_secs(1),
        }
    }
}

/// Handle to the chat log; cheap to clone (one `Arc`), all clones feed the same writer.
#[derive(Clone)]
pub struct ChatLog {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<Msg>,
    stats: Arc<Stats>,
    capacity: usize,
    queue_warn: WarnLimiter,
    /// The writer and its queue until `start_writer` runs it (see [`ChatLog::deferred`]).
    pending: std::sync::Mutex<Option<(Writer, mpsc::Receiver<Msg>)>>,
}

/// Counters shared by the handles and the writer thread.
#[derive(Default)]
struct Stats {
    dropped: AtomicU64,
    errors: AtomicU64,
    written: AtomicU64,
}

impl Stats {
    fn drop_records(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// One record as it is queued: its own text with a shared `body` spliced in at `at` (the text
/// before it, the body, then the rest). The body is a request's conversation straight from the
/// request body, so a long prompt is not copied into its record: a large record goes to the
/// file with one vectored `write` of its parts (see `writer.rs`).
#[derive(Debug, Default)]
pub struct Line {
    text: Vec<u8>,
    at: usize,
    body: Bytes,
}

impl Line {
    /// `text` with `body` between its first `at` bytes and the rest (`at` past the end: after
    /// it).
    pub fn new(text: Vec<u8>, at: usize, body: Bytes) -> Line {
        let at = at.min(text.len());
        Line { text, at, body }
    }

    /// Bytes in the record.
    pub fn len(&self) -> usize {
        self.text.len() + self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The record's three parts, in order.
    fn parts(&self) -> [&[u8]; 3] {
        let (head, tail) = self.text.split_at(self.at);
        [head, &self.body, tail]
    }

    /// The record as one buffer (a copy of the body).
    pub fn into_vec(self) -> Vec<u8> {
        if self.body.is_empty() {
            return self.text;
        }
        let mut out = Vec::with_capacity(self.len());
        for part in self.parts() {
            out.extend_from_slice(part);
        }
        out
    }
}

impl From<Vec<u8>> for Line {
    fn from(text: Vec<u8>) -> Line {
        let at = text.len();
        Line::new(text, at, Bytes::new())
    }
}

enum Msg {
    Record {
        route: Box<str>,
        line: Line,
    },
    /// Write everything queued before this message, fsync, then answer.
    Flush(oneshot::Sender<()>),
    /// Like `Flush`, then the writer exits.
    Stop(oneshot::Sender<()>),
    /// Tests only: the writer signals `entered` and blocks until `release` fires, so a test can
    /// fill the queue deterministically.
    #[cfg(test)]
    Hold {
        entered: std::sync::mpsc::Sender<()>,
        release: std::sync::mpsc::Receiver<()>,
    },
}

impl std::fmt::Debug for ChatLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatLog")
            .field("capacity", &self.inner.capacity)
            .field("queued", &self.queued())
            .field("written", &self.written())
            .field("dropped", &self.dropped())
            .field("errors", &self.errors())
            .finish()
    }
}

impl ChatLog {
    /// Starts the writer thread and returns the handle. Works inside or outside a tokio runtime.
    /// Should the thread fail to start (the OS refuses a thread), the error is logged and every
    /// record is counted as dropped: a chat log problem never stops the gateway.
    pub fn start(config: ChatLogConfig) -> ChatLog {
        let log = Self::deferred(config);
        log.start_writer();
        log
    }

    /// The handle, with the writer thread not started yet: records queue up until
    /// [`ChatLog::start_writer`]. A process that daemonises (forks) must start its threads after
    /// the fork, or they stay behind in the parent.
    pub fn deferred(config: ChatLogConfig) -> ChatLog {
        let capacity = config.queue_capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let stats = Arc::new(Stats::default());
        let writer = Writer::new(config, Arc::clone(&stats));
        ChatLog {
            inner: Arc::new(Inner {
                tx,
                stats,
                capacity,
                queue_warn: WarnLimiter::new(),
                pending: std::sync::Mutex::new(Some((writer, rx))),
            }),
        }
    }

    /// Start the writer thread (once; later calls do nothing).
    pub fn start_writer(&self) {
        let pending = self
            .inner
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some((writer, rx)) = pending else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("chatlog-writer".into())
            .spawn(move || writer_thread(writer, rx));
        if let Err(e) = spawned {
            // `rx` went down with the closure, so every record now counts as dropped.
            log::error!("chat log: cannot start the writer thread, chat logging is off: {e}");
        }
    }

    /// Queues one record for `route`. `line` is one serialised JSON value (a `Vec<u8>`, or a
    /// [`Line`] in parts); a trailing newline is added by the writer (raw newlines inside it are
    /// turned into spaces, which keeps valid JSON valid and the file one record per line). Never
    /// blocks: a full queue drops the record.
    pub fn record(&self, route: &str, line: impl Into<Line>) {
        let msg = Msg::Record {
            route: route.into(),
            line: line.into(),
        };
        match self.inner.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.inner.stats.drop_records(1);
                if self.inner.queue_warn.allow() {
                    log::warn!(
                        "chat log queue full ({} records): dropping records ({} dropped so far)",
                        self.inner.capacity,
                        self.dropped()
                    );
                }
            }
            Err(TrySendError::Closed(_)) => {
                self.inner.stats.drop_records(1);
                if self.inner.queue_warn.allow() {
                    log::warn!(
                        "chat log is stopped: dropping records ({} dropped so far)",
                        self.dropped()
                    );
                }
            }
        }
    }

    /// Serialises `value` once and queues it (see [`ChatLog::record`]).
    pub fn record_json<T: serde::Serialize + ?Sized>(&self, route: &str, value: &T) {
        match serde_json::to_vec(value) {
            Ok(line) => self.record(route, line),
            Err(e) => {
                self.inner.stats.drop_records(1);
                if self.inner.queue_warn.allow() {
                    log::warn!("chat log: record not serialisable, dropped: {e}");
                }
            }
        }
    }

    /// Writes and fsyncs everything queued before this call; the writer keeps running.
    /// Returns at once if the writer is gone.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        // `send` (not `try_send`): a control message waits for room rather than being dropped.
        if self.inner.tx.send(Msg::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Writes and fsyncs everything queued before this call, then stops the writer. Records
    /// offered afterwards, by any clone, are counted as dropped. Returns at once if the writer
    /// is already gone.
    pub async fn flush_and_stop(&self) {
        let (ack, done) = oneshot::channel();
        if self.inner.tx.send(Msg::Stop(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Records lost: queue full, log stopped, or a failed open/write.
    pub fn dropped(&self) -> u64 {
        self.inner.stats.dropped.load(Ordering::Relaxed)
    }

    /// I/O failures seen by the writer (each failed open, write, rename or delete counts once).
    pub fn errors(&self) -> u64 {
        self.inner.stats.errors.load(Ordering::Relaxed)
    }

    /// Records that reached a file (written, not necessarily fsynced yet).
    pub fn written(&self) -> u64 {
        self.inner.stats.written.load(Ordering::Relaxed)
    }

    /// Records waiting in the queue right now.
    pub fn queued(&self) -> usize {
        self.inner.capacity.saturating_sub(self.inner.tx.capacity())
    }

    #[cfg(test)]
    async fn hold(&self) -> std::sync::mpsc::Sender<()> {
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel();
        let msg = Msg::Hold {
            entered: entered_tx,
            release: release_rx,
        };
        if self.inner.tx.send(msg).await.is_ok() {
            let _ = tokio::task::spawn_blocking(move || entered_rx.recv()).await;
        }
        release_tx
    }
}

/// Lets one caller through per [`WARN_INTERVAL`], lock-free, from any thread.
struct WarnLimiter {
    origin: Instant,
    next_ms: AtomicU64,
}

impl WarnLimiter {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            next_ms: AtomicU64::new(0),
        }
    }

    fn allow(&self) -> bool {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_ms.load(Ordering::Relaxed);
        now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now.saturating_add(WARN_INTERVAL.as_millis() as u64),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}
