//! The run second by second: each driver thread keeps one latency
//! histogram for the interval under way and, when it ends, keeps the
//! interval's counts and the histogram's non-empty buckets; the report
//! merges the threads' intervals into one series and the whole run's
//! histogram.
//!
//! The hot path pays one histogram record per reply (as it always did:
//! the whole run's histogram is the sum of the intervals, not a second
//! record) and one clock comparison per batch of replies.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::counts::{Counts, Errors, Latency, per_sec};
use super::hist;

/// The length of one interval of the series.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// One interval as one thread saw it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Slice {
    /// What was counted in the interval.
    pub counts: Counts,
    /// The latency histogram's non-empty buckets: (highest value in the
    /// bucket, count). A full histogram per second would cost a quarter
    /// of a megabyte each; this costs what was recorded.
    pub latency: Vec<(u64, u64)>,
}

/// What one driver thread records, interval by interval.
pub struct Recorder {
    /// When the interval under way ends.
    next: Instant,
    /// Replies of the interval under way, in nanoseconds.
    current: Histogram<u64>,
    /// The thread's counts when the interval under way began.
    counted: Counts,
    slices: Vec<Slice>,
}

impl Recorder {
    /// A recorder whose first interval starts at `start`, the run's start.
    pub fn new(start: Instant) -> Recorder {
        Recorder {
            next: start + INTERVAL,
            current: hist::new_latency(),
            counted: Counts::default(),
            slices: Vec::new(),
        }
    }

    /// Records one reply's latency in the interval under way.
    #[inline]
    pub fn record(&mut self, nanos: u64) {
        self.current.saturating_record(nanos.max(1));
    }

    /// Closes every interval that ended by `now`; `counts` are the
    /// thread's counts so far, all of which happened before `now`.
    #[inline]
    pub fn advance(&mut self, now: Instant, counts: &Counts) {
        if now >= self.next {
            self.rotate(now, counts);
        }
    }

    #[cold]
    fn rotate(&mut self, now: Instant, counts: &Counts) {
        self.close(counts);
        self.next += INTERVAL;
        // Intervals in which the thread never looked (the poller waits
        // at most a tick, so only a stalled machine skips one) are empty.
        while now >= self.next {
            self.slices.push(Slice::default());
            self.next += INTERVAL;
        }
    }

    fn close(&mut self, counts: &Counts) {
        let latency = self
            .current
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        self.current.reset();
        self.slices.push(Slice {
            counts: counts.since(&self.counted),
            latency,
        });
        self.counted = *counts;
    }

    /// Ends the run: the last interval, cut short, closes with `counts`.
    pub fn finish(mut self, counts: &Counts) -> Vec<Slice> {
        self.close(counts);
        self.slices
    }
}

/// One interval of the run, all threads together.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Second {
    /// When the interval began, in seconds from the start of the run.
    pub start_secs: f64,
    /// Its length: one second, except for the last, cut short.
    pub secs: f64,
    /// Replies that matched their request.
    pub replies: u64,
    /// `replies / secs`.
    pub replies_per_sec: f64,
    /// Errors by kind.
    pub errors: Errors,
    /// Latency of the interval's replies, in microseconds (zeros when
    /// there were none).
    pub latency_us: Latency,
}

/// The shortest last interval kept apart: a shorter remainder (the last
/// replies of a timed run coming in) joins the interval before it, whose
/// rate it would otherwise show as a plunge.
const SHORTEST_LAST: Duration = Duration::from_millis(100);

/// Merges the threads' intervals into one series and the whole run's
/// histogram (nanoseconds). `elapsed` is the run's length, which cuts the
/// last interval short; a remainder under 0.1 s joins the one before.
pub fn merge(threads: &[Vec<Slice>], elapsed: Duration) -> (Vec<Second>, Histogram<u64>) {
    let mut intervals = threads.iter().map(Vec::len).max().unwrap_or(0);
    let whole_intervals = (elapsed.as_secs_f64() / INTERVAL.as_secs_f64()).floor() as usize;
    let remainder = elapsed.saturating_sub(INTERVAL * whole_intervals as u32);
    let fold = intervals > 1 && intervals == whole_intervals + 1 && remainder < SHORTEST_LAST;
    if fold {
        intervals -= 1;
    }
    let mut whole = hist::new_latency();
    let mut second = hist::new_latency();
    let mut series = Vec::with_capacity(intervals);
    let total = elapsed.as_secs_f64();
    for k in 0..intervals {
        second.reset();
        let mut counts = Counts::default();
        let last = fold && k + 1 == intervals;
        let slices = threads.iter().flat_map(|slices| {
            let upto = if last {
                slices.len()
            } else {
                (k + 1).min(slices.len())
            };
            slices.get(k..upto).unwrap_or_default()
        });
        for slice in slices {
            counts.add(&slice.counts);
            for &(value, count) in &slice.latency {
                // Values come from a histogram of the same bounds.
                second.saturating_record_n(value, count);
            }
        }
        // Histograms of the same bounds always add.
        let _ = whole.add(&second);
        let start_secs = k as f64 * INTERVAL.as_secs_f64();
        let secs = if last {
            total - start_secs
        } else {
            (total - start_secs).clamp(0.0, INTERVAL.as_secs_f64())
        };
        series.push(Second {
            start_secs,
            secs,
            replies: counts.replies,
            replies_per_sec: per_sec(counts.replies, secs),
            errors: Errors::of(&counts),
            latency_us: Latency::of(&second),
        });
    }
    (series, whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replies(n: u64) -> Counts {
        Counts {
            replies: n,
            ..Counts::default()
        }
    }

    /// Replies land in the interval of the clock reading they came with;
    /// counts are split at the interval's end; a silent interval is kept,
    /// empty; the last is cut short.
    #[test]
    fn a_thread_records_interval_by_interval() {
        let start = Instant::now();
        let mut r = Recorder::new(start);
        let mut counts = Counts::default();
        r.advance(start + Duration::from_millis(10), &counts);
        r.record(1_000);
        r.record(3_000);
        counts.replies += 2;
        // Past the end of the first second and the second: both close.
        r.advance(start + Duration::from_millis(2_500), &counts);
        r.record(5_000);
        counts.replies += 1;
        counts.timeout += 1;
        let slices = r.finish(&counts);
        assert_eq!(slices.len(), 3);
        assert_eq!(slices[0].counts, replies(2));
        assert_eq!(slices[0].latency, [(1000, 1), (3001, 1)]);
        assert_eq!(slices[1], Slice::default());
        assert_eq!(
            slices[2].counts,
            Counts {
                timeout: 1,
                ..replies(1)
            }
        );
        assert_eq!(slices[2].latency, [(5003, 1)]);
    }

    /// Threads' intervals add up second by second, the whole run's
    /// histogram is their sum, and each second's rate uses its length.
    #[test]
    fn threads_merge_second_by_second() {
        let one = vec![
            Slice {
                counts: replies(2),
                latency: vec![(1_000, 1), (2_000, 1)],
            },
            Slice {
                counts: Counts {
                    refused: 3,
                    ..replies(1)
                },
                latency: vec![(9_000, 1)],
            },
        ];
        let two = vec![Slice {
            counts: replies(2),
            latency: vec![(3_000, 2)],
        }];
        let (series, whole) = merge(&[one, two], Duration::from_millis(1_500));
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].replies, 4);
        assert_eq!(series[0].replies_per_sec, 4.0);
        assert_eq!(series[0].latency_us.p50, 2.0);
        assert_eq!(series[0].latency_us.max, 3.001);
        assert_eq!(series[0].errors.total, 0);
        assert_eq!(series[1].start_secs, 1.0);
        assert_eq!(series[1].secs, 0.5);
        assert_eq!(series[1].replies_per_sec, 2.0);
        assert_eq!(series[1].errors.refused, 3);
        assert_eq!(series[1].errors.total, 3);
        assert_eq!(series[1].latency_us.max, 9.007);
        assert_eq!(whole.len(), 5);
        assert_eq!(whole.max(), 9_007);
    }

    /// A timed run's last few milliseconds join the second before them.
    #[test]
    fn a_short_remainder_joins_the_last_second() {
        let slice = |n| Slice {
            counts: replies(n),
            latency: vec![(1_000, n)],
        };
        let one = vec![slice(10), slice(10), slice(1)];
        let two = vec![slice(10), slice(10)];
        let (series, whole) = merge(&[one, two], Duration::from_millis(2_050));
        assert_eq!(series.len(), 2);
        assert_eq!(series[1].replies, 21);
        assert!((series[1].secs - 1.05).abs() < 1e-9);
        assert!((series[1].replies_per_sec - 20.0).abs() < 1e-9);
        assert_eq!(whole.len(), 41);
        let (series, _) = merge(
            &[vec![slice(1), slice(1), slice(1)]],
            Duration::from_millis(2_500),
        );
        assert_eq!(series.len(), 3);
        assert_eq!(series[2].secs, 0.5);
    }

    /// Re-recording each bucket's highest value gives back the same
    /// histogram, so the whole run's percentiles are what a single
    /// histogram would have given.
    #[test]
    fn the_compact_form_loses_nothing() {
        let start = Instant::now();
        let mut r = Recorder::new(start);
        let mut direct = hist::new_latency();
        for nanos in (1..20_000u64).map(|i| i * i) {
            r.record(nanos);
            direct.record(nanos).expect("in range");
        }
        let slices = r.finish(&replies(19_999));
        let (_, whole) = merge(&[slices], Duration::from_millis(300));
        assert_eq!(whole, direct);
    }
}
