//! The stats' unit tests: the latency buckets' bounds, service percentiles,
//! the cumulative buckets and the open-connections gauge.

use super::histogram::{bucket, upper_bound};
use super::*;

#[test]
fn buckets_bound_their_values_within_an_eighth() {
    for v in [
        0u64,
        1,
        7,
        8,
        9,
        15,
        16,
        100,
        1_000,
        123_456,
        10_000_000_000,
    ] {
        let upper = upper_bound(bucket(v));
        assert!(upper >= v, "{v} above its bucket's bound {upper}");
        assert!(upper - v <= v / 8 + 1, "{v} placed too coarsely: {upper}");
    }
}

#[test]
fn service_percentiles_and_reset() {
    let times = ServiceTimes::default();
    times.record(Duration::from_micros(10), 990);
    times.record(Duration::from_millis(5), 10);
    let (mean, p99) = times.take();
    assert!(
        p99 >= Duration::from_micros(10) && p99 < Duration::from_micros(12),
        "{p99:?}"
    );
    assert_eq!(
        mean,
        Duration::from_nanos((990 * 10_000 + 10 * 5_000_000) / 1000)
    );
    assert_eq!(times.take(), (Duration::ZERO, Duration::ZERO));
}

#[test]
fn cumulative_buckets_place_times_and_sum_them() {
    let b = Buckets::default();
    b.record(Duration::from_micros(7), 2);
    b.record(Duration::from_millis(3), 1);
    b.record(Duration::from_secs(5), 1);
    let s = b.snapshot();
    assert_eq!(s.count, 4);
    assert!((s.sum - (14e-6 + 3e-3 + 5.0)).abs() < 1e-9);
    assert_eq!(s.buckets[0], (10e-6, 2));
    assert_eq!(s.buckets.iter().find(|(b, _)| *b == 5e-3), Some(&(5e-3, 1)));
    assert_eq!(s.buckets.last(), Some(&(f64::INFINITY, 1)));
    assert_eq!(s.buckets.iter().map(|(_, n)| n).sum::<u64>(), 4);
}

#[test]
fn the_open_gauge_follows_a_connection() {
    let stats = Arc::new(Stats::default());
    let open = stats.connection();
    assert_eq!((stats.open(), stats.summary().connections), (1, 1));
    drop(open);
    assert_eq!((stats.open(), stats.summary().connections), (0, 1));
}

#[test]
fn queue_delays_reach_the_stats_line_and_the_metrics_buckets() {
    let stats = Stats::default();
    stats.queue_delay(Duration::from_nanos(800));
    stats.queue_delay(Duration::from_secs(3));
    let t = stats.totals();
    assert_eq!(t.queue_delay.count, 2);
    assert_eq!(t.queue_delay.buckets[0], (1e-6, 1));
    assert_eq!(t.queue_delay.buckets.last(), Some(&(f64::INFINITY, 0)));
    assert_eq!(
        t.queue_delay.buckets.iter().find(|(b, _)| *b == 5.0),
        Some(&(5.0, 1))
    );
    // The service times are apart.
    assert_eq!(t.service.count, 0);
    let i = stats.interval();
    assert_eq!(
        i.queue_mean,
        Duration::from_nanos((800 + 3_000_000_000) / 2)
    );
    assert!(i.queue_p99 >= Duration::from_secs(3), "{:?}", i.queue_p99);
    assert_eq!(stats.interval().queue_mean, Duration::ZERO);
}

/// A cumulative histogram's mean, and the bound of the bucket that holds
/// its 99th percentile (none past the last finite bound).
#[test]
fn a_snapshot_gives_its_mean_and_p99_bucket() {
    let snapshot = HistogramSnapshot {
        buckets: vec![(1e-5, 98), (1e-4, 1), (1e-3, 0), (f64::INFINITY, 1)],
        sum: 0.5,
        count: 100,
    };
    assert_eq!(snapshot.mean(), Duration::from_millis(5));
    assert_eq!(snapshot.p99_bound(), Some(Duration::from_micros(100)));
    let slow = HistogramSnapshot {
        buckets: vec![(1e-5, 1), (f64::INFINITY, 99)],
        sum: 99.0,
        count: 100,
    };
    assert_eq!(slow.p99_bound(), None);
    let empty = HistogramSnapshot {
        buckets: vec![(1e-5, 0), (f64::INFINITY, 0)],
        sum: 0.0,
        count: 0,
    };
    assert_eq!(empty.mean(), Duration::ZERO);
    assert_eq!(empty.p99_bound(), Some(Duration::ZERO));
}
