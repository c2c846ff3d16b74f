//! The writer thread: drains the queue in batches, buffers records per route and writes each
//! buffer with one `O_APPEND` write, reopening a file whose path no longer leads to it and
//! counting (never retrying) what a failed open or write loses.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::files::{route_slug, ACTIVE_FILE};
use super::{ChatLogConfig, Line, Msg, Stats, WarnLimiter};

/// Per-route write buffer: one `write` syscall per this many bytes at most.
const BUF_CAPACITY: usize = 64 * 1024;
/// Most queue messages the writer takes in one wake-up.
const BATCH: usize = 1024;
/// After a batch smaller than [`BATCH`], the writer waits this long before taking the next:
/// records are written at the flush interval anyway, and one wake-up then takes many.
const COALESCE: Duration = Duration::from_millis(10);
/// Only a queue this long gathers (the default holds 10 000): filling it within one
/// [`COALESCE`] would take over 100 000 records a second.
const COALESCE_MIN_QUEUE: usize = 1024;

/// How long a parked record (over the buffer's size, with raw newlines, its body still held by
/// the request that just handed it over) waits for that request to let go of the body. It holds
/// the whole body meanwhile, so not until the flush interval (1 s by default, or more); long
/// enough that a loaded machine's request has ended by then (else the body is copied to blank).
const PARKED_WAIT: Duration = Duration::from_millis(100);
/// After a failed open, records are dropped without retrying for this long: a read-only or
/// missing mount would otherwise cost a `mkdir` + `open` per record.
const REOPEN_BACKOFF: Duration = Duration::from_millis(500);

pub(super) fn writer_thread(writer: Writer, rx: mpsc::Receiver<Msg>) {
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
        if received < BATCH && w.cfg.queue_capacity >= COALESCE_MIN_QUEUE {
            // Let records gather: waking per record cost ~2.5k instructions each (the timed
            // wait set up again, the thread parked and woken) under a steady load.
            tokio::time::sleep(COALESCE).await;
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
pub(super) struct OpenFile {
    pub(super) file: File,
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) size: u64,
}

/// State of one route directory.
pub(super) struct RouteFile {
    pub(super) dir: PathBuf,
    pub(super) path: PathBuf,
    pub(super) file: Option<OpenFile>,
    pub(super) buf: Vec<u8>,
    pub(super) buf_records: u64,
    /// A large record waiting to be written (see `append`); written before anything else.
    pub(super) parked: Option<Line>,
    /// No open attempts before this instant (after a failure).
    pub(super) retry_open_at: Option<Instant>,
}

/// The writer thread's state: all file handling lives here, synchronously.
pub(super) struct Writer {
    pub(super) cfg: ChatLogConfig,
    pub(super) stats: Arc<Stats>,
    /// Route prefix → index into `files`; routes sharing a slug share an entry.
    pub(super) routes: HashMap<Box<str>, usize>,
    pub(super) files: Vec<RouteFile>,
    pub(super) slugs: HashMap<String, usize>,
    /// When buffered data was first left unflushed, if any is.
    pub(super) dirty_since: Option<Instant>,
    /// When a record was first parked (see `append`), if one is: parked records are written
    /// [`PARKED_WAIT`] later, not at the flush interval, as each holds its whole request body.
    pub(super) parked_since: Option<Instant>,
    pub(super) warn: WarnLimiter,
}

impl Writer {
    pub(super) fn new(mut cfg: ChatLogConfig, stats: Arc<Stats>) -> Self {
        cfg.max_file_bytes = cfg.max_file_bytes.max(1);
        Self {
            cfg,
            stats,
            routes: HashMap::new(),
            files: Vec::new(),
            slugs: HashMap::new(),
            dirty_since: None,
            parked_since: None,
            warn: WarnLimiter::new(),
        }
    }

    pub(super) fn flush_deadline(&self) -> Option<Instant> {
        let flush = self.dirty_since.map(|t| t + self.cfg.flush_interval);
        let parked = self.parked_since.map(|t| t + PARKED_WAIT);
        match (flush, parked) {
            (Some(f), Some(p)) => Some(f.min(p)),
            (f, p) => f.or(p),
        }
    }

    pub(super) fn flush_due(&self) -> bool {
        self.flush_deadline().is_some_and(|d| Instant::now() >= d)
    }

    /// Handles and empties `batch`; true when a stop was requested.
    pub(super) fn handle_batch(&mut self, batch: &mut Vec<Msg>) -> bool {
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
    pub(super) fn refuse(&mut self, msg: Msg) {
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

    pub(super) fn warn(&self, what: std::fmt::Arguments<'_>) {
        if self.warn.allow() {
            log::warn!(
                "chat log: {what} ({} records dropped, {} errors so far)",
                self.stats.dropped.load(Ordering::Relaxed),
                self.stats.errors.load(Ordering::Relaxed)
            );
        }
    }

    pub(super) fn route_index(&mut self, route: &str) -> usize {
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
                    parked: None,
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

    pub(super) fn append(&mut self, route: &str, line: Line) {
        if line
            .parts()
            .iter()
            .all(|p| p.iter().all(u8::is_ascii_whitespace))
        {
            self.stats.drop_records(1);
            self.warn(format_args!("empty record dropped"));
            return;
        }
        let i = self.route_index(route);
        // A record parked before this one goes first.
        self.unpark(i);
        if !self.ensure_open(i) {
            self.stats.drop_records(1);
            return;
        }
        let len = line.len();
        let need = len as u64 + 1;
        let rf = &self.files[i];
        let pending = rf.file.as_ref().map_or(0, |f| f.size) + rf.buf.len() as u64;
        if pending > 0 && pending + need > self.cfg.max_file_bytes {
            self.rotate(i);
            if !self.ensure_open(i) {
                self.stats.drop_records(1);
                return;
            }
        }
        if self.files[i].buf.len() + len + 1 > BUF_CAPACITY && !self.files[i].buf.is_empty() {
            self.flush_route(i);
        }
        if len + 1 > BUF_CAPACITY {
            // Larger than the buffer: written from its parts rather than copied into the buffer
            // first (a long conversation would be held twice, its shared body and the copy).
            if memchr::memchr2(b'\n', b'\r', &line.body).is_some() && !line.body.is_unique() {
                // Raw newlines (pretty-printed JSON) to blank in a body the request still holds
                // (it ends just after handing the record over): parked until the route's next
                // record or [`PARKED_WAIT`] later, by when the record is its only holder and the
                // body is blanked in place, not copied.
                self.files[i].parked = Some(line);
                self.dirty_since.get_or_insert_with(Instant::now);
                self.parked_since.get_or_insert_with(Instant::now);
                return;
            }
            self.write_line(i, line);
            return;
        }
        let rf = &mut self.files[i];
        let start = rf.buf.len();
        for part in line.parts() {
            rf.buf.extend_from_slice(part);
        }
        blank_newlines(&mut rf.buf[start..]);
        rf.buf.push(b'\n');
        rf.buf_records += 1;
        if self.dirty_since.is_none() {
            self.dirty_since = Some(Instant::now());
        }
    }

    /// Opens the active file of route `i` if it is not open; false if it cannot be opened.
    pub(super) fn ensure_open(&mut self, i: usize) -> bool {
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
    pub(super) fn check_identity(&mut self, i: usize) {
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

    /// Writes route `i`'s parked record, if any.
    fn unpark(&mut self, i: usize) {
        if let Some(line) = self.files[i].parked.take() {
            self.write_line(i, line);
        }
    }

    /// Writes one record now, its body's raw newlines blanked: in place when the record is the
    /// body's only holder, else in a copy.
    fn write_line(&mut self, i: usize, mut line: Line) {
        blank_newlines(&mut line.text);
        if memchr::memchr2(b'\n', b'\r', &line.body).is_some() {
            match std::mem::take(&mut line.body).try_into_mut() {
                Ok(mut own) => {
                    blank_newlines(&mut own);
                    line.body = own.freeze();
                }
                Err(shared) => {
                    let mut whole = Line::new(line.text, line.at, shared).into_vec();
                    blank_newlines(&mut whole);
                    line = Line::from(whole);
                }
            }
        }
        let [head, body, tail] = line.parts();
        self.write_out(i, &[head, body, tail, b"\n"], 1);
    }

    /// Writes route `i`'s buffer. On failure its records are dropped (never retried, so memory
    /// stays bounded under a full disk) and the file is closed, so the next open starts clean.
    pub(super) fn flush_route(&mut self, i: usize) {
        self.unpark(i);
        if self.files[i].buf.is_empty() {
            return;
        }
        let records = self.files[i].buf_records;
        let buf = std::mem::take(&mut self.files[i].buf);
        self.write_out(i, &[&buf], records);
        let rf = &mut self.files[i];
        rf.buf = buf;
        rf.buf.clear();
        rf.buf_records = 0;
        if rf.buf.capacity() > 4 * BUF_CAPACITY {
            // One huge record should not pin its buffer forever.
            rf.buf.shrink_to(BUF_CAPACITY);
        }
    }

    /// Writes `parts` (whole lines, `records` of them) to route `i`'s file in one vectored
    /// `O_APPEND` write. On failure the records are dropped and counted, and the file is closed.
    fn write_out(&mut self, i: usize, parts: &[&[u8]], records: u64) {
        self.check_identity(i);
        if !self.ensure_open(i) {
            self.stats.drop_records(records);
            return;
        }
        let rf = &mut self.files[i];
        let Some(open) = rf.file.as_mut() else {
            return;
        };
        match write_all_parts(&mut open.file, parts) {
            Ok(n) => {
                open.size += n as u64;
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

    /// Writes every buffer; with `sync`, also fsyncs the open files.
    pub(super) fn flush_all(&mut self, sync: bool) {
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
        self.parked_since = None;
    }
}

/// A record is one line: raw CR/LF can only be whitespace between JSON tokens (inside strings
/// they are escaped), so spaces keep the JSON intact. Found with memchr's SIMD search: a
/// byte-by-byte pass cost ~2k instructions for a typical record.
fn blank_newlines(line: &mut [u8]) {
    let mut from = 0;
    while let Some(at) = memchr::memchr2(b'\n', b'\r', &line[from..]) {
        line[from + at] = b' ';
        from += at + 1;
    }
}

/// `write_all` for the parts, one `writev` at a time (a single one unless the kernel takes
/// less). Returns the bytes written.
fn write_all_parts(file: &mut File, parts: &[&[u8]]) -> io::Result<usize> {
    let mut slices: [IoSlice<'_>; 4] = [IoSlice::new(&[]); 4];
    let mut n = 0;
    for part in parts.iter().filter(|p| !p.is_empty()) {
        let Some(slot) = slices.get_mut(n) else {
            return Err(io::Error::other("too many parts"));
        };
        *slot = IoSlice::new(part);
        n += 1;
    }
    let total = parts.iter().map(|p| p.len()).sum();
    let mut left = &mut slices[..n];
    while !left.is_empty() {
        match file.write_vectored(left) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut left, written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// Opens (creating directory and file as needed) the active file for appending. If a previous
/// run or a failed write left a cut-off last line, a newline is added so the next record starts
/// on a line of its own.
pub(super) fn open_active(dir: &Path, path: &Path) -> io::Result<OpenFile> {
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
