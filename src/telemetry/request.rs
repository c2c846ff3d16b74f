//! One request's trace while it runs: its own span (joined to a caller's `traceparent`) and a
//! child span per upstream attempt, turned into OTLP spans when the request is logged.

use super::span::{
    new_span_id, new_trace_id, parse_traceparent, traceparent, Kind, SpanId, SpanRecord, TraceId,
    Value,
};
use super::Tracer;
use std::time::{SystemTime, UNIX_EPOCH};

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

struct Attempt {
    span_id: SpanId,
    start: u64,
    end: Option<u64>,
    upstream: String,
    model: Option<String>,
    status: Option<u16>,
    error: Option<String>,
}

pub(crate) struct RequestTrace {
    trace_id: TraceId,
    span_id: SpanId,
    parent: Option<SpanId>,
    start: u64,
    attempts: Vec<Attempt>,
}

/// What the request span says when the request is over.
pub(crate) struct Summary<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub route: Option<&'a str>,
    pub status: u16,
    pub request_model: Option<&'a str>,
    pub response_model: Option<&'a str>,
    pub operation: Option<&'a str>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub estimated: bool,
    pub ttft_s: Option<f64>,
    pub request_id: &'a str,
    pub error: Option<&'a str>,
}

impl RequestTrace {
    /// Start a request's trace, or `None` when it is not sampled. A caller's valid `traceparent`
    /// decides by its sampled flag; a new trace by the configured ratio.
    pub(crate) fn begin(tracer: &Tracer, incoming: Option<&str>) -> Option<Self> {
        let (trace_id, parent) = match incoming.and_then(|v| parse_traceparent(v).map(|p| (v, p))) {
            Some((value, (trace, parent))) => {
                if !value.trim().ends_with("-01") {
                    return None;
                }
                (trace, Some(parent))
            }
            None => {
                let trace = new_trace_id();
                if !tracer.samples(&trace) {
                    return None;
                }
                (trace, None)
            }
        };
        Some(RequestTrace {
            trace_id,
            span_id: new_span_id(),
            parent,
            start: unix_ns(),
            attempts: Vec::new(),
        })
    }

    /// A new attempt starts (the previous one, if still open, ended with it).
    pub(crate) fn attempt(&mut self, upstream: &str, model: Option<&str>) {
        let now = unix_ns();
        self.end_attempt(None, Some("abandoned"), now);
        let span_id = new_span_id();
        self.attempts.push(Attempt {
            span_id,
            start: now,
            end: None,
            upstream: upstream.to_string(),
            model: model.map(str::to_string),
            status: None,
            error: None,
        });
    }

    /// The `traceparent` that makes the current attempt the parent of the upstream's work.
    pub(crate) fn traceparent(&self) -> Option<String> {
        let attempt = self.attempts.last()?;
        Some(traceparent(&self.trace_id, &attempt.span_id))
    }

    /// The current attempt got a response head.
    pub(crate) fn attempt_status(&mut self, status: u16) {
        if let Some(a) = self.attempts.last_mut() {
            a.status = Some(status);
        }
    }

    /// The current attempt failed (connect, reset, timeout, a retried status).
    pub(crate) fn attempt_failed(&mut self, why: &str) {
        self.end_attempt(None, Some(why), unix_ns());
    }

    fn end_attempt(&mut self, status: Option<u16>, error: Option<&str>, now: u64) {
        if let Some(a) = self.attempts.last_mut().filter(|a| a.end.is_none()) {
            a.end = Some(now);
            a.status = a.status.or(status);
            if a.error.is_none() {
                a.error = error.map(str::to_string);
            }
        }
    }

    /// Close the trace and queue its spans.
    pub(crate) fn finish(mut self, tracer: &Tracer, s: &Summary<'_>) {
        let now = unix_ns();
        if let Some(a) = self.attempts.last_mut().filter(|a| a.end.is_none()) {
            a.end = Some(now);
        }
        for a in &self.attempts {
            let failed = a.error.is_some() || a.status.is_none_or(|st| st >= 500);
            let mut attributes = vec![
                ("llm_forward.upstream", Value::Str(a.upstream.clone())),
                ("server.address", Value::Str(a.upstream.clone())),
            ];
            if let Some(model) = &a.model {
                attributes.push(("gen_ai.request.model", Value::Str(model.clone())));
            }
            if let Some(status) = a.status {
                attributes.push(("http.response.status_code", Value::Int(i64::from(status))));
            }
            tracer.submit(SpanRecord {
                trace_id: self.trace_id,
                span_id: a.span_id,
                parent: Some(self.span_id),
                name: format!("attempt {}", a.upstream),
                kind: Kind::Client,
                start_unix_ns: a.start,
                end_unix_ns: a.end.unwrap_or(now),
                error: failed.then(|| {
                    a.error
                        .clone()
                        .unwrap_or_else(|| format!("status {}", a.status.unwrap_or(0)))
                }),
                attributes,
            });
        }
        let operation = s.operation.unwrap_or("http");
        let name = match s.request_model {
            Some(model) => format!("{operation} {model}"),
            None => format!("{} {}", s.method, s.route.unwrap_or(s.path)),
        };
        let mut attributes = vec![
            ("http.request.method", Value::Str(s.method.to_string())),
            ("url.path", Value::Str(s.path.to_string())),
            ("http.response.status_code", Value::Int(i64::from(s.status))),
            (
                "llm_forward.request_id",
                Value::Str(s.request_id.to_string()),
            ),
            (
                "llm_forward.attempts",
                Value::Int(self.attempts.len() as i64),
            ),
            ("gen_ai.operation.name", Value::Str(operation.to_string())),
        ];
        if let Some(route) = s.route {
            attributes.push(("llm_forward.route", Value::Str(route.to_string())));
        }
        if let Some(m) = s.request_model {
            attributes.push(("gen_ai.request.model", Value::Str(m.to_string())));
        }
        if let Some(m) = s.response_model {
            attributes.push(("gen_ai.response.model", Value::Str(m.to_string())));
        }
        if let Some(n) = s.input_tokens {
            attributes.push(("gen_ai.usage.input_tokens", Value::Int(n as i64)));
        }
        if let Some(n) = s.output_tokens {
            attributes.push(("gen_ai.usage.output_tokens", Value::Int(n as i64)));
        }
        if s.input_tokens.is_some() {
            attributes.push(("llm_forward.usage.estimated", Value::Bool(s.estimated)));
        }
        if let Some(t) = s.ttft_s {
            attributes.push(("gen_ai.server.time_to_first_token", Value::Float(t)));
        }
        tracer.submit(SpanRecord {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent: self.parent,
            name,
            kind: Kind::Server,
            start_unix_ns: self.start,
            end_unix_ns: now,
            error: s
                .error
                .map(str::to_string)
                .or_else(|| (s.status >= 500).then(|| format!("status {}", s.status))),
            attributes,
        });
    }
}
