//! A load client for many concurrent, slow SSE streams (`bench/streams.sh`): it opens `--streams`
//! connections to one URL, spread over `--ramp-ms`, and on each sends `--requests` POSTs in turn
//! (keep-alive), reading every answer to its end. It records, per request, the time from the
//! request's start (connect included, for the first) to the first SSE event, and every gap
//! between two events' arrivals; and it checks that every event arrives once, whole and in
//! order: the mock upstream (`mock_upstream --stream`) numbers its events `"t0 "`, `"t1 "`, … in
//! their delta content, so a lost, repeated, reordered or merged event is caught, as is a stream
//! that ends without `data: [DONE]` or with anything after it.
//!
//! ```text
//! stream_load --url http://127.0.0.1:8000/v1/chat/completions --streams 1000 --events 200
//!     [--requests 1] [--ramp-ms 2000] [--model stream-bench] [--prompt-bytes 0] [--json]
//!     [--watch-pid PID] [--timeout-s 120] [--header 'Name: value']...
//! ```
//!
//! `--json` sends `"stream": false` and expects a JSON answer with a Content-Length;
//! `--prompt-bytes` pads the user message to that size (a large prompt). `--watch-pid` samples
//! that process (the proxy under test) every 100 ms: its CPU time over the whole run and its RSS
//! before the first connection and, at most, while every stream was open at once; and how long
//! its threads waited for a CPU (other work on a shared machine).
//!
//! It prints one line to stdout, `RESULT key=value ...` (times in µs), and a summary and the first
//! errors to stderr; the exit status is 1 if any request failed. Raw TCP and hand-written
//! HTTP/1.1 parsing on a single-threaded runtime keep its own cost per event small, so it can
//! share a core with the mock.

// Test and benchmark code may unwrap, expect and panic (a failed assumption is a failed run),
// and its helpers are `pub` for the modules that share them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    unreachable_pub
)]

use std::process::exit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const USAGE: &str = "usage: stream_load --url http://HOST:PORT/PATH [--streams N] [--events N] \
[--requests N] [--ramp-ms MS] [--model NAME] [--prompt-bytes N] [--json] [--watch-pid PID] \
[--timeout-s S] [--header 'Name: value']...";

fn fail(message: &str) -> ! {
    eprintln!("stream_load: {message}\n{USAGE}");
    exit(2)
}

#[derive(Clone)]
struct Args {
    host: String,
    path: String,
    streams: usize,
    events: usize,
    requests: usize,
    ramp: Duration,
    model: String,
    prompt_bytes: usize,
    json: bool,
    watch_pid: Option<u32>,
    timeout: Duration,
    headers: Vec<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        host: String::new(),
        path: String::new(),
        streams: 100,
        events: 200,
        requests: 1,
        ramp: Duration::from_millis(2000),
        model: "stream-bench".into(),
        prompt_bytes: 0,
        json: false,
        watch_pid: None,
        timeout: Duration::from_secs(120),
        headers: vec!["Authorization: Bearer sk-bench".into()],
    };
    let mut url = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--json" {
            a.json = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            exit(0);
        }
        let value = args
            .next()
            .unwrap_or_else(|| fail(&format!("{flag} needs a value")));
        let num = |v: &str| -> u64 {
            v.parse()
                .unwrap_or_else(|_| fail(&format!("{flag}: bad number {v:?}")))
        };
        match flag.as_str() {
            "--url" => url = Some(value),
            "--streams" => a.streams = num(&value).max(1) as usize,
            "--events" => a.events = num(&value) as usize,
            "--requests" => a.requests = num(&value).max(1) as usize,
            "--ramp-ms" => a.ramp = Duration::from_millis(num(&value)),
            "--model" => a.model = value,
            "--prompt-bytes" => a.prompt_bytes = num(&value) as usize,
            "--watch-pid" => a.watch_pid = Some(num(&value) as u32),
            "--timeout-s" => a.timeout = Duration::from_secs(num(&value)),
            "--header" => a.headers.push(value),
            _ => fail(&format!("unknown argument {flag:?}")),
        }
    }
    let url = url.unwrap_or_else(|| fail("--url is required"));
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| fail("only http:// URLs"));
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    (a.host, a.path) = (
        host.to_owned(),
        if path.is_empty() { "/" } else { path }.to_owned(),
    );
    a
}

/// The request bytes, shared by every connection.
fn request_bytes(a: &Args) -> Vec<u8> {
    let pad = "x".repeat(a.prompt_bytes);
    let body = format!(
        r#"{{"model":"{}","stream":{},"messages":[{{"role":"user","content":"Count.{pad}"}}]}}"#,
        a.model, !a.json
    );
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        a.path,
        a.host,
        body.len()
    );
    for h in &a.headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// What one connection measured.
#[derive(Default)]
struct Outcome {
    ok: usize,
    errors: Vec<String>,
    first_event_us: Vec<u32>,
    gaps_us: Vec<u32>,
    events: usize,
    /// Events that arrived in the same read as the one before (their gap is 0).
    coalesced: usize,
    bytes_in: u64,
    bytes_out: u64,
}

/// Shared progress, for the RSS sampler: streams that received a first event / finished.
#[derive(Default)]
struct Progress {
    started: AtomicUsize,
    finished: AtomicUsize,
}

/// Reads one HTTP/1.1 answer at a time off a connection.
struct Reader {
    stream: TcpStream,
    raw: Vec<u8>,
    /// Read position in `raw` (bytes before it are consumed).
    pos: usize,
    bytes_in: u64,
    /// When the last read returned: what is buffered arrived then.
    last_read: Instant,
}

impl Reader {
    /// Reads more bytes; returns when they arrived. EOF is an error.
    async fn fill(&mut self) -> Result<Instant, String> {
        if self.pos > 0 && self.pos == self.raw.len() {
            self.raw.clear();
            self.pos = 0;
        } else if self.pos > 16 * 1024 {
            self.raw.drain(..self.pos);
            self.pos = 0;
        }
        let len = self.raw.len();
        self.raw.resize(len + 16 * 1024, 0);
        let n = self.stream.read(&mut self.raw[len..]).await;
        let at = Instant::now();
        self.last_read = at;
        let n = n.map_err(|e| format!("read: {e}"))?;
        self.raw.truncate(len + n);
        self.bytes_in += n as u64;
        if n == 0 {
            return Err("connection closed mid-answer".into());
        }
        Ok(at)
    }

    fn unread(&self) -> &[u8] {
        &self.raw[self.pos..]
    }

    /// The response head: (status, content-length, chunked). Times are not needed here.
    async fn head(&mut self) -> Result<(u16, Option<usize>, bool), String> {
        let end = loop {
            if let Some(i) = memmem::find(self.unread(), b"\r\n\r\n") {
                break i;
            }
            self.fill().await?;
        };
        let text = String::from_utf8_lossy(&self.unread()[..end]).into_owned();
        self.pos += end + 4;
        let mut lines = text.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line in {text:?}"))?;
        let (mut len, mut chunked) = (None, false);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                len = value.parse().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
        Ok((status, len, chunked))
    }

    /// Reads a Content-Length body; returns it.
    async fn body(&mut self, len: usize) -> Result<Vec<u8>, String> {
        while self.unread().len() < len {
            self.fill().await?;
        }
        let body = self.unread()[..len].to_vec();
        self.pos += len;
        Ok(body)
    }
}

/// Checks SSE events as they arrive: each `data: {chunk}` must carry delta content `"t{i} "` for
/// the next `i`, then `data: [DONE]`, then nothing.
struct EventCheck {
    next: usize,
    done: bool,
}

impl EventCheck {
    fn event(&mut self, event: &[u8]) -> Result<(), String> {
        if self.done {
            return Err(format!(
                "event after [DONE]: {:?}",
                String::from_utf8_lossy(event)
            ));
        }
        if event == b"data: [DONE]" {
            self.done = true;
            return Ok(());
        }
        let data_lines = memmem::find_iter(event, b"data:").count();
        if data_lines != 1 || !event.starts_with(b"data: {") {
            return Err(format!(
                "event {} malformed or merged ({data_lines} data lines): {:?}",
                self.next,
                String::from_utf8_lossy(&event[..event.len().min(120)])
            ));
        }
        let tag = b"\"content\":\"t";
        let at = memmem::find(event, tag).map(|i| i + tag.len());
        let digits = at.map(|i| {
            let rest = &event[i..];
            let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            (&rest[..n], rest.get(n) == Some(&b' '))
        });
        let got = match digits {
            Some((d, true)) => std::str::from_utf8(d)
                .ok()
                .and_then(|s| s.parse::<usize>().ok()),
            _ => None,
        };
        match got {
            Some(i) if i == self.next => {
                self.next += 1;
                Ok(())
            }
            Some(i) => Err(format!("event t{i} arrived where t{} was due", self.next)),
            None => Err(format!("event {} has no \"t<N> \" content", self.next)),
        }
    }
}

/// Reads a chunked SSE body, checking its events; records the first event's time and the gaps.
async fn read_sse(
    r: &mut Reader,
    t0: Instant,
    events: usize,
    out: &mut Outcome,
    progress: &Progress,
    first_request: bool,
) -> Result<(), String> {
    let mut check = EventCheck {
        next: 0,
        done: false,
    };
    let mut sse: Vec<u8> = Vec::with_capacity(1024);
    let mut last: Option<Instant> = None;
    // Events already buffered (read with the head) arrived with the last read.
    let mut at = r.last_read;
    // Chunked decoding state: bytes left in the current chunk, or None when at a size line.
    let mut in_chunk: Option<usize> = None;
    let mut ended = false;
    loop {
        // Decode what is buffered.
        loop {
            match in_chunk {
                None => {
                    let Some(i) = memmem::find(r.unread(), b"\r\n") else {
                        break;
                    };
                    let line = &r.unread()[..i];
                    let size_hex = line.split(|&b| b == b';').next().unwrap_or_default();
                    let size = std::str::from_utf8(size_hex)
                        .ok()
                        .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                        .ok_or_else(|| format!("bad chunk size line {line:?}"))?;
                    r.pos += i + 2;
                    if size == 0 {
                        ended = true;
                        break;
                    }
                    in_chunk = Some(size + 2);
                }
                Some(left) => {
                    let avail = r.unread().len();
                    if avail == 0 {
                        break;
                    }
                    let take = avail.min(left);
                    // The chunk's data, without its trailing CRLF.
                    let data_end = take.min(left.saturating_sub(2));
                    sse.extend_from_slice(&r.unread()[..data_end]);
                    r.pos += take;
                    in_chunk = if take == left {
                        None
                    } else {
                        Some(left - take)
                    };
                }
            }
        }
        // Split whole events off the SSE buffer.
        let mut from = 0;
        while let Some(i) = memmem::find(&sse[from..], b"\n\n") {
            let event = &sse[from..from + i];
            from += i + 2;
            if event.is_empty() {
                continue;
            }
            check.event(event)?;
            if event == b"data: [DONE]" {
                continue;
            }
            out.events += 1;
            match last {
                None => {
                    out.first_event_us
                        .push(at.duration_since(t0).as_micros().min(u32::MAX as u128) as u32);
                    if first_request {
                        progress.started.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(prev) => {
                    let gap = at.duration_since(prev).as_micros().min(u32::MAX as u128) as u32;
                    out.coalesced += usize::from(gap == 0);
                    out.gaps_us.push(gap);
                }
            }
            last = Some(at);
        }
        sse.drain(..from);
        if ended {
            // Trailers (none expected): up to the empty line.
            let end = loop {
                if let Some(i) = memmem::find(r.unread(), b"\r\n") {
                    break i;
                }
                r.fill().await?;
            };
            r.pos += end + 2;
            if !sse.is_empty() {
                return Err(format!("{} bytes of a partial event at the end", sse.len()));
            }
            if !check.done || check.next != events {
                let done = if check.done { "" } else { ", without [DONE]" };
                return Err(format!(
                    "stream ended after {} of {events} events{done}",
                    check.next
                ));
            }
            return Ok(());
        }
        at = r.fill().await?;
    }
}

/// One connection: `requests` answers in turn.
async fn connection(
    a: Arc<Args>,
    request: Arc<Vec<u8>>,
    progress: Arc<Progress>,
    start_at: tokio::time::Instant,
) -> Outcome {
    tokio::time::sleep_until(start_at).await;
    let mut out = Outcome {
        gaps_us: Vec::with_capacity(a.events * a.requests),
        ..Outcome::default()
    };
    let t0 = Instant::now();
    let stream = match TcpStream::connect(&a.host).await {
        Ok(s) => s,
        Err(e) => {
            out.errors.push(format!("connect: {e}"));
            progress.started.fetch_add(1, Ordering::Relaxed);
            progress.finished.fetch_add(1, Ordering::Relaxed);
            return out;
        }
    };
    let _ = stream.set_nodelay(true);
    let mut r = Reader {
        stream,
        raw: Vec::with_capacity(16 * 1024),
        pos: 0,
        bytes_in: 0,
        last_read: t0,
    };
    for n in 0..a.requests {
        let t = if n == 0 { t0 } else { Instant::now() };
        let done = tokio::time::timeout(
            a.timeout,
            one_request(&a, &request, &mut r, t, &mut out, &progress, n == 0),
        )
        .await;
        let result = done.unwrap_or_else(|_| Err(format!("timed out after {:?}", a.timeout)));
        out.bytes_out += request.len() as u64;
        match result {
            Ok(()) => out.ok += 1,
            Err(e) => {
                out.errors.push(e);
                if n == 0 && out.first_event_us.is_empty() {
                    progress.started.fetch_add(1, Ordering::Relaxed);
                }
                break;
            }
        }
    }
    out.bytes_in = r.bytes_in;
    progress.finished.fetch_add(1, Ordering::Relaxed);
    out
}

async fn one_request(
    a: &Args,
    request: &[u8],
    r: &mut Reader,
    t0: Instant,
    out: &mut Outcome,
    progress: &Progress,
    first: bool,
) -> Result<(), String> {
    r.stream
        .write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let (status, len, chunked) = r.head().await?;
    if status != 200 {
        let body = match len {
            Some(n) => r.body(n.min(4096)).await.unwrap_or_default(),
            None => Vec::new(),
        };
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    if a.json {
        let n = len.ok_or("JSON answer without Content-Length")?;
        let body = r.body(n).await?;
        out.first_event_us
            .push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
        if first {
            progress.started.fetch_add(1, Ordering::Relaxed);
        }
        if memmem::find(&body, b"\"chat.completion\"").is_none() {
            return Err("JSON answer is not a chat.completion".into());
        }
        return Ok(());
    }
    if !chunked {
        return Err("SSE answer not chunked".into());
    }
    read_sse(r, t0, a.events, out, progress, first).await
}

/// utime + stime (clock ticks) and VmRSS (KiB) of `pid`.
fn proc_sample(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .ok()?;
    Some((ticks, rss))
}

/// Time the threads of `pid` spent runnable but waiting for a CPU (ns, summed over threads from
/// `/proc/PID/task/*/schedstat`): on a shared machine, how much of the latency is other work.
fn run_queue_wait_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let wait = |e: std::fs::DirEntry| -> Option<u64> {
        let stat = std::fs::read_to_string(e.path().join("schedstat")).ok()?;
        stat.split(' ').nth(1)?.parse().ok()
    };
    tasks.flatten().filter_map(wait).sum()
}

/// Percentile `p` (0–100) of sorted `v` (nearest rank), 0 if empty.
fn pct(v: &[u32], p: f64) -> u32 {
    if v.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn main() {
    let a = Arc::new(parse_args());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("runtime: {e}")));
    let code = rt.block_on(run(a));
    exit(code)
}

async fn run(a: Arc<Args>) -> i32 {
    let request = Arc::new(request_bytes(&a));
    let progress = Arc::new(Progress::default());
    // The watched process before the first connection.
    let before = a.watch_pid.and_then(proc_sample);
    let wait_before = a.watch_pid.map_or(0, run_queue_wait_ns);
    let clk_tck = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    let start = tokio::time::Instant::now();
    let wall0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for k in 0..a.streams {
        let offset = a.ramp.mul_f64(k as f64 / a.streams as f64);
        set.spawn(connection(
            Arc::clone(&a),
            Arc::clone(&request),
            Arc::clone(&progress),
            start + offset,
        ));
    }
    // Sample the watched process while every stream is open (all started, none finished).
    let (mut steady_rss, mut steady_samples) = (0u64, 0u32);
    let mut sampler = tokio::time::interval(Duration::from_millis(100));
    let mut outcomes = Vec::with_capacity(a.streams);
    while !set.is_empty() {
        tokio::select! {
            joined = set.join_next() => {
                if let Some(Ok(o)) = joined { outcomes.push(o) }
            }
            _ = sampler.tick() => {
                let all_open = progress.started.load(Ordering::Relaxed) == a.streams
                    && progress.finished.load(Ordering::Relaxed) == 0;
                if let (true, Some(pid)) = (all_open, a.watch_pid) {
                    if let Some((_, rss)) = proc_sample(pid) {
                        steady_rss = steady_rss.max(rss);
                        steady_samples += 1;
                    }
                }
            }
        }
    }
    let wall = wall0.elapsed();
    let after = a.watch_pid.and_then(proc_sample);
    let wait_ms = a
        .watch_pid
        .map_or(0, run_queue_wait_ns)
        .saturating_sub(wait_before)
        / 1_000_000;

    let mut first: Vec<u32> = Vec::with_capacity(a.streams * a.requests);
    let mut gaps: Vec<u32> = Vec::with_capacity(a.streams * a.requests * a.events);
    let (mut ok, mut events, mut coalesced, mut bytes_in, mut bytes_out) = (0, 0, 0, 0u64, 0u64);
    let mut errors = Vec::new();
    for o in outcomes {
        ok += o.ok;
        events += o.events;
        coalesced += o.coalesced;
        bytes_in += o.bytes_in;
        bytes_out += o.bytes_out;
        first.extend_from_slice(&o.first_event_us);
        gaps.extend_from_slice(&o.gaps_us);
        errors.extend(o.errors);
    }
    first.sort_unstable();
    gaps.sort_unstable();
    let failed = a.streams * a.requests - ok;
    let (cpu_ms, rss_before) = match (before, after) {
        (Some((t0, rss0)), Some((t1, _))) => ((t1 - t0) * 1000 / clk_tck, rss0),
        _ => (0, 0),
    };
    // Our own CPU time: if it nears the wall time, the load generator was the bottleneck.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let self_cpu_ms = (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) as u64 * 1000
        + (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) as u64 / 1000;
    println!(
        "RESULT ok={ok} failed={failed} events={events} coalesced={coalesced} \
first_p50={} first_p99={} first_max={} gap_p50={} gap_p99={} gap_p999={} gap_max={} \
wall_ms={} bytes_in={bytes_in} bytes_out={bytes_out} cpu_ms={cpu_ms} rss_before_kib={rss_before} \
rss_steady_kib={steady_rss} steady_samples={steady_samples} self_cpu_ms={self_cpu_ms} \
run_queue_wait_ms={wait_ms}",
        pct(&first, 50.0),
        pct(&first, 99.0),
        first.last().copied().unwrap_or(0),
        pct(&gaps, 50.0),
        pct(&gaps, 99.0),
        pct(&gaps, 99.9),
        gaps.last().copied().unwrap_or(0),
        wall.as_millis(),
    );
    eprintln!(
        "stream_load: {ok} ok, {failed} failed, {events} events ({coalesced} coalesced) in {:.1} s",
        wall.as_secs_f64()
    );
    errors.sort();
    errors.dedup();
    for e in errors.iter().take(5) {
        eprintln!("stream_load: error: {e}");
    }
    i32::from(failed > 0)
}
