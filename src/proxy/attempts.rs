//! The attempt plan of one request: which upstream and model answer it, and what happens after
//! each failure. Built on the first attempt from the route's upstreams (priority, then weight)
//! and the model's fallbacks; every failure is classified and decides between trying the same
//! upstream again (after a backoff or the upstream's `Retry-After`), moving on to the next
//! candidate, or giving up and handing the client what the last attempt got.
//!
//! The rules, in one place:
//! - a failed connect reached nothing: retried `connect_retries` times, then the next candidate;
//! - a reset before any response byte, 429/503/529: retried `retries` times on the same upstream
//!   (`Retry-After` honoured up to `retry_after_max`; a longer one moves on at once), 500/502
//!   once; then the next candidate;
//! - a silent model (read timeout, time-to-first-token deadline, 504) is never asked again on
//!   that upstream for this request: it would only time out again (the upstream's other models,
//!   a fallback among them, still may be);
//! - circuit breakers are per upstream and per (upstream, model): connect failures and resets
//!   say the upstream is unreachable and count on its breaker; statuses and silences say the
//!   model is failing there and count on the model's (see `upstream::model_breakers`);
//! - `context_length_exceeded` moves on only to the `context_length` fallbacks; any other 4xx
//!   is the client's answer, unchanged;
//! - with `on_status: false`, a status (429/5xx) is the client's answer at once;
//! - nothing is retried once a response byte reached the client (the caller checks that), and
//!   never beyond `max_attempts` or the total budget.

use crate::config::{FallbackConfig, RetryPolicy};
use crate::state::{Route, UpstreamTarget};
use crate::upstream::breaker::BreakerState;
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One upstream with the model to ask it for.
#[derive(Clone)]
pub(crate) struct Candidate {
    pub target: Arc<UpstreamTarget>,
    /// The model as the client names it (the requested one or a fallback).
    pub model: Option<String>,
    /// The name this upstream knows it by (what goes into the body).
    pub sent_model: Option<String>,
    /// Only for requests an upstream refused with `context_length_exceeded`.
    pub context_only: bool,
}

impl Candidate {
    /// The model its breaker is kept under: the name its upstream knows it by.
    pub(crate) fn breaker_model(&self) -> Option<&str> {
        self.sent_model.as_deref().or(self.model.as_deref())
    }

    /// Is the upstream's breaker, or this model's on it, open?
    fn breaker_open(&self, now: Instant) -> bool {
        let t = &self.target;
        t.breaker.state(now) == BreakerState::Open
            || self
                .breaker_model()
                .is_some_and(|m| t.model_breakers.state(m, now) == BreakerState::Open)
    }

    /// May it be tried now? `acquire`: take a half-open breaker's probe slot (else only look).
    /// The model's breaker is looked at first, so that an open one spends no upstream probe.
    fn admits(&self, now: Instant, acquire: bool) -> bool {
        if !acquire {
            return !self.breaker_open(now);
        }
        let t = &self.target;
        let model = self.breaker_model();
        if model.is_some_and(|m| t.model_breakers.state(m, now) == BreakerState::Open) {
            return false;
        }
        t.breaker.try_acquire(now) && model.is_none_or(|m| t.model_breakers.try_acquire(m, now))
    }

    /// The same model on the same upstream?
    fn same_as(&self, other: &Candidate) -> bool {
        self.target.index == other.target.index && self.breaker_model() == other.breaker_model()
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Failure {
    /// TCP/TLS connect failed: nothing reached the upstream.
    Connect,
    /// The connection broke before any response byte.
    Reset,
    /// The upstream stayed silent past a timeout or deadline, or answered 504.
    Silent,
    /// A retryable status (429/500/502/503/529) with its `Retry-After`, if any.
    Status(u16, Option<Duration>),
    /// 400 `context_length_exceeded`.
    ContextLength,
    /// No key of this upstream's pool is usable now.
    NoKey,
}

/// How an upstream status is retried: the one table of retryable statuses.
#[derive(Debug, Clone, Copy, PartialEq)]
enum StatusRule {
    /// Overloaded or throttled (429, 503, 529): the same upstream again, `retries` times.
    Again,
    /// A server error (500, 502): the same upstream once more.
    Once,
    /// The upstream's own timeout (504): a silent model.
    Silent,
}

fn status_rule(status: u16) -> Option<StatusRule> {
    match status {
        429 | 503 | 529 => Some(StatusRule::Again),
        500 | 502 => Some(StatusRule::Once),
        504 => Some(StatusRule::Silent),
        _ => None,
    }
}

impl Failure {
    /// What an upstream's status says about the attempt (`None`: it is the client's answer).
    pub(crate) fn from_status(status: u16, retry_after: Option<Duration>) -> Option<Failure> {
        match status_rule(status)? {
            StatusRule::Silent => Some(Failure::Silent),
            StatusRule::Again | StatusRule::Once => Some(Failure::Status(status, retry_after)),
        }
    }

    /// Does it count against a circuit breaker? (A full context or a cooling key pool says
    /// nothing about the upstream's health.)
    pub(crate) fn is_upstream_fault(self) -> bool {
        !matches!(self, Failure::ContextLength | Failure::NoKey)
    }

    /// Does it say the upstream as a whole is unreachable (its breaker), rather than that one
    /// model fails there (the model's breaker)?
    pub(crate) fn is_whole_upstream(self) -> bool {
        matches!(self, Failure::Connect | Failure::Reset)
    }
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Next {
    /// Try again (same or next candidate, see `Attempts::current`) after this wait.
    Retry(Duration),
    /// Stop; the client gets what the last attempt produced.
    GiveUp,
}

#[derive(Clone)]
pub(crate) struct Attempts {
    candidates: Vec<Candidate>,
    current: usize,
    /// Same-upstream retries spent on the current candidate (resets, statuses).
    retries_here: u32,
    connect_failures_here: u32,
    retried_5xx_here: bool,
    /// Attempts made so far (all candidates).
    pub made: u32,
    /// The context-length fallbacks are open (an upstream said the prompt is too long).
    context_exceeded: bool,
    /// Candidates that stayed silent: their model on their upstream is skipped for the rest of
    /// the request.
    silent: Vec<usize>,
    /// When the whole call must be over (`retry.total`).
    pub deadline: Option<Instant>,
    /// The route's `context_length` models.
    context_models: Vec<String>,
    policy: RetryPolicy,
}

impl Attempts {
    /// The plan for a request to `route` asking for `model`. `swapped`: the gateway swaps the
    /// credentials (forward key or `open`), so upstreams with their own pool may be used;
    /// `allows` filters fallback models through the tenant's allow-list; `requested` is the
    /// client's own fallback list (the `x-fallback-models` header), when the route lets it.
    /// A `model` that cannot be rewritten in the body (a multipart upload) is sent only under
    /// its own name: no renaming upstream, no fallback model.
    pub(crate) fn plan(
        route: &Route,
        model: Option<&str>,
        rewritable: bool,
        requested: Option<Vec<String>>,
        swapped: bool,
        allows: impl Fn(&str) -> bool,
        started: Instant,
    ) -> Attempts {
        let fb = &route.config.resilience.fallbacks;
        // The requested model, then its fallbacks (kept apart: most requests have none, and an
        // empty list allocates nothing; the plan is made on every request).
        let first = (model.map(str::to_string), false);
        let mut more: Vec<(Option<String>, bool)> = Vec::new();
        if let Some(m) = model {
            let known = |more: &[(Option<String>, bool)], f: &str| {
                first.0.as_deref() == Some(f) || more.iter().any(|(x, _)| x.as_deref() == Some(f))
            };
            for f in fallback_models(fb, m, requested) {
                if allows(&f) && !known(&more, &f) {
                    more.push((Some(f), false));
                }
            }
            for f in &fb.context_length {
                if allows(f) && !known(&more, f) {
                    more.push((Some(f.clone()), true));
                }
            }
        }
        // Room for the first model's candidates up front; each model's are ordered in place.
        let mut candidates = Vec::with_capacity(route.upstreams.len());
        for (m, context_only) in std::iter::once(first).chain(more) {
            let start = candidates.len();
            for t in route
                .upstreams
                .iter()
                .filter(|t| swapped || t.pool.is_none())
            {
                let Some(sent) = t.config.serves(m.as_deref()) else {
                    continue;
                };
                if !rewritable && sent != model {
                    continue;
                }
                candidates.push(Candidate {
                    target: Arc::clone(t),
                    model: None,
                    sent_model: sent.map(str::to_string),
                    context_only,
                });
            }
            if candidates.is_empty() {
                // Fallbacks are for failures, not for a model no upstream serves: that is the
                // client's mistake to hear about (404 model_not_found).
                break;
            }
            // The model's name: copies for all but the last of its candidates, which takes it.
            if let Some((last, others)) = candidates[start..].split_last_mut() {
                for c in others {
                    c.model.clone_from(&m);
                }
                last.model = m;
            }
            order_by_priority_and_weight(&mut candidates[start..]);
        }
        let policy = route.config.retry;
        let mut attempts = Attempts {
            candidates,
            current: 0,
            retries_here: 0,
            connect_failures_here: 0,
            retried_5xx_here: false,
            made: 0,
            context_exceeded: false,
            silent: Vec::new(),
            deadline: policy.total.map(|t| started + t),
            context_models: fb.context_length.clone(),
            policy,
        };
        attempts.current = attempts.first_usable(0, true).unwrap_or(0);
        attempts
    }

    pub(crate) fn max_attempts(&self) -> u32 {
        self.policy.max_attempts
    }

    /// Whether an upstream's 429/5xx may lead to another attempt (`retry.on_status`).
    pub(crate) fn retries_on_status(&self) -> bool {
        self.policy.on_status
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    pub(crate) fn current(&self) -> Option<&Candidate> {
        self.candidates.get(self.current)
    }

    /// Move to the candidate that continues a broken stream: the next one in the plan that is
    /// not the model that broke on the same upstream, not only for a full context, and whose
    /// breakers are closed. `false` (nothing moved) when there is none.
    pub(crate) fn continue_elsewhere(&mut self, now: Instant) -> bool {
        let Some(broke) = self.current().cloned() else {
            return false;
        };
        let next = self
            .candidates
            .iter()
            .enumerate()
            .skip(self.current + 1)
            .find(|(_, c)| !c.context_only && !c.same_as(&broke) && c.admits(now, false))
            .map(|(i, _)| i);
        match next {
            Some(i) => {
                self.current = i;
                self.made += 1;
                true
            }
            None => false,
        }
    }

    /// Whether the current candidate is a fallback (not the plan's first): another model, or
    /// the same model on another upstream.
    pub(crate) fn fallback(&self) -> Option<crate::metrics::Fallback> {
        let (first, now) = (self.candidates.first()?, self.current()?);
        if self.current == 0 {
            None
        } else if first.model != now.model {
            Some(crate::metrics::Fallback::Model)
        } else {
            Some(crate::metrics::Fallback::Upstream)
        }
    }

    /// Time left of the total budget (`None`: unbounded).
    pub(crate) fn remaining(&self, now: Instant) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(now))
    }

    /// The first candidate from `from` that may be tried: not silent, not context-only (unless
    /// opened), and its breakers not open. `acquire`: take a breaker's probe slot when it is
    /// half-open (else only look).
    fn first_usable(&self, from: usize, acquire: bool) -> Option<usize> {
        let now = Instant::now();
        let usable = |c: &Candidate| {
            (!c.context_only || self.context_exceeded)
                && !self.silent.iter().any(|&s| self.candidates[s].same_as(c))
        };
        let admits = |c: &Candidate| c.admits(now, acquire);
        let found = (from..self.candidates.len()).find(|&i| {
            let c = &self.candidates[i];
            usable(c) && admits(c)
        });
        // On the first pick, when every usable candidate's breaker is open: rather than fail
        // fast, try the first one anyway (it doubles as a probe).
        found.or_else(|| {
            (from == 0)
                .then(|| (0..self.candidates.len()).find(|&i| usable(&self.candidates[i])))
                .flatten()
        })
    }

    /// Decide after a failed attempt. Moves `current` when the next try goes elsewhere.
    pub(crate) fn after(&mut self, failure: Failure, now: Instant) -> Next {
        self.step(failure, now, true)
    }

    /// `after`, with the breakers of the candidates acquired (a half-open one admits a probe)
    /// or only looked at.
    fn step(&mut self, failure: Failure, now: Instant, acquire: bool) -> Next {
        let p = self.policy;
        if self.made >= p.max_attempts || self.remaining(now).is_some_and(|r| r.is_zero()) {
            return Next::GiveUp;
        }
        if !p.on_status && matches!(failure, Failure::Status(..)) {
            return Next::GiveUp;
        }
        let rule = match failure {
            Failure::Status(status, _) => status_rule(status),
            _ => None,
        };
        let same = match (failure, rule) {
            (Failure::Connect, _) => {
                self.connect_failures_here += 1;
                (self.connect_failures_here <= p.connect_retries)
                    .then(|| backoff(&p, self.connect_failures_here))
            }
            (Failure::Reset, _) | (Failure::Status(..), Some(StatusRule::Again)) => {
                let retry_after = match failure {
                    Failure::Status(_, ra) => ra,
                    _ => None,
                };
                self.retries_here += 1;
                match retry_after {
                    // Too long to wait: the next candidate instead.
                    Some(ra) if ra > p.retry_after_max => None,
                    _ if self.retries_here > p.retries => None,
                    Some(ra) => Some(ra),
                    None => Some(backoff(&p, self.retries_here)),
                }
            }
            (Failure::Status(..), Some(StatusRule::Once)) => {
                let first = !self.retried_5xx_here && p.retries > 0;
                self.retried_5xx_here = true;
                first.then(|| backoff(&p, 1))
            }
            (Failure::Status(..) | Failure::NoKey, _) => None,
            (Failure::Silent, _) => {
                self.silent.push(self.current);
                None
            }
            (Failure::ContextLength, _) => {
                self.context_exceeded = true;
                None
            }
        };
        if let Some(wait) = same {
            // A wait past the budget is no retry at all, and an upstream whose breaker just
            // opened gets no more calls: move on instead.
            let open = self.current().is_some_and(|c| c.breaker_open(now));
            if !open && self.remaining(now).is_none_or(|r| r > wait) {
                return Next::Retry(wait);
            }
        }
        let from = self.current + 1;
        let next = if failure == Failure::ContextLength {
            // Only a larger context can help: the next context-length model, past any other
            // candidate (it may also be an ordinary fallback, listed earlier).
            let mut next = None;
            for i in from..self.candidates.len() {
                let is_context = self.candidates[i]
                    .model
                    .as_ref()
                    .is_some_and(|m| self.context_models.contains(m));
                if is_context && self.first_usable(i, acquire) == Some(i) {
                    next = Some(i);
                    break;
                }
            }
            next
        } else {
            self.first_usable(from, acquire)
        };
        match next {
            Some(i) => {
                self.current = i;
                self.retries_here = 0;
                self.connect_failures_here = 0;
                self.retried_5xx_here = false;
                Next::Retry(Duration::ZERO)
            }
            None => Next::GiveUp,
        }
    }

    /// Whether a failure of this kind would lead to another attempt, without changing the plan
    /// (or any breaker): lets the response phase hand a final error to the client unchanged.
    pub(crate) fn would_retry(&self, failure: Failure, now: Instant) -> bool {
        self.clone().step(failure, now, false) != Next::GiveUp
    }
}

/// How long to wait before retry number `retry` (1-based): `backoff · 2^(retry-1)`, capped at
/// `backoff_max`, with jitter drawn from the upper half so retries spread out without collapsing
/// to zero.
pub(super) fn backoff(policy: &RetryPolicy, retry: u32) -> Duration {
    let exp = policy
        .backoff
        .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
    let capped = exp.min(policy.backoff_max);
    capped.mul_f64(rand::rng().random_range(0.5..=1.0))
}

/// The fallback models for `model`: the client's list when given, else the route's list for the
/// model, then the route's list for every model.
fn fallback_models(
    fb: &FallbackConfig,
    model: &str,
    requested: Option<Vec<String>>,
) -> Vec<String> {
    if let Some(list) = requested.filter(|_| fb.from_request) {
        return list;
    }
    let mut out: Vec<String> = fb
        .by_model
        .iter()
        .filter(|(m, _)| m == model)
        .flat_map(|(_, list)| list.iter().cloned())
        .collect();
    out.extend(fb.models.iter().cloned());
    out
}

/// Sort by priority (lower first); within a priority, a weighted random order (each position
/// drawn with probability proportional to weight), so load spreads by weight and a failed
/// first choice falls back to a peer of the same priority before the next tier.
/// The last position of a tier takes what is left without a draw (a route with one upstream
/// draws nothing).
fn order_by_priority_and_weight(targets: &mut [Candidate]) {
    targets.sort_by_key(|c| c.target.config.priority);
    let mut start = 0;
    while start < targets.len() {
        let prio = targets[start].target.config.priority;
        let end = targets[start..]
            .iter()
            .position(|c| c.target.config.priority != prio)
            .map_or(targets.len(), |n| start + n);
        for i in start..end - 1 {
            let total: u64 = targets[i..end]
                .iter()
                .map(|c| u64::from(c.target.config.weight))
                .sum();
            if total == 0 {
                break;
            }
            let mut pick = rand::random_range(0..total);
            let mut chosen = i;
            for (j, c) in targets[i..end].iter().enumerate() {
                let w = u64::from(c.target.config.weight);
                if pick < w {
                    chosen = i + j;
                    break;
                }
                pick -= w;
            }
            targets.swap(i, chosen);
        }
        start = end;
    }
}

#[cfg(test)]
mod tests;
