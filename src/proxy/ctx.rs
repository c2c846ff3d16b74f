//! Per-request state shared by the phases. Each field says which phase sets it; later phases
//! only read what earlier ones wrote.

use super::error::GatewayError;
use crate::state::Route;
use std::sync::Arc;
use std::time::Instant;

pub struct RequestCtx {
    /// When the request head was read (set by `new_ctx`).
    pub started: Instant,
    /// The matched route (route phase, `request_filter`).
    pub route: Option<Arc<Route>>,
    /// Upstream path and query (route phase).
    pub upstream_target: Option<String>,
    /// Connection attempts made so far (upstream phase, `upstream_peer`).
    pub attempts: u32,
    /// The gateway's own decision that ended the request, if any (any phase). Decides the
    /// status and error body in `fail_to_proxy` and the log line in `logging`.
    pub error: Option<GatewayError>,
    /// Status written to the client (`response_filter` or the error responder).
    pub status: u16,
}

impl RequestCtx {
    pub fn new() -> Self {
        RequestCtx {
            started: Instant::now(),
            route: None,
            upstream_target: None,
            attempts: 0,
            error: None,
            status: 0,
        }
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestCtx {
    /// Record the gateway's decision and return the error that ends the request with it.
    pub fn fail(&mut self, error: GatewayError) -> Box<pingora_core::Error> {
        self.error = Some(error);
        error.into_pingora()
    }
}
