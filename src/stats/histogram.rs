//! The histograms behind the service-time and queue-delay figures: a
//! cumulative one with fixed buckets for the metrics endpoint (`Buckets`),
//! and a log-linear one that the stats line takes and resets each interval
//! (`ServiceTimes`). Both are lock-free, two atomic adds a record.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Cumulative times: per-bucket counts (bucket upper bounds in
/// seconds, the last one infinite), their sum in seconds, and their count.
#[derive(Clone, Debug, Default)]
pub struct HistogramSnapshot {
    /// (upper bound in seconds, count in this bucket).
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the times, in seconds.
    pub sum: f64,
    /// How many times were recorded.
    pub count: u64,
}

impl HistogramSnapshot {
    /// The mean time, zero when nothing was recorded.
    pub fn mean(&self) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64(self.sum / self.count as f64).unwrap_or_default()
    }

    /// The upper bound of the bucket that holds the 99th percentile: zero
    /// when nothing was recorded, `None` when it is past the last finite
    /// bound.
    pub fn p99_bound(&self) -> Option<Duration> {
        if self.count == 0 {
            return Some(Duration::ZERO);
        }
        let want = self.count - self.count / 100;
        let mut seen = 0;
        for &(upper, n) in &self.buckets {
            seen += n;
            if seen >= want {
                return Duration::try_from_secs_f64(upper).ok();
            }
        }
        None
    }
}

/// Upper bounds of the metrics endpoint's service-time buckets, seconds.
const BOUNDS: [f64; 15] = [
    10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3,
    250e-3, 1.0,
];

/// Upper bounds of the queue-delay buckets, seconds. A connection a leader
/// serves itself waits a few microseconds; one behind a pool too small
/// for its load waits milliseconds to seconds, so the range is wider at
/// both ends than the service times'.
const QUEUE_BOUNDS: [f64; 19] = [
    1e-6, 5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3,
    50e-3, 100e-3, 250e-3, 1.0, 2.5, 5.0,
];

/// A lock-free cumulative histogram with fixed buckets.
#[derive(Debug)]
pub(crate) struct Buckets {
    /// Upper bounds, seconds; the infinite one is implied.
    bounds: &'static [f64],
    /// One count more than `bounds`: the last is above every bound.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

/// The service-time buckets.
impl Default for Buckets {
    fn default() -> Self {
        Buckets::new(&BOUNDS)
    }
}

impl Buckets {
    /// An empty histogram with these upper bounds, in seconds.
    fn new(bounds: &'static [f64]) -> Self {
        Buckets {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Counts `weight` times of `time`.
    pub(crate) fn record(&self, time: Duration, weight: u64) {
        // Two atomic adds a record, on every turn's path: the count is the
        // buckets' sum, taken when read.
        let secs = time.as_secs_f64();
        let i = self.bounds.partition_point(|b| *b < secs);
        self.counts[i].fetch_add(weight, Ordering::Relaxed);
        let nanos = u64::try_from(time.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos
            .fetch_add(nanos.saturating_mul(weight), Ordering::Relaxed);
    }

    /// The counts so far.
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(&self.counts)
            .map(|(bound, n)| (bound, n.load(Ordering::Relaxed)))
            .collect();
        HistogramSnapshot {
            count: buckets.iter().map(|&(_, n)| n).sum(),
            buckets,
            sum: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// Sub-buckets per power of two: service times are placed to within 1/8.
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = (64 * SUB) as usize;

/// Queue delays, from the moment a connection has work ready (an event
/// scheduled it, or its worker queued it again) to the moment a worker
/// starts its turn: per interval for the stats line, since the start for
/// the metrics endpoint.
#[derive(Debug)]
pub(super) struct QueueDelays {
    pub(super) interval: ServiceTimes,
    pub(super) total: Buckets,
}

impl Default for QueueDelays {
    fn default() -> Self {
        QueueDelays {
            interval: ServiceTimes::default(),
            total: Buckets::new(&QUEUE_BOUNDS),
        }
    }
}

/// A lock-free log-linear histogram of times in nanoseconds (service times,
/// queue delays), for the stats line's mean and 99th percentile.
#[derive(Debug)]
pub(super) struct ServiceTimes {
    buckets: Box<[AtomicU64]>,
    total_nanos: AtomicU64,
}

impl Default for ServiceTimes {
    fn default() -> Self {
        ServiceTimes {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            total_nanos: AtomicU64::new(0),
        }
    }
}

impl ServiceTimes {
    pub(super) fn record(&self, time: Duration, weight: u64) {
        // As for `Buckets`: the count is the buckets' sum.
        let nanos = u64::try_from(time.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket(nanos)].fetch_add(weight, Ordering::Relaxed);
        self.total_nanos
            .fetch_add(nanos.saturating_mul(weight), Ordering::Relaxed);
    }

    /// Mean and 99th percentile since the last call, then starts afresh.
    pub(super) fn take(&self) -> (Duration, Duration) {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.swap(0, Ordering::Relaxed))
            .collect();
        let total = self.total_nanos.swap(0, Ordering::Relaxed);
        let seen: u64 = counts.iter().sum();
        if seen == 0 {
            return (Duration::ZERO, Duration::ZERO);
        }
        let rank = seen.saturating_mul(99).div_ceil(100);
        let mut cumulative = 0;
        let p99 = counts
            .iter()
            .enumerate()
            .find_map(|(i, &n)| {
                cumulative += n;
                (cumulative >= rank).then(|| upper_bound(i))
            })
            .unwrap_or(u64::MAX);
        (
            Duration::from_nanos(total / seen),
            Duration::from_nanos(p99),
        )
    }
}

/// The bucket of a value: its power of two and the next `SUB_BITS` bits.
pub(super) fn bucket(nanos: u64) -> usize {
    if nanos < SUB {
        return nanos as usize;
    }
    let exp = 63 - nanos.leading_zeros();
    let sub = (nanos >> (exp - SUB_BITS)) & (SUB - 1);
    ((exp - SUB_BITS + 1) as u64 * SUB + sub) as usize
}

/// The largest value that falls in bucket `i`.
pub(super) fn upper_bound(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let exp = i / SUB + SUB_BITS as u64 - 1;
    let sub = i % SUB;
    ((SUB + sub + 1) << (exp - SUB_BITS as u64)).saturating_sub(1)
}
