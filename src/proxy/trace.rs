//! Tracing phase (every phase that starts, ends or judges an attempt, and `logging`): the
//! request's span and one child span per upstream attempt, when `telemetry.otlp` is on and the
//! request is sampled. Each attempt sends its own `traceparent` upstream.

use super::ctx::RequestCtx;
use crate::state::Gateway;
use crate::telemetry::request::{RequestTrace, Summary};
use http::HeaderName;
use pingora_core::Error;
use pingora_http::RequestHeader;
use pingora_proxy::Session;

/// Parsed once: a lookup or removal by `&str` parses the name each time.
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Start the request's trace (joining a caller's `traceparent`), if tracing is on.
pub(super) fn begin(gateway: &Gateway, session: &Session, ctx: &mut RequestCtx) {
    if let Some(tracer) = &gateway.tracer {
        let incoming = session
            .req_header()
            .headers
            .get(&TRACEPARENT)
            .and_then(|v| v.to_str().ok());
        ctx.trace = RequestTrace::begin(tracer, incoming);
    }
}

/// An attempt starts (`upstream_peer`, before it connects): open its span.
pub(super) fn attempt(ctx: &mut RequestCtx) {
    let Some(trace) = ctx.trace.as_mut() else {
        return;
    };
    match ctx.failover.plan.as_ref().and_then(|a| a.current()) {
        Some(c) => {
            let model = c.sent_model.as_deref().or(c.model.as_deref());
            trace.attempt(&c.target.config.name, model.or(ctx.body.model.as_deref()));
        }
        None => trace.attempt("-", ctx.body.model.as_deref()),
    }
}

/// The attempt's request goes upstream: name its span as the parent of the upstream's work.
pub(super) fn inject(ctx: &RequestCtx, upstream_request: &mut RequestHeader) {
    let Some(traceparent) = ctx.trace.as_ref().and_then(|t| t.traceparent()) else {
        return;
    };
    // A caller's trace state belongs to the caller's span, not to ours.
    upstream_request.remove_header(&TRACESTATE);
    if let Err(e) = upstream_request.insert_header("traceparent", traceparent) {
        log::debug!("traceparent not sent: {e}");
    }
}

/// The attempt got a response head.
pub(super) fn attempt_status(ctx: &mut RequestCtx, status: u16) {
    if let Some(trace) = ctx.trace.as_mut() {
        trace.attempt_status(status);
    }
}

/// The attempt failed (connect, reset, timeout); the next one, if any, opens its own span.
pub(super) fn attempt_failed(ctx: &mut RequestCtx, e: &Error) {
    if let Some(trace) = ctx.trace.as_mut() {
        trace.attempt_failed(e.etype().as_str());
    }
}

/// Close the trace and queue its spans for export.
pub(super) fn finish(
    gateway: &Gateway,
    session: &Session,
    ctx: &mut RequestCtx,
    status: u16,
    outcome: &str,
    answer: Option<&super::stream::Outcome>,
) {
    let (Some(trace), Some(tracer)) = (ctx.trace.take(), gateway.tracer.as_ref()) else {
        return;
    };
    let req = session.req_header();
    let usage = answer.and_then(|a| a.usage);
    let operation = super::record::endpoint(req.uri.path()).map(|e| match e {
        "chat" | "responses" => "chat",
        "completions" => "text_completion",
        other => other,
    });
    trace.finish(
        tracer,
        &Summary {
            method: req.method.as_str(),
            path: req.uri.path(),
            route: ctx.route().map(|r| r.config.prefix.as_str()),
            status,
            request_model: ctx.body.model.as_deref(),
            response_model: answer.and_then(|a| a.info.as_ref()?.model.as_deref()),
            operation,
            input_tokens: usage.map(|u| u.prompt_tokens),
            output_tokens: usage.map(|u| u.completion_tokens),
            estimated: answer.is_some_and(|a| a.estimated),
            ttft_s: ctx
                .outcome
                .first_byte
                .map(|t| t.duration_since(ctx.started).as_secs_f64()),
            request_id: ctx.client.request_id.as_str(),
            error: (outcome != "ok").then_some(outcome),
        },
    );
}
