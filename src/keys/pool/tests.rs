use super::*;
use crate::config::{Secret, UpstreamKeyConfig};

fn pool_with(weights: &[u32], health: KeyHealthConfig) -> KeyPool {
    let config = KeyPoolConfig {
        name: "p".into(),
        keys: weights
            .iter()
            .enumerate()
            .map(|(i, w)| UpstreamKeyConfig {
                key: Secret(format!("sk-{i}")),
                name: None,
                weight: *w,
            })
            .collect(),
    };
    KeyPool::with_health(&config, health)
}

fn pool(weights: &[u32]) -> KeyPool {
    pool_with(weights, KeyHealthConfig::default())
}

#[test]
fn weighted_round_robin_is_smooth() {
    assert_eq!(smooth_schedule(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
    let p = pool(&[1, 1]);
    let picks: Vec<usize> = (0..4).map(|_| p.pick(None, None).unwrap()).collect();
    assert_eq!(picks, vec![0, 1, 0, 1]);
    // The key a request was just refused with is never its next one.
    let p = pool(&[1, 1, 1]);
    for _ in 0..6 {
        assert_ne!(p.pick(None, Some(1)), Ok(1));
    }
}

#[test]
fn invalid_keys_leave_and_throttled_keys_cool_down() {
    let p = pool(&[1, 1, 1]);
    p.report(0, KeyVerdict::Invalid);
    let throttle = |s| KeyVerdict::Throttled {
        model: None,
        retry_after: Some(Duration::from_secs(s)),
    };
    p.report(1, throttle(60));
    for _ in 0..6 {
        assert_eq!(p.pick(None, None), Ok(2));
    }
    assert!(!p.has_other_usable(2, None));
    p.report(
        2,
        KeyVerdict::Throttled {
            model: None,
            retry_after: None,
        },
    );
    let wait = p.pick(None, None).unwrap_err().unwrap();
    let cooldown = KeyHealthConfig::default().cooldown;
    assert!(wait <= cooldown && wait > cooldown / 2);
    // Retry-After is capped.
    p.report(2, throttle(100_000));
    let wait = p.pick(None, None).unwrap_err().unwrap();
    assert!(wait <= KeyHealthConfig::default().cooldown_max);
}

#[test]
fn a_429_cools_a_key_for_its_model_only() {
    let p = pool(&[1, 1]);
    let (a, b) = (Some(model_tag("model-a")), Some(model_tag("model-b")));
    p.report(
        0,
        KeyVerdict::Throttled {
            model: a,
            retry_after: Some(Duration::from_secs(60)),
        },
    );
    for _ in 0..4 {
        assert_eq!(p.pick(a, None), Ok(1));
    }
    let picks: Vec<usize> = (0..4).map(|_| p.pick(b, None).unwrap()).collect();
    assert!(picks.contains(&0) && picks.contains(&1));
    assert!(!p.has_other_usable(1, a));
    assert!(p.has_other_usable(1, b));
}

#[test]
fn refusals_take_a_key_out_only_from_distinct_clients_in_a_row() {
    let p = pool(&[1, 1]);
    let refused = |c| KeyVerdict::Refused { client: c };
    for _ in 0..10 {
        p.report(0, refused(7));
    }
    p.report(0, refused(8));
    assert!(!p.keys[0].disabled.load(Ordering::Relaxed), "two clients");
    // An accepted answer in between: the evidence starts over.
    p.report(0, KeyVerdict::Accepted);
    p.report(0, refused(9));
    assert!(!p.keys[0].disabled.load(Ordering::Relaxed));
    p.report(0, refused(7));
    p.report(0, refused(8));
    assert!(p.keys[0].disabled.load(Ordering::Relaxed), "three clients");
    for _ in 0..4 {
        assert_eq!(p.pick(None, None), Ok(1));
    }
}

#[test]
fn a_disabled_key_is_probed_with_a_growing_backoff_and_comes_back() {
    let health = KeyHealthConfig {
        probe_after: Duration::from_millis(200),
        probe_max: Duration::from_millis(500),
        ..KeyHealthConfig::default()
    };
    let p = pool_with(&[1, 1], health);
    p.report(0, KeyVerdict::Invalid);
    assert_eq!(p.pick(None, None), Ok(1));
    std::thread::sleep(Duration::from_millis(300));
    // One probe, for one request only.
    assert_eq!(p.pick(None, None), Ok(0));
    assert_eq!(p.pick(None, None), Ok(1));
    assert_eq!(p.pick(None, None), Ok(1));
    p.report(0, KeyVerdict::Refused { client: 1 });
    assert_eq!(p.keys[0].probe_backoff.load(Ordering::Relaxed), 400);
    p.report(0, KeyVerdict::Invalid);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(p.pick(None, None), Ok(1), "the doubled backoff is not over");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(p.pick(None, None), Ok(0));
    p.report(0, KeyVerdict::Refused { client: 1 });
    assert_eq!(
        p.keys[0].probe_backoff.load(Ordering::Relaxed),
        500,
        "capped"
    );
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(p.pick(None, None), Ok(0));
    p.report(0, KeyVerdict::Accepted);
    let picks: Vec<usize> = (0..4).map(|_| p.pick(None, None).unwrap()).collect();
    assert!(picks.contains(&0) && picks.contains(&1));
}

#[test]
fn retry_after_forms() {
    assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(Duration::ZERO)
    );
    assert!(parse_retry_after("soon").is_none());
    let later = httpdate_parse("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
    assert_eq!(
        later
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        784111777
    );
}

/// The key's header values are built with the key: an attempt clones one (a reference count,
/// no allocation; before, a `format!` and a copy per attempt), still sensitive, so no `Debug`
/// print of a request shows it.
#[test]
fn a_keys_header_value_is_built_once_and_stays_sensitive() {
    let p = pool(&[1]);
    let key = &p.keys[0];
    for (placement, text) in [
        (KeyPlacement::Bearer, "Bearer sk-0"),
        (KeyPlacement::Header("x-upstream-key".into()), "sk-0"),
    ] {
        let (n, v) = crate::alloc_count::allocations(|| key.header_value(&placement));
        let v = v.unwrap();
        assert_eq!(n, 0, "{placement:?}");
        assert_eq!(v, text);
        assert!(v.is_sensitive());
        assert!(!format!("{v:?}").contains("sk-0"));
    }
}
