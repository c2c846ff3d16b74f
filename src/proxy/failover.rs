//! Failover: what each attempt's end means for the next one. The only home of the breaker
//! record, of replayability, of planning the next attempt (`attempts.rs` holds the pure plan) and
//! of the error that abandons an attempt for another.
//!
//! Response (`upstream_response_filter`, `upstream_response_body_filter`): what the upstream's
//! answer means before any of it reaches the client. What it says about the pool key is reported
//! (see `keys::pool` for what that evidence does); a refused key (401/403) moves the request to
//! another key once at most, a throttled one (429) while another key can serve; a retryable
//! status (`Failure::from_status`) or `context_length_exceeded` is abandoned for the next attempt
//! the plan allows; anything else is the client's answer. The last attempt's error is handed to
//! the client unchanged, never replaced by a gateway error.
//!
//! Errors (`fail_to_connect`, `error_while_proxy`): an attempt that failed before any byte
//! reached the client is classified (connect failure, reset, silence, a missed deadline, no
//! usable key) and the plan decides whether and where to try again; the next attempt waits out
//! the chosen backoff in the upstream phase. Once the client has bytes, nothing is retried: the
//! stream ends abnormally (see `finish.rs`).
//!
//! A request the upstream received whole and then answered with a reset, a close or silence
//! may have been acted on: a POST is then delivered at most once unless its route opts in
//! (`retry.on_reset`). What is known not to have been processed is still retried: a failed
//! connect, a request whose writing failed, a stale pooled connection on its first use (once,
//! Pingora's rule), and the status answers judged here.

use super::attempts::{Candidate, Failure, Next};
use super::ctx::{Held, RequestCtx};
use super::error::GatewayError;
use super::link::Deadline;
use crate::keys::pool::{parse_retry_after, KeyPool, KeyVerdict};
use crate::state::UpstreamTarget;
use crate::upstream::breaker::Transition;
use bytes::Bytes;
use http::HeaderName;
use pingora_core::{Error, ErrorSource, ErrorType, RetryType};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An error answer is held (to look for `context_length_exceeded`, or what it says about a pool
/// key) only up to this size.
const MAX_HELD_ERROR: usize = 64 * 1024;

/// OpenAI's and Azure's wait in milliseconds.
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");

/// Judge the response head of the current attempt. `Err` (retryable): drop it and try again.
pub(super) fn judge_head(
    ctx: &mut RequestCtx,
    session: &Session,
    resp: &ResponseHeader,
) -> pingora_core::Result<()> {
    let status = resp.status.as_u16();
    // An interim head (`100 Continue`, `103 Early Hints`) is no answer: Pingora calls the filter
    // for it too, and the final head follows. Judged here, its "success" reset the breaker's
    // count before every 5xx. A `101` ends the exchange (an upgrade) and is judged.
    if (100..200).contains(&status) && status != 101 {
        return Ok(());
    }
    ctx.attempt.head_seen = true;
    if ctx.candidate().is_none() {
        return Ok(());
    }
    let now = Instant::now();
    // OpenAI and Azure also send the wait in milliseconds; it is the more precise one.
    // Parsed names: a lookup by `&str` parses the name first (~350 instructions each, every
    // response, callgrind).
    let header = |name: &HeaderName| resp.headers.get(name).and_then(|v| v.to_str().ok());
    let retry_after = header(&RETRY_AFTER_MS)
        .and_then(|ms| ms.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .map(|ms| Duration::from_secs_f64(ms.min(86_400_000.0) / 1000.0))
        .or_else(|| header(&http::header::RETRY_AFTER).and_then(parse_retry_after));
    let mut failure = None;
    if let Some((pool, index)) = attempt_key(ctx) {
        let model = ctx.attempt_model();
        // An empty body never reaches the body filter: nothing to wait for.
        let bodiless = header(&http::header::CONTENT_LENGTH).is_some_and(|v| v.trim() == "0");
        match status {
            401 | 403 | 429 if ctx.body.link.is_some() && !bodiless => {
                // What the answer says about the key is in its body (an invalid key, a spent
                // quota): judged at its end.
                ctx.attempt.held = Some(Held::KeyAnswer {
                    status,
                    retry_after,
                    body: Vec::new(),
                });
                return Ok(());
            }
            401 | 403 => {
                let client = client_of(ctx);
                pool.report(index, KeyVerdict::Refused { client });
                if let Some(e) = move_on_refusal(ctx, session, &pool, index, model, status) {
                    return Err(e);
                }
                failure = Some(Failure::NoKey);
            }
            429 => failure = throttled(ctx, session, &pool, index, model, retry_after)?,
            200..=299 => pool.report(index, KeyVerdict::Accepted),
            _ => {}
        }
    }
    let failure = failure.or_else(|| Failure::from_status(status, retry_after));
    let Some(failure) = failure else {
        if let Some(c) = ctx.candidate() {
            record(c, None, now);
        }
        let context_fallbacks = ctx
            .route()
            .is_some_and(|r| !r.config.resilience.fallbacks.context_length.is_empty());
        if status == 400 && context_fallbacks && ctx.body.link.is_some() {
            ctx.attempt.held = Some(Held::Context(Vec::new()));
        }
        return Ok(());
    };
    // A 429 to a client's own key is about that key, not the upstream: it must not open the
    // breaker for everyone.
    let own_key_throttled = status == 429 && !ctx.auth.swap_credentials;
    if failure.is_upstream_fault() && !own_key_throttled {
        if let Some(c) = ctx.candidate() {
            record(c, Some(failure), now);
        }
    }
    decide(ctx, session, failure, status, now)
}

/// Hold an error answer's body until its end: a 400 that says `context_length_exceeded` is
/// abandoned for a larger-context fallback, and a 401/403/429 to a pool key is judged (a key the
/// body calls invalid leaves the rotation at once; a spent quota cools the whole key) and may
/// move on to another key. Otherwise the body goes on unchanged.
pub(super) fn judge_error_body(
    ctx: &mut RequestCtx,
    session: &Session,
    body: &mut Option<Bytes>,
    end: bool,
) -> pingora_core::Result<()> {
    let Some(held) = ctx.attempt.held.as_mut() else {
        return Ok(());
    };
    let buf = held.body_mut();
    if let Some(chunk) = body.take() {
        buf.extend_from_slice(&chunk);
    }
    let too_large = buf.len() > MAX_HELD_ERROR;
    if !too_large && !end {
        return Ok(());
    }
    let Some(held) = ctx.attempt.held.take() else {
        return Ok(());
    };
    if too_large {
        // Too large to judge: it counts as a plain refusal or throttle, and goes on as it is.
        if let Held::KeyAnswer {
            status,
            retry_after,
            ..
        } = held
        {
            if let Some((pool, index)) = attempt_key(ctx) {
                let verdict = match status {
                    429 => KeyVerdict::Throttled {
                        model: ctx.attempt_model(),
                        retry_after,
                    },
                    _ => KeyVerdict::Refused {
                        client: client_of(ctx),
                    },
                };
                pool.report(index, verdict);
            }
        }
        *body = Some(Bytes::from(held.into_body()));
        return Ok(());
    }
    let now = Instant::now();
    let held = match held {
        Held::KeyAnswer {
            status,
            retry_after,
            body: held,
        } => {
            if let Some((pool, index)) = attempt_key(ctx) {
                let model = ctx.attempt_model();
                if status == 429 {
                    // A spent quota is the whole key's, not one model's.
                    let model = model.filter(|_| !says_quota_spent(&held));
                    let failure = throttled(ctx, session, &pool, index, model, retry_after)?
                        .unwrap_or(Failure::Status(429, retry_after));
                    if failure.is_upstream_fault() {
                        if let Some(c) = ctx.candidate() {
                            record(c, Some(failure), now);
                        }
                    }
                    decide(ctx, session, failure, status, now)?;
                } else {
                    let verdict = match status == 401 && says_key_invalid(&held) {
                        true => KeyVerdict::Invalid,
                        false => KeyVerdict::Refused {
                            client: client_of(ctx),
                        },
                    };
                    pool.report(index, verdict);
                    if let Some(e) = move_on_refusal(ctx, session, &pool, index, model, status) {
                        return Err(e);
                    }
                    decide(ctx, session, Failure::NoKey, status, now)?;
                }
            }
            held
        }
        Held::Context(held) => {
            if memchr::memmem::find(&held, b"context_length_exceeded").is_some() {
                decide(ctx, session, Failure::ContextLength, 400, now)?;
            }
            held
        }
    };
    *body = Some(Bytes::from(held));
    Ok(())
}

/// A 429 to a pool key: the key cools for `model` (`None`: for all), and the request moves on
/// at once to another key that can serve it. Without one, `Some(NoKey)` unless the wait is
/// short enough for the plan to retry this key once cooled (`None`).
fn throttled(
    ctx: &mut RequestCtx,
    session: &Session,
    pool: &Arc<KeyPool>,
    index: usize,
    model: Option<u64>,
    retry_after: Option<Duration>,
) -> pingora_core::Result<Option<Failure>> {
    pool.report(index, KeyVerdict::Throttled { model, retry_after });
    // `retry.on_status: false`: a 429 is the client's answer, not a reason for another key.
    let within_plan = ctx
        .failover
        .plan
        .as_ref()
        .is_some_and(|a| a.made < a.max_attempts() && a.retries_on_status());
    if pool.has_other_usable(index, model)
        && ctx.failover.key_rotations < pool.keys.len() as u32
        && within_plan
        && !ctx.client_has_bytes(session)
        && replayable(ctx, session)
    {
        // The same upstream with another key, at once: this key said nothing about it.
        ctx.failover.key_rotations += 1;
        ctx.failover.avoid_key = Some((Arc::clone(pool), index));
        return Err(abandon(ctx, 429, Duration::ZERO));
    }
    let max_wait = ctx
        .route()
        .map_or(Duration::ZERO, |r| r.config.retry.retry_after_max);
    Ok(retry_after
        .is_none_or(|ra| ra > max_wait)
        .then_some(Failure::NoKey))
}

/// Does a 429's body say the key's quota is spent (OpenAI's `insufficient_quota`)? Then no model
/// can use it, not only the one asked for.
fn says_quota_spent(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .is_ok_and(|v| v["error"]["code"].as_str() == Some("insufficient_quota"))
}

/// The pool and key the current attempt sent, when the gateway placed one.
fn attempt_key(ctx: &RequestCtx) -> Option<(Arc<KeyPool>, usize)> {
    ctx.attempt_pool().zip(ctx.attempt.pool_key)
}

/// Who a refusal came from, as far as key health is concerned: the forward key and the
/// client's address (an opaque hash; compared only within this process).
fn client_of(ctx: &RequestCtx) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ctx.auth.key_id.hash(&mut h);
    ctx.client.ip.hash(&mut h);
    h.finish()
}

/// A 401/403 moves the request to another key once at most: a client the upstream refuses
/// whatever the key (its own header, an endpoint out of the keys' scope) must not walk the
/// pool, and one key change is enough to get past a single bad key.
fn move_on_refusal(
    ctx: &mut RequestCtx,
    session: &Session,
    pool: &Arc<KeyPool>,
    index: usize,
    model: Option<u64>,
    status: u16,
) -> Option<Box<Error>> {
    let within_plan = ctx
        .failover
        .plan
        .as_ref()
        .is_some_and(|a| a.made < a.max_attempts());
    if ctx.failover.refusal_moved
        || !within_plan
        || !pool.has_other_usable(index, model)
        || ctx.client_has_bytes(session)
        || !replayable(ctx, session)
    {
        return None;
    }
    ctx.failover.refusal_moved = true;
    ctx.failover.key_rotations += 1;
    ctx.failover.avoid_key = Some((Arc::clone(pool), index));
    Some(abandon(ctx, status, Duration::ZERO))
}

/// Does a 401's body say the key itself is invalid? Conservative: only OpenAI's own words for
/// it (`"code": "invalid_api_key"`, or its "Incorrect API key provided" message), never a
/// refusal that could be about the request (organization, project, scope).
fn says_key_invalid(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let e = &v["error"];
    e["code"].as_str() == Some("invalid_api_key")
        || (e["type"].as_str() == Some("invalid_request_error")
            && e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Incorrect API key provided")))
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
    let Some(plan) = ctx.failover.plan.as_mut() else {
        return Ok(());
    };
    if !plan.would_retry(failure, now) {
        return Ok(());
    }
    match plan.after(failure, now) {
        Next::Retry(wait) => Err(abandon(ctx, status, wait)),
        Next::GiveUp => Ok(()),
    }
}

/// Can the request go out again? The pre-read body always can; otherwise only what Pingora
/// still holds in its retry buffer.
pub(super) fn replayable(ctx: &RequestCtx, session: &Session) -> bool {
    ctx.body.link.is_some() || !session.as_ref().retry_buffer_truncated()
}

/// The error that makes Pingora try again (see `on_proxy_error`).
fn abandon(ctx: &mut RequestCtx, status: u16, wait: Duration) -> Box<Error> {
    ctx.attempt.retry_now = true;
    ctx.attempt.wait_next = Some(wait);
    let mut e = Error::explain(
        ErrorType::HTTPStatus(status),
        "upstream answer abandoned for another attempt",
    );
    e.set_retry(true);
    e
}

/// Report an attempt's outcome (`None`: a success) to the breakers; log their transitions. A
/// success counts for the upstream and its model; a failure for the upstream as a whole when
/// it says the upstream is unreachable (connect, reset) or no model is known, else for the
/// model only: one failing model must not take its upstream's other models down with it.
pub(super) fn record(c: &Candidate, failure: Option<Failure>, now: Instant) {
    let target = &c.target;
    let model = c.breaker_model();
    match (failure, model) {
        (None, _) => {
            log_transition(target, None, target.breaker.record(true, now));
            if let Some(m) = model {
                log_transition(target, model, target.model_breakers.record(m, true, now));
            }
        }
        (Some(f), Some(m)) if !f.is_whole_upstream() => {
            log_transition(target, model, target.model_breakers.record(m, false, now));
        }
        (Some(_), _) => log_transition(target, None, target.breaker.record(false, now)),
    }
}

fn log_transition(target: &UpstreamTarget, model: Option<&str>, t: Option<Transition>) {
    let name = &target.config.name;
    match (t, model) {
        (Some(Transition::Opened), None) => log::warn!(
            "upstream {name}: circuit breaker open for {:?} (failing); requests go to fallbacks",
            target.breaker.open_for()
        ),
        (Some(Transition::Opened), Some(m)) => log::warn!(
            "upstream {name}, model {m}: circuit breaker open for {:?} (this model failing there); its requests go to fallbacks",
            target.model_breakers.open_for()
        ),
        (Some(Transition::Closed), None) => {
            log::info!("upstream {name}: circuit breaker closed (recovered)")
        }
        (Some(Transition::Closed), Some(m)) => {
            log::info!("upstream {name}, model {m}: circuit breaker closed (recovered)")
        }
        (None, _) => {}
    }
}

/// The upstream's name did not resolve: like a failed connect, nothing reached it, so the plan
/// may go on. `true`: another attempt follows.
pub(super) fn on_resolve_failure(
    ctx: &mut RequestCtx,
    candidate: &Candidate,
    now: Instant,
) -> bool {
    record(candidate, Some(Failure::Connect), now);
    plan_next(ctx, Failure::Connect)
}

/// A failed connect reached nothing: safe to retry for any method.
pub(super) fn on_connect_failure(ctx: &mut RequestCtx, mut e: Box<Error>) -> Box<Error> {
    if let Some(c) = ctx.candidate() {
        record(c, Some(Failure::Connect), Instant::now());
    }
    let retry = plan_next(ctx, Failure::Connect);
    e.set_retry(retry);
    e
}

/// An error after the request was sent (or while the response came back).
pub(super) fn on_proxy_error(
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut e: Box<Error>,
    client_reused: bool,
) -> Box<Error> {
    if std::mem::take(&mut ctx.attempt.retry_now) {
        // The response phase abandoned the attempt and already chose the next one.
        e.set_retry(true);
        return e;
    }
    let fired = ctx.body.link.as_ref().and_then(|l| l.take_fired());
    if fired == Some(Deadline::Shutdown) {
        // The process is stopping: no next attempt, the request ends (and logs) as cut.
        ctx.outcome.error = Some(GatewayError::CutByShutdown);
        e.set_retry(false);
        return e;
    }
    ctx.attempt.deadline = fired;
    if ctx.client_has_bytes(session) {
        // Too late for another attempt: the stream is cut (never a clean end).
        if fired.is_some() || *e.esource() == ErrorSource::Upstream {
            ctx.outcome.error = Some(GatewayError::StreamInterrupted);
        }
        e.set_retry(false);
        return e;
    }
    let replayable = replayable(ctx, session);
    let failure = match fired {
        Some(Deadline::Total | Deadline::MaxDuration) => {
            ctx.outcome.error = Some(GatewayError::UpstreamTimeout);
            e.set_retry(false);
            return e;
        }
        Some(Deadline::FirstToken | Deadline::Idle | Deadline::Shutdown) => Failure::Silent,
        None if ctx.outcome.error == Some(GatewayError::NoUpstreamKey) => Failure::NoKey,
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
        && !std::mem::replace(&mut ctx.failover.reuse_retried, true)
    {
        e.set_retry(true);
        return e;
    }
    if failure != Failure::NoKey {
        if let Some(c) = ctx.candidate() {
            record(c, Some(failure), Instant::now());
        }
    }
    if fired.is_some() {
        // Whatever happens next, this attempt timed out.
        ctx.outcome.error = Some(GatewayError::UpstreamTimeout);
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
    if retry && ctx.attempt.head_seen && session.cache.enabled() {
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
    let expected = match &ctx.body.link {
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
        || ctx.route().is_some_and(|r| r.config.retry.on_reset)
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
pub(super) fn plan_next(ctx: &mut RequestCtx, failure: Failure) -> bool {
    let Some(plan) = ctx.failover.plan.as_mut() else {
        return false;
    };
    match plan.after(failure, Instant::now()) {
        Next::Retry(wait) => {
            ctx.attempt.wait_next = Some(wait);
            true
        }
        Next::GiveUp => false,
    }
}

#[cfg(test)]
mod tests;
