//! Retry phase (`fail_to_connect`, `error_while_proxy`): an attempt that failed before any
//! byte reached the client is classified (connect failure, reset, silence, a missed deadline,
//! no usable key) and the attempt plan (`attempts.rs`) decides whether and where to try again;
//! the next attempt waits out the chosen backoff in the upstream phase. Once the client has
//! bytes, nothing is retried: the stream ends abnormally (see `finish.rs`).
//!
//! A request the upstream received whole and then answered with a reset, a close or silence
//! may have been acted on: a POST is then delivered at most once unless its route opts in
//! (`retry.on_reset`). What is known not to have been processed is still retried: a failed
//! connect, a request whose writing failed, a stale pooled connection on its first use (once,
//! Pingora's rule), and the status answers `verdict.rs` judges.

use super::attempts::{Failure, Next};
use super::ctx::RequestCtx;
use super::error::GatewayError;
use super::link::Deadline;
use crate::config::RetryPolicy;
use pingora_core::{Error, ErrorSource, ErrorType, RetryType};
use pingora_proxy::Session;
use rand::Rng;
use std::time::{Duration, Instant};

/// A failed connect reached nothing: safe to retry for any method.
pub fn on_connect_failure(ctx: &mut RequestCtx, mut e: Box<Error>) -> Box<Error> {
    if let Some(c) = ctx.candidate() {
        super::verdict::record(c, Some(Failure::Connect), Instant::now());
    }
    let retry = plan_next(ctx, Failure::Connect);
    e.set_retry(retry);
    e
}

/// An error after the request was sent (or while the response came back).
pub fn on_proxy_error(
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut e: Box<Error>,
    client_reused: bool,
) -> Box<Error> {
    if std::mem::take(&mut ctx.retry_now) {
        // The response phase abandoned the attempt and already chose the next one.
        e.set_retry(true);
        return e;
    }
    let fired = ctx.link.as_ref().and_then(|l| l.take_fired());
    if fired == Some(Deadline::Shutdown) {
        // The process is stopping: no next attempt, the request ends (and logs) as cut.
        ctx.error = Some(GatewayError::CutByShutdown);
        e.set_retry(false);
        return e;
    }
    ctx.deadline = fired;
    if ctx.client_has_bytes(session) {
        // Too late for another attempt: the stream is cut (never a clean end).
        if fired.is_some() || *e.esource() == ErrorSource::Upstream {
            ctx.error = Some(GatewayError::StreamInterrupted);
        }
        e.set_retry(false);
        return e;
    }
    let replayable = super::verdict::replayable(ctx, session);
    let failure = match fired {
        Some(Deadline::Total | Deadline::MaxDuration) => {
            ctx.error = Some(GatewayError::UpstreamTimeout);
            e.set_retry(false);
            return e;
        }
        Some(Deadline::FirstToken | Deadline::Idle | Deadline::Shutdown) => Failure::Silent,
        None if ctx.error == Some(GatewayError::NoUpstreamKey) => Failure::NoKey,
        None => match classify(&e) {
            Some(f) => f,
            // The client went away (or the gateway failed): nothing to retry for.
            None => {
                e.set_retry(false);
                return e;
            }
        },
    };
    if !replayable {
        e.set_retry(false);
        return e;
    }
    // A pooled connection the upstream had closed: Pingora's own rule, not a failure of the
    // upstream, retried once on a fresh connection without spending the plan's retries.
    if failure == Failure::Reset
        && matches!(e.retry, RetryType::ReusedOnly)
        && client_reused
        && !std::mem::replace(&mut ctx.reuse_retried, true)
    {
        e.set_retry(true);
        return e;
    }
    if failure != Failure::NoKey {
        if let Some(c) = ctx.candidate() {
            super::verdict::record(c, Some(failure), Instant::now());
        }
    }
    if fired.is_some() {
        // Whatever happens next, this attempt timed out.
        ctx.error = Some(GatewayError::UpstreamTimeout);
    }
    if matches!(failure, Failure::Reset | Failure::Silent)
        && delivered_whole(&e, session, ctx)
        && !may_deliver_again(session, ctx)
    {
        // The upstream had the whole request and may be acting on it (a completion being
        // generated and billed): sending it again could do it twice.
        e.set_retry(false);
        return e;
    }
    let retry = plan_next(ctx, failure);
    if retry && ctx.head_seen && session.cache.enabled() {
        // pingora-cache took this attempt's head as the start of a fill and cannot start
        // another: the answer of the next attempt is served, not stored.
        session
            .cache
            .disable(pingora_cache::NoCacheReason::Custom("attempt abandoned"));
    }
    e.set_retry(retry);
    e
}

/// Did the attempt's request reach the upstream whole? Only a failed write, or a body the
/// writer did not take in full, says no. A complete write may still sit unread in a socket
/// buffer, but nothing tells that apart from a request being worked on, so it counts as
/// delivered. (An upstream that never got the whole body cannot have acted on it.)
fn delivered_whole(e: &Error, session: &Session, ctx: &RequestCtx) -> bool {
    if matches!(e.etype(), ErrorType::WriteError | ErrorType::WriteTimedout) {
        return false;
    }
    let expected = match &ctx.link {
        Some(link) => Some(link.body().len()),
        None => session
            .req_header()
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.trim().parse::<usize>().ok()),
    };
    match (session.upstream_body_bytes_sent(), expected) {
        (Some(sent), Some(len)) => sent >= len,
        _ => true,
    }
}

/// May a request that was delivered be sent again? Idempotent methods may (RFC 9110 §9.2.2);
/// anything else only on a route that accepts duplicates (`retry.on_reset`).
fn may_deliver_again(session: &Session, ctx: &RequestCtx) -> bool {
    use http::Method;
    let method = &session.req_header().method;
    *method == Method::GET
        || *method == Method::HEAD
        || *method == Method::OPTIONS
        || ctx.route.as_ref().is_some_and(|r| r.config.retry.on_reset)
}

/// Upstream errors by what they say about the upstream; `None` for the client's side.
fn classify(e: &Error) -> Option<Failure> {
    use ErrorType::*;
    if *e.esource() != ErrorSource::Upstream {
        return None;
    }
    Some(match e.etype() {
        ReadTimedout | WriteTimedout => Failure::Silent,
        ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | TLSHandshakeFailure
        | TLSHandshakeTimedout | ConnectProxyFailure => Failure::Connect,
        _ => Failure::Reset,
    })
}

/// Ask the plan; on a retry, note the wait for the upstream phase.
pub fn plan_next(ctx: &mut RequestCtx, failure: Failure) -> bool {
    let Some(plan) = ctx.attempts.as_mut() else {
        return false;
    };
    match plan.after(failure, Instant::now()) {
        Next::Retry(wait) => {
            ctx.wait_next = Some(wait);
            true
        }
        Next::GiveUp => false,
    }
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
            backoff: Duration::from_millis(100),
            backoff_max: Duration::from_millis(300),
            ..RetryPolicy::default()
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
