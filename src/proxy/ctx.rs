//! Per-request state shared by the phases. Each field says which phase sets it; later phases
//! only read what earlier ones wrote. The ctx owns its state types (submodules): the phase
//! modules depend on it, and it depends on nothing in `proxy/` but them and the pure leaves
//! (`error`, `link`, `attempts`).

mod attempt;
mod cache;
mod masker;
mod pacer;
mod tap;
mod tokens;

pub use attempt::{AttemptState, Held};
pub use cache::{CacheCtx, CacheState, Plan};
pub use masker::Masker;
pub use pacer::Pacer;
pub use tap::ResponseTap;
pub use tokens::TokenReservation;

use super::attempts::{Attempts, Candidate};
use super::error::GatewayError;
use super::link::Link;
use crate::keys::pool::KeyPool;
use crate::keys::tenant::Tenant;
use crate::state::Route;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Where the pre-read session keeps the real one until `logging` puts it back (`preread.rs`).
pub type RestoreSlot = Arc<Mutex<Option<pingora_core::protocols::http::ServerSession>>>;

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
    /// The request's `model`, when the body was read (body phase).
    pub model: Option<String>,
    /// What the body said (body phase; JSON bodies only).
    pub request_info: Option<crate::openai::RequestInfo>,
    /// The body as sent upstream (body phase), for chat logs and token estimates.
    pub request_body: Option<bytes::Bytes>,
    /// The conversation's size in tokens, ~4 bytes each (body phase; `None` without a
    /// conversation field): token budgets, estimated usage, continuations.
    pub prompt_estimate: Option<u64>,
    /// The body was changed (usage requested), so its length is new (body → upstream phase).
    pub body_rewritten: bool,
    /// The client did not ask for the usage chunk we asked for: remove it (body → stream).
    pub strip_usage_chunk: bool,
    /// When the first response body byte went to the client (stream phase).
    pub first_byte: Option<Instant>,
    /// Output pacing for this request's stream (limits phase).
    pub pacer: Option<Pacer>,
    /// Set when the body phase swapped in the pre-read session; `logging` restores the real one.
    pub preread: Option<RestoreSlot>,
    /// The current upstream attempt's state; reset with one assignment as each attempt starts.
    pub attempt: AttemptState,
    /// The attempt plan: upstreams and models, and what is left to try (upstream phase).
    pub attempts: Option<Attempts>,
    /// Shared with the pre-read session: the attempt's body, stream deadlines, what the client
    /// has seen (body phase).
    pub link: Option<Arc<Link>>,
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
    /// A failure on a stale pooled connection was retried (once per request; retry phase).
    pub reuse_retried: bool,
    /// The request-rate decision, for the `x-ratelimit-*` headers (limits phase).
    pub rate: Option<crate::limits::Decision>,
    /// Tokens reserved under a budget, settled with the real usage in `logging` (limits phase).
    pub tokens: Option<TokenReservation>,
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
    /// The status of an answer the gateway wrote itself (local endpoints, errors, cache hits);
    /// `None` when the upstream's answer went out, or none did.
    pub status: Option<u16>,
    /// The response cache's view of the request (body and cache phases).
    pub cache: CacheCtx,
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
            model: None,
            request_info: None,
            request_body: None,
            prompt_estimate: None,
            body_rewritten: false,
            strip_usage_chunk: false,
            first_byte: None,
            pacer: None,
            preread: None,
            attempt: AttemptState::default(),
            attempts: None,
            link: None,
            swap_credentials: false,
            key_rotations: 0,
            refusal_moved: false,
            avoid_key: None,
            reuse_retried: false,
            cors: None,
            rate: None,
            tokens: None,
            concurrency: None,
            forward_path: None,
            error: None,
            continued: false,
            status: None,
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
    pub fn candidate(&self) -> Option<&Candidate> {
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

    /// The status the client got: the head Pingora wrote, else the gateway's own answer; 0 when
    /// no answer went out (the client left first).
    pub fn status_sent(&self, session: &pingora_proxy::Session) -> u16 {
        session
            .response_written()
            .map_or(self.status.unwrap_or(0), |r| r.status.as_u16())
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
