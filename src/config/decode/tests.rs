use super::*;

#[test]
fn suggestions() {
    assert_eq!(
        suggest("upstrem", &["prefix", "upstream"]),
        Some("upstream")
    );
    assert_eq!(suggest("timout", &["timeouts", "type"]), Some("timeouts"));
    assert_eq!(suggest("zzz", &["prefix", "upstream"]), None);
}

#[test]
fn env_expansion() {
    let env = |k: &str| (k == "KEY").then(|| "secret".to_string());
    let mut d = Decoder::new(&env);
    let v = Value::String("Bearer ${KEY}!".into());
    assert_eq!(d.string(&Node::root(&v)).as_deref(), Some("Bearer secret!"));
    let v = Value::String("${MISSING}".into());
    assert_eq!(d.string(&Node::root(&v)), None);
    assert_eq!(d.problems.len(), 1);
    assert!(d.secrets.is_empty());
}

#[test]
fn problems_echo_urls_as_written_and_record_their_secrets() {
    let env = |k: &str| (k == "KEY").then(|| "s3cret".to_string());
    let mut d = Decoder::new(&env);
    let v = Value::String("https://h/?key=${KEY}".into());
    assert_eq!(
        d.parsed(&Node::root(&v), |_| Err::<(), _>("bad".into())),
        None
    );
    assert_eq!(d.problems.0[0].value.as_deref(), Some("https://h/?key=***"));
    assert_eq!(d.secrets.mask("a s3cret"), "a ***");
    let v = Value::String("http://user:${KEY}@h".into());
    assert_eq!(
        d.parsed(&Node::root(&v), |_| Err::<(), _>("bad".into())),
        None
    );
    assert_eq!(d.problems.0[1].value.as_deref(), Some("http://***@h"));
}

#[test]
fn a_declared_key_that_is_never_read_is_noticed() {
    let env = |_: &str| None;
    let mut d = Decoder::new(&env);
    let v: Value = serde_yaml::from_str("{a: 1, b: 2}").unwrap();
    audit::take_unread();
    let f = d.fields(&Node::root(&v), &["a", "b", "c"]).unwrap();
    assert!(f.get("a").is_some() && f.get("c").is_none());
    drop(f);
    assert_eq!(audit::take_unread(), ["b"]);
}

#[test]
#[should_panic(expected = "its key table does not declare")]
fn reading_an_undeclared_key_panics_in_tests() {
    let env = |_: &str| None;
    let mut d = Decoder::new(&env);
    let v: Value = serde_yaml::from_str("{a: 1}").unwrap();
    let f = d.fields(&Node::root(&v), &["a"]).unwrap();
    f.get("typo");
}
