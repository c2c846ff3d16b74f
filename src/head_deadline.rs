//! A deadline on reading each request head (`server.header_timeout`), against slow-loris
//! clients.
//!
//! Pingora 0.9.1 bounds each read of a request head (by the keep-alive timeout, 60 s), not the
//! head as a whole: a client sending one byte every few seconds holds a connection, and a
//! worker's attention, for as long as it likes. There is no hook around the head read, so the
//! service's app is wrapped (`HeadDeadlineApp`) and every HTTP/1 connection's stream with it
//! (`DeadlineStream`): while a head is being read, a read that would go past the deadline fails
//! with `TimedOut` and Pingora closes the connection. The proxy says where heads end: the
//! deadline is lifted in `early_request_filter` (the head is complete; the body has its own
//! idle timeout) and armed again in `logging`, to start at the first byte of the next request,
//! so an idle keep-alive connection stays governed by the keep-alive timeout alone. The first
//! request's deadline starts at accept.
//!
//! HTTP/2 connections are not wrapped: their heads arrive as frames read by the connection
//! driver, not by a per-request head read.

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::{SslDigest, TlsRef};
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora_core::server::ShutdownWatch;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Wraps a service's app so that each HTTP/1 connection's stream carries a head deadline.
pub(crate) struct HeadDeadlineApp<A> {
    inner: Arc<A>,
    timeout: Duration,
}

impl<A> HeadDeadlineApp<A> {
    pub(crate) fn new(inner: A, timeout: Duration) -> Self {
        HeadDeadlineApp {
            inner: Arc::new(inner),
            timeout,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for HeadDeadlineApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let stream: Stream = if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            stream
        } else {
            Box::new(DeadlineStream::new(stream, self.timeout))
        };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// The phases of a connection, as the proxy reports them.
const ARMED: u8 = 0;
/// Between a complete head and the end of its request: no head deadline.
const LIFTED: u8 = 1;
/// The request ended: the next head's deadline starts with its first byte.
const ARM_ON_NEXT_BYTE: u8 = 2;

/// A connection's stream whose reads fail once a head has taken longer than the timeout.
pub(crate) struct DeadlineStream {
    inner: Stream,
    timeout: Duration,
    phase: AtomicU8,
    /// The running deadline of the head being read (none while lifted), made only once a read
    /// of the head has to wait.
    deadline: Option<Pin<Box<Sleep>>>,
    /// When the head's deadline ends, until a read has to wait and it becomes `deadline`: set at
    /// accept for the first head, at the first byte for the next ones. (Most heads arrive in
    /// one read: then no timer is made, allocated or dropped at all.)
    first: Option<Instant>,
}

impl std::fmt::Debug for DeadlineStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadlineStream")
            .field("inner", &self.inner)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl DeadlineStream {
    fn new(inner: Stream, timeout: Duration) -> Self {
        DeadlineStream {
            inner,
            timeout,
            phase: AtomicU8::new(ARMED),
            deadline: None,
            first: Some(Instant::now() + timeout),
        }
    }
}

/// `early_request_filter`: the head is complete; lift its deadline.
pub(crate) fn lift(session: &pingora_proxy::Session) {
    set_phase(session, LIFTED);
}

/// `logging`: the request is over; the next head's deadline starts with its first byte.
pub(crate) fn rearm(session: &pingora_proxy::Session) {
    set_phase(session, ARM_ON_NEXT_BYTE);
}

fn set_phase(session: &pingora_proxy::Session, phase: u8) {
    let stream = session
        .downstream_session
        .stream()
        .and_then(|s| s.as_any().downcast_ref::<DeadlineStream>());
    if let Some(s) = stream {
        s.phase.store(phase, Ordering::Release);
    }
}

impl AsyncRead for DeadlineStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.phase.load(Ordering::Acquire) {
            LIFTED => {
                this.deadline = None;
                this.first = None;
                Pin::new(&mut this.inner).poll_read(cx, buf)
            }
            ARM_ON_NEXT_BYTE => {
                let before = buf.filled().len();
                let read = Pin::new(&mut this.inner).poll_read(cx, buf);
                if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
                    this.deadline = None;
                    this.first = Some(Instant::now() + this.timeout);
                    this.phase.store(ARMED, Ordering::Release);
                }
                read
            }
            _ => {
                if let Poll::Ready(r) = Pin::new(&mut this.inner).poll_read(cx, buf) {
                    return Poll::Ready(r);
                }
                let timeout = this.timeout;
                let first = this.first.take();
                let deadline = this.deadline.get_or_insert_with(|| {
                    let at = first.unwrap_or_else(|| Instant::now() + timeout);
                    Box::pin(tokio::time::sleep_until(at))
                });
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request head not complete within server.header_timeout",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for DeadlineStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for DeadlineStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for DeadlineStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for DeadlineStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for DeadlineStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for DeadlineStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for DeadlineStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for DeadlineStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}
