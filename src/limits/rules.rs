//! Which limit applies to a request, and which bucket it is counted in. The most specific
//! matching rule wins (a rule naming the key beats one naming its tenant, which beats a path,
//! which beats a route, which beats a rule with no condition), so every request is counted once,
//! by exactly one rule of each kind. Pure.

use super::spec::LimitSpec;
use super::text::{push_decimal, push_ip};
use crate::routing::collapse_slashes;

/// What a bucket is counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    /// Each forward key (clients without one: each client IP).
    Key,
    Ip,
    Tenant,
    Route,
    /// One bucket for everything the rule matches.
    All,
}

impl Per {
    pub fn as_str(self) -> &'static str {
        match self {
            Per::Key => "key",
            Per::Ip => "ip",
            Per::Tenant => "tenant",
            Per::Route => "route",
            Per::All => "all",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LimitRule {
    /// Route prefix the request was routed by.
    pub route: Option<String>,
    /// Request path prefix (whole segments, with the route prefix): `/v1/chat/completions`.
    pub path: Option<String>,
    pub tenant: Option<String>,
    /// A forward key's name (or `k-…` id).
    pub key: Option<String>,
    pub per: Per,
    pub requests: Option<LimitSpec>,
    /// A token budget: reserved before the call (prompt estimate + max_tokens), settled with
    /// the real usage after.
    pub tokens: Option<LimitSpec>,
    /// With `tokens`: cut a stream whose output runs past what the budget had left.
    pub cut_streams: bool,
    pub concurrency: Option<u32>,
    /// Output pacing: stream events are released at no more than this many tokens a second.
    pub output_rate: Option<f64>,
}

/// What the request looks like to the rules.
pub struct Subject<'a> {
    pub route: &'a str,
    pub path: &'a str,
    pub tenant: Option<&'a str>,
    pub key: Option<&'a str>,
    pub ip: std::net::IpAddr,
}

impl LimitRule {
    fn matches(&self, s: &Subject<'_>) -> bool {
        self.route.as_deref().is_none_or(|r| r == s.route)
            && self
                .path
                .as_deref()
                .is_none_or(|p| under(&collapse_slashes(s.path), p))
            && self.tenant.as_deref().is_none_or(|t| Some(t) == s.tenant)
            && self.key.as_deref().is_none_or(|k| Some(k) == s.key)
    }

    fn specificity(&self) -> u8 {
        u8::from(self.key.is_some()) * 8
            + u8::from(self.tenant.is_some()) * 4
            + u8::from(self.path.is_some()) * 2
            + u8::from(self.route.is_some())
    }

    /// The bucket this request is counted in under this rule (no key material: key ids only).
    /// `{index}:{per}:{value}`, written into one buffer: this runs per request, where
    /// `format!` and `IpAddr::to_string` cost ~2.6k instructions and three allocations.
    pub fn bucket(&self, index: usize, s: &Subject<'_>) -> String {
        let mut out = String::with_capacity(48);
        push_decimal(&mut out, index as u64);
        out.push(':');
        out.push_str(self.per.as_str());
        out.push(':');
        match (self.per, s.key, s.tenant) {
            (Per::Key, Some(k), _) => {
                out.push_str("key:");
                out.push_str(k);
            }
            (Per::Tenant, _, Some(t)) => out.push_str(t),
            (Per::Key | Per::Tenant, _, _) => {
                out.push_str("ip:");
                push_ip(&mut out, s.ip);
            }
            (Per::Ip, _, _) => push_ip(&mut out, s.ip),
            (Per::Route, _, _) => out.push_str(s.route),
            (Per::All, _, _) => {}
        }
        out
    }
}

/// `path` equals `prefix` or continues it with a new segment.
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'))
}

/// A chosen rule and its index (the index names its buckets).
pub type Selected<'r> = Option<(usize, &'r LimitRule)>;

/// The most specific rule with output pacing.
pub fn select_pacing<'r>(rules: &'r [LimitRule], s: &Subject<'_>) -> Option<&'r LimitRule> {
    best(rules, s, |r| r.output_rate.is_some()).map(|(_, r)| r)
}

/// The most specific rule with a token budget.
pub fn select_tokens<'r>(rules: &'r [LimitRule], s: &Subject<'_>) -> Selected<'r> {
    best(rules, s, |r| {
        r.tokens.as_ref().is_some_and(|l| !l.is_unlimited())
    })
}

fn best<'r>(
    rules: &'r [LimitRule],
    s: &Subject<'_>,
    want: impl Fn(&LimitRule) -> bool,
) -> Selected<'r> {
    rules
        .iter()
        .enumerate()
        .filter(|(_, r)| want(r) && r.matches(s))
        // Highest specificity; among equals, the first listed.
        .max_by(|(ia, a), (ib, b)| a.specificity().cmp(&b.specificity()).then(ib.cmp(ia)))
}

/// The most specific rule with a request limit, and the one with a concurrency limit.
pub fn select<'r>(rules: &'r [LimitRule], s: &Subject<'_>) -> (Selected<'r>, Selected<'r>) {
    (
        best(rules, s, |r| {
            r.requests.as_ref().is_some_and(|l| !l.is_unlimited())
        }),
        best(rules, s, |r| r.concurrency.is_some()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::spec::parse_limit;

    fn rule(
        route: Option<&str>,
        path: Option<&str>,
        tenant: Option<&str>,
        key: Option<&str>,
        limit: &str,
    ) -> LimitRule {
        LimitRule {
            route: route.map(Into::into),
            path: path.map(Into::into),
            tenant: tenant.map(Into::into),
            key: key.map(Into::into),
            per: Per::Key,
            requests: Some(parse_limit(limit).unwrap()),
            tokens: None,
            cut_streams: false,
            concurrency: None,
            output_rate: None,
        }
    }

    #[test]
    fn the_most_specific_rule_applies_once() {
        let rules = vec![
            rule(None, None, None, None, "1000/minute"),
            rule(Some("/openai"), None, None, None, "100/minute"),
            rule(None, Some("/openai/v1/chat"), None, None, "50/minute"),
            rule(None, None, Some("free"), None, "10/minute"),
            rule(None, None, None, Some("alice"), "5/minute"),
        ];
        let s = |path, tenant, key| Subject {
            route: "/openai",
            path,
            tenant,
            key,
            ip: "127.0.0.1".parse().unwrap(),
        };
        let pick = |subj: Subject<'_>| select(&rules, &subj).0.map(|(i, _)| i);
        assert_eq!(pick(s("/openai/v1/models", None, None)), Some(1));
        assert_eq!(pick(s("/openai/v1/chat/completions", None, None)), Some(2));
        assert_eq!(pick(s("/openai/v1/chatter", None, None)), Some(1));
        assert_eq!(
            pick(s("/openai/v1/chat/completions", Some("free"), Some("bob"))),
            Some(3)
        );
        assert_eq!(
            pick(s("/openai/v1/models", Some("free"), Some("alice"))),
            Some(4)
        );
        let other = Subject {
            route: "/other",
            path: "/other/x",
            tenant: None,
            key: None,
            ip: "10.0.0.1".parse().unwrap(),
        };
        assert_eq!(select(&rules, &other).0.map(|(i, _)| i), Some(0));
    }

    /// A bucket as it was written with `format!`.
    fn formatted(r: &LimitRule, index: usize, s: &Subject<'_>) -> String {
        let ip = || s.ip.to_string();
        let value = match r.per {
            Per::Key => s
                .key
                .map_or_else(|| format!("ip:{}", ip()), |k| format!("key:{k}")),
            Per::Ip => ip(),
            Per::Tenant => s
                .tenant
                .map_or_else(|| format!("ip:{}", ip()), str::to_string),
            Per::Route => s.route.to_string(),
            Per::All => String::new(),
        };
        format!("{index}:{}:{value}", r.per.as_str())
    }

    /// The buckets as they were written with `format!`: a Redis backend's counters keep their
    /// keys across an upgrade.
    #[test]
    fn buckets_are_the_formatted_ones() {
        let ips = [
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "10.20.3.100",
            "::1",
            "::ffff:1.2.3.4",
            "2001:db8::8a2e:370:7334",
        ];
        for per in [Per::Key, Per::Ip, Per::Tenant, Per::Route, Per::All] {
            let r = LimitRule {
                per,
                ..rule(None, None, None, None, "1/minute")
            };
            for ip in ips {
                for (key, tenant) in [(None, None), (Some("alice"), Some("free"))] {
                    let s = Subject {
                        route: "/openai",
                        path: "/openai/v1",
                        tenant,
                        key,
                        ip: ip.parse().unwrap(),
                    };
                    for index in [0, 7, 10, 12345, usize::MAX] {
                        assert_eq!(r.bucket(index, &s), formatted(&r, index, &s));
                    }
                }
            }
        }
    }

    /// A bucket is one allocation, never grown for an IPv4 client.
    #[test]
    fn buckets_are_one_allocation() {
        let r = LimitRule {
            per: Per::Tenant,
            ..rule(None, None, None, None, "1/minute")
        };
        let widest = Subject {
            route: "/",
            path: "/",
            tenant: None,
            key: None,
            ip: "255.255.255.255".parse().unwrap(),
        };
        let b = r.bucket(usize::MAX, &widest);
        assert_eq!(b.capacity(), 48, "{b}");
        // Counted, for the bench's rule (`per: ip`) and client: one, where `format!` and
        // `IpAddr::to_string` made more.
        use crate::openai::tests::allocs::allocations;
        let bench = LimitRule {
            per: Per::Ip,
            ..r.clone()
        };
        let client = Subject {
            ip: "127.0.0.1".parse().unwrap(),
            ..widest
        };
        let (new, _) = allocations(|| bench.bucket(0, &client));
        let (old, _) = allocations(|| formatted(&bench, 0, &client));
        assert_eq!((new, old), (1, 4));
    }

    #[test]
    fn buckets_never_hold_keys_only_ids() {
        let r = rule(None, None, None, None, "1/minute");
        let s = Subject {
            route: "/",
            path: "/",
            tenant: None,
            key: Some("alice"),
            ip: "127.0.0.1".parse().unwrap(),
        };
        assert_eq!(r.bucket(3, &s), "3:key:key:alice");
        let anon = Subject { key: None, ..s };
        assert_eq!(r.bucket(3, &anon), "3:key:ip:127.0.0.1");
    }
}
