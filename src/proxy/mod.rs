//! The Pingora proxy: `impl ProxyHttp` is a table of one-line calls into the phase modules, in
//! the order a request meets them (see the README's architecture section).

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
pub mod error;
mod failover;
mod finish;
mod forward;
mod keepalive;
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

pub use ctx::RequestCtx;

use crate::state::Gateway;
use async_trait::async_trait;
use pingora_cache::{CacheKey, CacheMeta, ForcedFreshness, HitHandler, RespCacheable};
use pingora_core::modules::http::HttpModules;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, ProxyWarnLogContext, Session};
use std::sync::Arc;

pub struct LlmProxy {
    pub gateway: Arc<Gateway>,
}

#[async_trait]
impl ProxyHttp for LlmProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(&self.gateway.in_flight)
    }

    /// None: Pingora's default is a response-compression module switched off, which has
    /// nothing to do here. Bodies leave as upstreams encoded them (token accounting and chat
    /// logs read them as they pass).
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        client::head_received(&self.gateway, session);
        auth::hide_credentials(session.req_header_mut());
        request_id::assign(&self.gateway, session, ctx);
        trace::begin(&self.gateway, session, ctx);
        keepalive::close_when_draining(&self.gateway, session);
        access::check_client(&self.gateway, session, ctx)
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
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

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        cache::enable(&self.gateway, session, ctx);
        Ok(())
    }

    fn cache_key_callback(&self, _: &Session, ctx: &mut RequestCtx) -> Result<CacheKey> {
        cache::key(ctx)
    }

    async fn cache_hit_filter(
        &self,
        _: &mut Session,
        meta: &CacheMeta,
        hit: &mut HitHandler,
        _is_fresh: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<ForcedFreshness>> {
        Ok(cache::on_hit(meta, hit, ctx))
    }

    fn response_cache_filter(
        &self,
        _: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<RespCacheable> {
        Ok(cache::admit(resp, ctx))
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let peer = forward::upstream_peer(session, ctx).await?;
        trace::attempt(ctx);
        Ok(peer)
    }

    fn fail_to_connect(
        &self,
        _: &mut Session,
        _: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        trace::attempt_failed(ctx, &e);
        failover::on_connect_failure(ctx, e)
    }

    fn error_while_proxy(
        &self,
        _: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        trace::attempt_failed(ctx, &e);
        failover::on_proxy_error(session, ctx, e, client_reused)
    }

    async fn upstream_request_filter(
        &self,
        _: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        forward::upstream_request(ctx, upstream_request)?;
        trace::inject(ctx, upstream_request);
        request_id::to_upstream(ctx, upstream_request)
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        trace::attempt_status(ctx, upstream_response.status.as_u16());
        failover::judge_head(ctx, session, upstream_response)?;
        mask::prepare(ctx, upstream_response)?;
        forward::upstream_response(upstream_response, ctx)?;
        stream::tap_response(ctx, upstream_response);
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        failover::judge_error_body(ctx, session, body, end_of_stream)?;
        mask::apply(ctx, body, end_of_stream);
        Ok(None)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
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

    fn response_body_filter(
        &self,
        _: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        stream::on_body(ctx, body).map_err(|_| ctx.fail(error::GatewayError::TokensExhausted))
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        finish::fail_to_proxy(session, e, ctx).await
    }

    fn suppress_error_log(&self, _: &Session, ctx: &RequestCtx, e: &Error) -> bool {
        finish::is_quiet(ctx, e)
    }

    fn suppress_proxy_warn_log(
        &self,
        _: &Session,
        ctx: &RequestCtx,
        e: &Error,
        context: ProxyWarnLogContext,
    ) -> bool {
        context == ProxyWarnLogContext::UpstreamRetry && finish::note_retry(ctx, e)
    }

    /// Pingora's error lines name the request with this: method and path, never the query
    /// (Gemini-style clients put keys there).
    fn request_summary(&self, session: &Session, _: &RequestCtx) -> String {
        let req = session.req_header();
        use crate::logfmt::Field;
        format!("{} {}", Field(req.method.as_str()), Field(req.uri.path()))
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        finish::finish(&self.gateway, session, e, ctx).await;
    }
}
