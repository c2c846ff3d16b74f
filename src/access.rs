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
mod tests;
