//! Incremental Server-Sent Events parser, fed with the upstream's body chunks as they arrive.
//!
//! The gateway forwards every upstream chunk unchanged and only *reads* it on the way
//! through, so this parser takes `&[u8]` and never copies, rewrites or holds on to the
//! caller's bytes beyond one [`SseParser::push`] call. It implements the WHATWG "event stream
//! interpretation" (HTML Living Standard, §9.2.6) on bytes rather than on decoded text:
//! `\n`, `\r\n` and `\r` line endings (a `\r\n` split across two chunks is one line ending),
//! a leading UTF-8 BOM is skipped, `:` lines are comments, a field without a colon has an
//! empty value, one optional space after the colon is removed, `data` lines are joined with
//! `\n`, `event`, `id` (ignored if it contains NUL; the last id persists across events) and
//! `retry` (ASCII digits only) are honoured, unknown fields are ignored, and a blank line
//! dispatches the event if it had at least one `data` line. Working on bytes means a
//! multi-byte UTF-8 character split across chunks needs no special care; invalid UTF-8 is
//! passed through as bytes ([`SseEvent::data_str`] returns `None` for it, where a browser
//! would substitute U+FFFD).
//!
//! Cost model: an event that lies entirely inside one chunk and has a single `data` line is
//! handed out borrowing that chunk (zero copies). Only events split across chunks, or with
//! several `data` lines, are assembled in internal buffers that are reused from event to event,
//! so after warm-up the parser does not allocate. Memory is bounded by
//! [`SseParser::with_max_event_size`] (16 MiB by default): an event whose lines add up to more
//! than that is dropped and counted ([`SseParser::oversized_events`]), never buffered further.
//!
//! Every event also carries its byte span in the stream ([`SseEvent::span`]), so the gateway
//! can cut one event (e.g. the usage chunk it asked for on the client's behalf) out of the
//! bytes it forwards. The parser yields exactly the same events, spans included, however the
//! stream is split into chunks; the property tests below check that for arbitrary splits.

use std::ops::Range;

/// The default bound on one event's size: generous for any real LLM chunk, small enough that a
/// broken upstream cannot make the gateway buffer without limit.
pub const DEFAULT_MAX_EVENT_SIZE: usize = 16 * 1024 * 1024;

/// Capacity the internal buffers keep between events. One huge event should not pin its
/// memory for the rest of a long stream.
const KEEP_CAPACITY: usize = 64 * 1024;

/// The UTF-8 byte order mark, which the spec strips from the very start of a stream.
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// One dispatched event. It borrows from the chunk passed to [`SseParser::push`] or from the
/// parser's buffers, so it lives only for the duration of the callback; use
/// [`SseEvent::to_owned_event`] to keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    event: &'a [u8],
    data: &'a [u8],
    id: &'a [u8],
    start: u64,
    end: u64,
}

impl<'a> SseEvent<'a> {
    /// The event type: the last `event:` value of this event, or `message` when it had none
    /// (or an empty one), as the spec says.
    pub fn event_type(&self) -> &'a [u8] {
        if self.event.is_empty() {
            b"message"
        } else {
            self.event
        }
    }

    /// The data: every `data` line's value joined with `\n`, without a trailing `\n`.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The data as text, or `None` when it is not valid UTF-8.
    pub fn data_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.data).ok()
    }

    /// The last event ID of the stream at dispatch time (the spec's `lastEventId`): the most
    /// recent valid `id:` value seen so far, in this event or an earlier one; empty if none.
    pub fn last_event_id(&self) -> &'a [u8] {
        self.id
    }

    /// Whether this is OpenAI's end-of-stream sentinel, `data: [DONE]` (surrounding ASCII
    /// whitespace tolerated, as some compatible servers add it).
    pub fn is_done(&self) -> bool {
        self.data.trim_ascii() == b"[DONE]"
    }

    /// Absolute byte offsets in the stream (counted from the first byte ever pushed, a BOM
    /// included) of the event's lines with their line endings, from the first line after the
    /// previous blank line up to, but not including, the blank line that dispatched it.
    /// Removing exactly these bytes leaves that blank line behind, which dispatches nothing,
    /// so the rest of the stream parses as before.
    pub fn span(&self) -> Range<u64> {
        self.start..self.end
    }

    /// An owned copy, for tests and for callers that must keep an event past the callback.
    pub fn to_owned_event(self) -> OwnedSseEvent {
        OwnedSseEvent {
            event_type: self.event_type().to_vec(),
            data: self.data.to_vec(),
            last_event_id: self.id.to_vec(),
            span: self.span(),
        }
    }
}

/// An owned [`SseEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedSseEvent {
    pub event_type: Vec<u8>,
    pub data: Vec<u8>,
    pub last_event_id: Vec<u8>,
    pub span: Range<u64>,
}

/// How a stream ended, from [`SseParser::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEnd<'a> {
    /// The stream stopped on an event boundary: no unterminated line and no field line since
    /// the last blank line (trailing comments are fine). `false` means the upstream was cut
    /// mid-event.
    pub clean: bool,
    /// The event that was being built when the stream stopped (its last line counted even
    /// without a line ending), if it had a `data` line. Per the spec it is *not* dispatched;
    /// it is here for logging what a cut stream was about to say.
    pub incomplete: Option<SseEvent<'a>>,
}

/// Where the current event's `data` and `event` values are while a chunk is being parsed:
/// still inside the chunk (`Some`, zero-copy) or in the parser's own buffer (`None`).
struct Cur<'c> {
    data: Option<&'c [u8]>,
    event: Option<&'c [u8]>,
}

/// The incremental parser. One per stream; see the module documentation.
#[derive(Debug, Clone)]
pub struct SseParser {
    max_event_size: usize,
    /// Bytes of the BOM matched at the very start of the stream, or `None` once decided.
    bom_matched: Option<u8>,
    /// The unterminated line carried over from earlier chunks (empty while discarding).
    line: Vec<u8>,
    /// An unterminated, non-empty line is in progress (its bytes are in `line`, unless the
    /// event is being discarded). Needed because "nothing since the last line ending" is what
    /// makes the next line ending a blank line.
    in_line: bool,
    /// The previous chunk ended with `\r`: a `\n` at the start of the next one belongs to it.
    skip_lf: bool,
    /// The current event's joined data, when it could not be borrowed from a chunk.
    data: Vec<u8>,
    /// How many `data` lines the current event has had (one with an empty value counts: the
    /// spec dispatches `data` followed by a blank line as an event with empty data).
    data_lines: usize,
    /// The current event's type, when it could not be borrowed from a chunk.
    event: Vec<u8>,
    /// Any non-comment line since the last blank line (for [`SseEnd::clean`]).
    has_fields: bool,
    /// Bytes of the current event so far: each line's length plus one for its line ending
    /// (one whatever the ending, so the count does not depend on where chunks split `\r\n`).
    event_bytes: usize,
    /// Stream offset of the first line of the current event.
    event_start: Option<u64>,
    /// The current event outgrew `max_event_size`: skip its lines until the blank line.
    discarding: bool,
    last_id: Vec<u8>,
    retry: Option<u64>,
    /// Stream offset of the next byte to be pushed.
    offset: u64,
    events: u64,
    comments: u64,
    oversized: u64,
    /// The verdict of the first [`SseParser::finish`] call, so later calls agree with it.
    ended_clean: Option<bool>,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser with the default event size bound ([`DEFAULT_MAX_EVENT_SIZE`]).
    pub fn new() -> Self {
        Self::with_max_event_size(DEFAULT_MAX_EVENT_SIZE)
    }

    /// A parser that drops events whose lines add up to more than `max` bytes (each line
    /// counted with one byte for its line ending; comments and unknown fields count too).
    pub fn with_max_event_size(max: usize) -> Self {
        SseParser {
            max_event_size: max,
            bom_matched: Some(0),
            line: Vec::new(),
            in_line: false,
            skip_lf: false,
            data: Vec::new(),
            data_lines: 0,
            event: Vec::new(),
            has_fields: false,
            event_bytes: 0,
            event_start: None,
            discarding: false,
            last_id: Vec::new(),
            retry: None,
            offset: 0,
            events: 0,
            comments: 0,
            oversized: 0,
            ended_clean: None,
        }
    }

    /// Forgets the stream so the parser can take a new one, keeping its buffers' capacity.
    pub fn reset(&mut self) {
        let mut fresh = Self::with_max_event_size(self.max_event_size);
        for (old, new) in [
            (&mut self.line, &mut fresh.line),
            (&mut self.data, &mut fresh.data),
            (&mut self.event, &mut fresh.event),
            (&mut self.last_id, &mut fresh.last_id),
        ] {
            old.clear();
            std::mem::swap(old, new);
        }
        *self = fresh;
    }

    /// The configured event size bound.
    pub fn max_event_size(&self) -> usize {
        self.max_event_size
    }

    /// Events dispatched so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Comment lines seen so far (keep-alives such as `: ping`).
    pub fn comments(&self) -> u64 {
        self.comments
    }

    /// Events dropped because they exceeded the size bound.
    pub fn oversized_events(&self) -> u64 {
        self.oversized
    }

    /// Bytes pushed so far.
    pub fn bytes(&self) -> u64 {
        self.offset
    }

    /// The last `retry:` value (the reconnection time in milliseconds), if any.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// The stream's last event ID so far (empty if none).
    pub fn last_event_id(&self) -> &[u8] {
        &self.last_id
    }

    /// Parses one chunk, calling `on_event` for every event it completes, in order. The chunk
    /// can be split anywhere, including inside `\r\n` or a UTF-8 sequence.
    pub fn push(&mut self, chunk: &[u8], mut on_event: impl FnMut(SseEvent<'_>)) {
        if chunk.is_empty() {
            return;
        }
        let base = self.offset;
        self.offset += chunk.len() as u64;
        let mut pos = 0;
        if let Some(matched) = self.bom_matched {
            let mut matched = usize::from(matched);
            while matched < BOM.len() && pos < chunk.len() && chunk[pos] == BOM[matched] {
                matched += 1;
                pos += 1;
            }
            if matched == BOM.len() {
                self.bom_matched = None;
            } else if pos == chunk.len() {
                // Still a possible BOM prefix: decide on the next chunk. (`matched` < 3.)
                self.bom_matched = Some(matched as u8);
                return;
            } else {
                // Not a BOM: the bytes held back start the first line (none is a line ending).
                self.bom_matched = None;
                if matched > 0 {
                    let mut cur = Cur {
                        data: None,
                        event: None,
                    };
                    self.partial(&mut cur, &BOM[..matched], 0);
                }
            }
        }
        if self.skip_lf {
            self.skip_lf = false;
            if chunk.get(pos) == Some(&b'\n') {
                pos += 1;
            }
        }
        let mut cur = Cur {
            data: None,
            event: None,
        };
        while pos < chunk.len() {
            let Some(i) = memchr::memchr2(b'\n', b'\r', &chunk[pos..]) else {
                self.partial(&mut cur, &chunk[pos..], base + pos as u64);
                break;
            };
            let end = pos + i;
            let next = if chunk[end] == b'\n' {
                end + 1
            } else if end + 1 == chunk.len() {
                self.skip_lf = true;
                end + 1
            } else if chunk[end + 1] == b'\n' {
                end + 2
            } else {
                end + 1
            };
            if self.in_line {
                self.end_partial(&mut cur, &chunk[pos..end]);
            } else {
                self.chunk_line(&mut cur, chunk, pos, end, base, &mut on_event);
            }
            pos = next;
        }
        // Whatever of the current event still points into this chunk moves to our buffers.
        if let Some(data) = cur.data {
            self.data.clear();
            self.data.extend_from_slice(data);
        }
        if let Some(event) = cur.event {
            self.event.clear();
            self.event.extend_from_slice(event);
        }
    }

    /// Ends the stream: says whether it stopped on an event boundary and returns the event in
    /// progress, if any (not dispatched, see [`SseEnd`]). Calling it again gives the same
    /// answer; call [`SseParser::reset`] to parse another stream.
    pub fn finish(&mut self) -> SseEnd<'_> {
        let clean = match self.ended_clean {
            Some(clean) => clean,
            None => {
                let held_bom = matches!(self.bom_matched, Some(n) if n > 0);
                let clean = !held_bom && !self.in_line && !self.has_fields;
                let mut cur = Cur {
                    data: None,
                    event: None,
                };
                if let Some(matched) = self.bom_matched.take() {
                    if matched > 0 {
                        self.partial(&mut cur, &BOM[..usize::from(matched)], 0);
                    }
                }
                // The unterminated last line still counts towards the incomplete event.
                if self.in_line {
                    self.end_partial(&mut cur, &[]);
                }
                self.ended_clean = Some(clean);
                clean
            }
        };
        let incomplete = (!self.discarding && self.data_lines > 0).then(|| SseEvent {
            event: &self.event,
            data: &self.data,
            id: &self.last_id,
            start: self.event_start.unwrap_or(self.offset),
            end: self.offset,
        });
        SseEnd { clean, incomplete }
    }

    /// A line that lies entirely inside the chunk (`chunk[start..end]`, without its ending).
    fn chunk_line<'c>(
        &mut self,
        cur: &mut Cur<'c>,
        chunk: &'c [u8],
        start: usize,
        end: usize,
        base: u64,
        on_event: &mut impl FnMut(SseEvent<'_>),
    ) {
        if start == end {
            self.dispatch(cur, base + start as u64, on_event);
            return;
        }
        if self.event_start.is_none() {
            self.event_start = Some(base + start as u64);
        }
        if self.discarding {
            return;
        }
        let line = &chunk[start..end];
        self.event_bytes += line.len() + 1;
        if self.event_bytes > self.max_event_size {
            self.discard(cur);
            return;
        }
        self.field(cur, line, Some(line));
    }

    /// The rest of the stream's current chunk holds no line ending: keep the start of the line.
    fn partial(&mut self, cur: &mut Cur<'_>, bytes: &[u8], at: u64) {
        if !self.in_line {
            self.in_line = true;
            if self.event_start.is_none() {
                self.event_start = Some(at);
            }
        }
        if self.discarding {
            return;
        }
        if self.event_bytes + self.line.len() + bytes.len() > self.max_event_size {
            self.discard(cur);
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    /// The line begun in an earlier chunk ends with `rest`.
    fn end_partial(&mut self, cur: &mut Cur<'_>, rest: &[u8]) {
        self.in_line = false;
        if self.discarding {
            return;
        }
        let mut line = std::mem::take(&mut self.line);
        line.extend_from_slice(rest);
        self.event_bytes += line.len() + 1;
        if self.event_bytes > self.max_event_size {
            self.discard(cur);
        } else {
            self.field(cur, &line, None);
        }
        // Hand the buffer back so its capacity is reused.
        line.clear();
        self.line = line;
    }

    /// Applies one non-empty line. `borrowable` is the same line when it lives in the chunk
    /// being parsed, so a single `data` or `event` value can be kept as a borrow.
    fn field<'c>(&mut self, cur: &mut Cur<'c>, line: &[u8], borrowable: Option<&'c [u8]>) {
        match line.first() {
            // Unreachable (blank lines dispatch before this), but never worth a panic.
            None => return,
            Some(b':') => {
                self.comments += 1;
                return;
            }
            Some(_) => {}
        }
        self.has_fields = true;
        let (name, value_at) = match memchr::memchr(b':', line) {
            Some(colon) if line.get(colon + 1) == Some(&b' ') => (&line[..colon], colon + 2),
            Some(colon) => (&line[..colon], colon + 1),
            None => (line, line.len()),
        };
        let value = &line[value_at..];
        match name {
            b"data" => {
                match (self.data_lines, borrowable) {
                    (0, Some(line)) => cur.data = Some(&line[value_at..]),
                    _ => {
                        if let Some(first) = cur.data.take() {
                            self.data.clear();
                            self.data.extend_from_slice(first);
                        }
                        if self.data_lines > 0 {
                            self.data.push(b'\n');
                        }
                        self.data.extend_from_slice(value);
                    }
                }
                self.data_lines += 1;
            }
            b"event" => match borrowable {
                Some(line) => cur.event = Some(&line[value_at..]),
                None => {
                    cur.event = None;
                    self.event.clear();
                    self.event.extend_from_slice(value);
                }
            },
            b"id" if memchr::memchr(0, value).is_none() => {
                self.last_id.clear();
                self.last_id.extend_from_slice(value);
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // A value too large for u64 is ignored rather than clamped.
                if let Some(ms) = value.iter().try_fold(0u64, |acc, d| {
                    acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
                }) {
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
    }

    /// A blank line starting at stream offset `at`: dispatch the event, if it has data.
    fn dispatch(&mut self, cur: &mut Cur<'_>, at: u64, on_event: &mut impl FnMut(SseEvent<'_>)) {
        if self.discarding {
            self.oversized += 1;
        } else if self.data_lines > 0 {
            self.events += 1;
            on_event(SseEvent {
                event: cur.event.unwrap_or(&self.event),
                data: cur.data.unwrap_or(&self.data),
                id: &self.last_id,
                start: self.event_start.unwrap_or(at),
                end: at,
            });
        }
        self.clear_event(cur);
        self.discarding = false;
    }

    /// The current event is too large: forget what it has and skip it until its blank line.
    fn discard(&mut self, cur: &mut Cur<'_>) {
        self.clear_event(cur);
        self.line.clear();
        self.discarding = true;
        // A cut stream in the middle of a dropped event is still a cut stream.
        self.has_fields = true;
    }

    fn clear_event(&mut self, cur: &mut Cur<'_>) {
        cur.data = None;
        cur.event = None;
        self.data.clear();
        self.event.clear();
        self.data.shrink_to(KEEP_CAPACITY);
        self.line.shrink_to(KEEP_CAPACITY);
        self.data_lines = 0;
        self.event_bytes = 0;
        self.event_start = None;
        self.has_fields = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `chunks` in order, then finishes; returns the events, the end and the counters.
    fn run_with(parser: &mut SseParser, chunks: &[&[u8]]) -> Outcome {
        let mut events = Vec::new();
        for chunk in chunks {
            parser.push(chunk, |e| events.push(e.to_owned_event()));
        }
        let end = parser.finish();
        Outcome {
            clean: end.clean,
            incomplete: end.incomplete.map(|e| e.to_owned_event()),
            events,
            comments: parser.comments(),
            oversized: parser.oversized_events(),
            retry: parser.retry(),
            last_id: parser.last_event_id().to_vec(),
        }
    }

    #[derive(Debug, PartialEq, Eq)]
    struct Outcome {
        events: Vec<OwnedSseEvent>,
        clean: bool,
        incomplete: Option<OwnedSseEvent>,
        comments: u64,
        oversized: u64,
        retry: Option<u64>,
        last_id: Vec<u8>,
    }

    fn run(input: &[u8]) -> Outcome {
        run_with(&mut SseParser::new(), &[input])
    }

    /// (event type, data, last event id) of each event, as text, for readable assertions.
    fn triples(input: &[u8]) -> Vec<(String, String, String)> {
        run(input)
            .events
            .into_iter()
            .map(|e| {
                (
                    String::from_utf8_lossy(&e.event_type).into_owned(),
                    String::from_utf8_lossy(&e.data).into_owned(),
                    String::from_utf8_lossy(&e.last_event_id).into_owned(),
                )
            })
            .collect()
    }

    fn msg(data: &str) -> (String, String, String) {
        ("message".into(), data.into(), String::new())
    }

    #[test]
    fn single_event_borrows_from_the_chunk() {
        let chunk = b"data: hello\n\n";
        let mut parser = SseParser::new();
        let mut seen = 0;
        parser.push(chunk, |e| {
            seen += 1;
            assert_eq!(e.data(), b"hello");
            // Zero-copy: the data points into the caller's chunk.
            assert_eq!(e.data().as_ptr(), chunk[6..].as_ptr());
            assert_eq!(e.event_type(), b"message");
            assert_eq!(e.span(), 0..12);
        });
        assert_eq!(seen, 1);
        assert!(parser.finish().clean);
    }

    #[test]
    fn line_endings_lf_crlf_cr_and_mixed() {
        for input in [
            &b"data: a\n\ndata: b\n\n"[..],
            b"data: a\r\n\r\ndata: b\r\n\r\n",
            b"data: a\r\rdata: b\r\r",
            b"data: a\r\n\ndata: b\r\r\n",
        ] {
            assert_eq!(triples(input), vec![msg("a"), msg("b")], "{input:?}");
        }
    }

    #[test]
    fn crlf_split_across_chunks_is_one_line_ending() {
        let mut parser = SseParser::new();
        let mut got = Vec::new();
        for chunk in [&b"data: a\r"[..], b"\n", b"\r", b"\ndata: b\r\n\r", b"\n"] {
            parser.push(chunk, |e| got.push(e.to_owned_event()));
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].data, b"a");
        assert_eq!(got[1].data, b"b");
        // The same spans as in one chunk.
        let whole = run(b"data: a\r\n\r\ndata: b\r\n\r\n").events;
        assert_eq!(got, whole);
        assert!(parser.finish().clean);
    }

    #[test]
    fn multi_line_data_is_joined_with_lf() {
        assert_eq!(
            triples(b"data: first\ndata: second\ndata\ndata:third\n\n"),
            vec![msg("first\nsecond\n\nthird")]
        );
        // The WHATWG example: "YHOO\n+2\n10".
        assert_eq!(
            triples(b"data: YHOO\ndata: +2\ndata: 10\n\n"),
            vec![msg("YHOO\n+2\n10")]
        );
    }

    #[test]
    fn event_field_sets_the_type_and_resets_after_dispatch() {
        assert_eq!(
            triples(b"event: add\ndata: 73857293\n\nevent: \ndata: x\n\ndata: y\n\n"),
            vec![
                ("add".into(), "73857293".into(), String::new()),
                msg("x"),
                msg("y"),
            ]
        );
    }

    #[test]
    fn id_persists_and_nul_ids_are_ignored() {
        let got = triples(b"id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: 7\0x\ndata: d\n\n");
        assert_eq!(
            got.iter().map(|t| t.2.as_str()).collect::<Vec<_>>(),
            ["1", "1", "", ""]
        );
        // An id without data dispatches nothing but still sets the stream's last id.
        let out = run(b"id: 42\n\n");
        assert!(out.events.is_empty());
        assert_eq!(out.last_id, b"42");
    }

    #[test]
    fn retry_accepts_only_ascii_digits() {
        assert_eq!(run(b"retry: 1500\n\n").retry, Some(1500));
        for bad in [
            &b"retry: 15s\n\n"[..],
            b"retry: -1\n\n",
            b"retry:\n\n",
            b"retry: 99999999999999999999999\n\n",
        ] {
            assert_eq!(run(bad).retry, None, "{bad:?}");
        }
        assert_eq!(run(b"retry: 10\n\nretry: x\n\n").retry, Some(10));
    }

    #[test]
    fn comments_are_ignored_and_counted() {
        let out = run(b": keep-alive\n\n:\ndata: a\n: inside\n\n: trailing\n");
        assert_eq!(out.events.len(), 1);
        assert_eq!(out.events[0].data, b"a");
        assert_eq!(out.comments, 4);
        assert!(out.clean, "a trailing comment is not a cut event");
    }

    #[test]
    fn field_without_colon_has_empty_value() {
        assert_eq!(triples(b"data\n\n"), vec![msg("")]);
        assert_eq!(triples(b"data\ndata\n\n"), vec![msg("\n")]);
        // "event" alone resets the type to the default.
        assert_eq!(triples(b"event\ndata: z\n\n"), vec![msg("z")]);
    }

    #[test]
    fn only_one_space_after_the_colon_is_removed() {
        assert_eq!(
            triples(b"data:no-space\n\ndata:  two\n\ndata:\tTab\n\n"),
            vec![msg("no-space"), msg(" two"), msg("\tTab")]
        );
        assert_eq!(triples(b"data: a:b: c\n\n"), vec![msg("a:b: c")]);
    }

    #[test]
    fn unknown_fields_and_wrong_case_are_ignored() {
        assert_eq!(
            triples(b"foo: bar\nDATA: no\nData: no\ndata: yes\n\n"),
            vec![msg("yes")]
        );
    }

    #[test]
    fn an_event_without_data_is_not_dispatched() {
        let out = run(b"event: ping\n\nid: 3\n\n\n\ndata: x\n\n");
        assert_eq!(out.events.len(), 1);
        assert_eq!(
            out.events[0].event_type, b"message",
            "type reset after the empty event"
        );
        assert_eq!(out.events[0].last_event_id, b"3");
    }

    #[test]
    fn done_sentinel() {
        let mut dones = Vec::new();
        SseParser::new().push(
            b"data: {\"a\":1}\n\ndata: [DONE]\n\ndata:[DONE] \n\ndata: [DONE]x\n\n",
            |e| dones.push(e.is_done()),
        );
        assert_eq!(dones, [false, true, true, false]);
    }

    #[test]
    fn utf8_split_across_chunks() {
        let text = "data: héllo → 世界 🦀\n\n".as_bytes();
        for split in 0..text.len() {
            let (a, b) = text.split_at(split);
            let mut got = Vec::new();
            let mut parser = SseParser::new();
            parser.push(a, |e| got.push(e.data_str().map(str::to_owned)));
            parser.push(b, |e| got.push(e.data_str().map(str::to_owned)));
            assert_eq!(
                got,
                [Some("héllo → 世界 🦀".to_owned())],
                "split at {split}"
            );
        }
        // Invalid UTF-8 passes through as bytes.
        let out = run(b"data: \xff\xfe\n\n");
        assert_eq!(out.events[0].data, b"\xff\xfe");
    }

    #[test]
    fn leading_bom_is_skipped_once_even_when_split() {
        let input = b"\xEF\xBB\xBFdata: a\n\n\xEF\xBB\xBFdata: b\n\n";
        let whole = run(input);
        assert_eq!(
            whole.events.len(),
            1,
            "the second BOM makes an unknown field name"
        );
        assert_eq!(whole.events[0].data, b"a");
        assert_eq!(whole.events[0].span, 3..11);
        let split = run_with(
            &mut SseParser::new(),
            &[&input[..1], &input[1..2], &input[2..]],
        );
        assert_eq!(split, whole);
        // A BOM prefix that turns out not to be one is part of the first line.
        let out = run(b"\xEF\xBBdata: a\n\ndata: b\n\n");
        assert_eq!(out.events.len(), 1);
        assert_eq!(out.events[0].data, b"b");
        assert_eq!(
            run_with(
                &mut SseParser::new(),
                &[b"\xEF", b"\xBB", b"data: a\n\ndata: b\n\n"]
            ),
            out
        );
    }

    #[test]
    fn finish_reports_clean_end_and_incomplete_event() {
        let mut parser = SseParser::new();
        parser.push(b"data: a\n\n", |_| {});
        let end = parser.finish();
        assert!(end.clean);
        assert!(end.incomplete.is_none());

        let mut parser = SseParser::new();
        parser.push(b"data: a\n\nevent: x\ndata: {\"par", |_| {});
        let end = parser.finish();
        assert!(!end.clean);
        let inc = end.incomplete.map(|e| e.to_owned_event());
        let inc = inc
            .as_ref()
            .map(|e| (e.event_type.as_slice(), e.data.as_slice(), e.span.clone()));
        assert_eq!(inc, Some((&b"x"[..], &b"{\"par"[..], 9..29)));
        // Asking again gives the same answer.
        assert!(!parser.finish().clean);

        // A data line with its line ending but no blank line: cut, not dispatched.
        let out = run(b"data: [DONE]\n");
        assert!(out.events.is_empty());
        assert!(!out.clean);
        assert!(out.incomplete.is_some_and(|e| e.data == b"[DONE]"));

        // A field line without data still makes the end unclean, but there is no event.
        let out = run(b"event: x\n");
        assert!(!out.clean);
        assert!(out.incomplete.is_none());

        // Empty stream and blank-line-only stream are clean.
        assert!(run(b"").clean);
        assert!(run(b"\n\n\r\n").clean);
        assert!(!run(b": partial comment").clean);
        assert!(!run(b"\xEF\xBB").clean);
    }

    #[test]
    fn reset_starts_a_new_stream() {
        let mut parser = SseParser::new();
        parser.push(b"id: 9\nretry: 5\ndata: a", |_| {});
        parser.reset();
        let out = run_with(&mut parser, &[b"data: b\n\n"]);
        assert_eq!(out.events[0].data, b"b");
        assert_eq!(out.events[0].last_event_id, b"");
        assert_eq!(out.events[0].span, 0..8);
        assert_eq!(out.retry, None);
    }

    #[test]
    fn oversized_events_are_dropped_and_counted() {
        // 20 bytes max; "data: 0123456789abcdef\n" is 23.
        let input = b"data: ok\n\ndata: 0123456789abcdef\ndata: more\n\ndata: ok2\n\n";
        let mut parser = SseParser::with_max_event_size(20);
        let out = run_with(&mut parser, &[input]);
        assert_eq!(
            out.events
                .iter()
                .map(|e| e.data.as_slice())
                .collect::<Vec<_>>(),
            [&b"ok"[..], b"ok2"]
        );
        assert_eq!(out.oversized, 1);
        // Byte by byte: the same, and the partial line never grows past the bound.
        let mut parser = SseParser::with_max_event_size(20);
        let mut events = Vec::new();
        for b in input.chunks(1) {
            parser.push(b, |e| events.push(e.to_owned_event()));
            assert!(parser.line.len() <= 20 && parser.data.len() <= 20);
        }
        assert_eq!(events, out.events);
        assert_eq!(parser.oversized_events(), 1);

        // A never-ending line is not buffered forever.
        let mut parser = SseParser::with_max_event_size(1024);
        for _ in 0..1000 {
            parser.push(&[b'x'; 100], |_| unreachable!());
        }
        assert!(parser.line.capacity() <= 2048);
        let end = parser.finish();
        assert!(!end.clean && end.incomplete.is_none());
    }

    #[test]
    fn spans_cover_the_event_lines() {
        let input = b": hi\ndata: a\n\nevent: e\r\ndata: b\r\n\r\n";
        let out = run(input);
        assert_eq!(out.events[0].span, 0..13);
        assert_eq!(&input[0..13], b": hi\ndata: a\n");
        let s = &out.events[1].span;
        assert_eq!(s, &(14..33));
        assert_eq!(&input[14..33], b"event: e\r\ndata: b\r\n");
        // Cutting the first event's span out leaves a stream that yields only the second.
        let cut = &input[13..];
        assert_eq!(triples(cut), vec![("e".into(), "b".into(), String::new())]);
    }

    #[test]
    fn openai_chat_stream() {
        let stream = concat!(
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
            ": OPENROUTER PROCESSING\n\n",
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
            "data: [DONE]\n\n",
        );
        let out = run(stream.as_bytes());
        assert_eq!(out.events.len(), 3);
        assert!(out.clean);
        assert_eq!(out.comments, 1);
        assert_eq!(out.events[2].data, b"[DONE]");
    }

    /// A deliberately naive implementation of the spec (whole input, owned strings), used as
    /// the reference for the streaming parser.
    fn reference(input: &[u8]) -> Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> {
        let input = input.strip_prefix(&BOM[..]).unwrap_or(input);
        let mut lines = Vec::new();
        let mut cur = Vec::new();
        let mut i = 0;
        while i < input.len() {
            match input[i] {
                b'\r' => {
                    lines.push(std::mem::take(&mut cur));
                    if input.get(i + 1) == Some(&b'\n') {
                        i += 1;
                    }
                }
                b'\n' => lines.push(std::mem::take(&mut cur)),
                b => cur.push(b),
            }
            i += 1;
        }
        let (mut data, mut event, mut id, mut out) = (Vec::new(), Vec::new(), Vec::new(), vec![]);
        let mut has_data = false;
        for line in lines {
            if line.is_empty() {
                if has_data {
                    data.pop();
                    let ty = if event.is_empty() {
                        b"message".to_vec()
                    } else {
                        event.clone()
                    };
                    out.push((ty, data.clone(), id.clone()));
                }
                data.clear();
                event.clear();
                has_data = false;
                continue;
            }
            if line[0] == b':' {
                continue;
            }
            let (name, mut value) = match line.iter().position(|&b| b == b':') {
                Some(c) => (&line[..c], &line[c + 1..]),
                None => (&line[..], &[][..]),
            };
            if value.first() == Some(&b' ') {
                value = &value[1..];
            }
            match name {
                b"data" => {
                    data.extend_from_slice(value);
                    data.push(b'\n');
                    has_data = true;
                }
                b"event" => event = value.to_vec(),
                b"id" if !value.contains(&0) => id = value.to_vec(),
                _ => {}
            }
        }
        out
    }

    /// Streams built from SSE-ish pieces: every kind of line, every line ending, UTF-8 and
    /// stray control bytes, so that random splits land on the interesting places.
    fn sse_stream() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"data: ".to_vec()),
            Just(b"data:".to_vec()),
            Just(b"data".to_vec()),
            Just(b"event: ".to_vec()),
            Just(b"id: ".to_vec()),
            Just(b"retry: ".to_vec()),
            Just(b": ".to_vec()),
            Just(b":".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\n\n".to_vec()),
            Just(b"\r\n\r\n".to_vec()),
            Just(b"[DONE]".to_vec()),
            Just(b"{\"choices\":[{\"delta\":{\"content\":\"h\xc3\xa9\"}}]}".to_vec()),
            Just("世界🦀".as_bytes().to_vec()),
            Just(b"\xEF\xBB\xBF".to_vec()),
            Just(b"\0".to_vec()),
            Just(b"123".to_vec()),
            Just(b" ".to_vec()),
            "[a-z]{0,8}".prop_map(String::into_bytes),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
    }

    /// Split points: sorted offsets inside `len`.
    fn split(input: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        cuts.sort_unstable();
        let mut out = Vec::new();
        let mut last = 0;
        for c in cuts {
            out.push(input[last..c].to_vec());
            last = c;
        }
        out.push(input[last..].to_vec());
        out
    }

    fn outcome_of_chunks(max: usize, chunks: &[Vec<u8>]) -> Outcome {
        let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        run_with(&mut SseParser::with_max_event_size(max), &refs)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_split_gives_the_same_events(
            input in sse_stream(),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let whole = outcome_of_chunks(DEFAULT_MAX_EVENT_SIZE, std::slice::from_ref(&input));
            prop_assert_eq!(&outcome_of_chunks(DEFAULT_MAX_EVENT_SIZE, &split(&input, &cuts)), &whole);
            let bytes: Vec<Vec<u8>> = input.chunks(1).map(<[u8]>::to_vec).collect();
            prop_assert_eq!(&outcome_of_chunks(DEFAULT_MAX_EVENT_SIZE, &bytes), &whole);
        }

        #[test]
        fn matches_the_reference_implementation(input in sse_stream()) {
            let got: Vec<_> = run(&input)
                .events
                .into_iter()
                .map(|e| (e.event_type, e.data, e.last_event_id))
                .collect();
            prop_assert_eq!(got, reference(&input));
        }

        #[test]
        fn cutting_an_event_span_removes_just_that_event(input in sse_stream(), pick in any::<usize>()) {
            let events = run(&input).events;
            let mut last_end = 0;
            for e in &events {
                prop_assert!(last_end <= e.span.start && e.span.start <= e.span.end);
                prop_assert!(e.span.end <= input.len() as u64);
                last_end = e.span.end;
            }
            if !events.is_empty() {
                let k = pick % events.len();
                let span = &events[k].span;
                let mut cut = input[..span.start as usize].to_vec();
                cut.extend_from_slice(&input[span.end as usize..]);
                let typed = |evs: Vec<OwnedSseEvent>| -> Vec<(Vec<u8>, Vec<u8>)> {
                    evs.into_iter().map(|e| (e.event_type, e.data)).collect()
                };
                let mut expected = events.clone();
                expected.remove(k);
                prop_assert_eq!(typed(run(&cut).events), typed(expected));
            }
        }

        #[test]
        fn small_bounds_drop_the_same_events_however_split(
            input in sse_stream(),
            max in 0usize..64,
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let whole = outcome_of_chunks(max, std::slice::from_ref(&input));
            prop_assert_eq!(&outcome_of_chunks(max, &split(&input, &cuts)), &whole);
            for e in &whole.events {
                // The raw event (each line plus one byte) fits the bound.
                prop_assert!(e.data.len() <= max);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_split_alike(
            input in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), Just(b':'), Just(b' '), Just(b'd'), any::<u8>()],
                0..200,
            ),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let whole = outcome_of_chunks(DEFAULT_MAX_EVENT_SIZE, std::slice::from_ref(&input));
            prop_assert_eq!(&outcome_of_chunks(DEFAULT_MAX_EVENT_SIZE, &split(&input, &cuts)), &whole);
        }
    }
}
