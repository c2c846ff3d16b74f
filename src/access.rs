//! Client IP and IP allow/deny rules. Pure logic on `std` and `http`: no Pingora types.
//!
//! Address blocks ([`Cidr`]) are parsed once from config into pre-masked integers, grouped into
//! an [`IpSet`] (IPv4 and IPv6 kept apart, so a lookup is a short linear scan of `u32` or `u128`
//! compares) and combined into allow/deny [`IpRules`]. The [`ClientIpResolver`] decides who the
//! client is: the socket peer, unless that peer is a trusted proxy, in which case the forwarding
//! headers name the right-most untrusted hop. Each proxy appends the address it saw, so entries
//! to the right were written by hops we trust; the first untrusted entry from the right is the
//! real client, and anything further left could have been typed by that client. IPv4-mapped IPv6
//! addresses (`::ffff:a.b.c.d`, what a dual-stack socket reports for an IPv4 peer) are treated
//! as the IPv4 address everywhere, so one `10.0.0.0/8` rule covers both spellings.
//!
//! Nothing here allocates per request: parsing a header walks borrowed `&str` slices.

use http::header::{HeaderMap, HeaderName, FORWARDED};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// `X-Forwarded-For` is not a standard header, so `http` has no constant for it.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Real-IP`, the single-address header nginx-style proxies set.
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as IPv4; everything else unchanged.
///
/// IPv4-compatible addresses (`::a.b.c.d`, deprecated by RFC 4291) are left alone: nothing
/// produces them for a real IPv4 peer, and `::1` is one of them.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// An address block such as `10.0.0.0/8` or `2001:db8::/32`; a bare address is a `/32`
/// (or `/128`).
///
/// Stored pre-masked, so [`Cidr::contains`] is one AND and one compare. An IPv4-mapped IPv6
/// block (`::ffff:10.0.0.0/104`) is stored as its IPv4 equivalent (`10.0.0.0/8`), matching how
/// [`normalize`] treats addresses. An IPv4 address never matches an IPv6 block: `::/0` does not
/// cover IPv4 clients, list `0.0.0.0/0` for those.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr(Block);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Block {
    V4 { net: u32, len: u8 },
    V6 { net: u128, len: u8 },
}

/// The network mask for a prefix length (`len` is at most 32; checked at parse time).
fn mask_v4(len: u8) -> u32 {
    // `u32::MAX << 32` overflows, so /0 is spelled out.
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

/// The network mask for a prefix length (`len` is at most 128; checked at parse time).
fn mask_v6(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

impl Cidr {
    /// Whether `ip` (normalised first) lies in this block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.0, normalize(ip)) {
            (Block::V4 { net, len }, IpAddr::V4(a)) => u32::from(a) & mask_v4(len) == net,
            (Block::V6 { net, len }, IpAddr::V6(a)) => u128::from(a) & mask_v6(len) == net,
            _ => false,
        }
    }

    /// The first address of the block.
    pub fn network(&self) -> IpAddr {
        match self.0 {
            Block::V4 { net, .. } => IpAddr::V4(Ipv4Addr::from(net)),
            Block::V6 { net, .. } => IpAddr::V6(Ipv6Addr::from(net)),
        }
    }

    /// The prefix length (after normalisation: `::ffff:10.0.0.0/104` reports 8).
    pub fn prefix_len(&self) -> u8 {
        match self.0 {
            Block::V4 { len, .. } | Block::V6 { len, .. } => len,
        }
    }
}

impl fmt::Display for Cidr {
    /// `10.0.0.0/8`, `2001:db8::/32`: always with the prefix length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix_len())
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// Parses `addr` or `addr/len`, IPv4 or IPv6, with surrounding whitespace ignored.
    ///
    /// Host bits set beyond the prefix (`10.0.0.1/8`) are an error rather than silently masked:
    /// the author probably meant either the single host or a different block, and guessing wrong
    /// would open (or close) the gateway to a whole network.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(parse_prefix_len(len)?)),
            None => (text, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| "not an IP address or CIDR".to_string())?;
        match ip {
            IpAddr::V4(v4) => v4_block(v4, len.unwrap_or(32), None),
            IpAddr::V6(v6) => match (v6.to_ipv4_mapped(), len) {
                // `::ffff:a.b.c.d/len` with len >= 96 is exactly the IPv4 block a.b.c.d/(len-96).
                (Some(v4), Some(len)) if (96..=128).contains(&len) => {
                    v4_block(v4, len - 96, Some(len))
                }
                (Some(v4), None) => v4_block(v4, 32, None),
                _ => v6_block(v6, len.unwrap_or(128)),
            },
        }
    }
}

/// The part after `/`: decimal digits only (`u32::from_str` would also take `+8`).
fn parse_prefix_len(text: &str) -> Result<u32, String> {
    if text.is_empty() {
        return Err("missing prefix length after '/'".to_string());
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("prefix length {text:?} is not a number"));
    }
    // Only digits, so the one way to fail is overflow: report it as the huge number it is.
    Ok(text.parse::<u32>().unwrap_or(u32::MAX))
}

/// An IPv4 block; `mapped_len` is the prefix as written when the input was `::ffff:…/len`,
/// so the hint speaks the author's notation.
fn v4_block(addr: Ipv4Addr, len: u32, mapped_len: Option<u32>) -> Result<Cidr, String> {
    let len = match u8::try_from(len) {
        Ok(len) if len <= 32 => len,
        _ => return Err(format!("prefix length {len} is over 32 for IPv4")),
    };
    let bits = u32::from(addr);
    let net = bits & mask_v4(len);
    if net != bits {
        let hint = match mapped_len {
            Some(written) => format!("::ffff:{}/{written}", Ipv4Addr::from(net)),
            None => format!("{}/{len}", Ipv4Addr::from(net)),
        };
        return Err(format!(
            "host bits are set beyond the prefix; did you mean {hint}?"
        ));
    }
    Ok(Cidr(Block::V4 { net, len }))
}

fn v6_block(addr: Ipv6Addr, len: u32) -> Result<Cidr, String> {
    let len = match u8::try_from(len) {
        Ok(len) if len <= 128 => len,
        _ => return Err(format!("prefix length {len} is over 128 for IPv6")),
    };
    let bits = u128::from(addr);
    let net = bits & mask_v6(len);
    if net != bits {
        return Err(format!(
            "host bits are set beyond the prefix; did you mean {}/{len}?",
            Ipv6Addr::from(net)
        ));
    }
    Ok(Cidr(Block::V6 { net, len }))
}

/// A set of address blocks with a fast [`IpSet::contains`].
///
/// IPv4 and IPv6 blocks live in separate arrays of pre-masked `(network, mask)` pairs, so a
/// lookup scans only the blocks of the address's family. A linear scan is the right structure
/// for the few hundred entries an access list holds: it is a handful of cache lines and beats
/// a trie until the list is far longer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl IpSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses every item as a [`Cidr`].
    ///
    /// # Errors
    ///
    /// The first item that is not a CIDR, quoted, with the reason (`"nope": not an IP address
    /// or CIDR`).
    pub fn parse_all<S: AsRef<str>>(items: &[S]) -> Result<IpSet, String> {
        let mut set = IpSet::new();
        for item in items {
            let item = item.as_ref();
            set.insert(item.parse().map_err(|why| format!("{item:?}: {why}"))?);
        }
        Ok(set)
    }

    /// Adds a block (a duplicate is ignored).
    pub fn insert(&mut self, cidr: Cidr) {
        match cidr.0 {
            Block::V4 { net, len } => {
                let entry = (net, mask_v4(len));
                if !self.v4.contains(&entry) {
                    self.v4.push(entry);
                }
            }
            Block::V6 { net, len } => {
                let entry = (net, mask_v6(len));
                if !self.v6.contains(&entry) {
                    self.v6.push(entry);
                }
            }
        }
    }

    /// Whether any block contains `ip` (normalised first).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match normalize(ip) {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().any(|&(net, mask)| a & mask == net)
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.iter().any(|&(net, mask)| a & mask == net)
            }
        }
    }

    /// Whether the set has no blocks at all.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// The number of distinct blocks.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

impl FromIterator<Cidr> for IpSet {
    fn from_iter<I: IntoIterator<Item = Cidr>>(iter: I) -> Self {
        let mut set = IpSet::new();
        iter.into_iter().for_each(|cidr| set.insert(cidr));
        set
    }
}

impl Extend<Cidr> for IpSet {
    fn extend<I: IntoIterator<Item = Cidr>>(&mut self, iter: I) {
        iter.into_iter().for_each(|cidr| self.insert(cidr));
    }
}

/// Allow and deny lists: an address in `deny` is refused; otherwise, if `allow` is not empty,
/// only what it lists is permitted. Empty rules permit everything.
///
/// Deny wins over allow so that "allow the office, except this one machine" is two lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpRules {
    allow: IpSet,
    deny: IpSet,
}

impl IpRules {
    /// Rules from an allow list and a deny list (either may be empty).
    pub fn new(allow: IpSet, deny: IpSet) -> Self {
        IpRules { allow, deny }
    }

    /// Parses both lists.
    ///
    /// # Errors
    ///
    /// The first bad item of either list (see [`IpSet::parse_all`]).
    pub fn parse<A: AsRef<str>, D: AsRef<str>>(allow: &[A], deny: &[D]) -> Result<Self, String> {
        Ok(IpRules::new(
            IpSet::parse_all(allow)?,
            IpSet::parse_all(deny)?,
        ))
    }

    /// Whether `ip` may pass.
    pub fn permits(&self, ip: IpAddr) -> bool {
        !self.deny.contains(ip) && (self.allow.is_empty() || self.allow.contains(ip))
    }

    /// Whether these rules permit everything (no allow list, no deny list), so callers can skip
    /// the check.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// Finds the client's address behind trusted proxies.
///
/// The rules, in order:
///
/// 1. The socket peer is normalised. If it is not trusted (or nothing is), it is the client and
///    every forwarding header is ignored: a direct client can write whatever it likes there, so
///    spoofed headers change nothing.
/// 2. Behind a trusted peer, `X-Forwarded-For` is read if present with at least one entry: every
///    occurrence of the header in order, each a comma-separated list, forming one chain whose
///    right-most entry was added by the nearest proxy. The chain is walked from the right,
///    skipping trusted addresses; the first untrusted one is the client. If every entry is
///    trusted, the left-most one is the closest we can get to the client.
/// 3. Otherwise RFC 7239 `Forwarded` is read the same way, one `for=` per element (quoted or
///    not, `1.2.3.4:port`, `"[2001:db8::1]:port"`, parameter names in any case).
/// 4. Otherwise a single `X-Real-IP` (an address with an optional port) is believed as is.
///
/// Whatever cannot be read as an address stops the walk and the result is the socket peer:
/// an unparsable entry, a non-ASCII header value, a `Forwarded` element without `for=`, and the
/// RFC 7239 `for=unknown` or obfuscated `for=_hidden` identifiers. Every entry the walk reaches
/// was written by a proxy we trust (it only goes left past trusted addresses), so such an entry
/// means a trusted proxy could not or would not say who its client was; guessing further left
/// would mean believing text the client may have written. The peer is the one address we know
/// is true. Note the consequence for [`IpRules`]: such a request is judged as coming from the
/// proxy, so don't allow-list your proxies' own addresses unless requests they cannot attribute
/// should pass.
///
/// `X-Forwarded-For` wins over `Forwarded` when both are present: a trusted proxy must set (or
/// strip) the header this resolver reads, otherwise the client's own copy is read instead.
///
/// Every returned address is normalised ([`normalize`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientIpResolver {
    trusted: IpSet,
}

/// One entry of a forwarding chain, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    Addr(IpAddr),
    /// Unparsable, `unknown` or obfuscated: stops the walk.
    Opaque,
}

impl ClientIpResolver {
    /// A resolver believing forwarding headers only from peers in `trusted`.
    pub fn new(trusted: IpSet) -> Self {
        ClientIpResolver { trusted }
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.contains(ip)
    }

    /// The client's address for a connection from `peer` carrying `headers` (see the type's
    /// documentation for the rules).
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = normalize(peer);
        if !self.trusted.contains(peer) {
            return peer;
        }
        if has_entries(headers, &X_FORWARDED_FOR) {
            return self.resolve_xff(peer, headers);
        }
        if headers.contains_key(FORWARDED) {
            return self.resolve_forwarded(peer, headers);
        }
        let mut real = headers.get_all(X_REAL_IP).iter();
        match (real.next(), real.next()) {
            // Two `X-Real-IP` headers contradict each other: believe neither.
            (Some(value), None) => match value.to_str().map(parse_node) {
                Ok(Hop::Addr(ip)) => ip,
                _ => peer,
            },
            _ => peer,
        }
    }

    /// The right-to-left walk over `X-Forwarded-For`; stops at the first untrusted hop, so a
    /// long forged prefix costs nothing to skip.
    fn resolve_xff(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut leftmost = None;
        for value in headers.get_all(X_FORWARDED_FOR).iter().rev() {
            let Ok(value) = value.to_str() else {
                return peer;
            };
            for entry in value.rsplit(',').filter(|e| !is_blank(e)) {
                match parse_node(entry) {
                    Hop::Addr(ip) if self.trusted.contains(ip) => leftmost = Some(ip),
                    Hop::Addr(ip) => return ip,
                    Hop::Opaque => return peer,
                }
            }
        }
        leftmost.unwrap_or(peer)
    }

    /// The same walk over `Forwarded`, done left to right because quoted strings make a
    /// right-to-left split unreliable. The answer is decided by the right-most entry that is
    /// not a trusted address (untrusted → it; opaque → the peer), or by the left-most entry
    /// when all are trusted, which is exactly what the right-to-left walk returns.
    fn resolve_forwarded(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut leftmost = None;
        let mut deciding = None;
        for value in &headers.get_all(FORWARDED) {
            let Ok(value) = value.to_str() else {
                // An unreadable value: whatever comes to its right may still decide.
                deciding = Some(Hop::Opaque);
                continue;
            };
            for element in split_unquoted(value, b',').filter(|e| !is_blank(e)) {
                let hop = forwarded_for(element);
                match hop {
                    Hop::Addr(ip) if self.trusted.contains(ip) => {
                        leftmost.get_or_insert(ip);
                    }
                    _ => deciding = Some(hop),
                }
            }
        }
        match deciding {
            Some(Hop::Addr(ip)) => ip,
            Some(Hop::Opaque) => peer,
            None => leftmost.unwrap_or(peer),
        }
    }
}

/// Whether some occurrence of `name` has a non-empty list element. An `X-Forwarded-For: ` with
/// nothing in it says nothing, so `Forwarded` gets its turn.
fn has_entries(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|e| e.iter().any(|b| !matches!(b, b' ' | b'\t')))
    })
}

/// HTTP lists may contain empty elements (RFC 9110 §5.6.1: recipients ignore them).
fn is_blank(s: &str) -> bool {
    s.trim_matches(is_ows).is_empty()
}

/// Optional whitespace in HTTP: space and horizontal tab.
fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Splits on `sep` outside double-quoted strings (with `\` escapes inside them).
fn split_unquoted(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        let mut quoted = false;
        let mut escaped = false;
        for (i, b) in s.bytes().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                _ if b == sep && !quoted => {
                    // `sep` is ASCII, so `i` and `i + 1` are char boundaries.
                    rest = s.get(i + 1..);
                    return s.get(..i);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

/// The `for=` of one `Forwarded` element (`for=1.2.3.4;proto=https`); an element without one
/// is opaque (the proxy that wrote it did not say who its client was).
fn forwarded_for(element: &str) -> Hop {
    for pair in split_unquoted(element, b';') {
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        if name.trim_matches(is_ows).eq_ignore_ascii_case("for") {
            return parse_node(unquote(value.trim_matches(is_ows)));
        }
    }
    Hop::Opaque
}

/// A quoted string's content. Escapes are left in place: no valid address contains a `\`, so an
/// escaped value fails to parse and is opaque, which is the right outcome for something that odd.
fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

/// An address with an optional port: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:443`, surrounded by optional whitespace. The port may also be an RFC 7239
/// obfuscated port (`_abc`); it is read for syntax only. `unknown`, `_hidden` and anything else
/// is opaque.
fn parse_node(text: &str) -> Hop {
    let text = text.trim_matches(is_ows);
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Hop::Addr(normalize(ip));
    }
    let parsed = match text.strip_prefix('[') {
        Some(rest) => rest.split_once(']').and_then(|(inside, after)| {
            let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(is_port);
            port_ok.then(|| inside.parse::<Ipv6Addr>().ok().map(IpAddr::V6))?
        }),
        None => text.rsplit_once(':').and_then(|(host, port)| {
            is_port(port).then(|| host.parse::<Ipv4Addr>().ok().map(IpAddr::V4))?
        }),
    };
    parsed.map_or(Hop::Opaque, |ip| Hop::Addr(normalize(ip)))
}

/// A decimal port, or an RFC 7239 obfuscated port (`_` then letters, digits, `.`, `_`, `-`).
fn is_port(s: &str) -> bool {
    match s.strip_prefix('_') {
        Some(obf) => {
            !obf.is_empty()
                && obf
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }
        None => !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u16>().is_ok(),
    }
}

#[cfg(test)]
mod tests {
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
}
