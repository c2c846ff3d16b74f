//! What the request's phases share with the pre-read downstream session (`preread.rs`): the body
//! to send on the current attempt (its `model` rewritten for a fallback), whether anything has
//! reached the client yet, and the stream deadlines the session enforces while it watches the
//! client connection.
//!
//! Pingora has one per-read upstream timeout and no hook that runs while it waits. But while an
//! upstream call is in flight, Pingora keeps polling the downstream session for a client that
//! leaves (`read_body_or_idle`); the pre-read session answers that poll with a timer as well, so
//! a missed time-to-first-token deadline, a stream gap longer than `idle`, the end of the
//! total budget, or `max_duration` ends the attempt as an error the retry phase sees. Before the
//! first body byte the response head is held back too, so such an attempt fails over with the
//! client having seen nothing.
//!
//! The total budget (`retry.total`) bounds the attempts up to the first byte the client gets:
//! once an answer flows, it is bounded by `idle` (and `max_duration`, if set), never cut because
//! a long answer is still streaming when the budget runs out.

use crate::cutoff::Cutoff;
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which deadline fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// No first body byte within `first_token` of the attempt's start.
    FirstToken,
    /// No chunk within `idle` of the previous one.
    Idle,
    /// The request's total budget ran out before the first byte reached the client.
    Total,
    /// The grace period of a graceful stop ended (see `cutoff.rs`).
    Shutdown,
    /// The request ran past `max_duration` (its answer is cut if it was flowing).
    MaxDuration,
}

impl Deadline {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Deadline::FirstToken => "no first token within the first_token deadline",
            Deadline::Idle => "the stream was idle longer than the idle timeout",
            Deadline::Total => "the request's total time budget ran out",
            Deadline::Shutdown => "the grace period of a graceful stop ended",
            Deadline::MaxDuration => "the request ran past its max_duration",
        }
    }

    /// The access log's `outcome=` for a request this deadline ended.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Deadline::FirstToken => "first_token",
            Deadline::Idle => "idle",
            Deadline::Total => "total",
            Deadline::Shutdown => "cut_by_shutdown",
            Deadline::MaxDuration => "max_duration",
        }
    }
}

struct State {
    body: Bytes,
    /// Something (a head with its first body byte, or a whole answer) was written.
    flushed: bool,
    first_token: Option<Duration>,
    idle: Option<Duration>,
    total: Option<Instant>,
    /// `max_duration` after the request's start.
    max_end: Option<Instant>,
    /// The next deadline and which one it is.
    next: Option<(Instant, Deadline)>,
    fired: Option<Deadline>,
}

pub(crate) struct Link {
    state: Mutex<State>,
    /// The end of a stop's grace period, watched with the deadlines.
    cutoff: Option<Arc<Cutoff>>,
}

impl Link {
    pub(crate) fn new(body: Bytes) -> Self {
        Link {
            state: Mutex::new(State {
                body,
                flushed: false,
                first_token: None,
                idle: None,
                total: None,
                max_end: None,
                next: None,
                fired: None,
            }),
            cutoff: None,
        }
    }

    /// Also end the attempt when `cutoff` is raised.
    pub(crate) fn with_cutoff(mut self, cutoff: Arc<Cutoff>) -> Self {
        self.cutoff = Some(cutoff);
        self
    }

    pub(crate) fn cutoff(&self) -> Option<&Arc<Cutoff>> {
        self.cutoff.as_ref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn body(&self) -> Bytes {
        self.lock().body.clone()
    }

    pub(crate) fn set_body(&self, body: Bytes) {
        self.lock().body = body;
    }

    pub(crate) fn flushed(&self) -> bool {
        self.lock().flushed
    }

    /// A new attempt starts now: arm its deadlines (`first_token` only for streams). `total`
    /// and `max_end` are instants of the whole request.
    pub(crate) fn arm(
        &self,
        first_token: Option<Duration>,
        idle: Option<Duration>,
        total: Option<Instant>,
        max_end: Option<Instant>,
        now: Instant,
    ) {
        let mut s = self.lock();
        s.first_token = first_token;
        s.idle = idle;
        s.total = total;
        s.max_end = max_end;
        s.fired = None;
        let first = first_token.map(|d| (now + d, Deadline::FirstToken));
        let first = earliest(first, total.map(|t| (t, Deadline::Total)));
        s.next = earliest(first, max_end.map(|t| (t, Deadline::MaxDuration)));
    }

    /// Bytes went to the client: from now on the gap to the next chunk is what is watched (and
    /// `max_duration`); the total budget no longer applies, it was for reaching this point.
    pub(crate) fn on_write(&self, now: Instant) {
        let mut s = self.lock();
        s.flushed = true;
        let idle = s.idle.map(|d| (now + d, Deadline::Idle));
        s.next = earliest(idle, s.max_end.map(|t| (t, Deadline::MaxDuration)));
    }

    /// The deadline to sleep until, if any.
    pub(crate) fn next_deadline(&self) -> Option<(Instant, Deadline)> {
        self.lock().next
    }

    pub(crate) fn fire(&self, which: Deadline) {
        let mut s = self.lock();
        s.fired = Some(which);
        s.next = None;
    }

    /// The deadline that ended the last attempt, if one did (taken: asked once per failure).
    pub(crate) fn take_fired(&self) -> Option<Deadline> {
        self.lock().fired.take()
    }
}

fn earliest(
    a: Option<(Instant, Deadline)>,
    b: Option<(Instant, Deadline)>,
) -> Option<(Instant, Deadline)> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if x.0 <= y.0 { x } else { y }),
        (x, None) => x,
        (None, y) => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_follow_the_stream() {
        let t0 = Instant::now();
        let link = Link::new(Bytes::from_static(b"{}"));
        let s = Duration::from_secs(1);
        link.arm(Some(5 * s), Some(2 * s), Some(t0 + 60 * s), None, t0);
        assert_eq!(
            link.next_deadline(),
            Some((t0 + 5 * s, Deadline::FirstToken))
        );
        link.on_write(t0 + s);
        assert_eq!(link.next_deadline(), Some((t0 + 3 * s, Deadline::Idle)));
        assert!(link.flushed());
        // Once bytes flow the total budget is over its job: a stream is bounded by idle only.
        link.arm(None, None, Some(t0 + 2 * s), None, t0);
        link.on_write(t0 + s);
        assert_eq!(link.next_deadline(), None);
        // ... and by max_duration when set.
        link.arm(None, Some(9 * s), Some(t0 + 2 * s), Some(t0 + 4 * s), t0);
        assert_eq!(link.next_deadline(), Some((t0 + 2 * s, Deadline::Total)));
        link.on_write(t0 + s);
        assert_eq!(
            link.next_deadline(),
            Some((t0 + 4 * s, Deadline::MaxDuration))
        );
        link.arm(None, None, Some(t0 + 60 * s), None, t0);
        assert_eq!(link.next_deadline(), Some((t0 + 60 * s, Deadline::Total)));
        link.fire(Deadline::Total);
        assert_eq!(link.take_fired(), Some(Deadline::Total));
        assert_eq!(link.take_fired(), None);
    }
}
