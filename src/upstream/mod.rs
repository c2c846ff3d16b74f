//! Everything about reaching an upstream: name resolution and the Pingora peer for a route.

pub mod dns;
pub mod peer;
