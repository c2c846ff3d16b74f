//! A downstream session whose request body was read in full before the upstream was chosen.
//!
//! The body phase needs the whole JSON body first (model allow-lists; later cache keys, token
//! estimates, chat logs). Pingora can replay a pre-read body only through its retry buffer, and
//! that buffer is capped at 64 KiB: above it the body is silently never sent. So the body phase
//! swaps the client's session for this wrapper, which hands Pingora the complete body as the
//! retry buffer on every attempt (the first and any retry) and reports the body as done, while
//! everything else (response writing, timeouts, client address, the idle watch that notices a
//! client leaving) goes to the real session inside.
//!
//! The wrapper also carries the request's resilience (see `link.rs`): the body it replays is the
//! current attempt's (a fallback's `model`), the response head is held back until the first
//! body byte (so an attempt that fails before it can fail over unseen), and its idle watch doubles
//! as the timer for the stream deadlines.
//!
//! It also paces streams (`TOKEN_RATE_LIMIT`, `output_tokens_per_second`) event by event: a body
//! filter can only delay a whole upstream chunk, and upstreams (or Pingora's reads) often carry
//! several events in one, which then reached the client bunched. Here each SSE event of a write
//! goes out on its own, no sooner than the pacer allows.
//!
//! Pingora never reuses a connection whose session is custom. `logging` runs before the session
//! is finished, so there the wrapper gives the real session back (`restore`) and keep-alive
//! works as for any other request.

use super::ctx::{Pacer, RestoreSlot};
use super::link::{Deadline, Link};
use crate::cutoff::Watch;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use http::HeaderMap;
use pingora_core::protocols::http::custom::server::Session as CustomSession;
use pingora_core::protocols::http::custom::CustomMessageWrite;
use pingora_core::protocols::http::{HttpTask, ServerSession};
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::protocols::Digest;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::time::Sleep;

/// The wrapper. `inner` is `None` only after the hand-back (and, for an instant, in the
/// placeholder `install` swaps in): then reads answer "nothing" and writes fail, no panic.
pub(super) struct PrereadSession {
    inner: Option<ServerSession>,
    link: Arc<Link>,
    /// The response head, held until the first body byte (or the end of the response).
    held: Option<HttpTask>,
    restore: RestoreSlot,
    /// Answers `req_header` once the real session is gone: a copy of its head, taken when it
    /// goes (unless for good, see `HandBack::for_good`).
    detached_header: Option<RequestHeader>,
    /// The gateway's drain flag: `set_keepalive` is a no-op on a custom session, so this one
    /// turns keep-alive off on the real session before it writes a head (see `keepalive.rs`).
    draining: Arc<AtomicBool>,
    /// Output pacing, applied per SSE event once an event-stream head went out.
    pacer: Option<Pacer>,
    /// The response being written is an event stream.
    sse: bool,
    /// The stream deadlines' timer, kept across `read_body_or_idle` calls (Pingora makes a new
    /// call for every upstream chunk). It is armed no later than the link's next deadline and
    /// moved only when it fires early or the deadline comes sooner: one timer operation per idle
    /// period, not one per chunk.
    timer: Option<Pin<Box<Sleep>>>,
    /// The wait for a stop's cutoff, registered once (see `cutoff.rs`).
    cut: Option<Watch>,
}

impl PrereadSession {
    fn new(
        inner: Option<ServerSession>,
        link: Arc<Link>,
        restore: RestoreSlot,
        draining: Arc<AtomicBool>,
    ) -> Self {
        PrereadSession {
            inner,
            link,
            held: None,
            restore,
            detached_header: None,
            draining,
            pacer: None,
            sse: false,
            timer: None,
            cut: None,
        }
    }

    /// Make the timer fire no later than `at`.
    fn arm_timer(&mut self, at: Instant) {
        let at = tokio::time::Instant::from_std(at);
        match &mut self.timer {
            Some(t) if !t.is_elapsed() && t.deadline() <= at => {}
            Some(t) => t.as_mut().reset(at),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(at))),
        }
    }

    /// Note whether the head about to go out starts an event stream.
    fn note_head(&mut self, resp: &ResponseHeader) {
        self.sse = resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    }

    /// Write body bytes of a paced stream: each complete event after the pacer's wait (one
    /// token per event, openai-forward's unit), a trailing partial event at once.
    async fn write_paced(&mut self, data: Bytes, end: bool) -> Result<()> {
        let mut rest = data;
        if rest.is_empty() {
            self.writer()?
                .response_duplex_vec(vec![HttpTask::Body(Some(rest), end)])
                .await?;
            return Ok(());
        }
        while !rest.is_empty() {
            let (cut, complete) = match event_end(&rest) {
                Some(i) => (i, true),
                None => (rest.len(), false),
            };
            let piece = rest.split_to(cut);
            if complete {
                if let Some(wait) = self.pacer.as_mut().and_then(|p| p.delay(1)) {
                    tokio::time::sleep(wait).await;
                }
            }
            let last = end && rest.is_empty();
            self.link.on_write(Instant::now());
            self.writer()?
                .response_duplex_vec(vec![HttpTask::Body(Some(piece), last)])
                .await?;
        }
        Ok(())
    }

    /// The real session, for a write: with keep-alive off once the process drains.
    fn writer(&mut self) -> Result<&mut ServerSession> {
        let inner = self.inner.as_mut().ok_or_else(detached)?;
        if self.draining.load(Ordering::Relaxed) {
            inner.set_keepalive(None);
        }
        Ok(inner)
    }
}

fn detached() -> Box<Error> {
    Error::explain(
        ErrorType::InternalError,
        "the pre-read session was handed back",
    )
}

impl PrereadSession {
    /// `response_duplex_vec` for a paced stream: bodies event by event, the rest as they come.
    async fn write_tasks_paced(&mut self, tasks: Vec<HttpTask>) -> Result<bool> {
        let mut others = Vec::new();
        for task in tasks {
            match task {
                HttpTask::Body(Some(data), end) => {
                    if !others.is_empty() {
                        self.writer()?
                            .response_duplex_vec(std::mem::take(&mut others))
                            .await?;
                    }
                    self.write_paced(data, end).await?;
                }
                other => others.push(other),
            }
        }
        if others.is_empty() {
            return Ok(false);
        }
        self.writer()?.response_duplex_vec(others).await
    }
}

/// Replace the proxy's downstream session with the wrapper replaying the link's body.
pub(super) fn install(
    downstream: &mut Box<ServerSession>,
    link: Arc<Link>,
    draining: &Arc<AtomicBool>,
    pacer: Option<Pacer>,
) -> RestoreSlot {
    let slot: RestoreSlot = Arc::default();
    // The placeholder only fills the slot while the real session moves (nothing reads it): no
    // head, no link of its own. (A copy of the request head is taken only if the real session
    // leaves before `logging` takes it back for good: see `finish_custom`.)
    let empty = PrereadSession::new(
        None,
        Arc::clone(&link),
        Arc::clone(&slot),
        Arc::clone(draining),
    );
    let placeholder = ServerSession::new_custom(Box::new(empty));
    let real = std::mem::replace(&mut **downstream, placeholder);
    let mut session =
        PrereadSession::new(Some(real), link, Arc::clone(&slot), Arc::clone(draining));
    session.pacer = pacer;
    **downstream = ServerSession::new_custom(Box::new(session));
    slot
}

/// The head a wrapper without a session answers with when it never had one to copy (the
/// placeholder `install` swaps in for an instant).
fn empty_header() -> &'static RequestHeader {
    static EMPTY: std::sync::OnceLock<RequestHeader> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| RequestHeader::from(http::Request::new(()).into_parts().0))
}

/// The end of the first SSE event in `data` (just past its blank line), if it ends there.
fn event_end(data: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\n', data).find_map(|i| match &data[i + 1..] {
        [b'\n', ..] => Some(i + 2),
        [b'\r', b'\n', ..] => Some(i + 3),
        _ => None,
    })
}

/// Put the real session back (from `logging`), so the connection can be kept alive.
pub(super) async fn restore(downstream: &mut Box<ServerSession>, slot: &RestoreSlot) {
    if let Some(custom) = downstream.as_custom_mut() {
        // Our wrapper moves its inner session into the slot here; it is replaced just below,
        // so it need not keep a copy of the head.
        slot.for_good.store(true, Ordering::Relaxed);
        let _ = custom.finish_custom().await;
    }
    let real = slot
        .session
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(real) = real {
        **downstream = real;
    }
}

#[async_trait]
impl CustomSession for PrereadSession {
    fn req_header(&self) -> &RequestHeader {
        match (&self.inner, &self.detached_header) {
            (Some(s), _) => s.req_header(),
            (None, Some(header)) => header,
            (None, None) => empty_header(),
        }
    }
    fn req_header_mut(&mut self) -> &mut RequestHeader {
        match &mut self.inner {
            Some(s) => s.req_header_mut(),
            None => self
                .detached_header
                .get_or_insert_with(|| empty_header().clone()),
        }
    }
    /// The body was consumed by the pre-read; Pingora gets it as the retry buffer instead.
    async fn read_body_bytes(&mut self) -> Result<Option<Bytes>> {
        Ok(None)
    }
    async fn drain_request_body(&mut self) -> Result<()> {
        Ok(())
    }
    async fn write_response_header(&mut self, resp: Box<ResponseHeader>, _end: bool) -> Result<()> {
        self.held = None;
        self.note_head(&resp);
        self.link.on_write(Instant::now());
        self.writer()?.write_response_header(resp).await
    }
    async fn write_response_header_ref(&mut self, resp: &ResponseHeader, _end: bool) -> Result<()> {
        self.held = None;
        self.note_head(resp);
        self.link.on_write(Instant::now());
        self.writer()?.write_response_header_ref(resp).await
    }
    async fn write_body(&mut self, data: Bytes, end: bool) -> Result<()> {
        if let Some(held) = self.held.take() {
            self.writer()?.response_duplex_vec(vec![held]).await?;
        }
        if self.sse && self.pacer.is_some() {
            return self.write_paced(data, end).await;
        }
        self.link.on_write(Instant::now());
        self.inner
            .as_mut()
            .ok_or_else(detached)?
            .write_response_body(data, end)
            .await
    }
    async fn write_trailers(&mut self, trailers: HeaderMap) -> Result<()> {
        self.inner
            .as_mut()
            .ok_or_else(detached)?
            .write_response_trailers(trailers)
            .await
    }
    /// The proxy's writes. Until a body byte (or the end) comes, a response head is held, not
    /// written: the attempt may still fail over (see `link.rs`).
    async fn response_duplex_vec(&mut self, mut tasks: Vec<HttpTask>) -> Result<bool> {
        if tasks.iter().any(|t| matches!(t, HttpTask::Header(..))) {
            // A new attempt's head: whatever an abandoned attempt left held is gone.
            self.held = None;
        }
        let carries_bytes = tasks.iter().any(|t| match t {
            HttpTask::Header(_, end) => *end,
            HttpTask::Body(data, end) | HttpTask::UpgradedBody(data, end) => {
                *end || data.as_ref().is_some_and(|d| !d.is_empty())
            }
            HttpTask::Trailer(_) | HttpTask::Done => true,
            HttpTask::Failed(_) => false,
        });
        if !carries_bytes && !self.link.flushed() {
            let failed = tasks.iter().any(|t| matches!(t, HttpTask::Failed(_)));
            if !failed {
                for task in tasks {
                    if let HttpTask::Header(..) = task {
                        self.held = Some(task);
                    }
                }
                return Ok(false);
            }
            // The attempt failed before its first byte: the held head is dropped with it, and so
            // is a head that came in the same batch as the failure (it must never be written:
            // another attempt may answer).
            self.held = None;
            tasks.retain(|t| !matches!(t, HttpTask::Header(..)));
        } else if carries_bytes {
            if let Some(held) = self.held.take() {
                tasks.insert(0, held);
            }
            self.link.on_write(Instant::now());
        }
        for task in &tasks {
            if let HttpTask::Header(resp, _) = task {
                self.note_head(resp);
            }
        }
        if self.sse && self.pacer.is_some() {
            return self.write_tasks_paced(tasks).await;
        }
        self.writer()?.response_duplex_vec(tasks).await
    }
    fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        if let Some(s) = &mut self.inner {
            s.set_read_timeout(timeout)
        }
    }
    fn get_read_timeout(&self) -> Option<Duration> {
        self.inner.as_ref()?.get_read_timeout()
    }
    fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        if let Some(s) = &mut self.inner {
            s.set_write_timeout(timeout)
        }
    }
    fn get_write_timeout(&self) -> Option<Duration> {
        self.inner.as_ref()?.get_write_timeout()
    }
    fn set_total_drain_timeout(&mut self, timeout: Option<Duration>) {
        if let Some(s) = &mut self.inner {
            s.set_total_drain_timeout(timeout)
        }
    }
    fn get_total_drain_timeout(&self) -> Option<Duration> {
        self.inner.as_ref()?.get_total_drain_timeout()
    }
    fn request_summary(&self) -> String {
        self.inner
            .as_ref()
            .map(|s| s.request_summary())
            .unwrap_or_default()
    }
    fn response_written(&self) -> Option<&ResponseHeader> {
        self.inner.as_ref()?.response_written()
    }
    async fn shutdown(&mut self, _code: u32, _ctx: &str) {
        if let Some(s) = &mut self.inner {
            s.shutdown().await
        }
    }
    /// A response cut mid-way must look cut: the real session aborts the connection.
    async fn abandon(&mut self, _ctx: &str) {
        if let Some(s) = &mut self.inner {
            s.shutdown().await
        }
    }
    fn is_body_done(&mut self) -> bool {
        true
    }
    async fn finish(&mut self) -> Result<()> {
        self.inner
            .as_mut()
            .ok_or_else(detached)?
            .finish_body()
            .await
    }
    fn is_body_empty(&mut self) -> bool {
        self.link.body().is_empty()
    }
    /// Watches the client connection for a close while the upstream works, and the attempt's
    /// deadline: past it, this poll fails and so does the attempt (see `link.rs`).
    async fn read_body_or_idle(&mut self, no_body_expected: bool) -> Result<Option<Bytes>> {
        let mut deadline = self.link.next_deadline();
        if deadline.is_none() && self.link.cutoff().is_none() {
            let inner = self.inner.as_mut().ok_or_else(detached)?;
            return inner.read_body_or_idle(no_body_expected).await;
        }
        if let Some((at, _)) = deadline {
            self.arm_timer(at);
        }
        if self.cut.is_none() {
            self.cut = self.link.cutoff().map(|c| c.watch());
        }
        let PrereadSession {
            inner,
            link,
            timer,
            cut,
            ..
        } = self;
        let inner = inner.as_mut().ok_or_else(detached)?;
        let read = inner.read_body_or_idle(no_body_expected);
        let mut read = std::pin::pin!(read);
        let which = loop {
            let tick = async {
                match (deadline, timer.as_mut()) {
                    (Some(_), Some(t)) => t.as_mut().await,
                    _ => std::future::pending().await,
                }
            };
            let cutoff = std::future::poll_fn(|cx| match cut.as_mut() {
                Some(w) => w.poll_raised(cx),
                None => Poll::Pending,
            });
            tokio::select! {
                read = &mut read => return read,
                () = tick => {}
                () = cutoff => break Deadline::Shutdown,
            }
            // The timer fired: the deadline is due if the timer was set for it, else (it was set
            // for an earlier one the stream has since moved past) it is re-armed for it.
            let (Some((at, which)), Some(t)) = (deadline, timer.as_mut()) else {
                deadline = None;
                continue;
            };
            let at_tokio = tokio::time::Instant::from_std(at);
            if t.deadline() >= at_tokio {
                break which;
            }
            t.as_mut().reset(at_tokio);
            deadline = Some((at, which));
        };
        link.fire(which);
        self.held = None;
        Err(Error::explain(ErrorType::ReadTimedout, which.as_str()))
    }
    fn body_bytes_sent(&self) -> usize {
        self.inner.as_ref().map_or(0, |s| s.body_bytes_sent())
    }
    fn body_bytes_read(&self) -> usize {
        self.inner.as_ref().map_or(0, |s| s.body_bytes_read())
    }
    fn digest(&self) -> Option<&Digest> {
        self.inner.as_ref()?.digest()
    }
    fn digest_mut(&mut self) -> Option<&mut Digest> {
        self.inner.as_mut()?.digest_mut()
    }
    fn client_addr(&self) -> Option<&SocketAddr> {
        self.inner.as_ref()?.client_addr()
    }
    fn server_addr(&self) -> Option<&SocketAddr> {
        self.inner.as_ref()?.server_addr()
    }
    fn pseudo_raw_h1_request_header(&self) -> Bytes {
        self.inner
            .as_ref()
            .map(|s| s.to_h1_raw())
            .unwrap_or_default()
    }
    fn enable_retry_buffering(&mut self) {}
    fn retry_buffer_truncated(&self) -> bool {
        false
    }
    /// The whole body (as the current attempt sends it), on every attempt.
    fn get_retry_buffer(&self) -> Option<Bytes> {
        let body = self.link.body();
        (!body.is_empty()).then_some(body)
    }
    /// The hand-back (see `restore`): move the real session out to the slot. Pingora also
    /// calls this after writing its own error answer (a cache failure), and may then still ask
    /// for the request head (its error log): a copy stays, unless `logging` takes the session
    /// back for good.
    async fn finish_custom(&mut self) -> Result<()> {
        if let Some(inner) = self.inner.take() {
            if !self.restore.for_good.load(Ordering::Relaxed) {
                self.detached_header = Some(inner.req_header().clone());
            }
            *self
                .restore
                .session
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(inner);
        }
        Ok(())
    }
    fn take_custom_message_reader(
        &mut self,
    ) -> Option<Box<dyn Stream<Item = Result<Bytes>> + Unpin + Send + Sync + 'static>> {
        None
    }
    fn restore_custom_message_reader(
        &mut self,
        _reader: Box<dyn Stream<Item = Result<Bytes>> + Unpin + Send + Sync + 'static>,
    ) -> Result<()> {
        Err(Error::explain(
            ErrorType::InternalError,
            "no custom messages",
        ))
    }
    fn take_custom_message_writer(&mut self) -> Option<Box<dyn CustomMessageWrite>> {
        None
    }
    fn restore_custom_message_writer(
        &mut self,
        _writer: Box<dyn CustomMessageWrite>,
    ) -> Result<()> {
        Err(Error::explain(
            ErrorType::InternalError,
            "no custom messages",
        ))
    }
}
