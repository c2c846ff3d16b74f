//! Distributed tracing (optional, off by default): one span per request, with one child span
//! per upstream attempt, carrying OpenTelemetry's GenAI attributes (model, tokens, time to first
//! token), exported over OTLP/HTTP (`telemetry.otlp`). A caller's `traceparent` is joined; each
//! attempt sends its own `traceparent` upstream, so a provider's spans hang under it.

pub(crate) mod export;
pub(crate) mod request;
pub(crate) mod span;

pub(crate) use export::Tracer;

use crate::config::UpstreamUrl;
use std::time::Duration;

/// `telemetry.otlp` as the runtime uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// The collector's base URL; spans go to `{endpoint}/v1/traces`.
    pub endpoint: UpstreamUrl,
    /// Extra headers for the collector (an auth token, say).
    pub headers: Vec<(String, String)>,
    pub service_name: String,
    /// Share of new traces recorded, 0.0–1.0 (a caller's sampled trace is always recorded).
    pub sample: f64,
    pub timeout: Duration,
}
