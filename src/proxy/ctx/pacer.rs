//! Output pacing state (set by the limits phase, applied by `stream.rs` and the pre-read
//! session).

use std::time::Instant;

/// Output pacing (openai-forward's `TOKEN_RATE_LIMIT`): each chunk is released no sooner than
/// the tokens before it allow at `rate` tokens a second. The delay goes back to Pingora, which
/// waits before writing the chunk: no thread is held.
pub(crate) struct Pacer {
    per_token: std::time::Duration,
    /// When the next chunk may go.
    next: Option<Instant>,
}

impl Pacer {
    pub(crate) fn new(tokens_per_second: f64) -> Self {
        Pacer {
            per_token: std::time::Duration::from_secs_f64(1.0 / tokens_per_second.max(1e-3)),
            next: None,
        }
    }

    /// The wait before a chunk carrying `tokens` tokens may be written.
    pub(crate) fn delay(&mut self, tokens: u64) -> Option<std::time::Duration> {
        let now = Instant::now();
        let release = self.next.map_or(now, |n| n.max(now));
        self.next = Some(
            release
                + self
                    .per_token
                    .saturating_mul(tokens.min(u32::MAX as u64) as u32),
        );
        (release > now).then(|| release - now)
    }
}
