//! Tests of the cache key: the borrowed tree against the first definition over a `Value`.

use super::*;

fn k(body: &str) -> Digest {
    key(&KeyParts {
        scope: "s",
        route: "/",
        upstream: "http://u",
        method: "POST",
        path_and_query: "/v1/chat/completions",
        vary: "",
        body: Some(body.as_bytes()),
    })
}

#[test]
fn order_whitespace_caching_and_user_do_not_matter() {
    let a = k(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0}"#);
    let b = k(
        r#"{ "temperature" : 0, "messages":[{"content":"hi","role":"user"}], "model":"m", "caching":true, "user":"bob" }"#,
    );
    assert_eq!(a, b);
}

#[test]
fn fields_that_change_the_answer_do() {
    let base = k(r#"{"model":"m","messages":[]}"#);
    for other in [
        r#"{"model":"m","messages":[],"stream":true}"#,
        r#"{"model":"m","messages":[],"temperature":0.5}"#,
        r#"{"model":"m","messages":[],"seed":1}"#,
        r#"{"model":"m","messages":[],"tools":[]}"#,
        r#"{"model":"m","messages":[],"response_format":{"type":"json_object"}}"#,
        r#"{"model":"m","messages":[],"top_p":0.1}"#,
        r#"{"model":"m2","messages":[]}"#,
        // `user` below the top level is content.
        r#"{"model":"m","messages":[{"user":1}]}"#,
    ] {
        assert_ne!(base, k(other), "{other}");
    }
}

#[test]
fn every_part_is_in_the_key() {
    let parts = |scope, route, upstream, method, path| KeyParts {
        scope,
        route,
        upstream,
        method,
        path_and_query: path,
        vary: "",
        body: None,
    };
    let base = key(&parts("a", "/", "u", "POST", "/x"));
    for p in [
        parts("b", "/", "u", "POST", "/x"),
        parts("a", "/r", "u", "POST", "/x"),
        parts("a", "/", "v", "POST", "/x"),
        parts("a", "/", "u", "GET", "/x"),
        parts("a", "/", "u", "POST", "/x?q=1"),
        // Length prefixes: moving bytes between parts changes the key.
        parts("a/", "", "u", "POST", "/x"),
    ] {
        assert_ne!(base, key(&p));
    }
}

#[test]
fn scopes_are_hashed() {
    let s = scope(None, Some(b"sk-secret"));
    assert!(!s.contains("secret"));
    assert_ne!(s, scope(None, Some(b"sk-other")));
    assert_ne!(scope(Some("a"), None), scope(Some("b"), None));
    assert_ne!(scope(Some("a"), None), scope(None, Some(b"a")));
}

/// The key as it was built before hashing became incremental (material in one buffer):
/// stored entries of persistent caches must keep their keys.
fn buffered_key(parts: &KeyParts<'_>) -> Digest {
    let mut material: Vec<u8> = b"llmf-cache-v1".to_vec();
    for part in [
        parts.scope,
        parts.route,
        parts.upstream,
        parts.method,
        parts.path_and_query,
        parts.vary,
    ] {
        push_part(&mut material, part.as_bytes());
    }
    match parts.body.map(serde_json::from_slice::<Value>) {
        None => material.push(0),
        Some(Ok(Value::Object(map))) => {
            material.push(1);
            let mut canonical = Vec::new();
            write_object(&mut canonical, &map, true);
            push_part(&mut material, &canonical);
        }
        Some(_) => {
            material.push(1);
            push_part(&mut material, parts.body.unwrap_or_default());
        }
    }
    sha256(&material)
}

#[test]
fn incremental_hashing_gives_the_same_keys() {
    let long = "é\"\\\n".repeat(10_000);
    let bodies = [
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5,"n":1,"x":null,"b":true}"#.to_string(),
        format!(r#"{{"z":{{"b":[1,2.5,"{long}"],"a":{{}}}},"caching":true,"user":"u"}}"#),
        "[1,2,3]".to_string(),
        "not json".to_string(),
    ];
    for body in &bodies {
        let p = KeyParts {
            scope: "s",
            route: "/r",
            upstream: "http://u",
            method: "POST",
            path_and_query: "/v1/chat/completions",
            vary: "",
            body: Some(body.as_bytes()),
        };
        assert_eq!(key(&p), buffered_key(&p), "{}", &body[..20.min(body.len())]);
    }
}

/// The scope as it was computed before hashing became incremental (material in one
/// buffer, hex through the hex crate): stored entries of persistent caches keep their keys.
#[test]
fn incremental_scopes_are_the_buffered_ones() {
    let buffered = |material: &[u8]| ::hex::encode(&sha256(material)[..16]);
    assert_eq!(scope(Some("t"), None), buffered(b"tenant:t"));
    assert_eq!(scope(Some("t"), Some(b"x")), buffered(b"tenant:t"));
    assert_eq!(scope(None, Some(b"a=b\n")), buffered(b"credential:a=b\n"));
    assert_eq!(scope(None, Some(b"")), buffered(b"credential:"));
    assert_eq!(scope(None, None), buffered(b"anonymous"));
    let mut h = ScopeHasher::credential();
    h.put(b"a=");
    h.put(b"b\n");
    assert_eq!(h.finish().as_str(), buffered(b"credential:a=b\n"));
}

#[test]
fn hex_is_the_hex_crates() {
    let all: Vec<u8> = (0..=255).collect();
    assert_eq!(hex(&all), ::hex::encode(&all));
    assert_eq!(hex(&[]), "");
}

/// The borrowed tree gives `Value`'s canonical text: escapes, numbers of every kind,
/// keys given twice, nesting, ignored fields at the top only, bodies on both sides of
/// [`BUFFERED_BODY`], and bodies that are not objects or not JSON.
#[test]
fn node_keys_are_value_keys() {
    let big = format!(
        r#"{{"model":"m","messages":[{{"content":"{}"}}]}}"#,
        "x".repeat(BUFFERED_BODY)
    );
    let bodies = [
        r#"{}"#.to_string(),
        r#"{"a":1,"a":2,"b":{"c":3,"c":[4]},"a":3}"#.to_string(),
        r#"{"n":[0,-0,1,-1,18446744073709551615,-9223372036854775808,18446744073709551616,1.5,-2.25e-7,1e300,0.1,100000000000000000000000]}"#.to_string(),
        r#"{"s":"\u00e9\n\t\"\\\/\u0001\ud83d\ude00","\u006b":"é"}"#.to_string(),
        r#"{"caching":{"user":1},"user":null,"x":{"caching":true,"user":"u"}}"#.to_string(),
        r#"{"t":true,"f":false,"z":null,"e":[],"o":{},"deep":[[[[{"a":[{"b":{}}]}]]]]}"#.to_string(),
        r#"{"B":1,"a":2,"é":3,"Z":4,"":5,"aa":6}"#.to_string(),
        "  {\"ws\" : [ 1 , 2 ] }\n".to_string(),
        r#"{"a":1} trailing"#.to_string(),
        r#"{"a":"#.to_string(),
        r#""just a string""#.to_string(),
        r#"[{"b":1,"a":2}]"#.to_string(),
        format!("{}1{}", "[".repeat(200), "]".repeat(200)),
        format!(r#"{{"deep":{}1{}}}"#, "[".repeat(200), "]".repeat(200)),
        big.clone(),
        big.replace(r#""m""#, r#""m","caching":false"#),
    ];
    for body in &bodies {
        let p = KeyParts {
            scope: "s",
            route: "/r",
            upstream: "http://u",
            method: "POST",
            path_and_query: "/v1/chat/completions",
            vary: "",
            body: Some(body.as_bytes()),
        };
        assert_eq!(key(&p), buffered_key(&p), "{}", &body[..40.min(body.len())]);
    }
    // A key given twice: the last value counts.
    assert_ne!(k(&bodies[1]), k(r#"{"a":1,"b":{"c":[4]}}"#));
    assert_eq!(k(&bodies[1]), k(r#"{"a":3,"b":{"c":[4]}}"#));
}

/// The bench's body (`bench/callgrind.sh`) is read without a `String`: every key and
/// string borrows from the body; what is allocated is one `Vec` per object and array.
#[test]
fn plain_strings_are_borrowed() {
    fn owned(node: &Node<'_>) -> usize {
        match node {
            Node::Str(Cow::Owned(_)) => 1,
            Node::Array(items) => items.iter().map(owned).sum(),
            Node::Object(entries) => entries
                .iter()
                .map(|(k, v)| usize::from(matches!(k, Cow::Owned(_))) + owned(v))
                .sum(),
            _ => 0,
        }
    }
    let body =
        br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello 12-3."}]}"#;
    let node: Node<'_> = serde_json::from_slice(body).unwrap();
    assert_eq!(owned(&node), 0);
    // An escape needs its decoded text: that one string is owned.
    let node: Node<'_> = serde_json::from_slice(br#"{"a":"\n","b":"c"}"#).unwrap();
    assert_eq!(owned(&node), 1);
}

/// The key as it was computed before the borrowed tree: the body parsed into a `Value`,
/// its canonical text written into the hasher twice (length, then bytes).
fn value_key(parts: &KeyParts<'_>) -> Digest {
    let mut hasher = Hasher(Sha256::new());
    hasher.put(b"llmf-cache-v1");
    for part in [
        parts.scope,
        parts.route,
        parts.upstream,
        parts.method,
        parts.path_and_query,
        parts.vary,
    ] {
        push_part(&mut hasher, part.as_bytes());
    }
    match parts.body {
        None => hasher.put(&[0]),
        Some(body) if body.iter().all(u8::is_ascii_whitespace) => hasher.put(&[0]),
        Some(body) => {
            hasher.put(&[1]);
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(map)) => {
                    let mut counter = Counter(0);
                    write_object(&mut counter, &map, true);
                    hasher.put(&counter.0.to_be_bytes());
                    write_object(&mut hasher, &map, true);
                }
                Ok(_) | Err(_) => push_part(&mut hasher, body),
            }
        }
    }
    hasher.0.finalize().into()
}

/// Allocations of the bench's request (`bench/callgrind.sh`, a unique body): the
/// borrowed tree's three `Vec`s (two objects, one array) and the canonical text's buffer,
/// where the `Value` and its two sorted walks made 14.
#[test]
fn the_bench_body_is_keyed_with_four_allocations() {
    use crate::openai::tests::allocs::allocations;
    let body = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello 123456789-42."}]}"#;
    let p = KeyParts {
        scope: "0123456789abcdef0123456789abcdef",
        route: "/",
        upstream: "http://127.0.0.1:8080",
        method: "POST",
        path_and_query: "/v1/chat/completions",
        vary: "",
        body: Some(body),
    };
    let (new, a) = allocations(|| key(&p));
    let (old, b) = allocations(|| value_key(&p));
    assert_eq!(a, b);
    assert_eq!((new, old), (4, 14));
    // The scope: nothing allocated (it was the material, the digest's hex and the
    // credential's buffer).
    let (n, _) = allocations(|| {
        let mut h = ScopeHasher::credential();
        h.put(b"authorization=Bearer sk-bench\n");
        h.finish()
    });
    assert_eq!(n, 0);
}

#[test]
fn hex_round_trips() {
    let d = sha256(b"x");
    assert_eq!(parse_hex(&hex(&d)), Some(d));
    assert_eq!(parse_hex("zz"), None);
}

/// The canonical text as it was first defined, over a `serde_json::Value`: the reference the
/// tests hold [`Node`]'s to.
fn write_object(out: &mut impl Sink, map: &serde_json::Map<String, Value>, top: bool) {
    // Sorted explicitly: serde_json's map keeps insertion order when any crate in the build
    // turns on its `preserve_order` feature.
    let mut entries: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(k, _)| !(top && IGNORED.contains(&k.as_str())))
        .collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.put(b"{");
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.put(b",");
        }
        let _ = serde_json::to_writer(&mut *out, k.as_str());
        out.put(b":");
        write_value(out, v);
    }
    out.put(b"}");
}

fn write_value(out: &mut impl Sink, value: &Value) {
    match value {
        Value::Object(map) => write_object(out, map, false),
        Value::Array(items) => {
            out.put(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.put(b",");
                }
                write_value(out, item);
            }
            out.put(b"]");
        }
        // Written straight into the sink: a long string is escaped as it goes, not copied.
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}
