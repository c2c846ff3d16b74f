//! Everything about reaching an upstream: name resolution, the Pingora peer for an attempt, the
//! outbound proxy tunnel, the circuit breakers (per upstream and per model) and certificate trust.

pub(crate) mod breaker;
pub(crate) mod dns;
pub(crate) mod model_breakers;
pub(crate) mod peer;
pub(crate) mod trust;
pub(crate) mod tunnel;
