//! Everything about reaching an upstream: name resolution, the Pingora peer for an attempt, the
//! outbound proxy tunnel, the circuit breaker and certificate trust.

pub mod breaker;
pub mod dns;
pub mod peer;
pub mod trust;
pub mod tunnel;
