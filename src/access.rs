//! Client IP and IP allow/deny rules. Pure: no Pingora types.
//!
//! The client is the socket peer unless the peer is a trusted proxy; then it is the right-most
//! untrusted hop of `X-Forwarded-For` (or RFC 7239 `Forwarded`, or `X-Real-IP`). Each proxy
//! appends what it saw, so entries to the right were written by hops we trust and the first
//! untrusted one from the right is the real client; anything further left could be forged.
//! IPv4-mapped IPv6 addresses are compared as IPv4.

use http::HeaderMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address block; a bare address is a /32 (or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cidr {
    V4 { net: u32, mask: u32 },
    V6 { net: u128, mask: u128 },
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let (addr, len) = match t.split_once('/') {
            Some((a, l)) => (
                a,
                Some(
                    l.parse::<u8>()
                        .map_err(|_| format!("bad prefix length {l:?}"))?,
                ),
            ),
            None => (t, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| "not an IP address or CIDR".to_string())?;
        let (ip, len) = match (ip, len) {
            // `::ffff:10.0.0.0/104` is `10.0.0.0/8`.
            (IpAddr::V6(v6), Some(l)) if v6.to_ipv4_mapped().is_some() && l >= 96 => (
                IpAddr::V4(v6.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED)),
                Some(l - 96),
            ),
            (ip, l) => (normalize(ip), l),
        };
        match ip {
            IpAddr::V4(v4) => {
                let len = len.unwrap_or(32);
                if len > 32 {
                    return Err(format!("prefix length {len} is over 32 for IPv4"));
                }
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                let bits = u32::from(v4);
                if bits & !mask != 0 {
                    let net = Ipv4Addr::from(bits & mask);
                    return Err(format!("host bits set; did you mean {net}/{len}?"));
                }
                Ok(Cidr::V4 { net: bits, mask })
            }
            IpAddr::V6(v6) => {
                let len = len.unwrap_or(128);
                if len > 128 {
                    return Err(format!("prefix length {len} is over 128 for IPv6"));
                }
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                let bits = u128::from(v6);
                if bits & !mask != 0 {
                    let net = Ipv6Addr::from(bits & mask);
                    return Err(format!("host bits set; did you mean {net}/{len}?"));
                }
                Ok(Cidr::V6 { net: bits, mask })
            }
        }
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, normalize(ip)) {
            (Cidr::V4 { net, mask }, IpAddr::V4(a)) => u32::from(a) & mask == *net,
            (Cidr::V6 { net, mask }, IpAddr::V6(a)) => u128::from(a) & mask == *net,
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as IPv4; everything else unchanged.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A set of address blocks.
#[derive(Debug, Clone, Default)]
pub struct IpSet(Vec<Cidr>);

impl IpSet {
    pub fn parse_all<S: AsRef<str>>(items: &[S]) -> Result<IpSet, String> {
        items
            .iter()
            .map(|s| {
                s.as_ref()
                    .parse::<Cidr>()
                    .map_err(|e| format!("{}: {e}", s.as_ref()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(IpSet)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Allow and deny lists: denied if listed in `deny`; if `allow` is not empty, only what it
/// lists is allowed.
#[derive(Debug, Clone, Default)]
pub struct IpRules {
    allow: IpSet,
    deny: IpSet,
}

impl IpRules {
    pub fn new(allow: IpSet, deny: IpSet) -> Self {
        IpRules { allow, deny }
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        !self.deny.contains(ip) && (self.allow.is_empty() || self.allow.contains(ip))
    }
}

/// Finds the client's address behind trusted proxies.
#[derive(Debug, Clone, Default)]
pub struct ClientIpResolver {
    trusted: IpSet,
}

impl ClientIpResolver {
    pub fn new(trusted: IpSet) -> Self {
        ClientIpResolver { trusted }
    }

    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = normalize(peer);
        if self.trusted.is_empty() || !self.trusted.contains(peer) {
            // Headers from an untrusted peer say whatever the client wants.
            return peer;
        }
        let xff: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        if !xff.is_empty() {
            return self.walk(peer, xff.iter().rev().map(|e| parse_hop(e)));
        }
        let forwarded: Vec<&str> = headers
            .get_all("forwarded")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        if !forwarded.is_empty() {
            return self.walk(peer, forwarded.iter().rev().map(|e| forwarded_for(e)));
        }
        headers
            .get("x-real-ip")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_hop)
            .unwrap_or(peer)
    }

    /// Walk hops right to left: the first untrusted one is the client. An unparsable hop ends
    /// the walk at the peer: a chain we cannot read is a chain we cannot trust.
    fn walk(&self, peer: IpAddr, hops: impl Iterator<Item = Option<IpAddr>>) -> IpAddr {
        let mut last = peer;
        for hop in hops {
            let Some(ip) = hop else {
                return peer;
            };
            if !self.trusted.contains(ip) {
                return ip;
            }
            last = ip;
        }
        // Every hop is one of ours: the left-most is as close to the client as we can get.
        last
    }
}

/// An address with an optional port: `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]:443`.
fn parse_hop(text: &str) -> Option<IpAddr> {
    let t = text.trim().trim_matches('"');
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Some(normalize(ip));
    }
    if let Some(rest) = t.strip_prefix('[') {
        let (inside, _) = rest.split_once(']')?;
        return inside
            .parse::<Ipv6Addr>()
            .ok()
            .map(|v6| normalize(IpAddr::V6(v6)));
    }
    let (host, port) = t.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The `for=` of one `Forwarded` element (`for=1.2.3.4;proto=https`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element
        .split(';')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
        .and_then(|(_, v)| parse_hop(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.255.0.1")) && !c.contains(ip("11.0.0.0")));
        assert!(c.contains(ip("::ffff:10.1.2.3")));
        let mapped: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped, c);
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8::1")) && !v6.contains(ip("10.0.0.1")));
        let one: Cidr = "192.168.1.7".parse().unwrap();
        assert!(one.contains(ip("192.168.1.7")) && !one.contains(ip("192.168.1.8")));
        assert!("10.0.0.1/8"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("did you mean 10.0.0.0/8"));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("example.com".parse::<Cidr>().is_err());
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
    }

    #[test]
    fn rules() {
        let r = IpRules::new(
            IpSet::parse_all(&["10.0.0.0/8"]).unwrap(),
            IpSet::parse_all(&["10.0.0.5"]).unwrap(),
        );
        assert!(r.permits(ip("10.0.0.4")));
        assert!(!r.permits(ip("10.0.0.5")));
        assert!(!r.permits(ip("11.0.0.1")));
        assert!(IpRules::default().permits(ip("1.2.3.4")));
    }

    #[test]
    fn client_ip_behind_trusted_proxies() {
        let r = ClientIpResolver::new(IpSet::parse_all(&["127.0.0.1", "10.0.0.0/8"]).unwrap());
        let local = ip("127.0.0.1");
        assert_eq!(
            r.resolve(
                local,
                &headers(&[("x-forwarded-for", "1.1.1.1, 2.2.2.2, 10.0.0.9")])
            ),
            ip("2.2.2.2")
        );
        assert_eq!(
            r.resolve(
                local,
                &headers(&[
                    ("x-forwarded-for", "1.1.1.1"),
                    ("x-forwarded-for", "10.0.0.2")
                ])
            ),
            ip("1.1.1.1")
        );
        assert_eq!(
            r.resolve(local, &headers(&[("x-forwarded-for", "garbage, 2.2.2.2")])),
            ip("2.2.2.2")
        );
        assert_eq!(
            r.resolve(local, &headers(&[("x-forwarded-for", "2.2.2.2, garbage")])),
            local
        );
        assert_eq!(
            r.resolve(
                local,
                &headers(&[("x-forwarded-for", "10.0.0.3, 10.0.0.4")])
            ),
            ip("10.0.0.3")
        );
        assert_eq!(
            r.resolve(
                local,
                &headers(&[(
                    "forwarded",
                    "for=\"[2001:db8::1]:443\";proto=https, for=10.0.0.1"
                )])
            ),
            ip("2001:db8::1")
        );
        assert_eq!(
            r.resolve(local, &headers(&[("x-real-ip", "3.3.3.3")])),
            ip("3.3.3.3")
        );
        assert_eq!(
            r.resolve(
                local,
                &headers(&[("x-forwarded-for", "[::ffff:4.4.4.4]:80")])
            ),
            ip("4.4.4.4")
        );
        // An untrusted peer's headers are ignored.
        let peer = ip("8.8.8.8");
        assert_eq!(
            r.resolve(
                peer,
                &headers(&[("x-forwarded-for", "1.1.1.1"), ("x-real-ip", "1.1.1.1")])
            ),
            peer
        );
        assert_eq!(r.resolve(ip("::ffff:8.8.8.8"), &HeaderMap::new()), peer);
        assert_eq!(
            ClientIpResolver::default().resolve(local, &headers(&[("x-forwarded-for", "1.1.1.1")])),
            local
        );
    }
}
