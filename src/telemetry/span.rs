//! A finished span as the gateway records it, W3C trace context (`traceparent`) in and out, and
//! the OTLP/HTTP JSON encoding of a batch (the protobuf JSON mapping: ids in hex, 64-bit
//! integers as strings). Pure: no I/O, unit-tested.

use crate::cache_key::hex;
use serde::Serialize;

pub(crate) type TraceId = [u8; 16];
pub(crate) type SpanId = [u8; 8];

/// Span kinds as OTLP numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Server = 2,
    Client = 3,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

#[derive(Clone, Debug)]
pub(crate) struct SpanRecord {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    pub name: String,
    pub kind: Kind,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub error: Option<String>,
    pub attributes: Vec<(&'static str, Value)>,
}

pub(crate) fn new_trace_id() -> TraceId {
    loop {
        let id: TraceId = rand::random();
        if id != [0; 16] {
            return id;
        }
    }
}

pub(crate) fn new_span_id() -> SpanId {
    loop {
        let id: SpanId = rand::random();
        if id != [0; 8] {
            return id;
        }
    }
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// The trace and parent span of an incoming `traceparent` (version 00; lower-case hex; all-zero
/// ids are invalid), so the gateway's span joins the caller's trace.
pub(crate) fn parse_traceparent(value: &str) -> Option<(TraceId, SpanId)> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || flags.len() != 2 || parts.next().is_some() {
        return None;
    }
    let trace: TraceId = unhex(trace)?;
    let parent: SpanId = unhex(parent)?;
    (trace != [0; 16] && parent != [0; 8]).then_some((trace, parent))
}

/// The `traceparent` that names `span` as the parent of what the upstream does (sampled).
pub(crate) fn traceparent(trace: &TraceId, span: &SpanId) -> String {
    format!("00-{}-{}-01", hex(trace), hex(span))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    resource_spans: [ResourceSpans<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceSpans<'a> {
    resource: Resource,
    scope_spans: [ScopeSpans<'a>; 1],
}

#[derive(Serialize)]
struct Resource {
    attributes: Vec<KeyValue>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ScopeSpans<'a> {
    scope: Scope,
    spans: Vec<Span<'a>>,
}

#[derive(Serialize)]
struct Scope {
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Span<'a> {
    trace_id: String,
    span_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    parent_span_id: String,
    name: &'a str,
    kind: u8,
    start_time_unix_nano: String,
    end_time_unix_nano: String,
    attributes: Vec<KeyValue>,
    status: Status<'a>,
}

#[derive(Serialize)]
struct Status<'a> {
    /// 0 unset, 2 error.
    code: u8,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
}

#[derive(Serialize)]
struct KeyValue {
    key: &'static str,
    value: AnyValue,
}

#[derive(Serialize)]
enum AnyValue {
    #[serde(rename = "stringValue")]
    Str(String),
    #[serde(rename = "intValue")]
    Int(String),
    #[serde(rename = "doubleValue")]
    Float(f64),
    #[serde(rename = "boolValue")]
    Bool(bool),
}

impl From<&Value> for AnyValue {
    fn from(v: &Value) -> Self {
        match v {
            Value::Str(s) => AnyValue::Str(s.clone()),
            Value::Int(i) => AnyValue::Int(i.to_string()),
            Value::Float(f) => AnyValue::Float(*f),
            Value::Bool(b) => AnyValue::Bool(*b),
        }
    }
}

/// One `ExportTraceServiceRequest` in OTLP's JSON encoding.
pub(crate) fn encode(service_name: &str, spans: &[SpanRecord]) -> Vec<u8> {
    let request = Request {
        resource_spans: [ResourceSpans {
            resource: Resource {
                attributes: vec![KeyValue {
                    key: "service.name",
                    value: AnyValue::Str(service_name.to_string()),
                }],
            },
            scope_spans: [ScopeSpans {
                scope: Scope {
                    name: "llm-forward",
                    version: env!("CARGO_PKG_VERSION"),
                },
                spans: spans
                    .iter()
                    .map(|s| Span {
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent_span_id: s.parent.map(|p| hex(&p)).unwrap_or_default(),
                        name: &s.name,
                        kind: s.kind as u8,
                        start_time_unix_nano: s.start_unix_ns.to_string(),
                        end_time_unix_nano: s.end_unix_ns.to_string(),
                        attributes: s
                            .attributes
                            .iter()
                            .map(|(key, value)| KeyValue {
                                key,
                                value: value.into(),
                            })
                            .collect(),
                        status: Status {
                            code: if s.error.is_some() { 2 } else { 0 },
                            message: s.error.as_deref().unwrap_or(""),
                        },
                    })
                    .collect(),
            }],
        }],
    };
    serde_json::to_vec(&request).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_what_w3c_rejects() {
        let (t, s) = ([0xab; 16], [0x01; 8]);
        let header = traceparent(&t, &s);
        assert_eq!(
            header,
            format!("00-{}-0101010101010101-01", "ab".repeat(16))
        );
        assert_eq!(parse_traceparent(&header), Some((t, s)));
        for bad in [
            "",
            "01-abababababababababababababababab-0101010101010101-01",
            "00-00000000000000000000000000000000-0101010101010101-01",
            "00-abababababababababababababababab-0000000000000000-01",
            "00-ABABABABABABABABABABABABABABABAB-0101010101010101-01",
            "00-abab-0101010101010101-01",
            "00-abababababababababababababababab-0101010101010101-01-extra",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
    }

    #[test]
    fn encodes_otlp_json() {
        let span = SpanRecord {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent: Some([3; 8]),
            name: "chat gpt-4o".into(),
            kind: Kind::Server,
            start_unix_ns: 1_700_000_000_000_000_000,
            end_unix_ns: 1_700_000_000_500_000_000,
            error: Some("upstream_error".into()),
            attributes: vec![
                ("gen_ai.request.model", Value::Str("gpt-4o".into())),
                ("gen_ai.usage.input_tokens", Value::Int(12)),
            ],
        };
        let json: serde_json::Value = serde_json::from_slice(&encode("svc", &[span])).unwrap();
        let rs = &json["resourceSpans"][0];
        assert_eq!(
            rs["resource"]["attributes"][0]["value"]["stringValue"],
            "svc"
        );
        let s = &rs["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "01".repeat(16));
        assert_eq!(s["parentSpanId"], "03".repeat(8));
        assert_eq!(s["kind"], 2);
        assert_eq!(s["startTimeUnixNano"], "1700000000000000000");
        assert_eq!(s["attributes"][1]["value"]["intValue"], "12");
        assert_eq!(s["status"]["code"], 2);
    }
}
