//! Response phase (`upstream_response_filter`, `upstream_response_body_filter`): what the
//! upstream's answer means before any of it reaches the client. A refused or throttled pool key
//! is reported and, while another key can serve, the attempt is repeated with it; a retryable
//! status (429/5xx) or `context_length_exceeded` is abandoned for the next attempt the plan
//! (`attempts.rs`) allows; anything else is the client's answer. The last attempt's error is
//! handed to the client unchanged, never replaced by a gateway error.

use super::attempts::{Failure, Next};
use super::ctx::RequestCtx;
use crate::keys::pool::{parse_retry_after, KeyVerdict};
use crate::state::UpstreamTarget;
use crate::upstream::breaker::Transition;
use bytes::Bytes;
use pingora_core::{Error, ErrorType};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use std::time::{Duration, Instant};

/// An error answer is held (to look for `context_length_exceeded`) only up to this size.
const MAX_HELD_ERROR: usize = 64 * 1024;

/// Judge the response head of the current attempt. `Err` (retryable): drop it and try again.
pub fn judge_head(
    ctx: &mut RequestCtx,
    session: &Session,
    resp: &ResponseHeader,
) -> pingora_core::Result<()> {
    ctx.head_seen = true;
    let Some(target) = ctx.candidate().map(|c| c.target.clone()) else {
        return Ok(());
    };
    let status = resp.status.as_u16();
    let now = Instant::now();
    // OpenAI and Azure also send the wait in milliseconds; it is the more precise one.
    let header = |name: &str| resp.headers.get(name).and_then(|v| v.to_str().ok());
    let retry_after = header("retry-after-ms")
        .and_then(|ms| ms.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .map(|ms| Duration::from_secs_f64(ms.min(86_400_000.0) / 1000.0))
        .or_else(|| header("retry-after").and_then(parse_retry_after));
    let mut failure = None;
    if let Some(verdict) = key_verdict(status, retry_after) {
        if let (Some(pool), Some(index)) = (super::forward::attempt_pool(ctx), ctx.pool_key) {
            pool.report(index, verdict);
            let rotations = ctx.key_rotations;
            let within_plan = ctx
                .attempts
                .as_ref()
                .is_some_and(|a| a.made < a.max_attempts());
            if pool.has_other_healthy(index)
                && rotations < pool.keys.len() as u32
                && within_plan
                && replayable(ctx, session)
            {
                // The same upstream with another key, at once: this key said nothing about it.
                ctx.key_rotations += 1;
                return Err(retry(ctx, status, Duration::ZERO));
            }
            // No other key: a 429 whose wait is short is retried with this key once cooled;
            // anything else cannot succeed here.
            let max_wait = ctx
                .route
                .as_ref()
                .map_or(Duration::ZERO, |r| r.config.retry.retry_after_max);
            if !(status == 429 && retry_after.is_some_and(|ra| ra <= max_wait)) {
                failure = Some(Failure::NoKey);
            }
        }
    }
    let failure = failure.or(match status {
        429 | 500 | 502 | 503 | 529 => Some(Failure::Status(status, retry_after)),
        504 => Some(Failure::Silent),
        _ => None,
    });
    let Some(failure) = failure else {
        record(&target, true, now);
        let context_fallbacks = ctx
            .route
            .as_ref()
            .is_some_and(|r| !r.config.resilience.fallbacks.context_length.is_empty());
        if status == 400 && context_fallbacks && ctx.link.is_some() {
            ctx.error_body = Some(Vec::new());
        }
        return Ok(());
    };
    // A 429 to a client's own key is about that key, not the upstream: it must not open the
    // breaker for everyone.
    let own_key_throttled = status == 429 && !ctx.swap_credentials;
    if failure.is_upstream_fault() && !own_key_throttled {
        record(&target, false, now);
    }
    decide(ctx, session, failure, status, now)
}

/// Hold a 400's body until its end; if it says `context_length_exceeded` and a larger-context
/// fallback exists, the attempt is abandoned for it. Otherwise the body goes on unchanged.
pub fn judge_error_body(
    ctx: &mut RequestCtx,
    session: &Session,
    body: &mut Option<Bytes>,
    end: bool,
) -> pingora_core::Result<()> {
    let Some(held) = ctx.error_body.as_mut() else {
        return Ok(());
    };
    if let Some(chunk) = body.take() {
        held.extend_from_slice(&chunk);
    }
    if held.len() > MAX_HELD_ERROR {
        *body = ctx.error_body.take().map(Bytes::from);
        return Ok(());
    }
    if !end {
        return Ok(());
    }
    let held = ctx.error_body.take().unwrap_or_default();
    if memchr::memmem::find(&held, b"context_length_exceeded").is_some() {
        decide(ctx, session, Failure::ContextLength, 400, Instant::now())?;
    }
    *body = Some(Bytes::from(held));
    Ok(())
}

/// Retry if the plan allows, else let the answer through.
fn decide(
    ctx: &mut RequestCtx,
    session: &Session,
    failure: Failure,
    status: u16,
    now: Instant,
) -> pingora_core::Result<()> {
    if ctx.client_has_bytes(session) || !replayable(ctx, session) {
        return Ok(());
    }
    let Some(plan) = ctx.attempts.as_mut() else {
        return Ok(());
    };
    if !plan.would_retry(failure, now) {
        return Ok(());
    }
    match plan.after(failure, now) {
        Next::Retry(wait) => Err(retry(ctx, status, wait)),
        Next::GiveUp => Ok(()),
    }
}

fn key_verdict(status: u16, retry_after: Option<Duration>) -> Option<KeyVerdict> {
    match status {
        401 | 403 => Some(KeyVerdict::Rejected),
        429 => Some(KeyVerdict::Throttled(retry_after)),
        _ => None,
    }
}

/// Can the request go out again? The pre-read body always can; otherwise only what Pingora
/// still holds in its retry buffer.
pub fn replayable(ctx: &RequestCtx, session: &Session) -> bool {
    ctx.link.is_some() || !session.as_ref().retry_buffer_truncated()
}

/// The error that makes Pingora try again (see `retry::on_proxy_error`).
fn retry(ctx: &mut RequestCtx, status: u16, wait: Duration) -> Box<Error> {
    ctx.retry_now = true;
    ctx.wait_next = Some(wait);
    let mut e = Error::explain(
        ErrorType::HTTPStatus(status),
        "upstream answer abandoned for another attempt",
    );
    e.set_retry(true);
    e
}

/// Report an attempt's outcome to the upstream's breaker; log its transitions.
pub fn record(target: &UpstreamTarget, success: bool, now: Instant) {
    match target.breaker.record(success, now) {
        Some(Transition::Opened) => log::warn!(
            "upstream {}: circuit breaker open for {:?} (failing); requests go to fallbacks",
            target.config.name,
            target.breaker.open_for()
        ),
        Some(Transition::Closed) => log::info!(
            "upstream {}: circuit breaker closed (recovered)",
            target.config.name
        ),
        None => {}
    }
}
