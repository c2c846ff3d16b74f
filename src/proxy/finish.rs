//! Finish phase (`fail_to_proxy`, `logging`): the error answer when a request cannot be served,
//! and the one access-log line every request gets, errors and local answers included.

use super::ctx::RequestCtx;
use super::error::{respond_json, GatewayError};
use pingora_core::Error;
use pingora_proxy::{FailToProxy, Session};

/// Answer a failed request with an OpenAI-shaped error, unless the client already has part of a
/// response (then the connection is closed: a cut stream must never look complete) or is gone.
pub async fn fail_to_proxy(session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
    let decided = ctx.error.or_else(|| GatewayError::from_pingora(e));
    let Some(error) = decided else {
        // The client went away; there is no one to answer.
        return FailToProxy {
            error_code: 0,
            can_reuse_downstream: false,
        };
    };
    ctx.error = Some(error);
    if session.response_written().is_some() {
        return FailToProxy {
            error_code: 0,
            can_reuse_downstream: false,
        };
    }
    let status = error.status();
    ctx.status = status;
    if let Err(write_err) = respond_json(session, status, error.body()).await {
        log::debug!("could not send the error response: {write_err}");
    }
    // Errors decided before any upstream work (404) leave the connection in a clean state.
    let reusable = ctx.attempts == 0 && session.is_body_done();
    FailToProxy {
        error_code: status,
        can_reuse_downstream: reusable,
    }
}

/// The access log: method, path (never the query: it may carry keys), status, route, attempts,
/// bytes and latency.
pub fn access_log(session: &Session, e: Option<&Error>, ctx: &RequestCtx) {
    if !log::log_enabled!(target: "access", log::Level::Info) {
        return;
    }
    let req = session.req_header();
    let status = session
        .response_written()
        .map_or(ctx.status, |r| r.status.as_u16());
    let route = ctx.route.as_ref().map_or("-", |r| r.config.prefix.as_str());
    let outcome = match (ctx.error, e) {
        (Some(err), _) => err.code(),
        (None, Some(_)) => "aborted",
        (None, None) => "ok",
    };
    log::info!(
        target: "access",
        "{} {} status={} route={} attempts={} sent={} ms={:.1} outcome={}",
        req.method,
        req.uri.path(),
        status,
        route,
        ctx.attempts,
        session.body_bytes_sent(),
        ctx.started.elapsed().as_secs_f64() * 1000.0,
        outcome,
    );
}
