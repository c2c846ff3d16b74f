//! Limits phase (`request_filter`, after auth, before the body is read): the most specific
//! concurrency rule and request-rate rule for this request, each counted once; 429 with
//! `Retry-After` when over. Every response on a rate-limited route carries
//! `x-ratelimit-{limit,remaining,reset}-requests`, as OpenAI's do.

use super::ctx::{Pacer, RequestCtx, TokenReservation};
use super::error::GatewayError;
use crate::limits::rules::{select, select_pacing, select_tokens, Subject};
use crate::limits::Verdict;
use crate::limits::{Admission, Decision};
use crate::state::Gateway;
use http::{HeaderName, HeaderValue};
use pingora_proxy::Session;
use std::net::{IpAddr, Ipv4Addr};

pub(super) async fn enforce(
    gateway: &Gateway,
    session: &Session,
    ctx: &mut RequestCtx,
) -> pingora_core::Result<()> {
    let limits = &gateway.limits;
    if limits.rules.is_empty() {
        return Ok(());
    }
    let Some(seen) = Seen::of(ctx) else {
        return Ok(());
    };
    let subject = seen.subject(session.req_header().uri.path());
    let (rate_rule, concurrency_rule) = select(&limits.rules, &subject);
    if let Some(rate) = select_pacing(&limits.rules, &subject).and_then(|r| r.output_rate) {
        ctx.limits.pacer = Some(Pacer::new(rate));
    }
    if let Some((i, rule)) = concurrency_rule {
        let max = rule.concurrency.unwrap_or(u32::MAX);
        match limits.enter(&rule.bucket(i, &subject), max).await {
            Admission::Admitted(slot) => ctx.limits.concurrency = slot,
            Admission::Full => return Err(ctx.fail(GatewayError::ConcurrencyLimited)),
            Admission::Unavailable => return Err(ctx.fail(GatewayError::LimiterUnavailable)),
        }
    }
    if let Some((i, rule)) = rate_rule {
        let Some(spec) = &rule.requests else {
            return Ok(());
        };
        let bucket = rule.bucket(i, &subject);
        match limits.requests.check(&bucket, spec).await {
            Verdict::Decided(d) => {
                ctx.limits.rate = Some(d);
                if !d.allowed {
                    return Err(ctx.fail(GatewayError::RateLimited));
                }
            }
            Verdict::BackendDown { allowed: true } => {}
            Verdict::BackendDown { allowed: false } => {
                return Err(ctx.fail(GatewayError::LimiterUnavailable));
            }
        }
    }
    Ok(())
}

/// What the limit rules see of a request, held apart from `ctx` so that it stays free to
/// record decisions while the rules are consulted.
struct Seen {
    route: std::sync::Arc<crate::state::Route>,
    tenant: Option<std::sync::Arc<crate::keys::tenant::Tenant>>,
    key: Option<std::sync::Arc<str>>,
    ip: IpAddr,
}

impl Seen {
    fn of(ctx: &RequestCtx) -> Option<Seen> {
        Some(Seen {
            route: ctx.route().cloned()?,
            tenant: ctx.auth.tenant.clone(),
            key: ctx.auth.key_id.clone(),
            ip: ctx.client.ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        })
    }

    fn subject<'a>(&'a self, path: &'a str) -> Subject<'a> {
        Subject {
            route: &self.route.config.prefix,
            path,
            tenant: self.tenant.as_deref().map(|t| t.name.as_str()),
            key: self.key.as_deref(),
            ip: self.ip,
        }
    }
}

/// Token budgets (after the body phase, which knows the prompt and `max_tokens`): reserve the
/// prompt estimate plus `max_tokens` (or `limits.default_max_tokens`); 429 when the budget
/// cannot cover it.
pub(super) async fn reserve_tokens(
    gateway: &Gateway,
    session: &Session,
    ctx: &mut RequestCtx,
) -> pingora_core::Result<()> {
    let limits = &gateway.limits;
    if limits.rules.is_empty() {
        return Ok(());
    }
    let Some(seen) = Seen::of(ctx) else {
        return Ok(());
    };
    let subject = seen.subject(session.req_header().uri.path());
    let Some((i, rule)) = select_tokens(&limits.rules, &subject) else {
        return Ok(());
    };
    let Some(spec) = rule.tokens.clone() else {
        return Ok(());
    };
    // The prompt estimate the answer's usage falls back on too (`stream::outcome`): a body
    // without a conversation field has no prompt tokens, in both.
    let prompt = ctx.body.prompt_estimate.unwrap_or(0);
    let completion = ctx
        .body
        .info
        .as_ref()
        .and_then(|i| i.max_tokens)
        .unwrap_or(gateway.config.limits.default_max_tokens);
    let reserved = prompt + completion;
    let bucket = rule.bucket(i, &subject);
    match limits.requests.check_n(&bucket, &spec, reserved).await {
        Verdict::Decided(decision) => {
            let cut_at = rule.cut_streams.then_some(decision.remaining + reserved);
            ctx.limits.tokens = Some(TokenReservation {
                bucket,
                spec,
                reserved,
                decision,
                cut_at,
                prompt,
            });
            if !decision.allowed {
                return Err(ctx.fail(GatewayError::TokensExhausted));
            }
        }
        Verdict::BackendDown { allowed: true } => {}
        Verdict::BackendDown { allowed: false } => {
            return Err(ctx.fail(GatewayError::LimiterUnavailable))
        }
    }
    Ok(())
}

/// Give the concurrency slot back (shared slots need a Redis call; local ones drop).
pub(super) async fn release(gateway: &Gateway, ctx: &mut RequestCtx) {
    if let Some(slot) = ctx.limits.concurrency.take() {
        gateway.limits.leave(slot).await;
    }
}

/// Replace the reservation with what the request really used (nothing, if it never reached
/// an upstream).
pub(super) async fn settle_tokens(gateway: &Gateway, ctx: &mut RequestCtx, used: Option<u64>) {
    let Some(r) = ctx.limits.tokens.as_ref().filter(|r| r.decision.allowed) else {
        return;
    };
    let delta = used.unwrap_or(0) as i64 - r.reserved as i64;
    if delta != 0 {
        gateway
            .limits
            .requests
            .adjust(&r.bucket, &r.spec, delta)
            .await;
    }
}

/// The rate-limit headers for this request's answer (empty when no rate rule applied).
pub(super) fn headers(ctx: &RequestCtx) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    if let Some(d) = ctx.limits.rate {
        push(&mut out, d, REQUESTS);
    }
    if let Some(t) = &ctx.limits.tokens {
        push(&mut out, t.decision, TOKENS);
    }
    out
}

/// The three header names of one kind (`requests` or `tokens`): static, so building the
/// headers allocates no name (a `format!` per name was ~5k instructions per request).
struct Names {
    limit: HeaderName,
    remaining: HeaderName,
    reset: HeaderName,
}

const REQUESTS: Names = Names {
    limit: HeaderName::from_static("x-ratelimit-limit-requests"),
    remaining: HeaderName::from_static("x-ratelimit-remaining-requests"),
    reset: HeaderName::from_static("x-ratelimit-reset-requests"),
};

const TOKENS: Names = Names {
    limit: HeaderName::from_static("x-ratelimit-limit-tokens"),
    remaining: HeaderName::from_static("x-ratelimit-remaining-tokens"),
    reset: HeaderName::from_static("x-ratelimit-reset-tokens"),
};

fn push(out: &mut Vec<(HeaderName, HeaderValue)>, d: Decision, names: Names) {
    out.push((names.limit, HeaderValue::from(d.limit)));
    out.push((names.remaining, HeaderValue::from(d.remaining)));
    if let Ok(v) = HeaderValue::from_bytes(reset_text(d.reset).as_bytes()) {
        out.push((names.reset, v));
    }
    if !d.allowed {
        // Whole seconds, rounded up, at least 1: retrying sooner is refused again.
        let secs = d.reset.as_millis().div_ceil(1000).max(1) as u64;
        out.push((http::header::RETRY_AFTER, HeaderValue::from(secs)));
    }
}

/// A [`reset_text`] on the stack: two 20-digit numbers and `m`, `s` at most.
#[derive(Debug)]
struct ResetText {
    buf: [u8; 44],
    len: usize,
}

impl ResetText {
    fn put(&mut self, bytes: &[u8]) {
        // Never more than 44 bytes (see above); `get_mut` keeps an impossible overflow quiet.
        if let Some(dst) = self.buf.get_mut(self.len..self.len + bytes.len()) {
            dst.copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl PartialEq<&str> for ResetText {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

/// OpenAI's duration style: `20ms`, `6s`, `1m30s` (no `format!`: this runs per request).
fn reset_text(d: std::time::Duration) -> ResetText {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let mut out = ResetText {
        buf: [0; 44],
        len: 0,
    };
    let mut num = itoa::Buffer::new();
    if ms < 1000 {
        out.put(num.format(ms).as_bytes());
        out.put(b"ms");
        return out;
    }
    let secs = ms.div_ceil(1000);
    match (secs / 60, secs % 60) {
        (0, s) => {
            out.put(num.format(s).as_bytes());
            out.put(b"s");
        }
        (m, 0) => {
            out.put(num.format(m).as_bytes());
            out.put(b"m");
        }
        (m, s) => {
            out.put(num.format(m).as_bytes());
            out.put(b"m");
            out.put(num.format(s).as_bytes());
            out.put(b"s");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::reset_text;
    use std::time::Duration;

    #[test]
    fn reset_durations_read_like_openais() {
        assert_eq!(reset_text(Duration::from_millis(20)), "20ms");
        assert_eq!(reset_text(Duration::from_millis(5200)), "6s");
        assert_eq!(reset_text(Duration::from_secs(90)), "1m30s");
        assert_eq!(reset_text(Duration::from_secs(120)), "2m");
    }
}
