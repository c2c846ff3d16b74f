//! What the gateway learns from one response as it passes (read and filled by `stream.rs`).

use crate::openai::StreamAccumulator;
use crate::sse::SseParser;

/// What the gateway learns from one response as it passes.
pub(crate) enum ResponseTap {
    Sse {
        parser: Box<SseParser>,
        acc: Box<StreamAccumulator>,
        /// Stream bytes before the current chunk.
        offset: u64,
        strip_usage: bool,
        /// The first JSON event's data, kept on routes that continue broken streams: the
        /// continuation's chunks carry its `id`, `model` and `created` (`continuation.rs`).
        first: Option<Box<[u8]>>,
        keep_first: bool,
    },
    Json {
        copy: Vec<u8>,
        overflow: bool,
    },
}
