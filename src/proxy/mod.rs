//! The Pingora proxy: `impl ProxyHttp` is a table of one-line calls into the phase modules, in
//! the order a request meets them (see the README's architecture section).

mod ctx;
pub mod error;
mod finish;
mod forward;
mod retry;
mod route;

pub use ctx::RequestCtx;

use crate::state::Gateway;
use async_trait::async_trait;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
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

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        route::route_request(&self.gateway, session, ctx).await
    }

    async fn upstream_peer(&self, _: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        forward::upstream_peer(ctx).await
    }

    fn fail_to_connect(
        &self,
        _: &mut Session,
        _: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        retry::on_connect_failure(ctx, e)
    }

    async fn upstream_request_filter(
        &self,
        _: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        forward::upstream_request(ctx, upstream_request)
    }

    async fn upstream_response_filter(
        &self,
        _: &mut Session,
        upstream_response: &mut ResponseHeader,
        _: &mut RequestCtx,
    ) -> Result<()> {
        forward::upstream_response(upstream_response);
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        finish::fail_to_proxy(session, e, ctx).await
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        finish::access_log(session, e, ctx);
    }
}
