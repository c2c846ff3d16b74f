//! The end of a graceful stop's grace period, as something a request can wait for.
//!
//! Pingora ends its grace period by shutting its runtimes down, which drops every request still
//! running without its `logging` phase: a long stream would leave no access-log line and no
//! chat record. So the gateway ends the grace period itself (see `server.rs`): it raises this
//! cutoff, each stream still in flight ends as cut (`cut_by_shutdown`) and logs, and only then
//! does the process exit. Requests wait on it where they already wait on their deadlines (the
//! pre-read session's idle watch, `proxy/preread.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

#[derive(Default)]
pub struct Cutoff {
    raised: AtomicBool,
    notify: Notify,
}

impl Cutoff {
    /// Cut every request waiting now or later.
    pub fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// Resolves once the cutoff is raised (at once if it already is).
    pub async fn wait(&self) {
        let notified = self.notify.notified();
        let mut notified = std::pin::pin!(notified);
        // Registered before the flag is read: a `raise` in between still wakes this waiter.
        notified.as_mut().enable();
        if self.is_raised() {
            return;
        }
        notified.await;
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
}
