//! The console's live board: what the dashboard shows that Prometheus counters do not hold in a
//! readable form — the last minute second by second, latency and time-to-first-token percentiles
//! of recent requests, usage per route/model/tenant/key id for this hour and today, the limits
//! closest to their ceiling, and a live tail of finished requests for the console's subscribers.
//!
//! It exists only when the console is on (`admin.ui`), so a gateway without it pays nothing. With
//! it, a request costs a few relaxed atomics, one short uncontended lock for the usage table, and
//! a JSON line only while a console is watching the tail.

use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

/// Seconds of per-second history (the sparklines).
const HISTORY: usize = 60;
/// Recent requests whose latencies make the percentiles.
const SAMPLES: usize = 1024;
/// Distinct names kept per usage dimension; later ones are counted as `other`.
const NAMES_PER_DIMENSION: usize = 256;
/// Finished requests a slow console may fall behind by before it skips ahead.
const TAIL_BACKLOG: usize = 256;

/// One finished request, as the board takes it from the `logging` phase.
pub(crate) struct Finished<'a> {
    pub request_id: &'a str,
    pub path: &'a str,
    pub route: Option<&'a str>,
    pub model: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub key_id: Option<&'a str>,
    pub status: u16,
    pub latency: Duration,
    pub ttft: Option<Duration>,
    /// Input and output tokens, and whether they are an estimate.
    pub tokens: Option<(u64, u64, bool)>,
    pub outcome: &'a str,
    /// The tightest request-rate window this request met: (limit, remaining).
    pub rate: Option<(u64, u64)>,
    /// What the chat log would record of the exchange, when the console may show it.
    pub exchange: Option<&'a serde_json::value::RawValue>,
}

#[derive(Default)]
struct Second {
    /// Which unix second the counters belong to; a slot from an older second is reset first.
    epoch: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    tokens: AtomicU64,
}

/// The latencies of the last `SAMPLES` requests, in microseconds (0: empty slot).
struct Samples {
    next: AtomicUsize,
    slots: Box<[AtomicU32]>,
}

impl Samples {
    fn new() -> Self {
        Samples {
            next: AtomicUsize::new(0),
            slots: (0..SAMPLES).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    fn add(&self, d: Duration) {
        let i = self.next.fetch_add(1, Relaxed) % SAMPLES;
        let micros = u32::try_from(d.as_micros()).unwrap_or(u32::MAX).max(1);
        self.slots[i].store(micros, Relaxed);
    }

    fn percentiles(&self) -> Option<Percentiles> {
        let mut v: Vec<u32> = self
            .slots
            .iter()
            .map(|s| s.load(Relaxed))
            .filter(|&m| m > 0)
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let at = |q: f64| {
            let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
            f64::from(v[i]) / 1000.0
        };
        Some(Percentiles {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
        })
    }
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq)]
pub(crate) struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

#[derive(Serialize, Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct Count {
    pub requests: u64,
    pub tokens: u64,
}

#[derive(Clone, Copy, Default)]
struct Usage {
    hour_id: u64,
    day_id: u64,
    hour: Count,
    today: Count,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Dimension {
    Route,
    Model,
    Tenant,
    Key,
}

#[derive(Serialize, Debug)]
pub(crate) struct UsageRow {
    pub name: String,
    pub hour: Count,
    pub today: Count,
}

#[derive(Serialize, Default, Debug)]
pub(crate) struct UsageTable {
    pub route: Vec<UsageRow>,
    pub model: Vec<UsageRow>,
    pub tenant: Vec<UsageRow>,
    pub key: Vec<UsageRow>,
}

#[derive(Serialize, Debug)]
pub(crate) struct LimitRow {
    pub name: String,
    pub used: u64,
    pub limit: u64,
}

#[derive(Serialize, Debug)]
pub(crate) struct Rates {
    pub requests: Vec<u64>,
    pub errors: Vec<u64>,
    pub tokens: Vec<u64>,
}

#[derive(Serialize, Default, Debug)]
pub(crate) struct Totals {
    pub requests: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// What `/api/overview` reports of the board.
#[derive(Serialize, Debug)]
pub(crate) struct Snapshot {
    pub uptime_s: f64,
    pub rates: Rates,
    pub totals: Totals,
    pub latency_ms: Option<Percentiles>,
    pub ttft_ms: Option<Percentiles>,
    pub usage: UsageTable,
    pub limits: Vec<LimitRow>,
}

pub(crate) struct Board {
    started: Instant,
    seconds: [Second; HISTORY],
    latency: Samples,
    ttft: Samples,
    requests: AtomicU64,
    errors: AtomicU64,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    usage: Mutex<HashMap<(Dimension, Box<str>), Usage>>,
    /// The tightest window per route seen in the last minute: (limit, remaining, when).
    limits: Mutex<HashMap<Box<str>, (u64, u64, u64)>>,
    tail: broadcast::Sender<std::sync::Arc<str>>,
}

impl Default for Board {
    fn default() -> Self {
        Board::new()
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Board {
    pub(crate) fn new() -> Self {
        Board {
            started: Instant::now(),
            seconds: std::array::from_fn(|_| Second::default()),
            latency: Samples::new(),
            ttft: Samples::new(),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            input_tokens: AtomicU64::new(0),
            output_tokens: AtomicU64::new(0),
            usage: Mutex::new(HashMap::new()),
            limits: Mutex::new(HashMap::new()),
            tail: broadcast::channel(TAIL_BACKLOG).0,
        }
    }

    /// Whether a console is watching the live tail right now.
    pub(crate) fn watched(&self) -> bool {
        self.tail.receiver_count() > 0
    }

    /// A console's live tail of finished requests (JSON, one per event).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<std::sync::Arc<str>> {
        self.tail.subscribe()
    }

    pub(crate) fn record(&self, f: &Finished<'_>) {
        self.record_at(f, unix_seconds());
    }

    fn record_at(&self, f: &Finished<'_>, now: u64) {
        let error = f.status >= 500 || f.status == 0;
        let (input, output) = f.tokens.map_or((0, 0), |(i, o, _)| (i, o));
        let second = &self.seconds[(now % HISTORY as u64) as usize];
        if second.epoch.swap(now, Relaxed) != now {
            // A slot from a minute ago: its counts belong to that second, not this one. Two
            // requests racing here may lose a count of each other: a dashboard can afford it.
            second.requests.store(0, Relaxed);
            second.errors.store(0, Relaxed);
            second.tokens.store(0, Relaxed);
        }
        second.requests.fetch_add(1, Relaxed);
        second.errors.fetch_add(u64::from(error), Relaxed);
        second.tokens.fetch_add(input + output, Relaxed);
        self.requests.fetch_add(1, Relaxed);
        self.errors.fetch_add(u64::from(error), Relaxed);
        self.input_tokens.fetch_add(input, Relaxed);
        self.output_tokens.fetch_add(output, Relaxed);
        self.latency.add(f.latency);
        if let Some(ttft) = f.ttft {
            self.ttft.add(ttft);
        }
        self.count_usage(f, now, input + output);
        if let (Some(route), Some((limit, remaining))) = (f.route, f.rate) {
            if let Ok(mut limits) = self.limits.lock() {
                let entry = limits
                    .entry(route.into())
                    .or_insert((limit, remaining, now));
                // Keep the tightest reading of the last minute.
                if remaining <= entry.1 || now.saturating_sub(entry.2) >= HISTORY as u64 {
                    *entry = (limit, remaining, now);
                }
            }
        }
        if self.watched() {
            if let Ok(line) = serde_json::to_string(&TailEvent::new(f, now)) {
                let _ = self.tail.send(line.into());
            }
        }
    }

    fn count_usage(&self, f: &Finished<'_>, now: u64, tokens: u64) {
        let (hour_id, day_id) = (now / 3600, now / 86_400);
        let Ok(mut usage) = self.usage.lock() else {
            return;
        };
        for (dimension, name) in [
            (Dimension::Route, f.route),
            (Dimension::Model, f.model),
            (Dimension::Tenant, f.tenant),
            (Dimension::Key, f.key_id),
        ] {
            let Some(name) = name else { continue };
            let known = usage.contains_key(&(dimension, name.into()));
            let full = !known
                && usage.keys().filter(|(d, _)| *d == dimension).count() >= NAMES_PER_DIMENSION;
            let name: Box<str> = if full { "other".into() } else { name.into() };
            let u = usage.entry((dimension, name)).or_default();
            if u.day_id != day_id {
                u.today = Count::default();
                u.day_id = day_id;
            }
            if u.hour_id != hour_id {
                u.hour = Count::default();
                u.hour_id = hour_id;
            }
            u.hour.requests += 1;
            u.hour.tokens += tokens;
            u.today.requests += 1;
            u.today.tokens += tokens;
        }
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        self.snapshot_at(unix_seconds())
    }

    fn snapshot_at(&self, now: u64) -> Snapshot {
        let mut rates = Rates {
            requests: Vec::with_capacity(HISTORY),
            errors: Vec::with_capacity(HISTORY),
            tokens: Vec::with_capacity(HISTORY),
        };
        // Oldest first, ending with the current (incomplete) second.
        for s in (now + 1 - HISTORY as u64)..=now {
            let slot = &self.seconds[(s % HISTORY as u64) as usize];
            let live = slot.epoch.load(Relaxed) == s;
            let read = |c: &AtomicU64| if live { c.load(Relaxed) } else { 0 };
            rates.requests.push(read(&slot.requests));
            rates.errors.push(read(&slot.errors));
            rates.tokens.push(read(&slot.tokens));
        }
        let (hour_id, day_id) = (now / 3600, now / 86_400);
        let mut usage = UsageTable::default();
        if let Ok(table) = self.usage.lock() {
            for ((dimension, name), u) in table.iter() {
                let row = UsageRow {
                    name: name.to_string(),
                    hour: if u.hour_id == hour_id {
                        u.hour
                    } else {
                        Count::default()
                    },
                    today: if u.day_id == day_id {
                        u.today
                    } else {
                        Count::default()
                    },
                };
                if row.today.requests == 0 {
                    continue;
                }
                match dimension {
                    Dimension::Route => usage.route.push(row),
                    Dimension::Model => usage.model.push(row),
                    Dimension::Tenant => usage.tenant.push(row),
                    Dimension::Key => usage.key.push(row),
                }
            }
        }
        for rows in [
            &mut usage.route,
            &mut usage.model,
            &mut usage.tenant,
            &mut usage.key,
        ] {
            rows.sort_by(|a, b| {
                b.today
                    .tokens
                    .cmp(&a.today.tokens)
                    .then(a.name.cmp(&b.name))
            });
        }
        let mut limits: Vec<LimitRow> = self
            .limits
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|(_, (_, _, when))| now.saturating_sub(*when) < HISTORY as u64)
                    .map(|(name, &(limit, remaining, _))| LimitRow {
                        name: format!("requests on {name}"),
                        used: limit.saturating_sub(remaining),
                        limit,
                    })
                    .collect()
            })
            .unwrap_or_default();
        limits.sort_by(|a, b| {
            let share = |l: &LimitRow| l.used as f64 / l.limit.max(1) as f64;
            share(b).total_cmp(&share(a))
        });
        Snapshot {
            uptime_s: self.started.elapsed().as_secs_f64(),
            rates,
            totals: Totals {
                requests: self.requests.load(Relaxed),
                errors: self.errors.load(Relaxed),
                input_tokens: self.input_tokens.load(Relaxed),
                output_tokens: self.output_tokens.load(Relaxed),
            },
            latency_ms: self.latency.percentiles(),
            ttft_ms: self.ttft.percentiles(),
            usage,
            limits,
        }
    }
}

#[derive(Serialize)]
struct TailTokens {
    input: u64,
    output: u64,
    estimated: bool,
}

#[derive(Serialize)]
struct TailEvent<'a> {
    time: u64,
    request_id: &'a str,
    path: &'a str,
    route: Option<&'a str>,
    model: Option<&'a str>,
    key_id: Option<&'a str>,
    status: u16,
    ms: f64,
    ttft_ms: Option<f64>,
    tokens: Option<TailTokens>,
    outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    exchange: Option<&'a serde_json::value::RawValue>,
}

impl<'a> TailEvent<'a> {
    fn new(f: &'a Finished<'a>, now: u64) -> Self {
        TailEvent {
            time: now * 1000,
            request_id: f.request_id,
            path: f.path,
            route: f.route,
            model: f.model,
            key_id: f.key_id,
            status: f.status,
            ms: f.latency.as_secs_f64() * 1000.0,
            ttft_ms: f.ttft.map(|t| t.as_secs_f64() * 1000.0),
            tokens: f.tokens.map(|(input, output, estimated)| TailTokens {
                input,
                output,
                estimated,
            }),
            outcome: f.outcome,
            exchange: f.exchange,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(route: &'static str, status: u16, ms: u64) -> Finished<'static> {
        Finished {
            request_id: "r1",
            path: "/v1/chat/completions",
            route: Some(route),
            model: Some("gpt-4o"),
            tenant: Some("pro"),
            key_id: Some("k1"),
            status,
            latency: Duration::from_millis(ms),
            ttft: Some(Duration::from_millis(ms / 2)),
            tokens: Some((10, 5, false)),
            outcome: "ok",
            rate: Some((10, 3)),
            exchange: None,
        }
    }

    #[test]
    fn counts_seconds_totals_and_usage() {
        let board = Board::new();
        let now = 1_700_000_000;
        board.record_at(&finished("/a", 200, 10), now);
        board.record_at(&finished("/a", 502, 30), now);
        board.record_at(&finished("/b", 200, 20), now + 1);
        let s = board.snapshot_at(now + 1);
        assert_eq!(s.rates.requests[HISTORY - 2..], [2, 1]);
        assert_eq!(s.rates.errors[HISTORY - 2..], [1, 0]);
        assert_eq!(s.rates.tokens[HISTORY - 2..], [30, 15]);
        assert_eq!(s.totals.requests, 3);
        assert_eq!(s.totals.errors, 1);
        assert_eq!((s.totals.input_tokens, s.totals.output_tokens), (30, 15));
        let a = s.usage.route.iter().find(|r| r.name == "/a").unwrap();
        assert_eq!(
            a.hour,
            Count {
                requests: 2,
                tokens: 30
            }
        );
        assert_eq!(
            s.usage.model[0].today,
            Count {
                requests: 3,
                tokens: 45
            }
        );
        assert_eq!(s.usage.key[0].name, "k1");
        let p = s.latency_ms.unwrap();
        assert_eq!((p.p50, p.p99), (20.0, 30.0));
        assert_eq!(s.limits[0].used, 7);
    }

    #[test]
    fn a_slot_from_a_minute_ago_starts_again() {
        let board = Board::new();
        let now = 1_700_000_000;
        board.record_at(&finished("/a", 200, 1), now);
        board.record_at(&finished("/a", 200, 1), now + HISTORY as u64);
        let s = board.snapshot_at(now + HISTORY as u64);
        assert_eq!(s.rates.requests.iter().sum::<u64>(), 1);
    }

    #[test]
    fn hour_and_day_roll_over() {
        let board = Board::new();
        let day = 86_400 * 20_000;
        board.record_at(&finished("/a", 200, 1), day - 1);
        let s = board.snapshot_at(day + 10);
        assert!(s.usage.route.is_empty(), "yesterday's usage is not today's");
        board.record_at(&finished("/a", 200, 1), day + 10);
        let s = board.snapshot_at(day + 3600);
        assert_eq!(s.usage.route[0].hour.requests, 0);
        assert_eq!(s.usage.route[0].today.requests, 1);
    }

    #[test]
    fn names_past_the_cap_count_as_other() {
        let board = Board::new();
        let names: Vec<String> = (0..NAMES_PER_DIMENSION + 5)
            .map(|i| format!("m{i}"))
            .collect();
        for name in &names {
            let mut f = finished("/a", 200, 1);
            f.model = Some(name);
            board.record_at(&f, 1_700_000_000);
        }
        let s = board.snapshot_at(1_700_000_000);
        assert_eq!(s.usage.model.len(), NAMES_PER_DIMENSION + 1);
        let other = s.usage.model.iter().find(|r| r.name == "other").unwrap();
        assert_eq!(other.today.requests, 5);
    }

    #[test]
    fn the_tail_is_built_only_for_watchers() {
        let board = Board::new();
        board.record(&finished("/a", 200, 1));
        let mut rx = board.subscribe();
        board.record(&finished("/a", 200, 1));
        let line = rx.try_recv().unwrap();
        assert!(line.contains("\"route\":\"/a\""), "{line}");
        assert!(
            rx.try_recv().is_err(),
            "only what happened after subscribing"
        );
    }
}
