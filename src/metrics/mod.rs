//! Every metric the gateway records per request, defined once. Pure: it sees plain data (an
//! [`Observation`] built by `proxy/observe.rs` in the `logging` phase), never a Pingora type.
//!
//! A small registry of atomics rather than the `prometheus` crate: every label value is known
//! when the config is loaded (route prefixes, upstream names, configured models, fixed outcome
//! codes) except learned model names (bounded, see `models.rs`), so each series is found by
//! indexing arrays — no hashing of label tuples, no lock, no allocation per request; a series of
//! a (route, upstream, model) is allocated once, the first time it is used (a write-once slot).
//! Recording a request is a dozen relaxed `fetch_add`s. The crate would hash a label vector
//! behind a lock on every `with_label_values` and add a dependency tree for what is ~400 lines.
//!
//! Gauges that mirror existing state (breakers, key pools, requests in flight, cache size,
//! chat-log queue) are read at scrape time by the admin service (`admin/metrics.rs`).

pub(crate) mod exposition;
pub(crate) mod histogram;
pub(crate) mod models;

use crate::proxy::error::GatewayError;
use exposition::Exposition;
use histogram::{
    Histogram, REQUEST_DURATION, TIME_PER_OUTPUT_TOKEN, TIME_TO_FIRST_TOKEN, TOKEN_USAGE,
};
use models::ModelTable;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Which upstream a request's series is filed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpstreamSlot {
    /// The route's upstream at this index answered (or was tried last).
    Configured(usize),
    /// No upstream was tried (a refusal, a local answer).
    None,
    /// The response cache answered.
    Cache,
}

/// How a request ended, for `llm_forward_requests_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A success (or redirect) reached the client.
    Ok,
    /// The upstream's own error status (4xx/5xx) went to the client unchanged.
    UpstreamError,
    /// The client left, or the response broke off, without a decision of the gateway.
    Aborted,
    /// The gateway's decision (refusal or failure), by its error code.
    Gateway(GatewayError),
}

/// Every gateway error code, in `requests_total` slot order (after `ok`, `upstream_error`,
/// `aborted`).
const GATEWAY_ERRORS: [GatewayError; GatewayError::ALL.len()] = GatewayError::ALL;
const OUTCOMES: usize = 3 + GATEWAY_ERRORS.len();

fn outcome_slot(o: Outcome) -> usize {
    match o {
        Outcome::Ok => 0,
        Outcome::UpstreamError => 1,
        Outcome::Aborted => 2,
        Outcome::Gateway(e) => 3 + e as usize,
    }
}

fn outcome_name(slot: usize) -> &'static str {
    match slot {
        0 => "ok",
        1 => "upstream_error",
        2 => "aborted",
        n => GATEWAY_ERRORS.get(n - 3).map_or("other", |e| e.code()),
    }
}

/// `none` (no status: the client left first), `1xx` … `5xx`.
const STATUS_CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

fn status_class(status: u16) -> usize {
    match status / 100 {
        c @ 1..=5 => c as usize,
        _ => 0,
    }
}

/// Token counts of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tokens {
    pub input: u64,
    pub output: u64,
    /// Counted by the gateway (tokenizer or byte estimate), not reported by the upstream.
    pub estimated: bool,
}

/// The attempt that answered was not the first candidate of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fallback {
    /// Same model, another upstream.
    Upstream,
    /// Another model.
    Model,
}

/// Limit decisions taken for a request: `Some(true)` allowed, `Some(false)` denied, `None`
/// no such limit applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LimitDecisions {
    pub requests: Option<bool>,
    pub tokens: Option<bool>,
    pub concurrency: Option<bool>,
}

const LIMIT_KINDS: [&str; 3] = ["requests", "tokens", "concurrency"];

/// What one finished request contributes to the metrics.
#[derive(Debug, Clone)]
pub(crate) struct Observation<'a> {
    /// Index of the matched route.
    pub route: Option<usize>,
    pub upstream: UpstreamSlot,
    /// The model as the client names it (a fallback's name when one answered).
    pub model: Option<&'a str>,
    /// An upstream answered with success: a model name not in the config may become a label.
    pub served: bool,
    /// Status sent to the client (0: none).
    pub status: u16,
    pub outcome: Outcome,
    pub duration: Duration,
    /// Streams that succeeded: time to the first body byte sent to the client.
    pub ttft: Option<Duration>,
    pub tokens: Option<Tokens>,
    /// Attempts beyond the first.
    pub retries: u32,
    pub fallback: Option<Fallback>,
    /// A cut stream was finished by another candidate (`stream_errors: continue`); its outcome
    /// is that of the whole answer.
    pub continued: bool,
    /// The request used the cache: hit (`true`) or miss; with the bytes a hit sent.
    pub cache: Option<(bool, u64)>,
    pub limits: LimitDecisions,
}

/// A (route, upstream, model)'s latency and token series.
#[derive(Default)]
struct Series {
    duration: Histogram,
    ttft: Histogram,
    tpot: Histogram,
    input_tokens: Histogram,
    output_tokens: Histogram,
    /// Token totals: [input reported, input estimated, output reported, output estimated].
    tokens: [AtomicU64; 4],
}

struct RouteMetrics {
    /// Label value: the prefix, or `none` for requests that matched no route.
    name: String,
    /// Upstream names by slot: configured ones, then `none`, then `cache`.
    upstreams: Vec<String>,
    requests: Vec<[AtomicU64; OUTCOMES]>,
    retries: AtomicU64,
    fallbacks: [AtomicU64; 2],
    /// Cut streams finished by another candidate.
    continued: AtomicU64,
    /// [hits, misses, bytes sent by hits]
    cache: [AtomicU64; 3],
    /// [kind][allowed, denied]
    limits: [[AtomicU64; 2]; 3],
    /// `upstream slot * model capacity + model slot` → series, allocated on first use.
    series: Box<[OnceLock<Box<Series>>]>,
}

impl RouteMetrics {
    fn new(name: String, mut upstreams: Vec<String>, models: usize) -> Self {
        upstreams.push("none".into());
        upstreams.push("cache".into());
        let series = (0..upstreams.len() * models)
            .map(|_| OnceLock::new())
            .collect();
        RouteMetrics {
            name,
            upstreams,
            requests: (0..STATUS_CLASSES.len())
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            retries: AtomicU64::new(0),
            fallbacks: Default::default(),
            continued: AtomicU64::new(0),
            cache: Default::default(),
            limits: Default::default(),
            series,
        }
    }

    fn upstream_slot(&self, u: UpstreamSlot) -> usize {
        let configured = self.upstreams.len() - 2;
        match u {
            UpstreamSlot::Configured(i) if i < configured => i,
            UpstreamSlot::Configured(_) | UpstreamSlot::None => configured,
            UpstreamSlot::Cache => configured + 1,
        }
    }
}

/// The per-request metrics of one gateway.
pub(crate) struct Metrics {
    /// One per configured route, then the `none` route.
    routes: Vec<RouteMetrics>,
    models: ModelTable,
    /// SSE responses being sent right now.
    streams: Arc<AtomicI64>,
}

/// Holds one place in the streams-in-flight gauge; gives it back when dropped.
pub(crate) struct StreamGuard(Arc<AtomicI64>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// `routes`: each route's prefix and its upstreams' names, in config order; `models`: the
    /// model names the config mentions.
    pub(crate) fn new<'a>(
        routes: impl IntoIterator<Item = (String, Vec<String>)>,
        models: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let models = ModelTable::new(models);
        let capacity = models.capacity();
        let mut routes: Vec<RouteMetrics> = routes
            .into_iter()
            .map(|(name, ups)| RouteMetrics::new(name, ups, capacity))
            .collect();
        routes.push(RouteMetrics::new("none".into(), Vec::new(), capacity));
        Metrics {
            routes,
            models,
            streams: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Count a stream as in flight until the guard drops.
    pub(crate) fn stream_started(&self) -> StreamGuard {
        self.streams.fetch_add(1, Ordering::Relaxed);
        StreamGuard(Arc::clone(&self.streams))
    }

    pub(crate) fn streams_in_flight(&self) -> i64 {
        self.streams.load(Ordering::Relaxed)
    }

    pub(crate) fn record(&self, o: &Observation<'_>) {
        let none_route = self.routes.len() - 1;
        let r = &self.routes[o.route.filter(|&i| i < none_route).unwrap_or(none_route)];
        r.requests[status_class(o.status)][outcome_slot(o.outcome)].fetch_add(1, Ordering::Relaxed);
        if o.retries > 0 {
            r.retries.fetch_add(u64::from(o.retries), Ordering::Relaxed);
        }
        if let Some(f) = o.fallback {
            r.fallbacks[f as usize].fetch_add(1, Ordering::Relaxed);
        }
        if o.continued {
            r.continued.fetch_add(1, Ordering::Relaxed);
        }
        if let Some((hit, bytes)) = o.cache {
            r.cache[usize::from(!hit)].fetch_add(1, Ordering::Relaxed);
            if hit {
                r.cache[2].fetch_add(bytes, Ordering::Relaxed);
            }
        }
        let l = o.limits;
        for (kind, decision) in [l.requests, l.tokens, l.concurrency]
            .into_iter()
            .enumerate()
        {
            if let Some(allowed) = decision {
                r.limits[kind][usize::from(!allowed)].fetch_add(1, Ordering::Relaxed);
            }
        }
        if o.route.is_none() {
            return;
        }
        let model = self.models.slot(o.model, o.served);
        let index = r.upstream_slot(o.upstream) * self.models.capacity() + model;
        let Some(cell) = r.series.get(index) else {
            return;
        };
        let s = cell.get_or_init(Box::default);
        s.duration.observe(&REQUEST_DURATION, micros(o.duration));
        if let Some(ttft) = o.ttft {
            s.ttft.observe(&TIME_TO_FIRST_TOKEN, micros(ttft));
            let output = o.tokens.map_or(0, |t| t.output);
            if output > 1 {
                let rest = micros(o.duration.saturating_sub(ttft));
                s.tpot.observe(&TIME_PER_OUTPUT_TOKEN, rest / (output - 1));
            }
        }
        if let Some(t) = o.tokens {
            let est = usize::from(t.estimated);
            s.input_tokens.observe(&TOKEN_USAGE, t.input);
            s.output_tokens.observe(&TOKEN_USAGE, t.output);
            s.tokens[est].fetch_add(t.input, Ordering::Relaxed);
            s.tokens[2 + est].fetch_add(t.output, Ordering::Relaxed);
        }
    }

    /// Write every per-request family.
    pub(crate) fn render(&self, e: &mut Exposition) {
        self.render_requests(e);
        self.render_series(e);
    }

    fn render_requests(&self, e: &mut Exposition) {
        e.family(
            "llm_forward_requests_total",
            "counter",
            "Requests finished, by route, status class and outcome (ok, upstream_error, aborted, or the gateway's error code).",
        );
        for r in &self.routes {
            for (class, row) in r.requests.iter().enumerate() {
                for (slot, n) in row.iter().enumerate() {
                    let n = n.load(Ordering::Relaxed);
                    if n > 0 {
                        let labels = [
                            ("route", r.name.as_str()),
                            ("status_class", STATUS_CLASSES[class]),
                            ("outcome", outcome_name(slot)),
                        ];
                        e.sample("llm_forward_requests_total", &labels, n);
                    }
                }
            }
        }
        let configured = &self.routes[..self.routes.len() - 1];
        e.family(
            "llm_forward_retries_total",
            "counter",
            "Upstream attempts beyond the first of each request.",
        );
        for r in configured {
            let n = r.retries.load(Ordering::Relaxed);
            e.sample("llm_forward_retries_total", &[("route", &r.name)], n);
        }
        e.family(
            "llm_forward_fallbacks_total",
            "counter",
            "Requests answered by another candidate than the first: another upstream for the same model, or another model.",
        );
        for r in configured {
            for (i, kind) in ["upstream", "model"].into_iter().enumerate() {
                let n = r.fallbacks[i].load(Ordering::Relaxed);
                let labels = [("route", r.name.as_str()), ("kind", kind)];
                e.sample("llm_forward_fallbacks_total", &labels, n);
            }
        }
        e.family(
            "llm_forward_streams_continued_total",
            "counter",
            "Streams an upstream cut that another candidate finished (stream_errors: continue); each is also counted in llm_forward_requests_total by how it ended.",
        );
        for r in configured {
            let n = r.continued.load(Ordering::Relaxed);
            e.sample(
                "llm_forward_streams_continued_total",
                &[("route", &r.name)],
                n,
            );
        }
        e.family(
            "llm_forward_cache_requests_total",
            "counter",
            "Requests that could use the response cache, by result (hit or miss).",
        );
        for r in configured {
            for (i, result) in ["hit", "miss"].into_iter().enumerate() {
                let n = r.cache[i].load(Ordering::Relaxed);
                if n > 0 {
                    let labels = [("route", r.name.as_str()), ("result", result)];
                    e.sample("llm_forward_cache_requests_total", &labels, n);
                }
            }
        }
        e.family(
            "llm_forward_cache_hit_bytes_total",
            "counter",
            "Response body bytes served from the cache.",
        );
        for r in configured {
            let n = r.cache[2].load(Ordering::Relaxed);
            if n > 0 {
                e.sample(
                    "llm_forward_cache_hit_bytes_total",
                    &[("route", &r.name)],
                    n,
                );
            }
        }
        e.family(
            "llm_forward_limiter_decisions_total",
            "counter",
            "Limit checks, by kind (requests, tokens, concurrency) and decision (allowed, denied).",
        );
        for r in configured {
            for (k, kind) in LIMIT_KINDS.into_iter().enumerate() {
                for (d, decision) in ["allowed", "denied"].into_iter().enumerate() {
                    let n = r.limits[k][d].load(Ordering::Relaxed);
                    if n > 0 {
                        let labels = [
                            ("route", r.name.as_str()),
                            ("kind", kind),
                            ("decision", decision),
                        ];
                        e.sample("llm_forward_limiter_decisions_total", &labels, n);
                    }
                }
            }
        }
    }

    /// The per (route, upstream, model) families, one pass each over the allocated series.
    fn render_series(&self, e: &mut Exposition) {
        type Pick = fn(&Series) -> &Histogram;
        let histograms: [(&str, &str, Pick, &histogram::Buckets); 3] = [
            (
                "gen_ai_server_request_duration_seconds",
                "Time from the request head to the end of the response (every routed request).",
                |s| &s.duration,
                &REQUEST_DURATION,
            ),
            (
                "gen_ai_server_time_to_first_token_seconds",
                "Streams that succeeded: time from the request head to the first body byte sent.",
                |s| &s.ttft,
                &TIME_TO_FIRST_TOKEN,
            ),
            (
                "gen_ai_server_time_per_output_token_seconds",
                "Streams that succeeded: time after the first token per further output token.",
                |s| &s.tpot,
                &TIME_PER_OUTPUT_TOKEN,
            ),
        ];
        for (name, help, pick, buckets) in histograms {
            e.family(name, "histogram", help);
            self.each_series(|labels, s| {
                let h = pick(s);
                if h.count() > 0 {
                    e.histogram(name, labels, &h.snapshot(buckets));
                }
            });
        }
        let name = "gen_ai_client_token_usage";
        e.family(
            name,
            "histogram",
            "Tokens per request, by gen_ai_token_type (input, output); reported or estimated.",
        );
        self.each_series(|labels, s| {
            for (kind, h) in [("input", &s.input_tokens), ("output", &s.output_tokens)] {
                if h.count() > 0 {
                    let mut l = labels.to_vec();
                    l.push(("gen_ai_token_type", kind));
                    e.histogram(name, &l, &h.snapshot(&TOKEN_USAGE));
                }
            }
        });
        let name = "llm_forward_tokens_total";
        e.family(
            name,
            "counter",
            "Tokens, by type (input, output) and whether the gateway estimated them (true) or the upstream reported them (false).",
        );
        self.each_series(|labels, s| {
            for (i, (kind, estimated)) in [
                ("input", "false"),
                ("input", "true"),
                ("output", "false"),
                ("output", "true"),
            ]
            .into_iter()
            .enumerate()
            {
                let n = s.tokens[i].load(Ordering::Relaxed);
                if n > 0 {
                    let mut l = labels.to_vec();
                    l.push(("type", kind));
                    l.push(("estimated", estimated));
                    e.sample(name, &l, n);
                }
            }
        });
    }

    fn each_series(&self, mut f: impl FnMut(&[(&str, &str)], &Series)) {
        let capacity = self.models.capacity();
        for r in &self.routes[..self.routes.len() - 1] {
            for (i, cell) in r.series.iter().enumerate() {
                let Some(s) = cell.get() else {
                    continue;
                };
                let labels = [
                    ("route", r.name.as_str()),
                    ("upstream", r.upstreams[i / capacity].as_str()),
                    ("model", self.models.name(i % capacity)),
                ];
                f(&labels, s);
            }
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        Metrics::new([("/v1".to_string(), vec!["a".to_string()])], ["gpt-4o"])
    }

    fn ok<'a>() -> Observation<'a> {
        Observation {
            route: Some(0),
            upstream: UpstreamSlot::Configured(0),
            model: Some("gpt-4o"),
            served: true,
            status: 200,
            outcome: Outcome::Ok,
            duration: Duration::from_millis(1500),
            ttft: Some(Duration::from_millis(500)),
            tokens: Some(Tokens {
                input: 10,
                output: 11,
                estimated: false,
            }),
            retries: 0,
            fallback: None,
            continued: false,
            cache: None,
            limits: LimitDecisions::default(),
        }
    }

    #[test]
    fn every_gateway_error_has_its_own_outcome() {
        for (i, e) in GATEWAY_ERRORS.into_iter().enumerate() {
            assert_eq!(outcome_slot(Outcome::Gateway(e)), 3 + i);
            assert_eq!(outcome_name(3 + i), e.code());
        }
    }

    #[test]
    fn a_request_is_counted_in_each_family() {
        let m = metrics();
        m.record(&ok());
        m.record(&Observation {
            route: None,
            upstream: UpstreamSlot::None,
            model: None,
            status: 404,
            outcome: Outcome::Gateway(GatewayError::RouteNotFound),
            ttft: None,
            tokens: None,
            ..ok()
        });
        let mut e = Exposition::default();
        m.render(&mut e);
        let text = e.into_string();
        for line in [
            "llm_forward_requests_total{route=\"/v1\",status_class=\"2xx\",outcome=\"ok\"} 1",
            "llm_forward_requests_total{route=\"none\",status_class=\"4xx\",outcome=\"route_not_found\"} 1",
            "gen_ai_server_request_duration_seconds_bucket{route=\"/v1\",upstream=\"a\",model=\"gpt-4o\",le=\"2.56\"} 1",
            "gen_ai_server_request_duration_seconds_sum{route=\"/v1\",upstream=\"a\",model=\"gpt-4o\"} 1.5",
            "gen_ai_server_time_to_first_token_seconds_sum{route=\"/v1\",upstream=\"a\",model=\"gpt-4o\"} 0.5",
            // (1.5 s − 0.5 s) / (11 − 1) tokens
            "gen_ai_server_time_per_output_token_seconds_sum{route=\"/v1\",upstream=\"a\",model=\"gpt-4o\"} 0.1",
            "gen_ai_client_token_usage_sum{route=\"/v1\",upstream=\"a\",model=\"gpt-4o\",gen_ai_token_type=\"output\"} 11",
            "llm_forward_tokens_total{route=\"/v1\",upstream=\"a\",model=\"gpt-4o\",type=\"input\",estimated=\"false\"} 10",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
