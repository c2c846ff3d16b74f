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
mod tests;
