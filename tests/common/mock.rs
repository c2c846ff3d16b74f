//! In-process mock of an OpenAI-compatible upstream for `llm-forward`'s integration tests and
//! benchmarks.
//!
//! [`MockUpstream`] is a deliberately small HTTP/1.1 server written directly on tokio's
//! [`TcpStream`] with hand-written parsing, so that tests control every byte on the wire and can
//! inject the faults a real HTTP stack would hide: resets before or in the middle of a response,
//! stalls, SSE events split at any byte, and streams gated event by event. It listens on
//! 127.0.0.1, runs on the current tokio runtime, records every request, and stops (aborting every
//! task, which closes every socket) when dropped. Each request is answered according to a
//! [`Behavior`]: one-shot behaviours queued with [`MockUpstream::push_behavior`] first, then the
//! default set with [`MockUpstream::set_behavior`] ([`Behavior::OpenAi`] at start). It needs only
//! tokio's `rt`, `net`, `time`, `sync` and `macros` features.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

/// Largest request head accepted (larger: 431).
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted, Content-Length or decoded chunks (larger: 413).
const MAX_BODY: usize = 1 << 30;
/// Size of each connection's buffer for reading heads, chunk lines and small bodies.
const SCRATCH: usize = 64 * 1024;
/// `created` of every OpenAI-shaped answer, so that answers are byte-for-byte reproducible.
const CREATED: u64 = 1_700_000_000;
/// Model named in answers when the request names none, and in [`chat_stream_event`].
pub const MOCK_MODEL: &str = "mock-model";
/// The OpenAi behaviour's answer, "Hello from mock", one SSE event per word.
const WORDS: [&str; 3] = ["Hello", " from", " mock"];
/// Usage of the OpenAi behaviour's chat and text completions.
const USAGE: &str = r#"{"prompt_tokens":10,"completion_tokens":3,"total_tokens":13}"#;
/// The last SSE event of an OpenAI stream.
pub const DONE_EVENT: &str = "data: [DONE]\n\n";
const SSE: &str = "text/event-stream";

/// What the mock answers to one request.
#[derive(Clone, Debug, PartialEq)]
pub enum Behavior {
    /// An OpenAI lookalike, by path suffix (query ignored): `/chat/completions` → a chat
    /// completion (JSON, or SSE when the body has `"stream": true`: one `chat.completion.chunk`
    /// event per word of "Hello from mock", the first with `role`, the last with
    /// `finish_reason: "stop"`, then a usage chunk with `choices: []` if
    /// `stream_options.include_usage` is true, then `data: [DONE]`); `/completions` → a text
    /// completion likewise; `/embeddings` → one 8-dim float vector per input, with usage;
    /// `/models` → a model list; anything else → a 404 OpenAI error. Answers echo the request's
    /// `model` (default [`MOCK_MODEL`]). Usage is always 10 prompt + 3 completion tokens
    /// (embeddings: 4 prompt tokens per input). A body that is not a JSON object gets a 400
    /// OpenAI error (except on `/models`). A streamed answer goes out in a single write.
    OpenAi,
    /// Answer with this status, extra headers and JSON body (Content-Type application/json
    /// unless `headers` sets one).
    Json {
        status: u16,
        headers: Vec<(String, String)>,
        body: Value,
    },
    /// Answer with this status, extra headers and raw body, framed by Content-Length (e.g. an
    /// SSE stream sent with a length, as some upstreams do).
    Raw {
        status: u16,
        headers: Vec<(String, String)>,
        body: Bytes,
    },
    /// 200 JSON `{"method","path","headers":{name: value},"trailers":{..},"body_len",
    /// "body_fnv1a64": 16 hex digits of [`fnv1a64`],"body_utf8"}`: repeated headers joined with
    /// ", ", `body_utf8` the body if it is UTF-8 and under 64 KiB, else null.
    Echo,
    /// SSE: each non-empty element of `chunks` goes out as one HTTP chunk (raw bytes, so events
    /// may be split anywhere), after waiting `delay`; `done` then appends a chunk
    /// `data: [DONE]\n\n` (not delayed).
    Sse {
        chunks: Vec<Bytes>,
        delay: Duration,
        done: bool,
    },
    /// SSE whose first event is sent at once and each later one only after a permit from
    /// [`MockUpstream::release`]; `data: [DONE]\n\n` and the end of the body follow the last
    /// one at once. An event ending in "\n\n" is sent as is, any other as `data: {event}\n\n`.
    SseGated { events: Vec<String> },
    /// Read the request, then reset the connection (SO_LINGER 0, close) without answering.
    ResetBeforeHeaders,
    /// Send SSE response headers and the first `events_before_reset` events of
    /// [`Behavior::chat_stream`], then (100 ms later) reset the connection (no terminating
    /// chunk).
    ResetMidStream { events_before_reset: usize },
    /// Read the request and never answer; the peer's close is recorded.
    Stall,
    /// Send a 200 JSON response head announcing 100 bytes, then close at once (no body).
    HeadThenClose,
    /// Send SSE response headers and the first `events_before_stall` events of
    /// [`Behavior::chat_stream`], then nothing more (the connection stays open).
    StallMidStream { events_before_stall: usize },
    /// Wait `delay` before the response headers, then answer as [`Behavior::OpenAi`].
    SlowHeaders { delay: Duration },
    /// Answer `status` with the JSON `body` when `field` contains `contains`, else answer as
    /// [`Behavior::OpenAi`]. `field` is a request header name (case-insensitive) or `:path`
    /// (the request target, query included): an upstream that refuses one key, one
    /// organization header, one endpoint.
    RefuseIf {
        field: String,
        contains: String,
        status: u16,
        body: Value,
    },
    /// An error page that echoes the request target, query included, as some upstreams do:
    /// `status` with an OpenAI error whose message is `Invalid URL ({method} {target})`.
    EchoUrlError { status: u16 },
    /// `behavior` for requests whose JSON body names `model`; [`Behavior::OpenAi`] otherwise.
    ForModel {
        model: String,
        behavior: Box<Behavior>,
    },
}

impl Behavior {
    /// SSE with one chunk `data: {event}\n\n` per event, each after `delay`, then `data: [DONE]`.
    pub fn sse_events(events: &[&str], delay: Duration) -> Behavior {
        let event = |e: &&str| Bytes::from(format!("data: {e}\n\n"));
        let chunks = events.iter().map(event).collect();
        Behavior::Sse {
            chunks,
            delay,
            done: true,
        }
    }

    /// SSE with chunks [`chat_stream_event`]`(0..n_tokens)`, each after `delay`, then
    /// `data: [DONE]`.
    pub fn chat_stream(n_tokens: usize, delay: Duration) -> Behavior {
        let chunks = (0..n_tokens).map(|i| chat_stream_event(i).into()).collect();
        Behavior::Sse {
            chunks,
            delay,
            done: true,
        }
    }
}

/// Event `i` of [`Behavior::chat_stream`] and [`Behavior::ResetMidStream`]: a whole
/// `data: {chat.completion.chunk}\n\n` of model [`MOCK_MODEL`] whose delta content is `"t{i} "`.
pub fn chat_stream_event(i: usize) -> String {
    let mut event = String::with_capacity(256);
    let (model, content) = (format!("\"{MOCK_MODEL}\""), format!("\"t{i} \""));
    chat_event(&mut event, &model, &content, "", "null");
    event
}

/// A request as the mock received it, recorded once its body was completely read.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// The request target as sent, including any `?query`.
    pub path: String,
    /// Header fields in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Trailer fields of a chunked body, names lower-cased.
    pub trailers: Vec<(String, String)>,
    /// The body, chunked bodies decoded.
    pub body: Bytes,
    /// When the body had been completely read.
    pub received_at: Instant,
}

impl RecordedRequest {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut found = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name));
        found.next().map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A 127.0.0.1 address that refuses connections (a port that was bound, then released).
pub fn refused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr")
}

/// 64-bit FNV-1a of `data`, as reported by [`Behavior::Echo`] in `body_fnv1a64`.
pub fn fnv1a64(data: &[u8]) -> u64 {
    let step = |h: u64, b: &u8| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    data.iter().fold(0xcbf2_9ce4_8422_2325, step)
}

/// A running mock upstream; dropping it stops it.
pub struct MockUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// State shared by the handle and the connection tasks.
struct Shared {
    default: Mutex<Behavior>,
    queue: Mutex<VecDeque<Behavior>>,
    recording: AtomicBool,
    requests: Mutex<Vec<RecordedRequest>>,
    heads: AtomicUsize,
    completed: AtomicUsize,
    request_done: Notify,
    connections: AtomicUsize,
    peer_closes: Mutex<VecDeque<Instant>>,
    peer_closed: Notify,
    gate: Semaphore,
}

impl Shared {
    /// Counts (and maybe records) a request whose body was read, and wakes `wait_for_requests`.
    fn complete(&self, req: &RecordedRequest) {
        if self.recording.load(Ordering::Relaxed) {
            lock(&self.requests).push(req.clone());
        }
        self.completed.fetch_add(1, Ordering::SeqCst);
        self.request_done.notify_waiters();
    }

    /// Records that the peer closed a connection while it was being answered.
    fn note_peer_close(&self) {
        lock(&self.peer_closes).push_back(Instant::now());
        self.peer_closed.notify_waiters();
    }

    /// The behaviour for the next request: the oldest pushed one, else the default.
    fn next_behavior(&self) -> Behavior {
        let pushed = lock(&self.queue).pop_front();
        pushed.unwrap_or_else(|| lock(&self.default).clone())
    }
}

/// Locks a mutex, ignoring poisoning (a panicking test must not cascade into the mock).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits, without polling, until `check` gives a value after a wake-up of `notify` (or at once).
async fn wait_on<T>(
    notify: &Notify,
    timeout: Duration,
    check: impl Fn() -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut notified = std::pin::pin!(notify.notified());
        notified.as_mut().enable();
        if let Some(value) = check() {
            return Some(value);
        }
        tokio::time::timeout_at(deadline, notified).await.ok()?;
    }
}

impl MockUpstream {
    /// Starts a mock on 127.0.0.1 with an ephemeral port, answering [`Behavior::OpenAi`].
    pub async fn start() -> MockUpstream {
        MockUpstream::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a mock listening on `addr` (panics if it cannot be bound).
    pub async fn start_on(addr: SocketAddr) -> MockUpstream {
        let bound = MockUpstream::try_start_on(addr).await;
        bound.unwrap_or_else(|e| panic!("mock upstream: cannot listen on {addr}: {e}"))
    }

    /// Starts a mock listening on `addr`.
    pub async fn try_start_on(addr: SocketAddr) -> io::Result<MockUpstream> {
        // A deep accept queue (the kernel caps it at `somaxconn`): with tokio's default of 1,024,
        // the streams benchmark's 5,000 clients connecting at once overflowed it and waited out
        // a SYN retransmit (1 s), which made the direct run's first events the slowest.
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let listener: TcpListener = socket.listen(65_535)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            default: Mutex::new(Behavior::OpenAi),
            queue: Mutex::new(VecDeque::new()),
            recording: AtomicBool::new(true),
            requests: Mutex::new(Vec::new()),
            heads: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            request_done: Notify::new(),
            connections: AtomicUsize::new(0),
            peer_closes: Mutex::new(VecDeque::new()),
            peer_closed: Notify::new(),
            gate: Semaphore::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(MockUpstream { addr, shared, task })
    }

    /// The address the mock listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the behaviour of every request from now on (after any pushed ones).
    pub fn set_behavior(&self, b: Behavior) {
        *lock(&self.shared.default) = b;
    }

    /// Queues a one-shot behaviour. Queued ones are used first, oldest first, one per request,
    /// taken when the request's body has been read.
    pub fn push_behavior(&self, b: Behavior) {
        lock(&self.shared.queue).push_back(b);
    }

    /// Turns the recording behind [`requests`](Self::requests) on (the default) or off;
    /// the counters and `wait_for_requests` work either way.
    pub fn set_recording(&self, on: bool) {
        self.shared.recording.store(on, Ordering::Relaxed);
    }

    /// Every complete request recorded so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Number of requests whose head was received and parsed, body complete or not.
    pub fn request_count(&self) -> usize {
        self.shared.heads.load(Ordering::SeqCst)
    }

    /// Number of accepted TCP connections.
    pub fn connection_count(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests were completely received; false on timeout.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        let reached = || (self.shared.completed.load(Ordering::SeqCst) >= n).then_some(());
        wait_on(&self.shared.request_done, timeout, reached)
            .await
            .is_some()
    }

    /// Waits for the peer to close (EOF, or an error on read or write) a connection while it was
    /// being answered (stalled, streaming, delaying its headers, or being written to) and returns
    /// when the mock noticed. Each close is returned once, oldest first, and kept until waited for. An idle
    /// keep-alive connection closing between requests does not count.
    pub async fn wait_for_peer_close(&self, timeout: Duration) -> Option<Instant> {
        let next = || lock(&self.shared.peer_closes).pop_front();
        wait_on(&self.shared.peer_closed, timeout, next).await
    }

    /// Lets `n` more [`Behavior::SseGated`] events out. Permits are shared by all connections
    /// and accumulate if released before they are needed.
    pub fn release(&self, n: usize) {
        let room = Semaphore::MAX_PERMITS.saturating_sub(self.shared.gate.available_permits());
        self.shared.gate.add_permits(n.min(room));
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

/// Accepts connections until aborted; each one is served by its own task.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            // E.g. out of file descriptors: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            stream,
            buf: BytesMut::with_capacity(8 * 1024),
            scratch: vec![0; SCRATCH],
            shared: Arc::clone(&shared),
            close: false,
            head_only: false,
        };
        conns.spawn(conn.run());
    }
}

/// Why a request could not be read.
#[derive(Clone, Copy)]
enum Fail {
    /// The peer closed or broke the connection: just drop it.
    Closed,
    /// The request is malformed: answer this status and close.
    Bad(u16, &'static str),
}

impl From<io::Error> for Fail {
    fn from(_: io::Error) -> Fail {
        Fail::Closed
    }
}

/// A parsed request head.
struct Head {
    method: String,
    target: String,
    /// Names lower-cased.
    headers: Vec<(String, String)>,
    content_length: Option<usize>,
    chunked: bool,
    keep_alive: bool,
    expect_continue: bool,
}

/// Parses a request head (up to and including its empty line).
fn parse_head(raw: &[u8]) -> Result<Head, Fail> {
    const BAD: Fail = Fail::Bad(400, "malformed request head");
    let text = std::str::from_utf8(raw).map_err(|_| BAD)?;
    let mut lines = text.trim_end_matches("\r\n").split("\r\n");
    let mut parts = lines.next().ok_or(BAD)?.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BAD);
    };
    if method.is_empty() || target.is_empty() || !version.starts_with("HTTP/1.") {
        return Err(BAD);
    }
    let http10 = version == "HTTP/1.0";
    let (mut content_length, mut chunked, mut other_coding) = (None, false, false);
    let (mut close, mut keep, mut expect_continue) = (false, false, false);
    let mut headers = Vec::with_capacity(16);
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(BAD)?;
        let value = value.trim_matches([' ', '\t']);
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(BAD);
        }
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "content-length" => {
                let n = value.parse::<usize>().map_err(|_| BAD)?;
                if content_length.is_some_and(|old| old != n) {
                    return Err(BAD);
                }
                content_length = Some(n);
            }
            "transfer-encoding" => {
                let last = value.rsplit(',').next().unwrap_or("").trim();
                chunked = last.eq_ignore_ascii_case("chunked");
                other_coding = !chunked;
            }
            "connection" => {
                for token in value.split(',').map(str::trim) {
                    close |= token.eq_ignore_ascii_case("close");
                    keep |= token.eq_ignore_ascii_case("keep-alive");
                }
            }
            "expect" => expect_continue = value.eq_ignore_ascii_case("100-continue"),
            _ => {}
        }
        headers.push((name, value.to_owned()));
    }
    if other_coding {
        return Err(Fail::Bad(501, "unsupported transfer-encoding"));
    }
    Ok(Head {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
        content_length,
        chunked,
        keep_alive: !close && (keep || !http10),
        expect_continue: expect_continue && !http10,
    })
}

/// Position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The size on a chunk-size line (extensions after ';' ignored).
fn parse_chunk_size(line: &[u8]) -> Option<usize> {
    let digits = line.split(|&b| b == b';').next()?;
    let digits = std::str::from_utf8(digits).ok()?.trim();
    let plausible = !digits.is_empty() && digits.len() <= 15 && !digits.starts_with('+');
    plausible.then(|| usize::from_str_radix(digits, 16).ok())?
}

/// Waits until the socket is readable and appends what one read gets to `buf` (Ok(0): EOF).
/// Cancel-safe: nothing is consumed before the final, synchronous read.
async fn fill_from(
    stream: &TcpStream,
    scratch: &mut [u8],
    buf: &mut BytesMut,
) -> io::Result<usize> {
    loop {
        stream.readable().await?;
        match stream.try_read(scratch) {
            Ok(n) => {
                buf.extend_from_slice(scratch.get(..n).unwrap_or_default());
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// One accepted connection. Requests are read through `buf`, which keeps any pipelined bytes.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    scratch: Vec<u8>,
    shared: Arc<Shared>,
    /// The current answer ends the connection (`connection: close`).
    close: bool,
    /// The current request is a HEAD: answers are heads only.
    head_only: bool,
}

impl Conn {
    /// Serves requests until the connection closes.
    async fn run(mut self) {
        loop {
            match self.serve_one().await {
                Ok(true) => {}
                Ok(false) | Err(Fail::Closed) => return,
                Err(Fail::Bad(status, message)) => {
                    (self.close, self.head_only) = (true, false);
                    let _ = self.send_json(status, &[], &error_json(message)).await;
                    return;
                }
            }
        }
    }

    /// Reads and answers one request; Ok(true) if the connection stays open.
    async fn serve_one(&mut self) -> Result<bool, Fail> {
        let Some(raw) = self.take_until(b"\r\n\r\n", MAX_HEAD, 431).await? else {
            return Ok(false);
        };
        let head = parse_head(&raw)?;
        self.shared.heads.fetch_add(1, Ordering::SeqCst);
        if head.expect_continue && (head.chunked || head.content_length.unwrap_or(0) > 0) {
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let (body, trailers) = if head.chunked {
            self.read_chunked().await?
        } else {
            let n = head.content_length.unwrap_or(0);
            if n > MAX_BODY {
                return Err(Fail::Bad(413, "request body too large"));
            }
            self.ensure(n).await?;
            (self.buf.split_to(n).freeze(), Vec::new())
        };
        let req = RecordedRequest {
            method: head.method,
            path: head.target,
            headers: head.headers,
            trailers,
            body,
            received_at: Instant::now(),
        };
        self.shared.complete(&req);
        let behavior = self.shared.next_behavior();
        (self.close, self.head_only) = (!head.keep_alive, req.method == "HEAD");
        match self.answer(&req, behavior).await {
            Ok(open) => Ok(open && head.keep_alive),
            Err(_) => {
                self.shared.note_peer_close();
                Ok(false)
            }
        }
    }

    /// Reads one more batch of bytes into `buf` (Ok(0): EOF).
    async fn fill(&mut self) -> io::Result<usize> {
        fill_from(&self.stream, &mut self.scratch, &mut self.buf).await
    }

    /// Takes from `buf` everything up to and including the first `delim`, reading as needed;
    /// more than `max` bytes before it is answered with `status`. Ok(None): EOF before any byte.
    async fn take_until(
        &mut self,
        delim: &[u8],
        max: usize,
        status: u16,
    ) -> Result<Option<Bytes>, Fail> {
        let mut from = 0;
        loop {
            let end = find(&self.buf[from..], delim).map(|i| from + i + delim.len());
            if end.unwrap_or(self.buf.len()) > max {
                return Err(Fail::Bad(status, "request head or chunk line too long"));
            }
            if let Some(end) = end {
                return Ok(Some(self.buf.split_to(end).freeze()));
            }
            from = self.buf.len().saturating_sub(delim.len() - 1);
            if self.fill().await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(Fail::Closed)
                };
            }
        }
    }

    /// A CRLF-terminated line of a chunked body, without the CRLF.
    async fn read_line(&mut self) -> Result<Bytes, Fail> {
        let mut line = self
            .take_until(b"\r\n", 8 * 1024, 400)
            .await?
            .ok_or(Fail::Closed)?;
        line.truncate(line.len() - 2);
        Ok(line)
    }

    /// Makes `buf` hold at least `n` bytes. A large shortfall is zeroed once and read in place,
    /// never past `n`, so a 100 MiB body costs one allocation and one memset. Not cancel-safe.
    async fn ensure(&mut self, n: usize) -> Result<(), Fail> {
        if n.saturating_sub(self.buf.len()) <= SCRATCH {
            while self.buf.len() < n {
                if self.fill().await? == 0 {
                    return Err(Fail::Closed);
                }
            }
            return Ok(());
        }
        let mut filled = self.buf.len();
        self.buf.resize(n, 0);
        while filled < n {
            self.stream.readable().await?;
            match self.stream.try_read(&mut self.buf[filled..]) {
                Ok(0) => return Err(Fail::Closed),
                Ok(k) => filled += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Reads and decodes a chunked body and its trailers.
    async fn read_chunked(&mut self) -> Result<(Bytes, Vec<(String, String)>), Fail> {
        let mut body = BytesMut::new();
        loop {
            let line = self.read_line().await?;
            let size = parse_chunk_size(&line).ok_or(Fail::Bad(400, "bad chunk size"))?;
            if size == 0 {
                break;
            }
            if size > MAX_BODY - body.len() {
                return Err(Fail::Bad(413, "request body too large"));
            }
            self.ensure(size + 2).await?;
            if self.buf[size..size + 2] != *b"\r\n" {
                return Err(Fail::Bad(400, "chunk not followed by CRLF"));
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.advance(size + 2);
        }
        let mut trailers = Vec::new();
        loop {
            let line = self.read_line().await?;
            if line.is_empty() {
                return Ok((body.freeze(), trailers));
            }
            let line = String::from_utf8_lossy(&line);
            let (name, value) = line.split_once(':').ok_or(Fail::Bad(400, "bad trailer"))?;
            trailers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }

    /// Runs `fut` while watching the socket: if the peer closes it first, records the close and
    /// returns None. Bytes the peer sends meanwhile (a pipelined request) are kept in `buf`.
    async fn guard<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return Some(out),
                read = fill_from(&self.stream, &mut self.scratch, &mut self.buf) => {
                    if !matches!(read, Ok(n) if n > 0) {
                        self.shared.note_peer_close();
                        return None;
                    }
                }
            }
        }
    }

    /// Writes all of `data`.
    async fn write(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            self.stream.writable().await?;
            match self.stream.try_write(data) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => data = data.get(n..).unwrap_or_default(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Answers `req` as `behavior` says; Ok(false) if the connection must close afterwards.
    /// Errors are write errors, i.e. the peer went away.
    async fn answer(&mut self, req: &RecordedRequest, behavior: Behavior) -> io::Result<bool> {
        let behavior = match behavior {
            Behavior::ForModel { model, behavior } => {
                let asked = req
                    .json()
                    .and_then(|v| v["model"].as_str().map(str::to_string));
                match asked.as_deref() == Some(model.as_str()) {
                    true => *behavior,
                    false => Behavior::OpenAi,
                }
            }
            other => other,
        };
        match behavior {
            Behavior::OpenAi => self.send_openai(req).await,
            Behavior::Json {
                status,
                headers,
                body,
            } => {
                let body = serde_json::to_vec(&body).unwrap_or_default();
                self.send_json(status, &headers, &body).await
            }
            Behavior::Raw {
                status,
                headers,
                body,
            } => self.send_json(status, &headers, &body).await,
            Behavior::Echo => self.send_json(200, &[], &echo(req)).await,
            Behavior::Sse {
                chunks,
                delay,
                done,
            } => {
                if !self.start_sse().await? {
                    return Ok(true);
                }
                for chunk in chunks.iter().filter(|c| !c.is_empty()) {
                    if !delay.is_zero() && self.guard(tokio::time::sleep(delay)).await.is_none() {
                        return Ok(false);
                    }
                    self.write(&frame(chunk)).await?;
                }
                self.write(&end_of_stream(done)).await?;
                Ok(true)
            }
            Behavior::SseGated { events } => {
                if !self.start_sse().await? {
                    return Ok(true);
                }
                let shared = Arc::clone(&self.shared);
                for (i, event) in events.iter().enumerate() {
                    if i > 0 {
                        match self.guard(shared.gate.acquire()).await {
                            Some(Ok(permit)) => permit.forget(),
                            _ => return Ok(false),
                        }
                    }
                    let event = match event.ends_with("\n\n") {
                        true => event.clone(),
                        false => format!("data: {event}\n\n"),
                    };
                    self.write(&frame(event.as_bytes())).await?;
                }
                self.write(&end_of_stream(true)).await?;
                Ok(true)
            }
            Behavior::ResetBeforeHeaders => {
                let _ = self.stream.set_zero_linger();
                Ok(false)
            }
            Behavior::ResetMidStream {
                events_before_reset,
            } => {
                self.start_sse().await?;
                for i in 0..events_before_reset {
                    self.write(&frame(chat_stream_event(i).as_bytes())).await?;
                }
                // Let the events arrive first: a reset makes the peer's kernel drop what it has
                // not read yet.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = self.stream.set_zero_linger();
                Ok(false)
            }
            Behavior::Stall => {
                self.guard(std::future::pending::<()>()).await;
                Ok(false)
            }
            Behavior::HeadThenClose => {
                let head = self.response_head(200, "application/json", Some(100), &[]);
                self.write(&head).await?;
                Ok(false)
            }
            Behavior::StallMidStream {
                events_before_stall,
            } => {
                self.start_sse().await?;
                for i in 0..events_before_stall {
                    self.write(&frame(chat_stream_event(i).as_bytes())).await?;
                }
                self.guard(std::future::pending::<()>()).await;
                Ok(false)
            }
            Behavior::SlowHeaders { delay } => {
                if self.guard(tokio::time::sleep(delay)).await.is_none() {
                    return Ok(false);
                }
                self.send_openai(req).await
            }
            Behavior::RefuseIf {
                field,
                contains,
                status,
                body,
            } => {
                let value = match field.as_str() {
                    ":path" => Some(req.path.as_str()),
                    name => req.header(name),
                };
                if value.is_some_and(|v| v.contains(&contains)) {
                    let body = serde_json::to_vec(&body).unwrap_or_default();
                    return self.send_json(status, &[], &body).await;
                }
                self.send_openai(req).await
            }
            Behavior::EchoUrlError { status } => {
                let message = format!("Invalid URL ({} {})", req.method, req.path);
                self.send_json(status, &[], &error_json(&message)).await
            }
            // Nested: not matched again.
            Behavior::ForModel { .. } => self.send_openai(req).await,
        }
    }

    /// Sends a JSON response in one write (only its head for HEAD, 204 and 304).
    async fn send_json(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> io::Result<bool> {
        let no_body = self.head_only || status == 204 || status == 304;
        let len = (status >= 200 && status != 204).then_some(body.len());
        let mut out = self.response_head(status, "application/json", len, headers);
        out.extend_from_slice(if no_body { &[] } else { body });
        self.write(&out).await?;
        Ok(true)
    }

    /// Sends SSE response headers; Ok(false) if that is all there is to send (HEAD).
    async fn start_sse(&self) -> io::Result<bool> {
        self.write(&self.response_head(200, SSE, None, &[])).await?;
        Ok(!self.head_only)
    }

    /// Sends the OpenAi behaviour's answer in one write.
    async fn send_openai(&self, req: &RecordedRequest) -> io::Result<bool> {
        match openai(req) {
            Ok((status, body)) => self.send_json(status, &[], &body).await,
            Err(framed) => {
                let mut out = self.response_head(200, SSE, None, &[]);
                out.extend_from_slice(if self.head_only { &[] } else { &framed });
                self.write(&out).await?;
                Ok(true)
            }
        }
    }

    /// A response head; `len` None means chunked for SSE, no length at all otherwise.
    fn response_head(
        &self,
        status: u16,
        content_type: &str,
        len: Option<usize>,
        extra: &[(String, String)],
    ) -> Vec<u8> {
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            429 => "Too Many Requests",
            500 => "Internal Server Error",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            _ => "Mock",
        };
        let mut h = String::with_capacity(192);
        let _ = write!(h, "HTTP/1.1 {status} {reason}\r\n");
        if !extra
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            let _ = write!(h, "content-type: {content_type}\r\n");
        }
        if let Some(n) = len {
            let _ = write!(h, "content-length: {n}\r\n");
        }
        if content_type == SSE {
            h.push_str("transfer-encoding: chunked\r\ncache-control: no-cache\r\n");
        }
        for (name, value) in extra {
            let _ = write!(h, "{name}: {value}\r\n");
        }
        if self.close {
            h.push_str("connection: close\r\n");
        }
        h.push_str("\r\n");
        h.into_bytes()
    }
}

/// `data` as one HTTP chunk.
fn frame(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 12);
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// The end of an SSE body: a `data: [DONE]` chunk if `done`, then the last (empty) chunk.
fn end_of_stream(done: bool) -> Vec<u8> {
    let mut out = if done {
        frame(DONE_EVENT.as_bytes())
    } else {
        Vec::new()
    };
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// An OpenAI error body.
fn error_json(message: &str) -> Vec<u8> {
    let error =
        json!({"message": message, "type": "invalid_request_error", "param": null, "code": null});
    json_bytes(&json!({ "error": error }))
}

fn json_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Appends `{"id":..,"object":..,"created":..,"model":MODEL_JSON,` to `out`.
fn obj_prefix(out: &mut String, id: &str, object: &str, model_json: &str) {
    let _ = write!(
        out,
        r#"{{"id":"{id}","object":"{object}","created":{CREATED},"model":{model_json},"#
    );
}

/// Appends a `data: {chat.completion.chunk}\n\n` event; `content_json` and `finish_json` are JSON,
/// `role` is empty or `"role":"assistant",`.
fn chat_event(
    out: &mut String,
    model_json: &str,
    content_json: &str,
    role: &str,
    finish_json: &str,
) {
    out.push_str("data: ");
    obj_prefix(out, "chatcmpl-mock", "chat.completion.chunk", model_json);
    let _ = write!(
        out,
        r#""choices":[{{"index":0,"delta":{{{role}"content":{content_json}}},"logprobs":null,"finish_reason":{finish_json}}}]}}"#
    );
    out.push_str("\n\n");
}

/// The OpenAi behaviour: Ok((status, JSON body)), or Err(whole SSE body, chunk-framed). Chat and
/// text completions are formatted directly, without building a JSON tree, to stay cheap.
fn openai(req: &RecordedRequest) -> Result<(u16, Vec<u8>), Vec<u8>> {
    let path = req.path.split('?').next().unwrap_or_default();
    let (chat, text) = (
        path.ends_with("/chat/completions"),
        path.ends_with("/completions"),
    );
    let (embeddings, models) = (path.ends_with("/embeddings"), path.ends_with("/models"));
    if !(text || embeddings || models) {
        return Ok((
            404,
            error_json(&format!("Invalid URL ({} {path})", req.method)),
        ));
    }
    let parsed = serde_json::from_slice::<Value>(&req.body).ok();
    let Some(body) = parsed
        .filter(Value::is_object)
        .or(models.then_some(Value::Null))
    else {
        return Ok((
            400,
            error_json("We could not parse the JSON body of your request."),
        ));
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(MOCK_MODEL);
    if models {
        let data =
            [json!({"id": model, "object": "model", "created": CREATED, "owned_by": "mock"})];
        return Ok((200, json_bytes(&json!({"object": "list", "data": data}))));
    }
    if embeddings {
        return Ok((200, embeddings_json(&body, model)));
    }
    let model_json = serde_json::to_string(model).unwrap_or_default();
    let (id, object) = match chat {
        true => ("chatcmpl-mock", "chat.completion"),
        false => ("cmpl-mock", "text_completion"),
    };
    let mut out = String::with_capacity(1024);
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        obj_prefix(&mut out, id, object, &model_json);
        out.push_str(match chat {
            true => r#""choices":[{"index":0,"message":{"role":"assistant","content":"Hello from mock"},"logprobs":null,"finish_reason":"stop"}],"#,
            false => r#""choices":[{"text":"Hello from mock","index":0,"logprobs":null,"finish_reason":"stop"}],"#,
        });
        let _ = write!(out, r#""usage":{USAGE}}}"#);
        return Ok((200, out.into_bytes()));
    }
    let mut framed = Vec::with_capacity(2048);
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool);
    for (i, word) in WORDS.iter().enumerate() {
        out.clear();
        let finish = if i + 1 == WORDS.len() {
            r#""stop""#
        } else {
            "null"
        };
        if chat {
            let role = if i == 0 { r#""role":"assistant","# } else { "" };
            chat_event(&mut out, &model_json, &format!("\"{word}\""), role, finish);
        } else {
            out.push_str("data: ");
            obj_prefix(&mut out, id, object, &model_json);
            let _ = write!(
                out,
                r#""choices":[{{"text":"{word}","index":0,"logprobs":null,"finish_reason":{finish}}}]}}"#
            );
            out.push_str("\n\n");
        }
        framed.extend_from_slice(&frame(out.as_bytes()));
    }
    if include_usage == Some(true) {
        out.clear();
        out.push_str("data: ");
        let object = if chat {
            "chat.completion.chunk"
        } else {
            object
        };
        obj_prefix(&mut out, id, object, &model_json);
        let _ = write!(out, "\"choices\":[],\"usage\":{USAGE}}}\n\n");
        framed.extend_from_slice(&frame(out.as_bytes()));
    }
    framed.extend_from_slice(&end_of_stream(true));
    Err(framed)
}

/// The embeddings answer: vector `i` is `[i + 1/16, i + 2/16, .., i + 8/16]`.
fn embeddings_json(body: &Value, model: &str) -> Vec<u8> {
    let inputs = match body.get("input") {
        Some(Value::Array(items)) if items.first().is_some_and(Value::is_number) => 1,
        Some(Value::Array(items)) => items.len(),
        _ => 1,
    };
    let vector = |i: usize| {
        (1..=8)
            .map(|j| i as f32 + j as f32 / 16.0)
            .collect::<Vec<f32>>()
    };
    let embedding = |i| json!({"object": "embedding", "index": i, "embedding": vector(i)});
    let data: Vec<Value> = (0..inputs).map(embedding).collect();
    let usage = json!({"prompt_tokens": 4 * inputs, "total_tokens": 4 * inputs});
    json_bytes(&json!({"object": "list", "data": data, "model": model, "usage": usage}))
}

/// The Echo behaviour's body.
fn echo(req: &RecordedRequest) -> Vec<u8> {
    let to_map = |fields: &[(String, String)]| {
        let mut map = serde_json::Map::new();
        for (name, value) in fields {
            match map.get_mut(name) {
                Some(Value::String(prev)) => *prev = format!("{prev}, {value}"),
                _ => drop(map.insert(name.clone(), Value::String(value.clone()))),
            }
        }
        map
    };
    let small = req.body.len() < 64 * 1024;
    let utf8 = small.then(|| std::str::from_utf8(&req.body).ok()).flatten();
    json_bytes(&json!({
        "method": req.method,
        "path": req.path,
        "headers": to_map(&req.headers),
        "trailers": to_map(&req.trailers),
        "body_len": req.body.len(),
        "body_fnv1a64": format!("{:016x}", fnv1a64(&req.body)),
        "body_utf8": utf8,
    }))
}
