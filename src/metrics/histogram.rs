//! A Prometheus histogram as a fixed array of atomic counters: one per bucket (not cumulative;
//! the exposition adds them up) plus the `+Inf` bucket, and the sum in integer units (µs for
//! durations, tokens for token counts). An observation is two relaxed `fetch_add`s: the bucket
//! and the sum; `_count` is the total of the buckets, computed at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bucket upper bounds in integer units, and how many units make one exposed unit (1e6 µs per
/// second; 1 for tokens).
pub(crate) struct Buckets {
    pub bounds: &'static [u64],
    pub per_unit: u64,
}

/// `gen_ai.server.request.duration` (OpenTelemetry's advisory buckets), in µs.
pub(crate) const REQUEST_DURATION: Buckets = Buckets {
    bounds: &[
        10_000, 20_000, 40_000, 80_000, 160_000, 320_000, 640_000, 1_280_000, 2_560_000, 5_120_000,
        10_240_000, 20_480_000, 40_960_000, 81_920_000,
    ],
    per_unit: 1_000_000,
};

/// `gen_ai.server.time_to_first_token`, in µs.
pub(crate) const TIME_TO_FIRST_TOKEN: Buckets = Buckets {
    bounds: &[
        1_000, 5_000, 10_000, 20_000, 40_000, 60_000, 80_000, 100_000, 250_000, 500_000, 750_000,
        1_000_000, 2_500_000, 5_000_000, 7_500_000, 10_000_000,
    ],
    per_unit: 1_000_000,
};

/// `gen_ai.server.time_per_output_token`, in µs.
pub(crate) const TIME_PER_OUTPUT_TOKEN: Buckets = Buckets {
    bounds: &[
        10_000, 25_000, 50_000, 75_000, 100_000, 150_000, 200_000, 300_000, 400_000, 500_000,
        750_000, 1_000_000, 2_500_000,
    ],
    per_unit: 1_000_000,
};

/// `gen_ai.client.token.usage`, in tokens.
pub(crate) const TOKEN_USAGE: Buckets = Buckets {
    bounds: &[
        1, 4, 16, 64, 256, 1_024, 4_096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304, 16_777_216,
        67_108_864,
    ],
    per_unit: 1,
};

/// The largest bucket set above, plus `+Inf`.
const SLOTS: usize = 17;

pub(crate) struct Histogram {
    counts: [AtomicU64; SLOTS],
    sum: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
        }
    }
}

/// A consistent-enough copy for rendering: cumulative bucket counts, sum and count.
pub(crate) struct Snapshot {
    /// `(le, cumulative count)` for each bound, in exposed units; `+Inf` is `count`.
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    /// Record `value` (in the buckets' integer units).
    pub(crate) fn observe(&self, buckets: &Buckets, value: u64) {
        let slot = buckets
            .bounds
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(buckets.bounds.len())
            .min(SLOTS - 1);
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub(crate) fn snapshot(&self, buckets: &Buckets) -> Snapshot {
        let mut running = 0;
        let unit = buckets.per_unit as f64;
        let mut out = Vec::with_capacity(buckets.bounds.len());
        for (i, bound) in buckets.bounds.iter().enumerate() {
            running += self.counts[i].load(Ordering::Relaxed);
            out.push((*bound as f64 / unit, running));
        }
        let count = running
            + self.counts[buckets.bounds.len()..]
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum::<u64>();
        Snapshot {
            buckets: out,
            sum: self.sum.load(Ordering::Relaxed) as f64 / unit,
            count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_fit_the_array() {
        for b in [
            &REQUEST_DURATION,
            &TIME_TO_FIRST_TOKEN,
            &TIME_PER_OUTPUT_TOKEN,
            &TOKEN_USAGE,
        ] {
            assert!(b.bounds.len() < SLOTS);
            assert!(b.bounds.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn observations_are_cumulative_in_snapshots() {
        let h = Histogram::default();
        h.observe(&TOKEN_USAGE, 1);
        h.observe(&TOKEN_USAGE, 5);
        h.observe(&TOKEN_USAGE, 100_000_000);
        let s = h.snapshot(&TOKEN_USAGE);
        assert_eq!(s.buckets[0], (1.0, 1));
        assert_eq!(s.buckets[1], (4.0, 1));
        assert_eq!(s.buckets[2], (16.0, 2));
        assert_eq!(s.buckets.last().map(|b| b.1), Some(2));
        assert_eq!((s.count, s.sum), (3, 100_000_006.0));
        let d = Histogram::default();
        d.observe(&REQUEST_DURATION, 1_500_000);
        let s = d.snapshot(&REQUEST_DURATION);
        assert_eq!(s.buckets[7], (1.28, 0));
        assert_eq!(s.buckets[8], (2.56, 1));
        assert_eq!(s.sum, 1.5);
    }
}
