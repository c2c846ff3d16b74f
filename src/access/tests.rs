use super::*;
use http::HeaderValue;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn resolver(trusted: &[&str]) -> ClientIpResolver {
    ClientIpResolver::new(IpSet::parse_all(trusted).unwrap())
}

// --- normalize -------------------------------------------------------------------------

#[test]
fn normalize_maps_only_ipv4_mapped() {
    assert_eq!(normalize(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
    assert_eq!(normalize(ip("::ffff:0:0")), ip("0.0.0.0"));
    // IPv4-compatible and loopback stay IPv6.
    assert_eq!(normalize(ip("::1.2.3.4")), ip("::1.2.3.4"));
    assert_eq!(normalize(ip("::1")), ip("::1"));
    assert_eq!(normalize(ip("2001:db8::1")), ip("2001:db8::1"));
    assert_eq!(normalize(ip("1.2.3.4")), ip("1.2.3.4"));
}

// --- Cidr parsing ----------------------------------------------------------------------

#[test]
fn cidr_parses_v4_v6_and_single_addresses() {
    assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
    assert_eq!(cidr("192.168.1.7").to_string(), "192.168.1.7/32");
    assert_eq!(cidr("2001:db8::/32").to_string(), "2001:db8::/32");
    assert_eq!(cidr("2001:db8::1").to_string(), "2001:db8::1/128");
    assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
    assert_eq!(cidr("::/0").to_string(), "::/0");
    assert_eq!(cidr("  10.1.0.0/16 \t").to_string(), "10.1.0.0/16");
    assert_eq!(cidr("10.0.0.0/8").prefix_len(), 8);
    assert_eq!(cidr("10.0.0.0/8").network(), ip("10.0.0.0"));
}

#[test]
fn cidr_normalises_ipv4_mapped_blocks() {
    assert_eq!(cidr("::ffff:10.0.0.0/104"), cidr("10.0.0.0/8"));
    assert_eq!(cidr("::ffff:1.2.3.4"), cidr("1.2.3.4/32"));
    assert_eq!(cidr("::ffff:1.2.3.4/128"), cidr("1.2.3.4/32"));
    assert_eq!(cidr("::ffff:0.0.0.0/96"), cidr("0.0.0.0/0"));
    // Shorter than /96 reaches outside the mapped range, so `ffff` is host bits: an IPv6
    // block with host bits set.
    let err = "::ffff:0:0/95".parse::<Cidr>().unwrap_err();
    assert!(err.ends_with("did you mean ::fffe:0:0/95?"), "{err}");
    // IPv4-compatible is not mapped.
    assert_eq!(cidr("::10.0.0.0/104").to_string(), "::a00:0/104");
}

#[test]
fn cidr_errors_say_why() {
    let err = |s: &str| s.parse::<Cidr>().unwrap_err();
    assert_eq!(err("10.0.0.0/33"), "prefix length 33 is over 32 for IPv4");
    assert_eq!(
        err("2001:db8::/129"),
        "prefix length 129 is over 128 for IPv6"
    );
    assert_eq!(
        err("::ffff:10.0.0.0/129"),
        "prefix length 129 is over 128 for IPv6"
    );
    assert_eq!(
        err("10.0.0.0/99999999999"),
        format!("prefix length {} is over 32 for IPv4", u32::MAX)
    );
    assert_eq!(err("example.com"), "not an IP address or CIDR");
    assert_eq!(err(""), "not an IP address or CIDR");
    assert_eq!(err("10.0.0/8"), "not an IP address or CIDR");
    assert_eq!(err("010.0.0.0/8"), "not an IP address or CIDR");
    assert_eq!(err("fe80::1%eth0"), "not an IP address or CIDR");
    assert_eq!(err("10.0.0.0/"), "missing prefix length after '/'");
    assert!(err("10.0.0.0/+8").contains("not a number"));
    assert!(err("10.0.0.0/8/8").contains("not a number"));
    assert!(err("10.0.0.0/ 8").contains("not a number"));
}

#[test]
fn cidr_host_bits_are_an_error_with_a_hint() {
    let err = |s: &str| s.parse::<Cidr>().unwrap_err();
    assert!(
        err("10.0.0.1/8").ends_with("did you mean 10.0.0.0/8?"),
        "{}",
        err("10.0.0.1/8")
    );
    assert!(err("192.168.1.7/24").contains("192.168.1.0/24"));
    assert!(err("2001:db8::1/32").contains("did you mean 2001:db8::/32?"));
    assert!(err("::ffff:10.0.0.1/104").contains("did you mean ::ffff:10.0.0.0/104?"));
    assert!(err("1.2.3.4/0").contains("0.0.0.0/0"));
}

// --- contains --------------------------------------------------------------------------

#[test]
fn cidr_contains_at_the_boundaries() {
    let c = cidr("10.0.0.0/8");
    assert!(c.contains(ip("10.0.0.0")));
    assert!(c.contains(ip("10.255.255.255")));
    assert!(!c.contains(ip("9.255.255.255")));
    assert!(!c.contains(ip("11.0.0.0")));
    assert!(c.contains(ip("::ffff:10.1.2.3")));
    let c = cidr("192.168.1.7");
    assert!(c.contains(ip("192.168.1.7")));
    assert!(!c.contains(ip("192.168.1.6")) && !c.contains(ip("192.168.1.8")));
    let c = cidr("172.16.0.0/12");
    assert!(c.contains(ip("172.31.255.255")) && !c.contains(ip("172.32.0.0")));
    let all = cidr("0.0.0.0/0");
    assert!(all.contains(ip("0.0.0.0")) && all.contains(ip("255.255.255.255")));
    assert!(!all.contains(ip("::1")));
    let c = cidr("2001:db8::/32");
    assert!(c.contains(ip("2001:db8::")));
    assert!(c.contains(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
    assert!(!c.contains(ip("2001:db9::")));
    assert!(!c.contains(ip("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff")));
    let c = cidr("2001:db8::1");
    assert!(c.contains(ip("2001:db8::1")) && !c.contains(ip("2001:db8::2")));
}

#[test]
fn families_never_cross() {
    // After normalisation an IPv4 address never matches an IPv6 block and vice versa.
    assert!(!cidr("::/0").contains(ip("1.2.3.4")));
    assert!(!cidr("::/0").contains(ip("::ffff:1.2.3.4")));
    assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")));
    assert!(!cidr("0.0.0.0/0").contains(ip("::1.2.3.4")));
    assert!(cidr("::/0").contains(ip("::1.2.3.4")));
}

#[test]
fn ip_set_scans_its_own_family() {
    let set = IpSet::parse_all(&[
        "10.0.0.0/8",
        "192.168.0.0/16",
        "2001:db8::/32",
        "10.0.0.0/8",
    ])
    .unwrap();
    assert_eq!(set.len(), 3, "duplicates are dropped");
    assert!(set.contains(ip("10.1.1.1")) && set.contains(ip("192.168.3.4")));
    assert!(set.contains(ip("::ffff:192.168.3.4")));
    assert!(set.contains(ip("2001:db8:1::1")));
    assert!(!set.contains(ip("172.16.0.1")) && !set.contains(ip("2001:db9::1")));
    assert!(IpSet::new().is_empty() && !IpSet::new().contains(ip("1.2.3.4")));
    let err = IpSet::parse_all(&["10.0.0.0/8", "nope"]).unwrap_err();
    assert_eq!(err, "\"nope\": not an IP address or CIDR");
    let collected: IpSet = [cidr("1.2.3.4"), cidr("::1")].into_iter().collect();
    assert_eq!(collected.len(), 2);
}

// --- IpRules ---------------------------------------------------------------------------

#[test]
fn rules_combinations() {
    let any = ip("203.0.113.9");
    assert!(IpRules::default().permits(any));
    assert!(IpRules::default().is_empty());

    let allow_only = IpRules::parse(&["10.0.0.0/8"], &[] as &[&str]).unwrap();
    assert!(allow_only.permits(ip("10.0.0.4")) && !allow_only.permits(any));
    assert!(allow_only.permits(ip("::ffff:10.0.0.4")));
    assert!(!allow_only.permits(ip("2001:db8::1")));

    let deny_only = IpRules::parse(&[] as &[&str], &["203.0.113.0/24"]).unwrap();
    assert!(!deny_only.permits(any) && deny_only.permits(ip("10.0.0.4")));
    assert!(!deny_only.permits(ip("::ffff:203.0.113.1")));

    // Deny wins inside an allowed block.
    let both = IpRules::parse(&["10.0.0.0/8"], &["10.0.0.5"]).unwrap();
    assert!(both.permits(ip("10.0.0.4")));
    assert!(!both.permits(ip("10.0.0.5")));
    assert!(!both.permits(ip("11.0.0.1")));
    assert!(!both.is_empty());

    // Deny covering the whole allow list refuses everything.
    let nothing = IpRules::parse(&["10.0.0.0/8"], &["0.0.0.0/0", "::/0"]).unwrap();
    assert!(!nothing.permits(ip("10.0.0.1")) && !nothing.permits(ip("::1")));
    assert!(IpRules::parse(&["bad"], &[] as &[&str]).is_err());
}

// --- ClientIpResolver ------------------------------------------------------------------

#[test]
fn untrusted_peer_headers_are_ignored() {
    let r = resolver(&["10.0.0.0/8"]);
    let peer = ip("198.51.100.7");
    let spoof = headers(&[
        ("x-forwarded-for", "1.1.1.1"),
        ("x-real-ip", "1.1.1.1"),
        ("forwarded", "for=1.1.1.1"),
    ]);
    assert_eq!(r.resolve(peer, &spoof), peer);
    assert_eq!(r.resolve(peer, &headers(&[("x-real-ip", "1.1.1.1")])), peer);
    assert_eq!(
        r.resolve(peer, &headers(&[("forwarded", "for=1.1.1.1")])),
        peer
    );
    // No trusted proxies at all: even loopback is just a client.
    let local = ip("127.0.0.1");
    assert_eq!(ClientIpResolver::default().resolve(local, &spoof), local);
}

#[test]
fn mapped_peer_is_normalised() {
    let r = resolver(&["10.0.0.0/8"]);
    assert_eq!(
        r.resolve(ip("::ffff:8.8.8.8"), &HeaderMap::new()),
        ip("8.8.8.8")
    );
    // A mapped trusted peer is trusted.
    let h = headers(&[("x-forwarded-for", "9.9.9.9")]);
    assert_eq!(r.resolve(ip("::ffff:10.0.0.1"), &h), ip("9.9.9.9"));
    // Addresses in the chain are normalised too.
    let h = headers(&[("x-forwarded-for", "[::ffff:4.4.4.4]:80")]);
    assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("4.4.4.4"));
    let h = headers(&[("x-forwarded-for", "::ffff:4.4.4.4")]);
    assert_eq!(r.resolve(ip("10.0.0.1"), &h), ip("4.4.4.4"));
}

#[test]
fn trusted_peer_takes_the_right_most_untrusted_hop() {
    let r = resolver(&["127.0.0.1", "10.0.0.0/8"]);
    let local = ip("127.0.0.1");
    // "spoofed, client, trusted-proxy2"
    let h = headers(&[("x-forwarded-for", "6.6.6.6, 2.2.2.2, 10.0.0.9")]);
    assert_eq!(r.resolve(local, &h), ip("2.2.2.2"));
    // Whitespace and tabs are fine.
    let h = headers(&[("x-forwarded-for", " 6.6.6.6 ,\t2.2.2.2\t, 10.0.0.9 ")]);
    assert_eq!(r.resolve(local, &h), ip("2.2.2.2"));
    // Every hop trusted: the left-most.
    let h = headers(&[("x-forwarded-for", "10.0.0.3, 10.0.0.4")]);
    assert_eq!(r.resolve(local, &h), ip("10.0.0.3"));
    // Ports.
    let h = headers(&[("x-forwarded-for", "1.2.3.4:5678, 10.0.0.1:80")]);
    assert_eq!(r.resolve(local, &h), ip("1.2.3.4"));
    let h = headers(&[("x-forwarded-for", "[2001:db8::1]:443")]);
    assert_eq!(r.resolve(local, &h), ip("2001:db8::1"));
    let h = headers(&[("x-forwarded-for", "2001:db8::1")]);
    assert_eq!(r.resolve(local, &h), ip("2001:db8::1"));
    // No headers at all: the peer.
    assert_eq!(r.resolve(local, &HeaderMap::new()), local);
}

#[test]
fn multiple_xff_headers_form_one_chain() {
    let r = resolver(&["127.0.0.1", "10.0.0.0/8"]);
    let local = ip("127.0.0.1");
    let h = headers(&[
        ("x-forwarded-for", "6.6.6.6, 1.1.1.1"),
        ("x-forwarded-for", "10.0.0.2"),
    ]);
    assert_eq!(r.resolve(local, &h), ip("1.1.1.1"));
    let h = headers(&[
        ("x-forwarded-for", "1.1.1.1"),
        ("x-forwarded-for", "2.2.2.2, 10.0.0.2"),
    ]);
    assert_eq!(r.resolve(local, &h), ip("2.2.2.2"));
    let h = headers(&[
        ("x-forwarded-for", "1.1.1.1"),
        ("x-forwarded-for", "10.0.0.3"),
        ("x-forwarded-for", "10.0.0.2"),
    ]);
    assert_eq!(r.resolve(local, &h), ip("1.1.1.1"));
    // Empty elements and empty occurrences are skipped.
    let h = headers(&[
        ("x-forwarded-for", "1.1.1.1,,"),
        ("x-forwarded-for", ""),
        ("x-forwarded-for", " , 10.0.0.2"),
    ]);
    assert_eq!(r.resolve(local, &h), ip("1.1.1.1"));
}

#[test]
fn malformed_entries_stop_the_walk_at_the_peer() {
    let r = resolver(&["127.0.0.1", "10.0.0.0/8"]);
    let local = ip("127.0.0.1");
    let cases = [
        "2.2.2.2, garbage",
        "2.2.2.2, unknown, 10.0.0.1",
        "2.2.2.2, 1.2.3.4:99999",
        "2.2.2.2, 1.2.3.4:",
        "2.2.2.2, [2001:db8::1",
        "2.2.2.2, 2001:db8::1]:80",
        "2.2.2.2, 2001:db8::zz",
        "2.2.2.2, fe80::1%eth0",
        "2.2.2.2, 1.2.3.4 5.6.7.8",
        "2.2.2.2, example.com",
    ];
    for case in cases {
        let h = headers(&[("x-forwarded-for", case)]);
        assert_eq!(r.resolve(local, &h), local, "{case}");
    }
    // Garbage left of the client was never reached.
    let h = headers(&[("x-forwarded-for", "garbage, 2.2.2.2")]);
    assert_eq!(r.resolve(local, &h), ip("2.2.2.2"));
    // A non-ASCII value in the walked part is malformed too.
    let mut h = HeaderMap::new();
    h.append(
        X_FORWARDED_FOR,
        HeaderValue::from_bytes(b"2.2.2.2\xff").unwrap(),
    );
    assert_eq!(r.resolve(local, &h), local);
    // ... but not when a later header already decided.
    h.append(X_FORWARDED_FOR, HeaderValue::from_static("3.3.3.3"));
    assert_eq!(r.resolve(local, &h), ip("3.3.3.3"));
}

#[test]
fn forwarded_header() {
    let r = resolver(&["127.0.0.1", "10.0.0.0/8"]);
    let local = ip("127.0.0.1");
    let at = |value: &str| r.resolve(local, &headers(&[("forwarded", value)]));
    assert_eq!(at("for=192.0.2.43"), ip("192.0.2.43"));
    assert_eq!(
        at("for=\"[2001:db8:cafe::17]:4711\""),
        ip("2001:db8:cafe::17")
    );
    assert_eq!(at("for=\"[2001:db8:cafe::17]\""), ip("2001:db8:cafe::17"));
    assert_eq!(at("for=\"192.0.2.43:47011\""), ip("192.0.2.43"));
    assert_eq!(at("for=\"192.0.2.43:_hidden\""), ip("192.0.2.43"));
    assert_eq!(at("For=192.0.2.43"), ip("192.0.2.43"));
    assert_eq!(
        at("proto=https; FOR = 192.0.2.43 ;by=10.0.0.1"),
        ip("192.0.2.43")
    );
    assert_eq!(
        at("for=\"[2001:db8::1]:443\";proto=https, for=10.0.0.1"),
        ip("2001:db8::1")
    );
    assert_eq!(
        at("for=6.6.6.6, for=192.0.2.43, for=10.0.0.7"),
        ip("192.0.2.43")
    );
    assert_eq!(at("for=10.0.0.8, for=10.0.0.7"), ip("10.0.0.8"));
    // A comma or semicolon inside a quoted value does not split.
    assert_eq!(
        at("for=192.0.2.43;host=\"a,b;c\", for=10.0.0.7"),
        ip("192.0.2.43")
    );
    // Unknown, obfuscated, missing `for=`, garbage: the peer.
    assert_eq!(at("for=192.0.2.43, for=unknown"), local);
    assert_eq!(at("for=192.0.2.43, for=_hidden, for=10.0.0.7"), local);
    assert_eq!(at("for=192.0.2.43, proto=https"), local);
    assert_eq!(at("for=192.0.2.43, for=\"bad\""), local);
    assert_eq!(at("for=192.0.2.43, for=[2001:db8::1]:x"), local);
    // ... but only when reached: left of the client they don't matter.
    assert_eq!(
        at("for=unknown, for=192.0.2.43, for=10.0.0.7"),
        ip("192.0.2.43")
    );
    // Several headers form one list.
    let h = headers(&[
        ("forwarded", "for=192.0.2.1"),
        ("forwarded", "for=10.0.0.2"),
    ]);
    assert_eq!(r.resolve(local, &h), ip("192.0.2.1"));
    let h = headers(&[
        ("forwarded", "for=192.0.2.1"),
        ("forwarded", "for=192.0.2.2"),
    ]);
    assert_eq!(r.resolve(local, &h), ip("192.0.2.2"));
}

#[test]
fn header_precedence() {
    let r = resolver(&["127.0.0.1"]);
    let local = ip("127.0.0.1");
    let all = headers(&[
        ("x-real-ip", "3.3.3.3"),
        ("forwarded", "for=2.2.2.2"),
        ("x-forwarded-for", "1.1.1.1"),
    ]);
    assert_eq!(r.resolve(local, &all), ip("1.1.1.1"));
    let h = headers(&[("x-real-ip", "3.3.3.3"), ("forwarded", "for=2.2.2.2")]);
    assert_eq!(r.resolve(local, &h), ip("2.2.2.2"));
    // An empty XFF says nothing: Forwarded is read.
    let h = headers(&[("x-forwarded-for", " , "), ("forwarded", "for=2.2.2.2")]);
    assert_eq!(r.resolve(local, &h), ip("2.2.2.2"));
    // X-Real-IP alone, with or without a port; malformed or repeated → the peer.
    assert_eq!(
        r.resolve(local, &headers(&[("x-real-ip", "3.3.3.3")])),
        ip("3.3.3.3")
    );
    assert_eq!(
        r.resolve(local, &headers(&[("x-real-ip", " 3.3.3.3:80 ")])),
        ip("3.3.3.3")
    );
    assert_eq!(
        r.resolve(local, &headers(&[("x-real-ip", "[2001:db8::3]:80")])),
        ip("2001:db8::3")
    );
    assert_eq!(
        r.resolve(local, &headers(&[("x-real-ip", "3.3.3.3, 4.4.4.4")])),
        local
    );
    assert_eq!(r.resolve(local, &headers(&[("x-real-ip", "nope")])), local);
    let twice = headers(&[("x-real-ip", "3.3.3.3"), ("x-real-ip", "4.4.4.4")]);
    assert_eq!(r.resolve(local, &twice), local);
}

#[test]
fn split_unquoted_respects_quotes_and_escapes() {
    let parts: Vec<&str> = split_unquoted(r#"a,"b,c",d"#, b',').collect();
    assert_eq!(parts, ["a", r#""b,c""#, "d"]);
    let parts: Vec<&str> = split_unquoted(r#""x\",y",z"#, b',').collect();
    assert_eq!(parts, [r#""x\",y""#, "z"]);
    let parts: Vec<&str> = split_unquoted("a,", b',').collect();
    assert_eq!(parts, ["a", ""]);
    assert_eq!(split_unquoted("", b',').collect::<Vec<_>>(), [""]);
}

// --- property ---------------------------------------------------------------------------

mod prop {
    use super::*;
    use proptest::prelude::*;

    /// A small address universe so that chains and trust sets overlap often.
    fn addr() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            (0u8..6).prop_map(|x| IpAddr::V4(Ipv4Addr::new(10, 0, 0, x))),
            (0u8..6).prop_map(|x| IpAddr::V4(Ipv4Addr::new(192, 0, 2, x))),
            (0u16..4).prop_map(|x| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, x))),
            (0u8..4).prop_map(|x| IpAddr::V6(Ipv4Addr::new(10, 0, 0, x).to_ipv6_mapped())),
        ]
    }

    #[derive(Debug, Clone)]
    enum Entry {
        Ip(IpAddr, Option<u16>),
        Junk(&'static str),
    }

    fn entry() -> impl Strategy<Value = Entry> {
        prop_oneof![
            8 => (addr(), proptest::option::of(any::<u16>())).prop_map(|(a, p)| Entry::Ip(a, p)),
            1 => prop_oneof![Just("unknown"), Just("_hidden"), Just("junk"), Just("1.2.3")]
                .prop_map(Entry::Junk),
        ]
    }

    fn xff_text(e: &Entry) -> String {
        match e {
            Entry::Ip(IpAddr::V4(a), Some(p)) => format!("{a}:{p}"),
            Entry::Ip(IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
            Entry::Ip(a, None) => a.to_string(),
            Entry::Junk(j) => j.to_string(),
        }
    }

    fn forwarded_text(e: &Entry) -> String {
        match e {
            Entry::Ip(IpAddr::V4(a), None) => format!("for={a};proto=https"),
            other => format!("for=\"{}\"", xff_text(other)),
        }
    }

    /// The reference: walk from the right over the parsed chain.
    fn expected(trusted: &IpSet, peer: IpAddr, chain: &[Entry]) -> IpAddr {
        let peer = normalize(peer);
        if !trusted.contains(peer) || chain.is_empty() {
            return peer;
        }
        let mut last = peer;
        for e in chain.iter().rev() {
            match e {
                Entry::Ip(a, _) if trusted.contains(*a) => last = normalize(*a),
                Entry::Ip(a, _) => return normalize(*a),
                Entry::Junk(_) => return peer,
            }
        }
        last
    }

    proptest! {
        #[test]
        fn result_is_the_peer_or_a_hop_not_left_of_an_untrusted_one(
            trusted in proptest::collection::vec(addr(), 0..6),
            peer in addr(),
            chain in proptest::collection::vec(entry(), 0..8),
            split in 0usize..8,
        ) {
            let trusted: IpSet = trusted
                .iter()
                .map(|a| normalize(*a).to_string().parse::<Cidr>().unwrap())
                .collect();
            let r = ClientIpResolver::new(trusted.clone());
            let texts: Vec<String> = chain.iter().map(xff_text).collect();
            // The chain split over two X-Forwarded-For headers at a random point.
            let split = split.min(texts.len());
            let mut h = HeaderMap::new();
            for part in [&texts[..split], &texts[split..]] {
                if !part.is_empty() {
                    h.append(X_FORWARDED_FOR, HeaderValue::from_str(&part.join(", ")).unwrap());
                }
            }
            let got = r.resolve(peer, &h);

            // Never a value from the left of an untrusted (or unreadable) hop.
            let ok_positions: Vec<IpAddr> = {
                let mut v = Vec::new();
                for e in chain.iter().rev() {
                    match e {
                        Entry::Ip(a, _) => {
                            v.push(normalize(*a));
                            if !trusted.contains(*a) { break; }
                        }
                        Entry::Junk(_) => break,
                    }
                }
                v
            };
            prop_assert!(got == normalize(peer) || ok_positions.contains(&got));
            if !trusted.contains(peer) {
                prop_assert_eq!(got, normalize(peer));
            }
            prop_assert_eq!(got, expected(&trusted, peer, &chain));

            // The same chain as `Forwarded` resolves the same way.
            let fwd = chain.iter().map(forwarded_text).collect::<Vec<_>>().join(", ");
            let mut h = HeaderMap::new();
            if !chain.is_empty() {
                h.append(FORWARDED, HeaderValue::from_str(&fwd).unwrap());
            }
            prop_assert_eq!(r.resolve(peer, &h), expected(&trusted, peer, &chain));
        }
    }
}
