//! Per-request state shared by the phases. Each field says which phase sets it; later phases
//! only read what earlier ones wrote.

use super::error::GatewayError;
use super::preread::RestoreSlot;
use crate::keys::pool::KeyPool;
use crate::keys::tenant::Tenant;
use crate::state::Route;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Counts a request as in flight from `new_ctx` until its ctx is dropped (after `logging`), so a
/// stopping process can tell when it has drained.
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub fn enter(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(counter))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

pub struct RequestCtx {
    /// When the request head was read (set by `new_ctx`).
    pub started: Instant,
    /// This request's id: a trusted proxy's `X-Request-Id`, else a random one (request-id
    /// phase, `early_request_filter`). In logs, chat-log records, headers and error messages.
    pub request_id: crate::request_id::RequestId,
    /// The client's address, after trusted proxies (access phase, `early_request_filter`).
    pub client_ip: Option<IpAddr>,
    /// The matched route (route phase, `request_filter`).
    pub route: Option<Arc<Route>>,
    /// The forward key's tenant, when the client presented one (auth phase).
    pub tenant: Option<Arc<Tenant>>,
    /// The forward key's id for logs (auth phase); never the key.
    pub key_id: Option<String>,
    /// The pool whose keys replace the client's credentials (auth phase).
    pub pool: Option<Arc<KeyPool>>,
    /// The pool key used by the current attempt (upstream phase).
    pub pool_key: Option<usize>,
    /// The request's `model`, when the body was read (body phase).
    pub model: Option<String>,
    /// What the body said (body phase; JSON bodies only).
    pub request_info: Option<crate::openai::RequestInfo>,
    /// The body as sent upstream (body phase), for chat logs and token estimates.
    pub request_body: Option<bytes::Bytes>,
    /// The body was changed (usage requested), so its length is new (body → upstream phase).
    pub body_rewritten: bool,
    /// The client did not ask for the usage chunk we asked for: remove it (body → stream).
    pub strip_usage_chunk: bool,
    /// What the response said, as it flows (stream phase).
    pub response: Option<super::stream::ResponseTap>,
    /// When the first response body byte went to the client (stream phase).
    pub first_byte: Option<Instant>,
    /// Output pacing for this request's stream (limits phase).
    pub pacer: Option<super::stream::Pacer>,
    /// Set when the body phase swapped in the pre-read session; `logging` restores the real one.
    pub preread: Option<RestoreSlot>,
    /// The response phase abandoned this attempt for another one (a refused key, a retryable
    /// status, `context_length_exceeded`); the retry phase lets Pingora try again.
    pub retry_now: bool,
    /// How long to wait before the next attempt (backoff or `Retry-After`; upstream phase).
    pub wait_next: Option<std::time::Duration>,
    /// The attempt plan: upstreams and models, and what is left to try (upstream phase).
    pub attempts: Option<super::attempts::Attempts>,
    /// Shared with the pre-read session: the attempt's body, stream deadlines, what the client
    /// has seen (body phase).
    pub link: Option<Arc<super::link::Link>>,
    /// The gateway swaps the client's credentials for pool keys (auth phase).
    pub swap_credentials: bool,
    /// Attempts repeated with another key of the same pool (response phase).
    pub key_rotations: u32,
    /// A 401/403 already moved this request to another key: the only such change it gets, so
    /// one request can never walk (and discredit) the whole pool (response phase).
    pub refusal_moved: bool,
    /// The key the last attempt was refused or throttled with: the next pick avoids it
    /// (response phase → upstream phase).
    pub avoid_key: Option<(Arc<KeyPool>, usize)>,
    /// The current attempt's 401/403/429 to a pool key (status, `Retry-After`), held until its
    /// body shows what it says about the key: invalid, quota spent (response phase).
    pub held_key_answer: Option<(u16, Option<std::time::Duration>)>,
    /// Masks the pool key out of an error answer, when this attempt sent it in the query
    /// (response phase).
    pub mask: Option<super::mask::Masker>,
    /// A failure on a stale pooled connection was retried (once per request; retry phase).
    pub reuse_retried: bool,
    /// The current attempt got a response head (upstream phase).
    pub head_seen: bool,
    /// The deadline that ended the last attempt, if one did (retry phase; for logs).
    pub deadline: Option<super::link::Deadline>,
    /// An error answer held back until its body shows whether another model could serve
    /// (`context_length_exceeded`; response phase).
    pub error_body: Option<Vec<u8>>,
    /// The request-rate decision, for the `x-ratelimit-*` headers (limits phase).
    pub rate: Option<crate::limits::Decision>,
    /// Tokens reserved under a budget, settled with the real usage in `logging` (limits phase).
    pub tokens: Option<super::limits::TokenReservation>,
    /// Holds this request's place under a concurrency limit until the ctx is dropped.
    pub concurrency: Option<crate::limits::Slot>,
    /// CORS headers for the answer, when the origin is allowed (CORS phase).
    pub cors: Option<crate::cors::Headers>,
    /// The path after the route prefix, and the query (route phase); each attempt puts it
    /// under its upstream's base path.
    pub forward_path: Option<(String, Option<String>)>,
    /// The gateway's own decision that ended the request, if any (any phase). Decides the
    /// status and error body in `fail_to_proxy` and the log line in `logging`.
    pub error: Option<GatewayError>,
    /// A broken stream was continued by another candidate (`stream_errors: continue`).
    pub continued: bool,
    /// Status written to the client (`response_filter` or the error responder).
    pub status: u16,
    /// The response cache's view of the request (body and cache phases).
    pub cache: super::cache::CacheCtx,
    /// Holds a place in the streams-in-flight gauge while an SSE answer is sent (`response_filter`).
    pub stream_guard: Option<crate::metrics::StreamGuard>,
    /// This request's trace, when tracing is on and it is sampled (`early_request_filter`; each
    /// upstream attempt adds a child span).
    pub trace: Option<crate::telemetry::request::RequestTrace>,
    _in_flight: InFlight,
}

impl RequestCtx {
    pub fn new(in_flight: &Arc<AtomicUsize>) -> Self {
        RequestCtx {
            _in_flight: InFlight::enter(in_flight),
            started: Instant::now(),
            request_id: crate::request_id::RequestId::generate(),
            client_ip: None,
            route: None,
            tenant: None,
            key_id: None,
            pool: None,
            pool_key: None,
            model: None,
            request_info: None,
            request_body: None,
            body_rewritten: false,
            strip_usage_chunk: false,
            response: None,
            first_byte: None,
            pacer: None,
            preread: None,
            retry_now: false,
            wait_next: None,
            attempts: None,
            link: None,
            swap_credentials: false,
            key_rotations: 0,
            refusal_moved: false,
            avoid_key: None,
            held_key_answer: None,
            mask: None,
            reuse_retried: false,
            head_seen: false,
            deadline: None,
            error_body: None,
            cors: None,
            rate: None,
            tokens: None,
            concurrency: None,
            forward_path: None,
            error: None,
            continued: false,
            status: 0,
            cache: Default::default(),
            stream_guard: None,
            trace: None,
        }
    }
}

impl RequestCtx {
    /// Upstream attempts made so far.
    pub fn attempts_made(&self) -> u32 {
        self.attempts.as_ref().map_or(0, |a| a.made)
    }

    /// The upstream and model of the current attempt.
    pub fn candidate(&self) -> Option<&super::attempts::Candidate> {
        self.attempts.as_ref()?.current()
    }

    /// The pool whose key this attempt sends: the upstream's own, else the request's (tenant or
    /// route), and only when the gateway swaps credentials at all.
    pub fn attempt_pool(&self) -> Option<Arc<KeyPool>> {
        if !self.swap_credentials {
            return None;
        }
        self.candidate()
            .and_then(|c| c.target.pool.clone())
            .or_else(|| self.pool.clone())
    }

    /// The model this attempt asks the upstream for, as a key-pool cool-down tag (`None`:
    /// unknown, so a 429 cools the whole key).
    pub fn attempt_model(&self) -> Option<u64> {
        let c = self.candidate()?;
        let model = c.sent_model.as_deref().or(c.model.as_deref())?;
        Some(crate::keys::pool::model_tag(model))
    }

    /// Has any response byte reached the client? Then nothing may be retried.
    pub fn client_has_bytes(&self, session: &pingora_proxy::Session) -> bool {
        match &self.link {
            Some(link) => link.flushed(),
            None => session.response_written().is_some(),
        }
    }

    /// Record the gateway's decision and return the error that ends the request with it.
    pub fn fail(&mut self, error: GatewayError) -> Box<pingora_core::Error> {
        self.error = Some(error);
        error.into_pingora()
    }
}
