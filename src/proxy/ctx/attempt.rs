//! The state of the current upstream attempt (filled by `forward.rs`, `failover.rs`, `mask.rs`
//! and `stream.rs`).

use super::{Masker, ResponseTap};
use crate::proxy::link::Deadline;

/// What one upstream attempt leaves behind. Reset with one assignment when the next attempt
/// starts (`upstream_peer`), which first takes the wait its predecessor's failure chose.
#[derive(Default)]
pub(crate) struct AttemptState {
    /// The pool key this attempt sent (`upstream_request_filter`).
    pub pool_key: Option<usize>,
    /// The attempt got a response head (`upstream_response_filter`).
    pub head_seen: bool,
    /// An error answer held back until its body shows what it means (`upstream_response_filter`
    /// → `upstream_response_body_filter`).
    pub held: Option<Held>,
    /// Masks the pool key out of an error answer, when this attempt sent it in the query
    /// (`upstream_response_filter`).
    pub mask: Option<Masker>,
    /// What the response says, as it flows (stream phase; a cache hit's too).
    pub response: Option<ResponseTap>,
    /// The response phase abandoned this attempt for another (a refused key, a retryable
    /// status, `context_length_exceeded`): `error_while_proxy` lets Pingora try again.
    pub retry_now: bool,
    /// How long the next attempt waits first (backoff or `Retry-After`; set when this one
    /// failed, taken by the next `upstream_peer`).
    pub wait_next: Option<std::time::Duration>,
    /// The deadline that ended this attempt, if one did (`error_while_proxy`; for logs).
    pub deadline: Option<Deadline>,
}

/// An error answer held until its end (at most `failover::MAX_HELD_ERROR` bytes).
pub(crate) enum Held {
    /// A 401/403/429 to a pool key, with its `Retry-After`: its body says what it means for
    /// the key (invalid, quota spent).
    KeyAnswer {
        status: u16,
        retry_after: Option<std::time::Duration>,
        body: Vec<u8>,
    },
    /// A 400 on a route with `context_length` fallbacks: it may say `context_length_exceeded`.
    Context(Vec<u8>),
}

impl Held {
    pub(crate) fn body_mut(&mut self) -> &mut Vec<u8> {
        match self {
            Held::KeyAnswer { body, .. } | Held::Context(body) => body,
        }
    }

    pub(crate) fn into_body(self) -> Vec<u8> {
        match self {
            Held::KeyAnswer { body, .. } | Held::Context(body) => body,
        }
    }
}
