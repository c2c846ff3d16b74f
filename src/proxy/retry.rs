//! Retry phase (`fail_to_connect`): a failed connect reached no upstream, so it is safe to try
//! again for any method, up to the route's budget, after an exponential backoff with jitter
//! (applied in the upstream phase before the next attempt).

use super::ctx::RequestCtx;
use crate::config::RetryPolicy;
use pingora_core::Error;
use pingora_proxy::Session;
use rand::Rng;
use std::time::Duration;

/// Mark a connect error retryable while the route's budget lasts; the next attempt backs off.
pub fn on_connect_failure(ctx: &mut RequestCtx, mut e: Box<Error>) -> Box<Error> {
    let budget = ctx
        .route
        .as_ref()
        .map_or(0, |r| r.config.retry.connect_retries);
    ctx.connect_failures += 1;
    ctx.backoff_next = true;
    e.set_retry(ctx.connect_failures <= budget);
    e
}

/// An error after the request was sent. Retried only when the upstream refused the key (so it
/// did no work) and the whole body can be sent again; otherwise Pingora's rule for idempotent
/// methods on reused connections.
pub fn on_proxy_error(
    session: &Session,
    ctx: &mut RequestCtx,
    mut e: Box<Error>,
    client_reused: bool,
) -> Box<Error> {
    let replayable = !session.as_ref().retry_buffer_truncated();
    if std::mem::take(&mut ctx.rotate_key) {
        e.set_retry(replayable);
    } else if !session.req_header().method.is_idempotent() || !replayable {
        e.set_retry(false);
    } else {
        e.retry.decide_reuse(client_reused);
    }
    e
}

/// How long to wait before retry number `retry` (1-based): `backoff · 2^(retry-1)`, capped at
/// `backoff_max`, with jitter drawn from the upper half so retries spread out without collapsing
/// to zero.
pub fn backoff(policy: &RetryPolicy, retry: u32) -> Duration {
    let exp = policy
        .backoff
        .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
    let capped = exp.min(policy.backoff_max);
    capped.mul_f64(rand::rng().random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            connect_retries: 5,
            backoff: Duration::from_millis(100),
            backoff_max: Duration::from_millis(300),
        };
        for _ in 0..100 {
            let b1 = backoff(&p, 1);
            assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100));
            let b2 = backoff(&p, 2);
            assert!(b2 >= Duration::from_millis(100) && b2 <= Duration::from_millis(200));
            let b9 = backoff(&p, 9);
            assert!(b9 >= Duration::from_millis(150) && b9 <= Duration::from_millis(300));
        }
    }
}
