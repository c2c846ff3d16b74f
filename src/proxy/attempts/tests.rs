//! The attempt plan's rules, one test per rule.

use super::*;
use crate::state::Gateway;

fn route(extra: &str) -> Arc<Route> {
    let yaml = format!(
        "routes:\n  - prefix: /\n    upstreams:\n      - {{url: 'http://127.0.0.1:1', name: a, models: [m1, m2]}}\n      - {{url: 'http://127.0.0.1:2', name: b, priority: 2, models: {{m1: b-m1, m3: b-m3, big: b-big}}}}\n    retry: {{retries: 2, backoff: 1ms, backoff_max: 2ms, retry_after_max: 5s}}\n{extra}"
    );
    let config = crate::config::parse_bytes(yaml.as_bytes(), &|_| None).unwrap();
    Arc::clone(&Gateway::build(config).ok().unwrap().routes[0])
}

fn plan(route: &Route, model: &str) -> Attempts {
    Attempts::plan(
        route,
        Some(model),
        true,
        None,
        true,
        |_| true,
        Instant::now(),
    )
}

fn at(a: &Attempts) -> (String, Option<String>) {
    let c = a.current().unwrap();
    (c.target.config.name.clone(), c.sent_model.clone())
}

#[test]
fn candidates_follow_priority_then_fallback_models() {
    let r = route("    fallbacks: {by_model: {m1: [m3]}, context_length: [big]}\n");
    let mut p = plan(&r, "m1");
    let now = Instant::now();
    assert_eq!(at(&p), ("a".into(), Some("m1".into())));
    // Retries on the same upstream, then the next one (with its own model name).
    for _ in 0..2 {
        assert!(matches!(
            p.after(Failure::Status(503, None), now),
            Next::Retry(_)
        ));
        assert_eq!(at(&p).0, "a");
    }
    assert_eq!(
        p.after(Failure::Status(503, None), now),
        Next::Retry(Duration::ZERO)
    );
    assert_eq!(at(&p), ("b".into(), Some("b-m1".into())));
    // One retry of a 500, then the fallback model; the context-length model is not for
    // ordinary failures.
    assert!(matches!(
        p.after(Failure::Status(500, None), now),
        Next::Retry(_)
    ));
    assert_eq!(at(&p).1.as_deref(), Some("b-m1"));
    assert_eq!(
        p.after(Failure::Status(500, None), now),
        Next::Retry(Duration::ZERO)
    );
    assert_eq!(at(&p), ("b".into(), Some("b-m3".into())));
    assert!(matches!(
        p.after(Failure::Status(502, None), now),
        Next::Retry(_)
    ));
    assert_eq!(p.after(Failure::Status(502, None), now), Next::GiveUp);
}

#[test]
fn a_silent_model_is_skipped_but_its_upstream_still_serves_the_others() {
    let r = route("    fallbacks: {models: [m2, m3]}\n");
    let mut p = plan(&r, "m1");
    let now = Instant::now();
    assert_eq!(p.after(Failure::Silent, now), Next::Retry(Duration::ZERO));
    assert_eq!(at(&p), ("b".into(), Some("b-m1".into())));
    // a stayed silent for m1, not for m2.
    assert_eq!(p.after(Failure::Silent, now), Next::Retry(Duration::ZERO));
    assert_eq!(at(&p), ("a".into(), Some("m2".into())));
    assert_eq!(p.after(Failure::Silent, now), Next::Retry(Duration::ZERO));
    assert_eq!(at(&p), ("b".into(), Some("b-m3".into())));
    assert_eq!(p.after(Failure::Silent, now), Next::GiveUp);
}

#[test]
fn an_open_model_breaker_skips_that_model_only() {
    let r = route("    fallbacks: {models: [m2]}\n    breaker: {failures: 1}\n");
    let now = Instant::now();
    let a = &r.upstreams[0];
    a.model_breakers.record("m1", false, now);
    let p = plan(&r, "m1");
    // m1 on a is open: b's m1 first, then m2 on a.
    assert_eq!(at(&p), ("b".into(), Some("b-m1".into())));
    assert!(p.would_retry(Failure::Status(500, None), now));
    assert_eq!(a.breaker.state(now), BreakerState::Closed);
}

#[test]
fn retry_after_is_waited_out_unless_too_long() {
    let r = route("");
    let now = Instant::now();
    let mut p = plan(&r, "m1");
    let two = Duration::from_secs(2);
    assert!(p.would_retry(Failure::Status(429, Some(two)), now));
    assert_eq!(at(&p).0, "a", "would_retry changes nothing");
    assert_eq!(
        p.after(Failure::Status(429, Some(two)), now),
        Next::Retry(two)
    );
    assert_eq!(
        p.after(Failure::Status(429, Some(Duration::from_secs(60))), now),
        Next::Retry(Duration::ZERO)
    );
    assert_eq!(at(&p).0, "b");
}

#[test]
fn context_length_goes_only_to_the_larger_context_models() {
    let r = route("    fallbacks: {models: [m2], context_length: [big]}\n");
    let now = Instant::now();
    let mut p = plan(&r, "m1");
    assert_eq!(
        p.after(Failure::ContextLength, now),
        Next::Retry(Duration::ZERO)
    );
    assert_eq!(at(&p), ("b".into(), Some("b-big".into())));
    // A context model that is also an ordinary fallback still serves as one.
    let r = route("    fallbacks: {models: [big], context_length: [big]}\n");
    let mut p = plan(&r, "m1");
    assert_eq!(
        p.after(Failure::ContextLength, now),
        Next::Retry(Duration::ZERO)
    );
    assert_eq!(at(&p), ("b".into(), Some("b-big".into())));
    let r = route("    fallbacks: {models: [m2]}\n");
    let mut p = plan(&r, "m1");
    assert!(!p.would_retry(Failure::ContextLength, now));
    assert_eq!(p.after(Failure::ContextLength, now), Next::GiveUp);
}

#[test]
fn unknown_models_have_no_candidates_and_allow_lists_filter_fallbacks() {
    let r = route("    fallbacks: {models: [m2, m3]}\n");
    assert!(plan(&r, "nope").is_empty());
    let p = Attempts::plan(
        &r,
        Some("m1"),
        true,
        None,
        true,
        |m| m != "m3",
        Instant::now(),
    );
    assert!(p
        .candidates
        .iter()
        .all(|c| c.model.as_deref() != Some("m3")));
    let p = Attempts::plan(
        &r,
        Some("m1"),
        true,
        Some(vec!["m3".into()]),
        true,
        |_| true,
        Instant::now(),
    );
    let models: Vec<_> = p
        .candidates
        .iter()
        .map(|c| c.model.clone().unwrap())
        .collect();
    assert_eq!(
        models,
        ["m1", "m1", "m3"],
        "the client's list replaces the route's"
    );
}

#[test]
fn backoff_grows_and_is_capped() {
    let p = RetryPolicy {
        backoff: Duration::from_millis(100),
        backoff_max: Duration::from_millis(300),
        ..RetryPolicy::default()
    };
    for _ in 0..100 {
        let b1 = backoff(&p, 1);
        assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100));
        let b2 = backoff(&p, 2);
        assert!(b2 >= Duration::from_millis(100) && b2 <= Duration::from_millis(200));
        let b9 = backoff(&p, 9);
        assert!(b9 >= Duration::from_millis(150) && b9 <= Duration::from_millis(300));
    }
}

/// A plan without fallbacks (the general route's, every request): one allocation, the candidate
/// list sized up front (it was three: the model list, the upstream list, the candidates' growth).
#[test]
fn a_plan_without_fallbacks_allocates_only_its_candidates() {
    let yaml = "routes:\n  - prefix: /\n    upstream: http://127.0.0.1:1\n    type: general\n";
    let config = crate::config::parse_bytes(yaml.as_bytes(), &|_| None).unwrap();
    let r = Arc::clone(&Gateway::build(config).ok().unwrap().routes[0]);
    let make = || Attempts::plan(&r, None, false, None, false, |_| true, Instant::now());
    make(); // the first use of the clock and the breakers may set things up
    let (n, p) = crate::alloc_count::allocations(make);
    assert_eq!(p.candidates.len(), 1);
    assert_eq!(n, 1);
}

/// With a model and no fallbacks: the candidate list, the model's name and the name the
/// upstream knows it by (the model's name moves into the last candidate instead of a copy).
#[test]
fn a_plan_for_a_model_copies_its_name_once() {
    let r = route("");
    let make = || Attempts::plan(&r, Some("m2"), true, None, true, |_| true, Instant::now());
    make();
    let (n, p) = crate::alloc_count::allocations(make);
    assert_eq!(at(&p), ("a".into(), Some("m2".into())));
    assert_eq!(p.current().unwrap().model.as_deref(), Some("m2"));
    assert_eq!(n, 3);
}
