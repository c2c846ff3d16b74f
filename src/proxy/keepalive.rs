//! Connection reuse while the process drains (a graceful upgrade or stop).
//!
//! On SIGQUIT Pingora hands the listeners to the new process, keeps serving for 5 s, then drops
//! every keep-alive connection that is between requests. A client whose next request is already
//! on its way over such a connection gets a reset instead of an answer: under back-to-back
//! traffic that was one failed request per connection per reload (`wrk`, 16 connections: 16
//! read errors). So once draining has begun (`server.rs` sets the flag on Pingora's execution
//! phases) every answer says `Connection: close` and its connection closes after it: clients
//! reconnect, to the new process or to this one for one more answer, and no connection of
//! theirs is sitting idle here when the drop comes.
//!
//! Called where a request starts (`early_request_filter`) and again where a proxied answer's
//! head is about to go out (`response_filter`), for requests that began before the drain. A
//! pre-read request's session is a custom one, on which Pingora's `set_keepalive` does nothing:
//! `preread.rs` applies the same flag to the real session itself.

use crate::state::Gateway;
use pingora_proxy::Session;
use std::sync::atomic::Ordering;

pub(super) fn close_when_draining(gateway: &Gateway, session: &mut Session) {
    if gateway.draining.load(Ordering::Relaxed) {
        session.set_keepalive(None);
    }
}
