//! One cached answer and its byte format, shared by the three backends.
//!
//! An entry is the response head (Pingora's serialized `CacheMeta`: status, headers, freshness)
//! and the body, exactly the bytes the upstream sent, with the ends of its chunks: a stream is
//! cut at its SSE event boundaries, so a paced hit replays it event by event; an unpaced one
//! sends runs of whole events at once (zero-copy slices of the one body buffer).
//!
//! The memory backend keeps the head's headers uncompressed in one buffer ([`Meta::Kept`]):
//! serializing a head compresses it with zstd (~16k instructions per fill, most of a miss's
//! storage cost) and a hit decompresses and re-parses it, work that buys nothing for an entry
//! that never leaves the process. Disk and Redis entries hold the serialized form ([`Meta::Serialized`]).
//!
//! On disk and in Redis an entry is one blob: a magic and version, the expiry, the route label,
//! the meta, the chunk lengths, the body and a SHA-256 over all of it. A blob that is short,
//! has a wrong checksum or a wrong magic decodes to `None` and is treated as a miss — a torn
//! write or a corrupted file is never served.

use crate::cache_key::{sha256, Digest};
use crate::sse::SseParser;
use bytes::Bytes;
use pingora_cache::CacheMeta;
use pingora_http::ResponseHeader;
use std::time::SystemTime;

const MAGIC: &[u8; 8] = b"LLMFCE01";
/// Bytes an entry costs beyond its contents in the memory store: the map slot, the LRU node,
/// the `Arc<Entry>`, the buffers' headers and the allocator's rounding and fragmentation —
/// measured under a load of unique requests at ~850 bytes with glibc malloc, so that the
/// budget bounds the process's memory, not just the payload.
const OVERHEAD: usize = 1024;

pub(crate) struct Entry {
    /// The route prefix that produced it (purge by route, stats); not secret.
    pub route: String,
    /// Unix time in ms after which the entry is not served.
    pub expires_ms: u64,
    /// The response head and its freshness.
    pub meta: Meta,
    /// The body as one buffer (each chunk is a slice of it).
    pub body: Bytes,
    /// Where each chunk ends in `body`: increasing, the last one `body.len()` (SSE: one chunk
    /// per event).
    pub ends: Vec<u32>,
}

impl Entry {
    /// Bytes the entry accounts for against a budget: body, meta and a fixed overhead for the
    /// structures around them.
    pub(crate) fn weight(&self) -> usize {
        self.body.len() + self.meta.len() + self.route.len() + self.ends.len() * 4 + OVERHEAD
    }

    /// Chunk `i`'s range in `body`.
    pub(crate) fn chunk(&self, i: usize) -> Option<std::ops::Range<usize>> {
        let end = *self.ends.get(i)? as usize;
        let start = i.checked_sub(1).map_or(0, |p| self.ends[p] as usize);
        Some(start..end)
    }

    /// Chunks from `from` as one slice of at most `max` bytes (at least one chunk), and the
    /// index after it.
    pub(crate) fn run(&self, from: usize, max: usize) -> Option<(Bytes, usize)> {
        let first = self.chunk(from)?;
        let mut next = from + 1;
        let mut end = first.end;
        while let Some(r) = self.chunk(next).filter(|r| r.end - first.start <= max) {
            end = r.end;
            next += 1;
        }
        Some((self.body.slice(first.start..end), next))
    }

    pub(crate) fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_ms <= now_ms
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.weight() + 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.expires_ms.to_be_bytes());
        put(&mut out, self.route.as_bytes());
        let (internal, header) = self.meta.serialized();
        put(&mut out, &internal);
        put(&mut out, &header);
        out.extend_from_slice(&(self.ends.len() as u32).to_be_bytes());
        let mut start = 0;
        for &end in &self.ends {
            out.extend_from_slice(&(end - start).to_be_bytes());
            start = end;
        }
        out.extend_from_slice(&self.body);
        let sum = sha256(&out);
        out.extend_from_slice(&sum);
        out
    }

    /// Decode a blob; `None` for anything not written whole by `encode`.
    pub(crate) fn decode(blob: Bytes) -> Option<Entry> {
        if blob.len() < MAGIC.len() + 8 + 32 {
            return None;
        }
        let (data, sum) = blob.split_at(blob.len() - 32);
        if &data[..8] != MAGIC || sha256(data) != *<&Digest>::try_from(sum).ok()? {
            return None;
        }
        let mut r = Reader { blob: &blob, at: 8 };
        let expires_ms = u64::from_be_bytes(r.take(8)?.as_ref().try_into().ok()?);
        let route = String::from_utf8(r.part()?.to_vec()).ok()?;
        let meta = Meta::Serialized(r.part()?, r.part()?);
        let n = r.u32()? as usize;
        let mut ends = Vec::with_capacity(n.min(1 << 16));
        let mut end = 0u32;
        for _ in 0..n {
            end = end.checked_add(r.u32()?)?;
            ends.push(end);
        }
        let body = r.take(end as usize)?;
        (r.at == blob.len() - 32).then_some(Entry {
            route,
            expires_ms,
            meta,
            body,
            ends,
        })
    }

    /// Only the expiry and route of a blob (the disk index at startup), checksum not verified.
    pub(crate) fn peek_header(head: &[u8]) -> Option<(u64, String)> {
        if head.len() < 8 + 8 + 4 || &head[..8] != MAGIC {
            return None;
        }
        let expires = u64::from_be_bytes(head[8..16].try_into().ok()?);
        let len = u32::from_be_bytes(head[16..20].try_into().ok()?) as usize;
        let route = std::str::from_utf8(head.get(20..20 + len)?).ok()?;
        Some((expires, route.to_string()))
    }
}

/// A stored response head.
pub(crate) enum Meta {
    /// `CacheMeta::serialize()`: internal part and header part.
    Serialized(Bytes, Bytes),
    /// The head itself (memory backend).
    Kept(Box<KeptHead>),
}

/// What [`CacheMeta::new`] rebuilds a head from. Only heads it rebuilds exactly are kept (see
/// [`KeptHead::of`]): never revalidated, no variance.
pub(crate) struct KeptHead {
    fresh_until: SystemTime,
    created: SystemTime,
    stale_while_revalidate_sec: u32,
    stale_if_error_sec: u32,
    epoch_override: Option<SystemTime>,
    status: http::StatusCode,
    /// The headers in order, each as its name's length (u16), its value's length (u32), the
    /// name as the upstream spelled it and the value: one exact-size buffer, which the served
    /// head's names and values are slices of. Not the received head itself: its names and
    /// values are slices of Pingora's read buffer, which would stay pinned, unaccounted.
    headers: Bytes,
    count: usize,
}

/// Freshness fields a round trip through [`CacheMeta::serialize`] carries, beyond the header:
/// about what rmp-serde writes for them.
const INTERNAL_LEN: usize = 40;

impl KeptHead {
    /// The head of `meta`, when [`KeptHead::meta`] gives back what a serialize/deserialize
    /// round trip would; `None` otherwise (a revalidated or varied head: store it serialized).
    pub(crate) fn of(meta: &CacheMeta) -> Option<KeptHead> {
        let created = meta.created();
        if meta.updated() != created || meta.provenance() != created || meta.variance().is_some() {
            return None;
        }
        let head = meta.response_header();
        let size: usize = head
            .headers
            .iter()
            .map(|(n, v)| 6 + n.as_str().len() + v.len())
            .sum();
        let mut headers = Vec::with_capacity(size);
        let mut put = |name: &[u8], value: &[u8]| -> Option<()> {
            // As the round trip's parser reads a value back: without surrounding blanks.
            let value = value.trim_ascii_start().trim_ascii_end();
            headers.extend_from_slice(&u16::try_from(name.len()).ok()?.to_be_bytes());
            headers.extend_from_slice(&u32::try_from(value.len()).ok()?.to_be_bytes());
            headers.extend_from_slice(name);
            headers.extend_from_slice(value);
            Some(())
        };
        let mut count = 0;
        if head.has_case() {
            for (name, value) in head.case_header_iter() {
                put(name.as_slice(), value.as_bytes())?;
                count += 1;
            }
        } else {
            for (name, value) in head.headers.iter() {
                put(name.as_str().as_bytes(), value.as_bytes())?;
                count += 1;
            }
        }
        Some(KeptHead {
            fresh_until: meta.fresh_until(),
            created,
            stale_while_revalidate_sec: meta.stale_while_revalidate_sec(),
            stale_if_error_sec: meta.stale_if_error_sec(),
            epoch_override: meta.epoch_override(),
            status: head.status,
            headers: Bytes::from(headers),
            count,
        })
    }

    /// The `CacheMeta` to serve, as a round trip would give it back: HTTP/1.1, the status's
    /// own reason phrase, the names in their case. `None` if the buffer does not read.
    pub(crate) fn meta(&self) -> Option<CacheMeta> {
        let mut head = ResponseHeader::build(self.status, Some(self.count)).ok()?;
        let buf = &self.headers;
        let mut at = 0;
        while at < buf.len() {
            let name_len = usize::from(u16::from_be_bytes(buf.get(at..at + 2)?.try_into().ok()?));
            let value_len = u32::from_be_bytes(buf.get(at + 2..at + 6)?.try_into().ok()?) as usize;
            let name = at + 6..at + 6 + name_len;
            let value = name.end..name.end + value_len;
            if value.end > buf.len() {
                return None;
            }
            head.append_header(
                buf.slice(name),
                pingora_http::header_value_from_raw(buf.slice(value.clone())),
            )
            .ok()?;
            at = value.end;
        }
        let mut meta = CacheMeta::new(
            self.fresh_until,
            self.created,
            self.stale_while_revalidate_sec,
            self.stale_if_error_sec,
            head,
        );
        if let Some(epoch) = self.epoch_override {
            meta.set_epoch_override(epoch);
        }
        Some(meta)
    }
}

impl Meta {
    /// Bytes it accounts for.
    pub(crate) fn len(&self) -> usize {
        match self {
            Meta::Serialized(a, b) => a.len() + b.len(),
            Meta::Kept(k) => k.headers.len() + INTERNAL_LEN,
        }
    }

    /// The head as Pingora's `CacheMeta`; `None` when it does not decode.
    pub(crate) fn to_cache_meta(&self) -> Option<CacheMeta> {
        match self {
            Meta::Serialized(a, b) => CacheMeta::deserialize(a, b).ok(),
            Meta::Kept(k) => k.meta(),
        }
    }

    /// The serialized form (what a blob holds); empty parts, which never decode, if a kept head
    /// does not serialize.
    pub(crate) fn serialized(&self) -> (Bytes, Bytes) {
        match self {
            Meta::Serialized(a, b) => (a.clone(), b.clone()),
            Meta::Kept(k) => k
                .meta()
                .and_then(|m| m.serialize().ok())
                .map_or_else(Default::default, |(a, b)| (a.into(), b.into())),
        }
    }
}

impl From<(Bytes, Bytes)> for Meta {
    fn from((internal, header): (Bytes, Bytes)) -> Meta {
        Meta::Serialized(internal, header)
    }
}

fn put(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&(part.len() as u32).to_be_bytes());
    out.extend_from_slice(part);
}

struct Reader<'a> {
    blob: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<Bytes> {
        let end = self.at.checked_add(n)?;
        if end > self.blob.len() - 32 {
            return None;
        }
        let out = self.blob.slice(self.at..end);
        self.at = end;
        Some(out)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.as_ref().try_into().ok()?))
    }
    fn part(&mut self) -> Option<Bytes> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// The chunk ends of a complete SSE body, one chunk per event (comments and blank lines go with
/// the event that follows them; trailing bytes with the last one). `None` when the stream did
/// not end with a terminal event — `data: [DONE]` (OpenAI), or an event typed
/// `response.completed` (Responses API) or `message_stop` (Anthropic) — so a truncated stream
/// is never stored.
pub(crate) fn split_sse(body: &[u8]) -> Option<Vec<u32>> {
    let mut parser = SseParser::new();
    let mut starts = Vec::new();
    let mut last_terminal = false;
    parser.push(body, |event| {
        starts.push(event.span().start as usize);
        last_terminal = event.is_done()
            || matches!(
                event.event_type(),
                b"response.completed" | b"message_stop" | b"response.incomplete"
            );
    });
    let end = parser.finish();
    if !end.clean || !last_terminal {
        return None;
    }
    let mut ends = Vec::with_capacity(starts.len());
    let mut from = 0;
    for &start in starts.iter().skip(1) {
        let start = start.min(body.len());
        if start > from {
            ends.push(start as u32);
            from = start;
        }
    }
    if from < body.len() {
        ends.push(body.len() as u32);
    }
    Some(ends)
}

/// Chunk ends for a non-stream body: at most `max` bytes each (bounded writes downstream).
pub(crate) fn split_plain(len: usize, max: usize) -> Vec<u32> {
    let mut ends = Vec::with_capacity(len / max + 1);
    let mut at = 0;
    while at < len {
        at = (at + max).min(len);
        ends.push(at as u32);
    }
    ends
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            route: "/v1".into(),
            expires_ms: 123,
            meta: (Bytes::from_static(b"int"), Bytes::from_static(b"hdr")).into(),
            body: Bytes::from_static(b"data: a\n\ndata: [DONE]\n\n"),
            ends: vec![9, 23],
        }
    }

    #[test]
    fn round_trip_and_corruption() {
        let blob = Bytes::from(entry().encode());
        let e = Entry::decode(blob.clone()).unwrap();
        assert_eq!(e.route, "/v1");
        assert_eq!(e.expires_ms, 123);
        assert_eq!((e.body, e.ends), (entry().body, entry().ends));
        assert_eq!(Entry::peek_header(&blob).unwrap(), (123, "/v1".to_string()));
        for cut in [0, 10, blob.len() / 2, blob.len() - 1] {
            assert!(Entry::decode(blob.slice(..cut)).is_none(), "cut at {cut}");
        }
        for flip in [0, 9, 30, blob.len() - 40, blob.len() - 1] {
            let mut bad = blob.to_vec();
            bad[flip] ^= 1;
            assert!(Entry::decode(bad.into()).is_none(), "flip at {flip}");
        }
    }

    #[test]
    fn streams_split_per_event_and_need_their_end() {
        let body = Bytes::from_static(
            b": ping\n\ndata: {\"a\":1}\n\ndata: {\"b\":2}\r\n\r\ndata: [DONE]\n\n",
        );
        let ends = split_sse(&body).unwrap();
        assert_eq!(ends.len(), 3);
        assert_eq!(*ends.last().unwrap() as usize, body.len());
        let e = Entry {
            route: String::new(),
            expires_ms: 0,
            meta: (Bytes::new(), Bytes::new()).into(),
            body: body.clone(),
            ends,
        };
        assert_eq!(&body[e.chunk(2).unwrap()], b"data: [DONE]\n\n");
        assert_eq!(&body[e.chunk(0).unwrap()], b": ping\n\ndata: {\"a\":1}\n\n");
        // Runs: whole events up to a size, never fewer than one.
        assert_eq!(e.run(0, 1).unwrap(), (body.slice(e.chunk(0).unwrap()), 1));
        assert_eq!(e.run(0, 1 << 20).unwrap(), (body.clone(), 3));
        assert_eq!(e.run(1, 1 << 20).unwrap().1, 3);
        assert!(e.run(3, 1 << 20).is_none());
        assert!(split_sse(&Bytes::from_static(b"data: {\"a\":1}\n\n")).is_none());
        assert!(split_sse(&Bytes::from_static(b"data: [DONE]\n\ndata: {\"a\"")).is_none());
        let responses = b"event: response.completed\ndata: {}\n\n";
        assert_eq!(split_sse(responses).unwrap(), vec![responses.len() as u32]);
    }

    /// A kept head serves what a serialize/deserialize round trip would: same freshness, same
    /// status and headers, written with the same names (case) in the same order.
    #[test]
    fn kept_heads_equal_their_round_trip() {
        use std::time::Duration;
        let mut header = ResponseHeader::build(200, None).unwrap();
        header
            .append_header("Content-Type", "application/json")
            .unwrap();
        header.append_header("X-Multi", "a").unwrap();
        header.append_header("x-multi", "b").unwrap();
        header.append_header("set-Cookie", "c=1").unwrap();
        // Values as the upstream's head holds them: slices of one read buffer.
        let read = Bytes::from(format!("{}x-Slice: \t spaced \t\r\n", " ".repeat(4096)));
        header
            .append_header(
                read.slice(4096..4103),
                pingora_http::header_value_from_raw(read.slice(4105..4115)),
            )
            .unwrap();
        header.set_reason_phrase(Some("Fine")).unwrap();
        header.set_version(http::Version::HTTP_10);
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut meta = CacheMeta::new(created + Duration::from_secs(60), created, 5, 7, header);
        meta.set_epoch_override(created + Duration::from_secs(1));
        let wire = |h: &ResponseHeader| {
            let mut buf = Vec::new();
            h.header_to_h1_wire(&mut buf);
            (
                h.status,
                h.version,
                h.get_reason_phrase().map(str::to_owned),
                buf,
            )
        };
        let (a, b) = meta.serialize().unwrap();
        let round = CacheMeta::deserialize(&a, &b).unwrap();
        let kept = Meta::Kept(Box::new(KeptHead::of(&meta).unwrap()));
        let served = kept.to_cache_meta().unwrap();
        for m in [&round, &served] {
            assert_eq!(m.fresh_until(), meta.fresh_until());
        }
        assert_eq!(served.created(), round.created());
        assert_eq!(served.updated(), round.updated());
        assert_eq!(served.provenance(), round.provenance());
        assert_eq!(served.epoch(), round.epoch());
        assert_eq!(
            served.stale_while_revalidate_sec(),
            round.stale_while_revalidate_sec()
        );
        assert_eq!(served.stale_if_error_sec(), round.stale_if_error_sec());
        assert_eq!(served.variance(), round.variance());
        assert_eq!(
            wire(served.response_header()),
            wire(round.response_header())
        );
        assert_eq!(served.headers(), round.headers());
        // The served head holds none of the read buffer: nothing unaccounted stays pinned.
        let inside = |p: *const u8| read.as_ptr_range().contains(&p);
        let value = served.headers().get("x-slice").unwrap();
        assert_eq!(value.as_bytes(), b"spaced");
        assert!(!inside(value.as_bytes().as_ptr()));
        assert_eq!(kept.len(), 6 * 5 + 70 + INTERNAL_LEN);
        // Its serialized form (a blob's) decodes to the same head.
        let (a, b) = kept.serialized();
        let again = CacheMeta::deserialize(&a, &b).unwrap();
        assert_eq!(wire(again.response_header()), wire(round.response_header()));
        // A head it would not give back unchanged is not kept.
        meta.set_variance([7; 16]);
        assert!(KeptHead::of(&meta).is_none());
    }

    /// Allocations of a miss's head (the store keeps it) and of a hit's (it is served), for a
    /// head of four headers: one buffer per miss where serializing made eight; a hit builds its
    /// head from slices of that buffer where decoding made seventeen.
    #[test]
    fn kept_heads_allocate_less_than_serialized_ones() {
        use crate::openai::tests::allocs::allocations;
        let mut header = ResponseHeader::build(200, None).unwrap();
        for (n, v) in [
            ("Content-Type", "application/json"),
            ("Content-Length", "311"),
            ("Date", "Thu, 03 Dec 2026 11:00:00 GMT"),
            ("X-Request-Id", "0123456789abcdef"),
        ] {
            header.append_header(n, v).unwrap();
        }
        let now = SystemTime::now();
        let meta = CacheMeta::new(now, now, 0, 0, header);
        // Pingora's serializer keeps a zstd context per thread, made on its first use: a
        // round trip first, so the counts below do not depend on what this test thread ran
        // before (parallel tests share threads).
        let (a, b) = meta.serialize().unwrap();
        CacheMeta::deserialize(&a, &b).unwrap();
        let (kept_miss, kept) = allocations(|| KeptHead::of(&meta).unwrap());
        let (ser_miss, (a, b)) = allocations(|| meta.serialize().unwrap());
        let (kept_hit, _) = allocations(|| kept.meta().unwrap());
        let (ser_hit, _) = allocations(|| CacheMeta::deserialize(&a, &b).unwrap());
        assert_eq!((kept_miss, ser_miss), (1, 5));
        assert_eq!((kept_hit, ser_hit), (8, 16));
    }

    #[test]
    fn plain_bodies_split_by_size() {
        assert_eq!(split_plain(10, 4), [4, 8, 10]);
        assert!(split_plain(0, 4).is_empty());
    }
}
