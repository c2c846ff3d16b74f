//! The Pingora proxy: `impl ProxyHttp` is a table of one-line calls into the phase modules, in
//! the order a request meets them (see the README's architecture section). Each hook says what
//! Pingora guarantees when it calls it, and what it does here.

mod access;
mod attempts;
mod auth;
mod benchmark;
mod body;
mod cache;
mod cache_admin;
mod cache_twin;
mod client;
mod console;
mod continuation;
mod cors;
mod ctx;
pub(crate) mod error;
mod failover;
mod finish;
mod forward;
mod keepalive;
#[cfg(test)]
mod layering;
mod limits;
mod link;
mod mask;
mod model_list;
mod observe;
mod preread;
mod record;
mod request_id;
mod route;
mod stream;
mod trace;

pub(crate) use ctx::RequestCtx;

use crate::state::Gateway;
use async_trait::async_trait;
use pingora_cache::{CacheKey, CacheMeta, ForcedFreshness, HitHandler, RespCacheable};
use pingora_core::modules::http::HttpModules;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, ProxyWarnLogContext, Session};
use std::sync::Arc;

pub(crate) struct LlmProxy {
    pub gateway: Arc<Gateway>,
}

#[async_trait]
impl ProxyHttp for LlmProxy {
    /// Boxed: Pingora keeps the context inside its per-request future, which it moves into a
    /// fresh allocation for every request; a 1.7 KB context made that copy ~5,000 instructions
    /// a request dearer (callgrind).
    type CTX = Box<RequestCtx>;

    /// Pingora: once per request, before any filter; the ctx lives until after `logging`.
    /// Here: the request counts as in flight (graceful stop waits for it) until the ctx drops.
    fn new_ctx(&self) -> Box<RequestCtx> {
        Box::new(RequestCtx::new(&self.gateway.in_flight))
    }

    /// None: Pingora's default is a response-compression module switched off, which has
    /// nothing to do here. Bodies leave as upstreams encoded them (token accounting and chat
    /// logs read them as they pass).
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    /// Pingora: first filter for every request, before downstream modules and `request_filter`;
    /// an `Err` goes to `fail_to_proxy`, then `logging`.
    /// Here: credentials marked sensitive, request id, trace, keep-alive while draining, client IP
    /// and the global allow/deny list.
    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        client::head_received(&self.gateway, session);
        auth::hide_credentials(session.req_header_mut());
        request_id::assign(&self.gateway, session, ctx);
        trace::begin(&self.gateway, session, ctx);
        keepalive::close_when_draining(&self.gateway, session);
        access::check_client(&self.gateway, session, ctx)
    }

    /// Pingora: once, after the request head was read (the body not yet); `Ok(true)` means a
    /// response was written and the request ends (then `logging`); `Err` goes to `fail_to_proxy`.
    /// Here: path normalised; CORS preflight, cache admin and `/healthz` answered locally; route,
    /// auth, limits; the body pre-read (from here the pre-read session serves it on every
    /// attempt); token budget; a stream served from its cached non-stream twin.
    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<bool> {
        route::normalize(session, ctx)?;
        if cors::preflight_or_prepare(&self.gateway, session, ctx).await? {
            return Ok(true);
        }
        if cache_admin::serve(&self.gateway, session, ctx).await? {
            return Ok(true);
        }
        if route::route_request(&self.gateway, session, ctx).await? {
            return Ok(true);
        }
        auth::authenticate(&self.gateway, session.req_header(), ctx)?;
        limits::enforce(&self.gateway, session, ctx).await?;
        body::read_body(&self.gateway, session, ctx).await?;
        if benchmark::serve(session, ctx).await? {
            return Ok(true);
        }
        limits::reserve_tokens(&self.gateway, session, ctx).await?;
        cache_twin::serve(&self.gateway, session, ctx).await
    }

    /// Pingora: after `request_filter` (skipped when it answered); the cache is used only if this
    /// enables it on the session.
    /// Here: route policy, `caching` and `Cache-Control` decide; the key is computed once.
    fn request_cache_filter(&self, session: &mut Session, ctx: &mut Box<RequestCtx>) -> Result<()> {
        cache::enable(&self.gateway, session, ctx);
        Ok(())
    }

    /// Pingora: only when the cache was enabled; must not be left to the default (it panics).
    /// Here: the key computed in `request_cache_filter`, the route as its user tag.
    fn cache_key_callback(&self, _: &Session, ctx: &mut Box<RequestCtx>) -> Result<CacheKey> {
        cache::key(ctx)
    }

    /// Pingora: after a lookup found an entry (fresh or stale), before it is served.
    /// Here: `no-cache` forces a miss; otherwise the hit is set up as an upstream answer would be
    /// (stream tap, status) and written in batches unless paced.
    async fn cache_hit_filter(
        &self,
        _: &mut Session,
        meta: &CacheMeta,
        hit: &mut HitHandler,
        _is_fresh: bool,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<Option<ForcedFreshness>> {
        Ok(cache::on_hit(&self.gateway, meta, hit, ctx))
    }

    /// Pingora: on a miss with the cache enabled, once the upstream's response head arrived
    /// (after `upstream_response_filter`).
    /// Here: only a 200 of the model asked for is admitted, without `Set-Cookie`.
    fn response_cache_filter(
        &self,
        _: &Session,
        resp: &ResponseHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<RespCacheable> {
        Ok(cache::admit(resp, ctx))
    }

    /// Pingora: before each upstream attempt (again after a retryable error from
    /// `fail_to_connect` or `error_while_proxy`); never after response bytes reached the client.
    /// Here: the plan is made on the first attempt; later ones wait out the chosen backoff; the
    /// attempt's state is reset, its body and deadlines armed; the attempt's span opens.
    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<Box<HttpPeer>> {
        let peer = forward::upstream_peer(session, ctx).await?;
        trace::attempt(ctx);
        Ok(peer)
    }

    /// Pingora: a connect (TCP, TLS, proxy) to the peer failed; nothing reached the upstream. The
    /// returned error's retry flag decides whether `upstream_peer` runs again.
    /// Here: the breaker records it and the plan chooses (failover.rs).
    fn fail_to_connect(
        &self,
        _: &mut Session,
        _: &HttpPeer,
        ctx: &mut Box<RequestCtx>,
        e: Box<Error>,
    ) -> Box<Error> {
        trace::attempt_failed(ctx, &e);
        failover::on_connect_failure(ctx, e)
    }

    /// Pingora: an error after the connection was made (write, read, timeout, or an `Err` from a
    /// response filter); replaces Pingora's own retry policy, so this decides what is safe.
    /// Here: an abandoned attempt goes on; a deadline, reset or silence is classified and planned
    /// (never once the client has bytes, nor a delivered POST unless `retry.on_reset`).
    fn error_while_proxy(
        &self,
        _: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Box<RequestCtx>,
        client_reused: bool,
    ) -> Box<Error> {
        trace::attempt_failed(ctx, &e);
        failover::on_proxy_error(session, ctx, e, client_reused)
    }

    /// Pingora: per attempt, before the request head is written to the upstream.
    /// Here: path on the upstream's base, `Host`, hop-by-hop headers, the pool key swapped in;
    /// `traceparent` and `X-Request-Id`.
    async fn upstream_request_filter(
        &self,
        _: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        forward::upstream_request(ctx, upstream_request)?;
        trace::inject(ctx, upstream_request);
        request_id::to_upstream(ctx, upstream_request)
    }

    /// Pingora: per attempt, when the upstream's response head arrived (never for a cache hit;
    /// also for each informational 1xx head before it); an `Err` abandons the attempt through
    /// `error_while_proxy`.
    /// Here: the failover verdict on the status (key health, retry or fall back), the key masked
    /// out of error answers, hop-by-hop headers dropped, the stream tap set up.
    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        trace::attempt_status(ctx, upstream_response.status.as_u16());
        failover::judge_head(ctx, session, upstream_response)?;
        mask::prepare(ctx, upstream_response)?;
        forward::upstream_response(upstream_response, ctx)?;
        stream::tap_response(&self.gateway, ctx, upstream_response);
        Ok(())
    }

    /// Pingora: per upstream body chunk, before the cache and `response_body_filter`; synchronous.
    /// Here: a held error answer is judged at its end (`context_length_exceeded`, what a 401/403/429
    /// says about the key); the key masked out of error bodies.
    fn upstream_response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<Option<std::time::Duration>> {
        failover::judge_error_body(ctx, session, body, end_of_stream)?;
        mask::apply(ctx, body, end_of_stream);
        Ok(None)
    }

    /// Pingora: once per answer, before its head goes to the client: upstream answers and cache
    /// hits alike (not the answers the gateway writes itself).
    /// Here: CORS, cache and rate-limit headers, the request id, reframing when the body changes,
    /// the streams-in-flight gauge.
    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        keepalive::close_when_draining(&self.gateway, session);
        cors::decorate(response, ctx)?;
        cache::decorate(response, ctx)?;
        stream::reframe(session, response, ctx)?;
        for (name, value) in limits::headers(ctx) {
            response.insert_header(name, value)?;
        }
        request_id::to_client(ctx, response)?;
        observe::on_response(&self.gateway, response, ctx);
        Ok(())
    }

    /// Pingora: per body chunk to the client (hits too); synchronous; a returned duration is slept
    /// before the chunk is written.
    /// Here: SSE events parsed as they pass, the requested usage chunk cut out, pacing, a stream
    /// cut past its hard token budget.
    fn response_body_filter(
        &self,
        _: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<Option<std::time::Duration>> {
        stream::on_body(ctx, body).map_err(|_| ctx.fail(error::GatewayError::TokensExhausted))
    }

    /// Pingora: the request failed for good (an `Err` from a filter, or no attempt left); then
    /// `logging`. The client may already have part of an answer.
    /// Here: an OpenAI-shaped error, or a cut stream continued elsewhere or ended abnormally.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Box<RequestCtx>,
    ) -> FailToProxy {
        finish::fail_to_proxy(session, e, ctx).await
    }

    /// Pingora: before it logs a request's final error.
    /// Here: client departures, refusals and deadlines are the access log's business.
    fn suppress_error_log(&self, _: &Session, ctx: &Box<RequestCtx>, e: &Error) -> bool {
        finish::is_quiet(ctx, e)
    }

    /// Pingora: before it logs a retried attempt's failure as a warning.
    /// Here: a planned retry is logged at INFO with where the next attempt goes.
    fn suppress_proxy_warn_log(
        &self,
        _: &Session,
        ctx: &Box<RequestCtx>,
        e: &Error,
        context: ProxyWarnLogContext,
    ) -> bool {
        context == ProxyWarnLogContext::UpstreamRetry && finish::note_retry(ctx, e)
    }

    /// Pingora's error lines name the request with this: method and path, never the query
    /// (Gemini-style clients put keys there).
    fn request_summary(&self, session: &Session, _: &Box<RequestCtx>) -> String {
        let req = session.req_header();
        use crate::logfmt::Field;
        format!("{} {}", Field(req.method.as_str()), Field(req.uri.path()))
    }

    /// Pingora: exactly once per request, after the answer or the failure, before the session is
    /// finished (so the real session can still be put back for keep-alive).
    /// Here: session restored, slot released, usage and tokens settled, cache counters, chat log,
    /// metrics, console, trace, access log.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Box<RequestCtx>) {
        finish::finish(&self.gateway, session, e, ctx).await;
    }
}
