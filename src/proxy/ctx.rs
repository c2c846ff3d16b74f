//! Per-request state shared by the phases, grouped by concern in the order a request meets
//! them: client, routed, auth, body, limits, cache, failover (the plan), attempt (the current
//! upstream attempt), outcome. Each field says which phase sets it; later phases only read what
//! earlier ones wrote.
//!
//! The ctx owns its state types (the submodules): the phase modules depend on it, and it depends
//! on nothing in `proxy/` but them and the pure leaves (`error`, `link`, `attempts`).

mod attempt;
mod cache;
mod masker;
mod pacer;
mod tap;
mod tokens;

pub(super) use attempt::{AttemptState, Held};
pub(super) use cache::{CacheCtx, CacheState, Plan};
pub(super) use masker::Masker;
pub(super) use pacer::Pacer;
pub(super) use tap::ResponseTap;
pub(super) use tokens::TokenReservation;

use super::attempts::{Attempts, Candidate};
use super::error::GatewayError;
use super::link::Link;
use crate::keys::pool::KeyPool;
use crate::keys::tenant::Tenant;
use crate::state::Route;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Where the pre-read session keeps the real one until `logging` puts it back (`preread.rs`).
pub(super) type RestoreSlot = Arc<HandBack>;

/// The real session's way back from the pre-read one (`preread.rs`).
#[derive(Default)]
pub(crate) struct HandBack {
    pub session: Mutex<Option<pingora_core::protocols::http::ServerSession>>,
    /// `logging` takes the real session back for good: the wrapper is dropped right after, so
    /// it keeps no copy of the request head for questions asked after the hand-back.
    pub for_good: AtomicBool,
}

/// Counts a request as in flight from `new_ctx` until its ctx is dropped (after `logging`), so a
/// stopping process can tell when it has drained.
pub(super) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub(super) fn enter(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(counter))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// Who is asking (`early_request_filter`, CORS in `request_filter`).
pub(crate) struct Client {
    /// This request's id: a trusted proxy's `X-Request-Id`, else a random one (request-id
    /// phase). In logs, chat-log records, headers and error messages.
    pub request_id: crate::request_id::RequestId,
    /// The client's address, after trusted proxies (access phase).
    pub ip: Option<IpAddr>,
    /// CORS headers for the answer, when the origin is allowed (CORS phase).
    pub cors: Option<crate::cors::Headers>,
    /// `request_id` as a header value, made once for the headers that carry it upstream and
    /// back (request-id phase).
    pub request_id_header: Option<http::HeaderValue>,
}

/// The route the request matched (route phase, `request_filter`).
pub(crate) struct Routed {
    pub route: Arc<Route>,
    /// The path after the route prefix; each attempt puts it under its upstream's base path.
    pub rest: crate::routing::Rest,
    /// The request's query, forwarded as sent (credentials aside).
    pub query: Option<String>,
}

/// Whose request it is (auth phase).
#[derive(Default)]
pub(crate) struct Auth {
    /// The forward key's tenant, when the client presented one.
    pub tenant: Option<Arc<Tenant>>,
    /// The forward key's id for logs; never the key. Shared with the key: no copy per request.
    pub key_id: Option<Arc<str>>,
    /// The pool whose keys replace the client's credentials.
    pub pool: Option<Arc<KeyPool>>,
    /// The gateway swaps the client's credentials for pool keys.
    pub swap_credentials: bool,
}

/// What the body said (body phase; JSON bodies only, unless a model list reads an upload).
#[derive(Default)]
pub(crate) struct Body {
    /// The request's `model`, when the body was read.
    pub model: Option<String>,
    /// The fields the gateway reads (JSON bodies only); its `model` is moved to `model` above.
    pub info: Option<crate::openai::RequestInfo>,
    /// The body as sent upstream, for chat logs and token estimates.
    pub bytes: Option<bytes::Bytes>,
    /// The conversation's size in tokens, ~4 bytes each (`None` without a conversation
    /// field): token budgets, estimated usage, continuations.
    pub prompt_estimate: Option<u64>,
    /// The body was changed (usage requested), so its length is new (→ upstream phase).
    pub rewritten: bool,
    /// The client did not ask for the usage chunk we asked for: remove it (→ stream phase).
    pub strip_usage_chunk: bool,
    /// Shared with the pre-read session: the attempt's body, stream deadlines, what the client
    /// has seen.
    pub link: Option<Arc<Link>>,
    /// Set when the pre-read session was swapped in; `logging` restores the real one.
    pub preread: Option<RestoreSlot>,
}

/// What the limits decided (limits phase).
#[derive(Default)]
pub(crate) struct Limits {
    /// The request-rate decision, for the `x-ratelimit-*` headers.
    pub rate: Option<crate::limits::Decision>,
    /// Tokens reserved under a budget, settled with the real usage in `logging`.
    pub tokens: Option<TokenReservation>,
    /// Holds this request's place under a concurrency limit until the ctx is dropped.
    pub concurrency: Option<crate::limits::Slot>,
    /// Output pacing for this request's stream (handed to the pre-read session when there is
    /// one).
    pub pacer: Option<Pacer>,
}

/// What failover keeps across attempts (upstream and response phases).
#[derive(Default)]
pub(crate) struct Failover {
    /// The attempt plan: upstreams and models, and what is left to try (first `upstream_peer`).
    pub plan: Option<Attempts>,
    /// Attempts repeated with another key of the same pool.
    pub key_rotations: u32,
    /// A 401/403 already moved this request to another key: the only such change it gets, so
    /// one request can never walk (and discredit) the whole pool.
    pub refusal_moved: bool,
    /// The key the last attempt was refused or throttled with: the next pick avoids it.
    pub avoid_key: Option<(Arc<KeyPool>, usize)>,
    /// A failure on a stale pooled connection was retried (once per request).
    pub reuse_retried: bool,
}

/// How the request ended, as far as the gateway decided it (any phase).
#[derive(Default)]
pub(crate) struct Outcome {
    /// The gateway's own decision that ended the request, if any. Decides the status and error
    /// body in `fail_to_proxy` and the log line in `logging`.
    pub error: Option<GatewayError>,
    /// The status of an answer the gateway wrote itself (local endpoints, errors, cache hits);
    /// `None` when the upstream's answer went out, or none did.
    pub status: Option<u16>,
    /// A broken stream was continued by another candidate (`stream_errors: continue`).
    pub continued: bool,
    /// When the first response body byte went to the client (stream phase).
    pub first_byte: Option<Instant>,
    /// Holds a place in the streams-in-flight gauge while an SSE answer is sent
    /// (`response_filter`).
    pub stream_guard: Option<crate::metrics::StreamGuard>,
}

pub(crate) struct RequestCtx {
    /// When the request head was read (set by `new_ctx`).
    pub started: Instant,
    pub client: Client,
    /// `None` until the route phase matched one.
    pub routed: Option<Routed>,
    pub auth: Auth,
    pub body: Body,
    pub limits: Limits,
    /// The response cache's view of the request (body and cache phases).
    pub cache: CacheCtx,
    pub failover: Failover,
    /// The current upstream attempt's state; reset with one assignment as each attempt starts.
    pub attempt: AttemptState,
    pub outcome: Outcome,
    /// This request's trace, when tracing is on and it is sampled (`early_request_filter`; each
    /// upstream attempt adds a child span).
    pub trace: Option<crate::telemetry::request::RequestTrace>,
    _in_flight: InFlight,
}

impl RequestCtx {
    pub(crate) fn new(in_flight: &Arc<AtomicUsize>) -> Self {
        RequestCtx {
            _in_flight: InFlight::enter(in_flight),
            started: Instant::now(),
            client: Client {
                request_id: crate::request_id::RequestId::generate(),
                ip: None,
                cors: None,
                request_id_header: None,
            },
            routed: None,
            auth: Auth::default(),
            body: Body::default(),
            limits: Limits::default(),
            cache: CacheCtx::default(),
            failover: Failover::default(),
            attempt: AttemptState::default(),
            outcome: Outcome::default(),
            trace: None,
        }
    }

    /// The matched route (route phase).
    pub(crate) fn route(&self) -> Option<&Arc<Route>> {
        self.routed.as_ref().map(|r| &r.route)
    }

    /// Upstream attempts made so far.
    pub(crate) fn attempts_made(&self) -> u32 {
        self.failover.plan.as_ref().map_or(0, |a| a.made)
    }

    /// The upstream and model of the current attempt.
    pub(crate) fn candidate(&self) -> Option<&Candidate> {
        self.failover.plan.as_ref()?.current()
    }

    /// The pool whose key this attempt sends: the upstream's own, else the request's (tenant or
    /// route), and only when the gateway swaps credentials at all.
    pub(crate) fn attempt_pool(&self) -> Option<Arc<KeyPool>> {
        if !self.auth.swap_credentials {
            return None;
        }
        self.candidate()
            .and_then(|c| c.target.pool.clone())
            .or_else(|| self.auth.pool.clone())
    }

    /// The model this attempt asks the upstream for, as a key-pool cool-down tag (`None`:
    /// unknown, so a 429 cools the whole key).
    pub(crate) fn attempt_model(&self) -> Option<u64> {
        let c = self.candidate()?;
        let model = c.sent_model.as_deref().or(c.model.as_deref())?;
        Some(crate::keys::pool::model_tag(model))
    }

    /// The status the client got: the head Pingora wrote, else the gateway's own answer; 0 when
    /// no answer went out (the client left first).
    pub(crate) fn status_sent(&self, session: &pingora_proxy::Session) -> u16 {
        session
            .response_written()
            .map_or(self.outcome.status.unwrap_or(0), |r| r.status.as_u16())
    }

    /// Has any response byte reached the client? Then nothing may be retried. An interim head
    /// (`100 Continue`) does not count: the final answer may still come from another attempt.
    pub(crate) fn client_has_bytes(&self, session: &pingora_proxy::Session) -> bool {
        match &self.body.link {
            Some(link) => link.flushed(),
            None => session
                .response_written()
                .is_some_and(|r| !r.status.is_informational() || r.status == 101),
        }
    }

    /// Record the gateway's decision and return the error that ends the request with it.
    pub(crate) fn fail(&mut self, error: GatewayError) -> Box<pingora_core::Error> {
        self.outcome.error = Some(error);
        error.into_pingora()
    }
}
