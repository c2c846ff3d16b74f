//! Everything about reaching an upstream: name resolution, the Pingora peer for an attempt, the
//! outbound proxy tunnel, the circuit breakers (per upstream and per model) and certificate trust.

pub mod breaker;
pub mod dns;
pub mod model_breakers;
pub mod peer;
pub mod trust;
pub mod tunnel;
