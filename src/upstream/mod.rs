//! Everything about reaching an upstream: name resolution, the Pingora peer for an attempt, the
//! outbound proxy tunnel and the circuit breaker.

pub mod breaker;
pub mod dns;
pub mod peer;
pub mod tunnel;
