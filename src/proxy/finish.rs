//! Finish phase (`fail_to_proxy`, `logging`): the error answer when a request cannot be served,
//! and the one access-log line every request gets, errors and local answers included.

use super::ctx::RequestCtx;
use super::error::{respond, GatewayError};
use crate::logfmt::Line;
use crate::state::Gateway;
use pingora_core::{Error, ErrorSource, ErrorType};
use pingora_proxy::{FailToProxy, Session};

/// How long a refused upload may keep sending before the connection is cut.
const LINGER: std::time::Duration = std::time::Duration::from_secs(10);

/// Answer a failed request with an OpenAI-shaped error, unless the client already has part of a
/// response (then the connection is closed: a cut stream must never look complete) or is gone.
pub(super) async fn fail_to_proxy(
    session: &mut Session,
    e: &Error,
    ctx: &mut RequestCtx,
) -> FailToProxy {
    // Answer on the real session: only it can say `Connection: close`.
    restore_session(session, ctx).await;
    // A client whose body stalled or is badly framed is still there to be told (408, 400).
    let body_unread = !session.as_downstream_mut().is_body_done();
    let decided = ctx
        .outcome
        .error
        .or_else(|| GatewayError::from_pingora(e))
        .or_else(|| body_unread.then(|| GatewayError::from_client_body(e))?);
    let Some(error) = decided else {
        // The client went away; there is no one to answer.
        return FailToProxy {
            error_code: 0,
            can_reuse_downstream: false,
        };
    };
    ctx.outcome.error = Some(error);
    note_deadline(ctx);
    if session.response_written().is_some() {
        if super::continuation::run(session, ctx).await {
            // The client got the whole answer and `[DONE]`; the connection still closes (the
            // broken attempt left Pingora's own response state unfinished).
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        stream_error_event(session, ctx).await;
        return FailToProxy {
            error_code: 0,
            can_reuse_downstream: false,
        };
    }
    let status = error.status();
    ctx.outcome.status = Some(status);
    // Refusals decided before any upstream work keep the connection. The unread rest of the
    // body is read and discarded first (for at most `LINGER`): answering and closing while the
    // client is still sending resets the connection, and the client loses the answer with it.
    // A body that stalled or is badly framed cannot be drained: the connection closes.
    let body_broken = matches!(
        error,
        GatewayError::RequestTimeout | GatewayError::InvalidBody
    );
    let mut reusable = ctx.attempts_made() == 0 && !body_broken;
    if reusable && !session.as_downstream_mut().is_body_done() {
        let drain = session.as_downstream_mut().drain_request_body();
        reusable = matches!(tokio::time::timeout(LINGER, drain).await, Ok(Ok(())));
    }
    if !reusable {
        // Say so (Pingora then writes `Connection: close`), or a keep-alive client sends its next
        // request into a closing socket.
        session.set_keepalive(None);
    }
    let mut headers: Vec<_> = ctx
        .client
        .cors
        .take()
        .unwrap_or_default()
        .into_iter()
        .collect();
    headers.extend(super::limits::headers(ctx));
    headers.extend(super::request_id::header(ctx));
    let body = error.body_for(ctx.client.request_id.as_str());
    if let Err(write_err) = respond(session, status, Some(body), &headers).await {
        log::debug!("could not send the error response: {write_err}");
    }
    FailToProxy {
        error_code: status,
        can_reuse_downstream: reusable,
    }
}

/// A stream cut after bytes reached the client ends without its terminating chunk; on routes
/// with `stream_errors: event` an OpenAI-shaped error event goes first, so SDKs that read events
/// (not the connection) see why. Never a `[DONE]`.
async fn stream_error_event(session: &mut Session, ctx: &RequestCtx) {
    let wanted = ctx
        .route()
        .is_some_and(|r| r.config.resilience.stream_errors == crate::config::StreamErrors::Event);
    let is_sse = session
        .response_written()
        .and_then(|r| r.headers.get(http::header::CONTENT_TYPE))
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    if !(wanted && is_sse) {
        return;
    }
    let error = match ctx.outcome.error {
        Some(GatewayError::CutByShutdown) => GatewayError::CutByShutdown,
        _ => GatewayError::StreamInterrupted,
    };
    let mut event = Vec::with_capacity(256);
    event.extend_from_slice(b"\n\ndata: ");
    event.extend_from_slice(&error.body_for(ctx.client.request_id.as_str()));
    event.extend_from_slice(b"\n\n");
    if let Err(e) = session
        .write_response_body(Some(bytes::Bytes::from(event)), false)
        .await
    {
        log::debug!("could not send the stream error event: {e}");
    }
}

/// The last phase of every request: hand the real client session back (keep-alive), then log.
pub(super) async fn finish(
    gateway: &Gateway,
    session: &mut Session,
    e: Option<&Error>,
    ctx: &mut RequestCtx,
) {
    restore_session(session, ctx).await;
    super::client::request_done(session);
    let limit_decisions = super::observe::limit_decisions(ctx);
    // The slot goes back first: nothing after this concerns the client any more.
    super::limits::release(gateway, ctx).await;
    let wants_text = gateway.records_answer_text(ctx.route().map(|r| &**r));
    let mut outcome = super::stream::outcome(ctx, e.is_none() || ctx.outcome.continued, wants_text);
    // A byte estimate is replaced by the tokenizer's count only where a count is kept: a token
    // budget to settle, or a chat record. Otherwise (the access log's "~N") it stays as it is:
    // loading o200k costs ~45 MiB and a burst of CPU, which a gateway without token features
    // should never pay because clients left mid-answer.
    let count_kept = wants_text || ctx.limits.tokens.is_some();
    if let Some(o) = outcome.as_mut().filter(|o| o.estimated && count_kept) {
        count_tokens(ctx, o).await;
    }
    let used = outcome
        .as_ref()
        .and_then(|o| o.usage.map(|u| u.total_tokens))
        .filter(|_| !super::cache::free_of_charge(gateway, ctx));
    super::cache::account(gateway, ctx);
    super::limits::settle_tokens(gateway, ctx, used).await;
    let status = ctx.status_sent(session);
    if let Some(route) = ctx.route().filter(|r| r.chat_log) {
        if let (Some(log), Some(settings)) = (&gateway.chat_log, &gateway.config.log.chat) {
            let path = session.req_header().uri.path();
            if let Some(line) =
                super::record::chat_record(ctx, path, status, outcome.as_ref(), settings.messages)
            {
                log.record(&route.config.prefix, line);
            }
        }
    }
    if gateway.config.log.print_chat && ctx.body.info.is_some() {
        super::record::print_chat(ctx, outcome.as_ref());
    }
    super::observe::record(gateway, session, e, ctx, outcome.as_ref(), limit_decisions);
    let label = outcome_label(ctx, e);
    super::console::record(gateway, session, ctx, status, label, outcome.as_ref());
    super::trace::finish(gateway, session, ctx, status, label, outcome.as_ref());
    access_log(session, e, ctx, outcome.as_ref());
}

/// How the request ended, as the access log's `outcome=` (and the console and traces) say it.
fn outcome_label(ctx: &RequestCtx, e: Option<&Error>) -> &'static str {
    match (ctx.outcome.error, e) {
        // Another candidate finished the answer the upstream broke off.
        _ if ctx.outcome.continued => "continued",
        // What ended it, when a deadline did: `first_token`, `idle`, `total`, `max_duration`.
        (Some(_), _) if ctx.attempt.deadline.is_some() => {
            ctx.attempt.deadline.map_or("-", |d| d.label())
        }
        // The upstream broke a stream the client was reading.
        (Some(GatewayError::StreamInterrupted), _) => "cut",
        (Some(err), _) => err.code(),
        (None, Some(_)) => "aborted",
        (None, None) => "ok",
    }
}

/// Replace a byte-count estimate with the model's tokenizer, on the blocking pool (loading a
/// tokenizer and counting a long history must not hold a proxy worker).
async fn count_tokens(ctx: &RequestCtx, outcome: &mut super::stream::Outcome) {
    let model = outcome
        .info
        .as_ref()
        .and_then(|i| i.model.clone())
        .or_else(|| ctx.body.model.clone())
        .unwrap_or_default();
    // The body is shared, not copied: only the conversation's range is read from it.
    let input = match (&ctx.body.info, &ctx.body.bytes) {
        (Some(info), Some(body)) => info.input.as_ref().map(|(_, r)| (body.clone(), r.clone())),
        _ => None,
    };
    // The answer kept is already capped (`stream::MAX_ANSWER_KEPT`); the tokenizer reads at
    // most `tokens::TOKENIZE_CAP` of it.
    let mut answer = String::new();
    for c in outcome.info.iter().flat_map(|i| i.choices.iter()) {
        answer.push_str(&c.reasoning);
        answer.push_str(&c.text);
        for t in &c.tool_calls {
            answer.push_str(&t.name);
            answer.push_str(&t.arguments);
        }
    }
    // Past the kept text, the rest of the answer counts by size.
    let uncounted = usage_bytes(outcome).saturating_sub(answer.len() as u64);
    let counted = tokio::task::spawn_blocking(move || {
        let prompt = input.and_then(|(body, range)| {
            let raw = std::str::from_utf8(body.get(range)?).ok()?;
            Some(crate::tokens::count_input(&model, raw))
        });
        let completion = crate::tokens::count(&model, &answer) + uncounted.div_ceil(4);
        (prompt, completion)
    })
    .await;
    if let (Ok((prompt, completion)), Some(usage)) = (counted, outcome.usage.as_mut()) {
        usage.prompt_tokens = prompt.unwrap_or(usage.prompt_tokens);
        usage.completion_tokens = completion;
        usage.total_tokens = usage.prompt_tokens + completion;
    }
}

/// Bytes of answer the byte estimate was made from (4 bytes a token), for the part of a
/// truncated answer that was not kept.
fn usage_bytes(outcome: &super::stream::Outcome) -> u64 {
    match (outcome.truncated, outcome.usage) {
        (true, Some(u)) => u.completion_tokens * 4,
        _ => 0,
    }
}

async fn restore_session(session: &mut Session, ctx: &mut RequestCtx) {
    if let Some(slot) = ctx.body.preread.take() {
        super::preread::restore(&mut session.downstream_session, &slot).await;
    }
}

/// The access log: method, path (never the query: it may carry keys), status, route, attempts,
/// bytes and latency.
pub(super) fn access_log(
    session: &Session,
    e: Option<&Error>,
    ctx: &RequestCtx,
    outcome: Option<&super::stream::Outcome>,
) {
    if !log::log_enabled!(target: "access", log::Level::Info) {
        return;
    }
    let req = session.req_header();
    let status = ctx.status_sent(session);
    let route = ctx.route().map_or("-", |r| r.config.prefix.as_str());
    let tokens = outcome.and_then(|o| o.usage.map(|u| (u, o.estimated)));
    // The upstream's own id, as `request_id::to_client` renamed it (a log field: no spaces).
    let upstream_id = session
        .response_written()
        .and_then(|r| r.headers.get(&super::request_id::X_UPSTREAM_REQUEST_ID))
        .and_then(|v| crate::request_id::RequestId::accept(v.as_bytes()));
    let result = outcome_label(ctx, e);
    let candidate = ctx.candidate();
    // Every text field may come from the client (the method and path too: Pingora passes what
    // the request line held, and a model is renamed only through config): one token each.
    // Written into a reused buffer, value by value (`logfmt::line`, `logfmt::Line`).
    crate::logfmt::line::write("access", |out| {
        let mut l = Line(out);
        l.field(req.method.as_str()).raw(" ").field(req.uri.path());
        l.raw(" status=").num(status.into());
        l.raw(" route=").field(route).raw(" client=");
        match ctx.client.ip {
            Some(ip) => l.ip(ip),
            None => l.raw("-"),
        };
        l.raw(" key=")
            .field(ctx.auth.key_id.as_deref().unwrap_or("-"));
        l.raw(" model=")
            .field(ctx.body.model.as_deref().unwrap_or("-"));
        l.raw(" upstream=")
            .field(candidate.map_or("-", |c| c.target.config.name.as_str()));
        l.raw(" answered_by=").field(
            candidate
                .and_then(|c| c.sent_model.as_deref())
                .unwrap_or("-"),
        );
        l.raw(" attempts=").num(ctx.attempts_made().into());
        l.raw(" sent=").num(session.body_bytes_sent() as u64);
        l.raw(" ms=").ms(ctx.started.elapsed()).raw(" ttft_ms=");
        match ctx.outcome.first_byte {
            Some(t) => l.ms(t.duration_since(ctx.started)),
            None => l.raw("-"),
        };
        l.raw(" tokens=");
        match tokens {
            Some((u, estimated)) => {
                l.num(u.prompt_tokens).raw("+").num(u.completion_tokens);
                l.raw(if estimated { "~" } else { "" })
            }
            None => l.raw("-"),
        };
        l.raw(" cache=").raw(super::cache::label(ctx));
        l.raw(" outcome=").raw(result);
        l.raw(" request_id=").raw(ctx.client.request_id.as_str());
        l.raw(" upstream_request_id=")
            .raw(upstream_id.as_ref().map_or("-", |id| id.as_str()));
        Ok(())
    });
}

/// Refusals of bad requests (4xx decided by the gateway) and clients that left are the access
/// log's business (its `outcome=`), not error-log lines: every impatient client would otherwise
/// be an ERROR at any log level. Nor is a deadline that ended the request: Pingora would call
/// it a "Downstream ReadTimedout" (the pre-read session's timer carries it); `note_deadline`
/// says what happened instead.
pub(super) fn is_quiet(ctx: &RequestCtx, e: &Error) -> bool {
    let client_left = *e.esource() == ErrorSource::Downstream
        && matches!(
            e.etype(),
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
        );
    // A stream cut by a stop was the operator's decision, already logged as a warning; a
    // continued one was served in full (the access log says `continued`).
    client_left
        || ctx.outcome.continued
        || ctx
            .outcome
            .error
            .is_some_and(|g| g.status() < 500 || g == GatewayError::CutByShutdown)
        || ctx.attempt.deadline.is_some()
}

/// The log line of a request a deadline ended: which one, on which upstream and model.
fn note_deadline(ctx: &RequestCtx) {
    let Some(deadline) = ctx.attempt.deadline else {
        return;
    };
    let c = ctx.candidate();
    log::warn!(
        "route {}: upstream {} model {}: {}; {} (request_id={})",
        ctx.route().map_or("-", |r| r.config.prefix.as_str()),
        c.map_or("-", |c| c.target.config.name.as_str()),
        c.and_then(|c| c.breaker_model()).unwrap_or("-"),
        deadline.as_str(),
        match ctx.outcome.error {
            Some(GatewayError::StreamInterrupted) => "the stream was cut",
            _ => "no attempt left: the client got a 504",
        },
        ctx.client.request_id,
    );
}

/// A failed attempt that the plan retries is no warning: say so at INFO, with where the next
/// attempt goes (Pingora's own line would be a WARN "Fail to proxy" for a routine retry).
pub(super) fn note_retry(ctx: &RequestCtx, e: &Error) -> bool {
    if log::log_enabled!(log::Level::Info) {
        let c = ctx.candidate();
        let why = match ctx.attempt.deadline {
            Some(d) => d.as_str().to_string(),
            None => e.to_string(),
        };
        log::info!(
            "route {}: attempt {} failed ({why}); next: upstream {} model {} in {:?} (request_id={})",
            ctx.route().map_or("-", |r| r.config.prefix.as_str()),
            ctx.attempts_made(),
            c.map_or("-", |c| c.target.config.name.as_str()),
            c.and_then(|c| c.breaker_model()).unwrap_or("-"),
            ctx.attempt.wait_next.unwrap_or_default(),
            ctx.client.request_id,
        );
    }
    true
}
