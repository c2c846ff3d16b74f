//! Metrics phase (`response_filter`, `logging`): what this request adds to the gateway's
//! metrics, read from what the ctx already knows — the route, the attempt that answered, the
//! status, the outcome, the timings and the usage. One `record` call per request, a few
//! atomic additions (see `crate::metrics`).

use super::ctx::RequestCtx;
use super::error::GatewayError;
use super::stream::Outcome as Answer;
use crate::metrics::{LimitDecisions, Observation, Outcome, Tokens, UpstreamSlot};
use crate::state::Gateway;
use pingora_core::Error;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// A server-sent-event answer starts: count it among the streams in flight until ctx drops.
pub(super) fn on_response(gateway: &Gateway, resp: &ResponseHeader, ctx: &mut RequestCtx) {
    let sse = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if sse && ctx.outcome.stream_guard.is_none() {
        ctx.outcome.stream_guard = Some(gateway.metrics.stream_started());
    }
}

/// The limit decisions, read before `logging` gives the concurrency slot back.
pub(super) fn limit_decisions(ctx: &RequestCtx) -> LimitDecisions {
    let denied = |e: GatewayError| ctx.outcome.error == Some(e);
    LimitDecisions {
        requests: ctx.limits.rate.map(|d| d.allowed),
        tokens: ctx
            .limits
            .tokens
            .as_ref()
            .map(|_| !denied(GatewayError::TokensExhausted)),
        concurrency: if denied(GatewayError::ConcurrencyLimited) {
            Some(false)
        } else {
            ctx.limits.concurrency.as_ref().map(|_| true)
        },
    }
}

pub(super) fn record(
    gateway: &Gateway,
    session: &Session,
    e: Option<&Error>,
    ctx: &RequestCtx,
    answer: Option<&Answer>,
    limits: LimitDecisions,
) {
    let status = ctx.status_sent(session);
    let attempted = ctx.attempts_made() > 0;
    let candidate = ctx.candidate().filter(|_| attempted);
    let upstream = match candidate {
        _ if ctx.cache.state.is_hit() => UpstreamSlot::Cache,
        Some(c) => UpstreamSlot::Configured(c.target.index),
        None => UpstreamSlot::None,
    };
    let outcome = match (ctx.outcome.error, e) {
        // Another candidate finished the stream the upstream cut: the client got it whole.
        _ if ctx.outcome.continued => Outcome::Ok,
        (Some(err), _) => Outcome::Gateway(err),
        (None, Some(_)) => Outcome::Aborted,
        (None, None) if status >= 400 && attempted => Outcome::UpstreamError,
        (None, None) => Outcome::Ok,
    };
    let success = (200..300).contains(&status) && outcome == Outcome::Ok;
    let stream = answer.is_some_and(|a| a.stream);
    let model = candidate
        .and_then(|c| c.model.as_deref())
        .or(ctx.body.model.as_deref());
    // A name the config does not know becomes a label only when an upstream answered it with
    // success and named it in its answer (`gpt-4o` → `gpt-4o-2024-08-06`): a server that
    // ignores the field cannot turn whatever a client typed into a label.
    let confirmed = answer
        .and_then(|a| a.info.as_ref()?.model.as_deref())
        .zip(model)
        .is_some_and(|(answered, asked)| answered.starts_with(asked));
    gateway.metrics.record(&Observation {
        route: ctx.route().map(|r| r.index),
        upstream,
        model,
        served: success && confirmed && matches!(upstream, UpstreamSlot::Configured(_)),
        status,
        outcome,
        duration: ctx.started.elapsed(),
        ttft: ctx
            .outcome
            .first_byte
            .filter(|_| success && stream)
            .map(|t| t.duration_since(ctx.started)),
        tokens: answer.and_then(|a| {
            a.usage.map(|u| Tokens {
                input: u.prompt_tokens,
                output: u.completion_tokens,
                estimated: a.estimated,
            })
        }),
        retries: ctx.attempts_made().saturating_sub(1),
        fallback: ctx.failover.plan.as_ref().and_then(|a| a.fallback()),
        continued: ctx.outcome.continued,
        cache: ctx
            .cache
            .state
            .plan()
            .map(|_| (ctx.cache.state.is_hit(), session.body_bytes_sent() as u64)),
        limits,
    });
}
