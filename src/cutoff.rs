//! The end of a graceful stop's grace period, as something a request can wait for.
//!
//! Pingora ends its grace period by shutting its runtimes down, which drops every request still
//! running without its `logging` phase: a long stream would leave no access-log line and no
//! chat record. So the gateway ends the grace period itself (see `server.rs`): it raises this
//! cutoff, each stream still in flight ends as cut (`cut_by_shutdown`) and logs, and only then
//! does the process exit. Requests wait on it where they already wait on their deadlines (the
//! pre-read session's idle watch, `proxy/preread.rs`).
//!
//! Every stream waits on the one `Notify`, whose waiter list sits behind one lock: a stream
//! therefore registers once (`Watch`) and afterwards reads only the flag, instead of taking that
//! shared lock for every chunk it relays.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

#[derive(Default)]
pub(crate) struct Cutoff {
    raised: AtomicBool,
    notify: Arc<Notify>,
}

impl Cutoff {
    /// Cut every request waiting now or later.
    pub(crate) fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// Resolves once the cutoff is raised (at once if it already is). The request path uses
    /// [`Cutoff::watch`]; the tests wait with this.
    #[cfg(test)]
    pub(crate) async fn wait(&self) {
        let notified = self.notify.notified();
        let mut notified = std::pin::pin!(notified);
        // Registered before the flag is read: a `raise` in between still wakes this waiter.
        notified.as_mut().enable();
        if self.is_raised() {
            return;
        }
        notified.await;
    }

    /// A waiter registered once, for a session that polls it again and again (see `Watch`).
    pub(crate) fn watch(self: &Arc<Self>) -> Watch {
        Watch {
            cutoff: Arc::clone(self),
            // Created here, so a `raise` from now on is seen even before the first poll.
            notified: Box::pin(Arc::clone(&self.notify).notified_owned()),
            waker: None,
        }
    }
}

/// A long-lived wait for the cutoff. The `Notify` waiter is registered on the first poll and
/// polled again only when the polling task changes (its waker then must be replaced); meanwhile
/// a poll is one atomic load, and `raise` wakes the registered task.
pub(crate) struct Watch {
    cutoff: Arc<Cutoff>,
    notified: Pin<Box<OwnedNotified>>,
    /// The waker the registered waiter holds.
    waker: Option<Waker>,
}

impl Watch {
    /// Ready once the cutoff is raised.
    pub(crate) fn poll_raised(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.cutoff.is_raised() {
            return Poll::Ready(());
        }
        if self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        if self.notified.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        self.waker = Some(cx.waker().clone());
        // A raise between the first check and the registration was seen by the waiter (it
        // exists since `watch`); this check only makes the answer prompt.
        if self.cutoff.is_raised() {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::Cutoff;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn waiters_before_and_after_the_raise_are_released() {
        let cut = Arc::new(Cutoff::default());
        let early = tokio::spawn({
            let cut = Arc::clone(&cut);
            async move { cut.wait().await }
        });
        tokio::task::yield_now().await;
        cut.raise();
        tokio::time::timeout(Duration::from_secs(1), early)
            .await
            .unwrap()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(1), cut.wait())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_watch_polled_many_times_sees_the_raise() {
        let cut = Arc::new(Cutoff::default());
        let mut watch = cut.watch();
        for _ in 0..3 {
            let polled = std::future::poll_fn(|cx| match watch.poll_raised(cx) {
                std::task::Poll::Pending => std::task::Poll::Ready(false),
                std::task::Poll::Ready(()) => std::task::Poll::Ready(true),
            })
            .await;
            assert!(!polled);
        }
        let raiser = {
            let cut = Arc::clone(&cut);
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                cut.raise();
            })
        };
        tokio::time::timeout(
            Duration::from_secs(5),
            std::future::poll_fn(|cx| watch.poll_raised(cx)),
        )
        .await
        .unwrap();
        raiser.await.unwrap();
    }
}
