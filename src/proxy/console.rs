//! Console phase (`logging`): what the web console's live board and tail take of a finished
//! request (only when the console is on): its timings, tokens and outcome, and — with
//! `admin.ui_messages` — the exchange as the chat log would record it.

use super::ctx::RequestCtx;
use crate::admin::board::Finished;
use crate::state::Gateway;
use pingora_proxy::Session;

pub(super) fn record(
    gateway: &Gateway,
    session: &Session,
    ctx: &RequestCtx,
    status: u16,
    outcome: &str,
    answer: Option<&super::stream::Outcome>,
) {
    let Some(console) = &gateway.console else {
        return;
    };
    let path = session.req_header().uri.path();
    let exchange = match console.show_messages && console.board.watched() {
        true => super::record::chat_record(ctx, path, status, answer, true)
            .map(crate::chatlog::Line::into_vec),
        false => None,
    };
    let exchange = exchange.as_deref().and_then(|line| {
        serde_json::from_slice::<&serde_json::value::RawValue>(line.trim_ascii_end()).ok()
    });
    let usage = answer.and_then(|a| a.usage.map(|u| (u, a.estimated)));
    console.board.record(&Finished {
        request_id: ctx.client.request_id.as_str(),
        path,
        route: ctx.route().map(|r| r.config.prefix.as_str()),
        model: ctx.body.model.as_deref(),
        tenant: ctx.auth.tenant.as_ref().map(|t| t.name.as_str()),
        key_id: ctx.auth.key_id.as_deref(),
        status,
        latency: ctx.started.elapsed(),
        ttft: ctx
            .outcome
            .first_byte
            .map(|t| t.duration_since(ctx.started)),
        tokens: usage.map(|(u, estimated)| (u.prompt_tokens, u.completion_tokens, estimated)),
        outcome,
        rate: ctx
            .limits
            .rate
            .filter(|d| d.limit > 0)
            .map(|d| (d.limit, d.remaining)),
        exchange,
    });
}
