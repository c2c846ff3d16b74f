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
//! explicit [`ChatLog::flush`], not one syscall per record.
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

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

/// Name of the file currently written in each route directory.
pub const ACTIVE_FILE: &str = "chat.jsonl";

/// Per-route write buffer: one `write` syscall per this many bytes at most.
const BUF_CAPACITY: usize = 64 * 1024;
/// Most queue messages the writer takes in one wake-up.
const BATCH: usize = 1024;
/// At most one warning of each kind per this interval, so a full disk or a flood does not turn
/// the log itself into the next bottleneck.
const WARN_INTERVAL: Duration = Duration::from_secs(10);
/// After a failed open, records are dropped without retrying for this long: a read-only or
/// missing mount would otherwise cost a `mkdir` + `open` per record.
const REOPEN_BACKOFF: Duration = Duration::from_millis(500);
/// Longest route slug; leaves room for the file names inside a 255-byte path component.
const MAX_SLUG_LEN: usize = 100;

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

enum Msg {
    Record {
        route: Box<str>,
        line: Vec<u8>,
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

    /// Queues one record for `route`. `line` is one serialised JSON value; a trailing newline is
    /// added by the writer (raw newlines inside it are turned into spaces, which keeps valid JSON
    /// valid and the file one record per line). Never blocks: a full queue drops the record.
    pub fn record(&self, route: &str, line: Vec<u8>) {
        let msg = Msg::Record {
            route: route.into(),
            line,
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

/// Directory name for a route prefix: ASCII letters, digits and `-` are kept, every other run
/// of characters becomes one `_`, leading and trailing `_` are trimmed, and an empty result is
/// `root`. So `/` → `root`, `/openai` → `openai`, `/a/b` → `a_b`; `.` never survives, so a slug
/// can never climb out of the log directory. Distinct routes can share a slug (`/a/b`, `/a_b`);
/// they then share a directory, and each record still carries its `route`.
pub fn route_slug(route: &str) -> String {
    let mut slug = String::with_capacity(route.len().min(MAX_SLUG_LEN));
    for c in route.chars() {
        if slug.len() >= MAX_SLUG_LEN {
            break;
        }
        if c.is_ascii_alphanumeric() || c == '-' {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('_') {
            slug.push('_');
        }
    }
    while slug.ends_with('_') {
        slug.pop();
    }
    if slug.is_empty() {
        slug.push_str("root");
    }
    slug
}

/// Whether `name` is a rotated log file, `chat.YYYYMMDDTHHMMSS.mmmZ.jsonl`.
pub fn is_rotated_name(name: &str) -> bool {
    let Some(stamp) = name
        .strip_prefix("chat.")
        .and_then(|rest| rest.strip_suffix(".jsonl"))
    else {
        return false;
    };
    let b = stamp.as_bytes();
    b.len() == 20
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'.'
        && b[16..19].iter().all(u8::is_ascii_digit)
        && b[19] == b'Z'
}

/// The log files of one route directory, oldest first: rotated files by name (which is time
/// order), then the active `chat.jsonl`. Missing directory → empty list.
pub fn log_files(route_dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(route_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut rotated = Vec::new();
    let mut active = None;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == ACTIVE_FILE {
            active = Some(entry.path());
        } else if is_rotated_name(name) {
            rotated.push(entry.path());
        }
    }
    rotated.sort();
    rotated.extend(active);
    Ok(rotated)
}

/// Milliseconds since the Unix epoch → RFC 3339 (`2026-11-28T13:20:05.123Z`), for records.
pub fn rfc3339_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Milliseconds since the Unix epoch → `YYYYMMDDTHHMMSS.mmmZ` (UTC), without a date library.
fn utc_stamp(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// The stamp of a rotated file's name back in milliseconds since the epoch.
fn rotated_stamp_ms(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    if !is_rotated_name(name) {
        return None;
    }
    let b = name.strip_prefix("chat.")?.as_bytes();
    let num = |r: std::ops::Range<usize>| {
        b.get(r)?
            .iter()
            .try_fold(0u64, |n, d| Some(n * 10 + u64::from(d.checked_sub(b'0')?)))
    };
    let days = days_from_civil(
        i64::try_from(num(0..4)?).ok()?,
        u32::try_from(num(4..6)?).ok()?,
        u32::try_from(num(6..8)?).ok()?,
    );
    let secs = u64::try_from(days).ok()? * 86_400 + num(9..11)? * 3600 + num(11..13)? * 60;
    Some((secs + num(13..15)?) * 1000 + num(16..19)?)
}

/// (year, month, day) → days since 1970-01-01; the inverse of [`civil_from_days`].
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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

fn writer_thread(writer: Writer, rx: mpsc::Receiver<Msg>) {
    // A current-thread runtime of our own: the writer only needs a timer next to the channel.
    match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt.block_on(run_writer(writer, rx)),
        Err(e) => {
            log::error!("chat log: cannot build the writer runtime, chat logging is off: {e}")
        }
    }
}

async fn run_writer(mut w: Writer, mut rx: mpsc::Receiver<Msg>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        // Sleep until a message arrives, or until buffered data is due on disk.
        let received = match w.flush_deadline() {
            Some(deadline) => {
                let wait = rx.recv_many(&mut batch, BATCH);
                match tokio::time::timeout_at(deadline.into(), wait).await {
                    Ok(n) => n,
                    Err(_elapsed) => {
                        w.flush_all(false);
                        continue;
                    }
                }
            }
            None => rx.recv_many(&mut batch, BATCH).await,
        };
        if received == 0 {
            break; // every handle is gone
        }
        let stop = w.handle_batch(&mut batch);
        if w.flush_due() {
            w.flush_all(false);
        }
        if stop {
            break;
        }
    }
    // Whatever raced in after the stop is counted, not silently lost, and no flusher hangs.
    rx.close();
    while let Ok(msg) = rx.try_recv() {
        w.refuse(msg);
    }
    w.flush_all(true);
}

/// One open active file.
struct OpenFile {
    file: File,
    dev: u64,
    ino: u64,
    size: u64,
}

/// State of one route directory.
struct RouteFile {
    dir: PathBuf,
    path: PathBuf,
    file: Option<OpenFile>,
    buf: Vec<u8>,
    buf_records: u64,
    /// No open attempts before this instant (after a failure).
    retry_open_at: Option<Instant>,
}

/// The writer thread's state: all file handling lives here, synchronously.
struct Writer {
    cfg: ChatLogConfig,
    stats: Arc<Stats>,
    /// Route prefix → index into `files`; routes sharing a slug share an entry.
    routes: HashMap<Box<str>, usize>,
    files: Vec<RouteFile>,
    slugs: HashMap<String, usize>,
    /// When buffered data was first left unflushed, if any is.
    dirty_since: Option<Instant>,
    warn: WarnLimiter,
}

impl Writer {
    fn new(mut cfg: ChatLogConfig, stats: Arc<Stats>) -> Self {
        cfg.max_file_bytes = cfg.max_file_bytes.max(1);
        Self {
            cfg,
            stats,
            routes: HashMap::new(),
            files: Vec::new(),
            slugs: HashMap::new(),
            dirty_since: None,
            warn: WarnLimiter::new(),
        }
    }

    fn flush_deadline(&self) -> Option<Instant> {
        self.dirty_since.map(|t| t + self.cfg.flush_interval)
    }

    fn flush_due(&self) -> bool {
        self.flush_deadline().is_some_and(|d| Instant::now() >= d)
    }

    /// Handles and empties `batch`; true when a stop was requested.
    fn handle_batch(&mut self, batch: &mut Vec<Msg>) -> bool {
        let mut stop = false;
        for msg in batch.drain(..) {
            if stop {
                self.refuse(msg);
                continue;
            }
            match msg {
                Msg::Record { route, line } => self.append(&route, line),
                Msg::Flush(ack) => {
                    self.flush_all(true);
                    let _ = ack.send(());
                }
                Msg::Stop(ack) => {
                    self.flush_all(true);
                    let _ = ack.send(());
                    stop = true;
                }
                #[cfg(test)]
                Msg::Hold { entered, release } => {
                    let _ = entered.send(());
                    let _ = release.recv();
                }
            }
        }
        stop
    }

    /// A message arriving after the stop: records are counted as dropped, waiters released.
    fn refuse(&mut self, msg: Msg) {
        match msg {
            Msg::Record { .. } => self.stats.drop_records(1),
            Msg::Flush(ack) | Msg::Stop(ack) => {
                let _ = ack.send(());
            }
            #[cfg(test)]
            Msg::Hold { entered, .. } => {
                let _ = entered.send(());
            }
        }
    }

    fn warn(&self, what: std::fmt::Arguments<'_>) {
        if self.warn.allow() {
            log::warn!(
                "chat log: {what} ({} records dropped, {} errors so far)",
                self.stats.dropped.load(Ordering::Relaxed),
                self.stats.errors.load(Ordering::Relaxed)
            );
        }
    }

    fn route_index(&mut self, route: &str) -> usize {
        if let Some(&i) = self.routes.get(route) {
            return i;
        }
        let slug = route_slug(route);
        let i = match self.slugs.get(&slug) {
            Some(&i) => i,
            None => {
                let dir = self.cfg.dir.join(&slug);
                self.files.push(RouteFile {
                    path: dir.join(ACTIVE_FILE),
                    dir,
                    file: None,
                    buf: Vec::new(),
                    buf_records: 0,
                    retry_open_at: None,
                });
                let i = self.files.len() - 1;
                self.slugs.insert(slug, i);
                i
            }
        };
        self.routes.insert(route.into(), i);
        i
    }

    fn append(&mut self, route: &str, mut line: Vec<u8>) {
        // A record is one line: raw CR/LF can only be whitespace between JSON tokens (inside
        // strings they are escaped), so spaces keep the JSON intact.
        for b in line.iter_mut() {
            if *b == b'\n' || *b == b'\r' {
                *b = b' ';
            }
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            self.stats.drop_records(1);
            self.warn(format_args!("empty record dropped"));
            return;
        }
        let i = self.route_index(route);
        if !self.ensure_open(i) {
            self.stats.drop_records(1);
            return;
        }
        let need = line.len() as u64 + 1;
        let rf = &self.files[i];
        let pending = rf.file.as_ref().map_or(0, |f| f.size) + rf.buf.len() as u64;
        if pending > 0 && pending + need > self.cfg.max_file_bytes {
            self.rotate(i);
            if !self.ensure_open(i) {
                self.stats.drop_records(1);
                return;
            }
        }
        if self.files[i].buf.len() + line.len() + 1 > BUF_CAPACITY && !self.files[i].buf.is_empty()
        {
            self.flush_route(i);
        }
        let rf = &mut self.files[i];
        rf.buf.extend_from_slice(&line);
        rf.buf.push(b'\n');
        rf.buf_records += 1;
        if self.dirty_since.is_none() {
            self.dirty_since = Some(Instant::now());
        }
    }

    /// Opens the active file of route `i` if it is not open; false if it cannot be opened.
    fn ensure_open(&mut self, i: usize) -> bool {
        let rf = &mut self.files[i];
        if rf.file.is_some() {
            return true;
        }
        if rf.retry_open_at.is_some_and(|t| Instant::now() < t) {
            return false;
        }
        match open_active(&rf.dir, &rf.path) {
            Ok(f) => {
                rf.file = Some(f);
                rf.retry_open_at = None;
                true
            }
            Err(e) => {
                rf.retry_open_at = Some(Instant::now() + REOPEN_BACKOFF);
                let path = rf.path.display().to_string();
                self.stats.error();
                self.warn(format_args!("cannot open {path}: {e}"));
                false
            }
        }
    }

    /// Closes the file if its path no longer leads to it (directory or file removed, replaced
    /// by a log shipper): the next open recreates it, and the buffer goes to the new file.
    fn check_identity(&mut self, i: usize) {
        let rf = &mut self.files[i];
        let Some(open) = &rf.file else { return };
        let same = match fs::metadata(&rf.path) {
            Ok(meta) => meta.dev() == open.dev && meta.ino() == open.ino,
            Err(_) => false,
        };
        if !same {
            rf.file = None;
            rf.retry_open_at = None;
        }
    }

    /// Writes route `i`'s buffer. On failure its records are dropped (never retried, so memory
    /// stays bounded under a full disk) and the file is closed, so the next open starts clean.
    fn flush_route(&mut self, i: usize) {
        if self.files[i].buf.is_empty() {
            return;
        }
        self.check_identity(i);
        let records = self.files[i].buf_records;
        if !self.ensure_open(i) {
            self.stats.drop_records(records);
        } else {
            let rf = &mut self.files[i];
            if let Some(open) = rf.file.as_mut() {
                match open.file.write_all(&rf.buf) {
                    Ok(()) => {
                        open.size += rf.buf.len() as u64;
                        self.stats.written.fetch_add(records, Ordering::Relaxed);
                    }
                    Err(e) => {
                        rf.file = None;
                        let path = rf.path.display().to_string();
                        self.stats.drop_records(records);
                        self.stats.error();
                        self.warn(format_args!("write to {path} failed: {e}"));
                    }
                }
            }
        }
        let rf = &mut self.files[i];
        rf.buf.clear();
        rf.buf_records = 0;
        if rf.buf.capacity() > 4 * BUF_CAPACITY {
            // One huge record should not pin its buffer forever.
            rf.buf.shrink_to(BUF_CAPACITY);
        }
    }

    /// Writes every buffer; with `sync`, also fsyncs the open files.
    fn flush_all(&mut self, sync: bool) {
        for i in 0..self.files.len() {
            self.flush_route(i);
            if sync {
                let rf = &self.files[i];
                if let Some(open) = &rf.file {
                    if let Err(e) = open.file.sync_data() {
                        let path = rf.path.display().to_string();
                        self.stats.error();
                        self.warn(format_args!("fsync of {path} failed: {e}"));
                    }
                }
            }
        }
        self.dirty_since = None;
    }

    /// `chat.jsonl` → `chat.<stamp>.jsonl`, then retention.
    fn rotate(&mut self, i: usize) {
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
    fn prune(&mut self, rotated: &[PathBuf]) {
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

/// Opens (creating directory and file as needed) the active file for appending. If a previous
/// run or a failed write left a cut-off last line, a newline is added so the next record starts
/// on a line of its own.
fn open_active(dir: &Path, path: &Path) -> io::Result<OpenFile> {
    fs::create_dir_all(dir)?;
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let meta = file.metadata()?;
    let mut size = meta.len();
    if size > 0 && meta.is_file() {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(size - 1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
            size += 1;
        }
    }
    Ok(OpenFile {
        file,
        dev: meta.dev(),
        ino: meta.ino(),
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn config(dir: &Path) -> ChatLogConfig {
        ChatLogConfig {
            dir: dir.to_path_buf(),
            ..ChatLogConfig::default()
        }
    }

    fn lines(path: &Path) -> Vec<Value> {
        let text = fs::read_to_string(path).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn rec(i: usize) -> Vec<u8> {
        serde_json::to_vec(&json!({"seq": i, "answer": "hello\nworld"})).unwrap()
    }

    #[tokio::test]
    async fn writes_valid_jsonl_per_route() {
        let tmp = tempfile::tempdir().unwrap();
        let log = ChatLog::start(config(tmp.path()));
        for i in 0..100 {
            log.record("/openai", rec(i));
            log.record("/", rec(i));
            log.record("/a/b", rec(i));
        }
        log.flush().await;
        for slug in ["openai", "root", "a_b"] {
            let got = lines(&tmp.path().join(slug).join(ACTIVE_FILE));
            assert_eq!(got.len(), 100, "{slug}");
            for (i, v) in got.iter().enumerate() {
                assert_eq!(v["seq"], i, "{slug} keeps order");
                assert_eq!(v["answer"], "hello\nworld");
            }
        }
        assert_eq!(log.written(), 300);
        assert_eq!((log.dropped(), log.errors()), (0, 0));
    }

    #[tokio::test]
    async fn record_json_and_raw_newlines_stay_one_line() {
        let tmp = tempfile::tempdir().unwrap();
        let log = ChatLog::start(config(tmp.path()));
        let pretty = serde_json::to_vec_pretty(&json!({"a": [1, 2], "b": "x"})).unwrap();
        log.record("/r", pretty);
        log.record_json("/r", &json!({"c": true}));
        log.record("/r", b" \n ".to_vec()); // blank: dropped, not an empty line
        log.flush_and_stop().await;
        let got = lines(&tmp.path().join("r").join(ACTIVE_FILE));
        assert_eq!(
            got,
            vec![json!({"a": [1, 2], "b": "x"}), json!({"c": true})]
        );
        assert_eq!(log.dropped(), 1);
    }

    #[test]
    fn slugs() {
        for (route, slug) in [
            ("/", "root"),
            ("", "root"),
            ("/openai", "openai"),
            ("/a/b", "a_b"),
            ("/a//b/", "a_b"),
            ("/../etc/passwd", "etc_passwd"),
            ("/v1.beta", "v1_beta"),
            ("/Gemini-Pro", "Gemini-Pro"),
            ("/模型", "root"),
        ] {
            assert_eq!(route_slug(route), slug, "{route:?}");
        }
        assert_eq!(route_slug(&"/x".repeat(500)).len(), MAX_SLUG_LEN - 1);
    }

    proptest! {
        #[test]
        fn slug_is_always_a_safe_file_name(route in any::<String>()) {
            let slug = route_slug(&route);
            prop_assert!(!slug.is_empty() && slug.len() <= MAX_SLUG_LEN);
            prop_assert!(slug.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            prop_assert!(!slug.starts_with('_') && !slug.ends_with('_'));
        }

        #[test]
        fn stamps_are_rotated_names_in_time_order(a in 0u64..8_000_000_000_000, b in 0u64..8_000_000_000_000) {
            let name = |ms: u64| format!("chat.{}.jsonl", utc_stamp(ms));
            prop_assert!(is_rotated_name(&name(a)));
            prop_assert_eq!(a.cmp(&b), name(a).cmp(&name(b)));
            prop_assert_eq!(rotated_stamp_ms(Path::new(&name(a))), Some(a));
        }
    }

    #[test]
    fn utc_stamps() {
        let at = |s: u64, ms: u64| utc_stamp(s * 1000 + ms);
        assert_eq!(at(0, 0), "19700101T000000.000Z");
        assert_eq!(at(951_782_400, 5), "20000229T000000.005Z");
        assert_eq!(at(1_714_566_896, 789), "20240501T123456.789Z");
        assert!(!is_rotated_name("chat.jsonl"));
        assert!(!is_rotated_name("chat.20240501T123456Z.jsonl"));
        assert!(!is_rotated_name("chat.20240501T123456.789Z.jsonl.tmp"));
    }

    #[tokio::test]
    async fn rotation_and_retention() {
        let tmp = tempfile::tempdir().unwrap();
        let log = ChatLog::start(ChatLogConfig {
            max_file_bytes: 1_000,
            keep_files: 3,
            ..config(tmp.path())
        });
        let line = |i: usize| format!(r#"{{"seq":{i},"pad":"{}"}}"#, "x".repeat(80)).into_bytes();
        let total = 200; // ~95 bytes each: ~10 per file, ~20 rotations
        for i in 0..total {
            log.record("/openai", line(i));
            if i % 7 == 0 {
                log.flush().await; // rotation must also work across flushes
            }
        }
        log.flush_and_stop().await;
        assert_eq!((log.dropped(), log.errors()), (0, 0));

        let files = log_files(&tmp.path().join("openai")).unwrap();
        assert_eq!(files.len(), 4, "3 rotated + active: {files:?}");
        assert!(files[3].ends_with(ACTIVE_FILE));
        let mut seqs = Vec::new();
        for f in &files {
            assert!(fs::metadata(f).unwrap().len() <= 1_000, "{f:?} too big");
            seqs.extend(lines(f).iter().map(|v| v["seq"].as_u64().unwrap()));
        }
        // The newest records survive, contiguous and in order across the kept files.
        let first = seqs[0];
        let expected: Vec<u64> = (first..total as u64).collect();
        assert_eq!(seqs, expected);
    }

    #[tokio::test]
    async fn rotated_names_stay_in_write_order_when_the_clock_is_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("root");
        fs::create_dir_all(&dir).unwrap();
        // A file from "the future" (clock stepped back since, or a restored backup).
        fs::write(dir.join("chat.20990101T000000.000Z.jsonl"), "{}\n").unwrap();
        let log = ChatLog::start(ChatLogConfig {
            max_file_bytes: 1,
            keep_files: 100,
            ..config(tmp.path())
        });
        for i in 0..3 {
            log.record("/", rec(i));
        }
        log.flush_and_stop().await;
        let names: Vec<_> = log_files(&dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "chat.20990101T000000.000Z.jsonl",
                "chat.20990101T000000.001Z.jsonl",
                "chat.20990101T000000.002Z.jsonl",
                ACTIVE_FILE
            ]
        );
        assert_eq!(lines(&dir.join(ACTIVE_FILE))[0]["seq"], 2);
    }

    #[tokio::test]
    async fn full_queue_drops_and_counts_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let log = ChatLog::start(ChatLogConfig {
            queue_capacity: 4,
            ..config(tmp.path())
        });
        let release = log.hold().await; // the writer is now parked: nothing drains
        let started = Instant::now();
        for i in 0..10 {
            log.record("/", rec(i));
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "record() blocked"
        );
        assert_eq!(log.queued(), 4);
        assert_eq!(log.dropped(), 6);
        release.send(()).unwrap();
        log.flush_and_stop().await;
        assert_eq!(log.written(), 4);
        let got = lines(&tmp.path().join("root").join(ACTIVE_FILE));
        let seqs: Vec<_> = got.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [0, 1, 2, 3]);
    }

    #[tokio::test]
    async fn flood_accounts_for_every_record() {
        let tmp = tempfile::tempdir().unwrap();
        let log = ChatLog::start(ChatLogConfig {
            queue_capacity: 1,
            ..config(tmp.path())
        });
        for i in 0..20_000 {
            log.record("/", rec(i));
        }
        log.flush_and_stop().await;
        // How many are dropped depends on thread scheduling; that each one is counted does not.
        assert_eq!(log.written() + log.dropped(), 20_000);
        let got = lines(&tmp.path().join("root").join(ACTIVE_FILE));
        assert_eq!(got.len() as u64, log.written());
    }

    #[tokio::test]
    async fn removed_directory_is_recreated() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("logs");
        let log = ChatLog::start(config(&base));
        for i in 0..10 {
            log.record("/openai", rec(i));
        }
        log.flush().await;
        fs::remove_dir_all(&base).unwrap();
        for i in 10..25 {
            log.record("/openai", rec(i));
        }
        log.flush().await;
        let got = lines(&base.join("openai").join(ACTIVE_FILE));
        let seqs: Vec<_> = got.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (10..25).collect::<Vec<u64>>());
        assert_eq!((log.dropped(), log.errors()), (0, 0));

        // Same with records still buffered when the directory goes.
        log.record("/openai", rec(25));
        fs::remove_dir_all(&base).unwrap();
        log.flush().await;
        assert_eq!(lines(&base.join("openai").join(ACTIVE_FILE)).len(), 1);
    }

    #[tokio::test]
    async fn full_disk_counts_errors_and_recovers() {
        if !Path::new("/dev/full").exists() {
            eprintln!("no /dev/full: skipped");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("openai");
        fs::create_dir_all(&dir).unwrap();
        let active = dir.join(ACTIVE_FILE);
        // Every write through this path fails with ENOSPC, even as root.
        std::os::unix::fs::symlink("/dev/full", &active).unwrap();
        let log = ChatLog::start(config(tmp.path()));
        for i in 0..50 {
            log.record("/openai", rec(i));
        }
        log.flush().await;
        assert_eq!(log.dropped(), 50);
        assert_eq!(log.written(), 0);
        assert!(log.errors() >= 1);

        // The writer is still alive: once the disk has room, logging resumes.
        for i in 50..55 {
            log.record("/openai", rec(i));
        }
        log.flush().await;
        assert!(log.errors() >= 2);
        fs::remove_file(&active).unwrap();
        for i in 55..60 {
            log.record("/openai", rec(i));
        }
        log.flush_and_stop().await;
        let seqs: Vec<_> = lines(&active)
            .iter()
            .map(|v| v["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (55..60).collect::<Vec<u64>>());
        assert_eq!(log.dropped(), 55);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flush_and_stop_loses_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let log = ChatLog::start(config(tmp.path()));
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let log = log.clone();
                tokio::spawn(async move {
                    for i in 0..2_500 {
                        log.record("/openai", rec(p * 2_500 + i));
                    }
                })
            })
            .collect();
        for p in producers {
            p.await.unwrap();
        }
        log.flush_and_stop().await;
        let got = lines(&tmp.path().join("openai").join(ACTIVE_FILE));
        assert_eq!(got.len(), 10_000);
        let mut seqs: Vec<_> = got.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (0..10_000).collect::<Vec<u64>>());
        assert_eq!((log.written(), log.dropped()), (10_000, 0));

        // Stopped: later records are counted, and a second stop returns at once.
        log.record("/openai", rec(0));
        assert_eq!(log.dropped(), 1);
        log.flush_and_stop().await;
        log.flush().await;
    }

    #[tokio::test]
    async fn periodic_flush_without_explicit_flush() {
        let tmp = tempfile::tempdir().unwrap();
        let log = ChatLog::start(ChatLogConfig {
            flush_interval: Duration::from_millis(20),
            ..config(tmp.path())
        });
        log.record("/", rec(1));
        let path = tmp.path().join("root").join(ACTIVE_FILE);
        let deadline = Instant::now() + Duration::from_secs(10);
        while fs::read(&path).map_or(true, |b| b.is_empty()) {
            assert!(Instant::now() < deadline, "never flushed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(lines(&path).len(), 1);
    }

    #[tokio::test]
    async fn cut_off_last_line_is_terminated_before_appending() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("root");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(ACTIVE_FILE), b"{\"seq\":0}\n{\"seq\":1,\"cut").unwrap();
        let log = ChatLog::start(config(tmp.path()));
        log.record("/", rec(2));
        log.flush_and_stop().await;
        let text = fs::read_to_string(dir.join(ACTIVE_FILE)).unwrap();
        let parsed: Vec<bool> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).is_ok())
            .collect();
        assert_eq!(parsed, [true, false, true]);
    }

    #[test]
    fn start_works_outside_a_runtime() {
        let tmp = tempfile::tempdir().unwrap();
        let log = ChatLog::start(config(tmp.path()));
        log.record("/", rec(0));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(log.flush_and_stop());
        assert_eq!(log.written(), 1);
    }
}
