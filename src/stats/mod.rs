//! Server-wide counters and gauges, shared by the acceptor and every worker:
//! the periodic stats line (`--stats-interval`), the metrics endpoint
//! (`--metrics`), and the one-line summary logged when the server stops.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use log::warn;

use crate::logfmt::{self, RateLimit};
use crate::tls::Failure;

/// Live counters. Workers add to them once per batch of lines, not once per
/// line, so that the hot path does not fight over shared cache lines.
#[derive(Default, Debug)]
pub struct Stats {
    connections: AtomicU64,
    lines: AtomicU64,
    rejected: AtomicU64,
    rejected_per_address: AtomicU64,
    open: AtomicU64,
    received: AtomicU64,
    sent: AtomicU64,
    idle_closes: [AtomicU64; 2],
    client_errors: [AtomicU64; ClientError::ALL.len()],
    /// Failed TLS handshakes, in the order of [`Failure::ALL`].
    tls_failures: [AtomicU64; Failure::ALL.len()],
    service: ServiceTimes,
    /// Service times since the start, for the metrics endpoint.
    service_total: Buckets,
    /// How long ready connections waited for a worker.
    queue_delay: QueueDelays,
    /// Warnings about clients: at most ten a second.
    pub client_warnings: RateLimit,
}

/// Why the idle rule closed a connection, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleClose {
    /// No complete message for the idle timeout.
    Read,
    /// Replies not read for the idle timeout.
    Write,
}

/// A client error that closed its connection, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// A message over `--max-line`.
    TooLong,
    /// A line that is not UTF-8.
    InvalidUtf8,
    /// The input ended inside a length-prefixed message.
    Truncated,
    /// A reset or another socket error.
    Io,
    /// A TLS handshake record as the first bytes on a plaintext port: a
    /// client that meant to speak TLS.
    TlsOnPlaintext,
}

impl ClientError {
    /// Every kind, in the order of the counters.
    pub const ALL: [ClientError; 5] = [
        ClientError::TooLong,
        ClientError::InvalidUtf8,
        ClientError::Truncated,
        ClientError::Io,
        ClientError::TlsOnPlaintext,
    ];

    /// The kind's name in metrics.
    pub fn name(self) -> &'static str {
        match self {
            ClientError::TooLong => "too_long",
            ClientError::InvalidUtf8 => "invalid_utf8",
            ClientError::Truncated => "truncated",
            ClientError::Io => "io",
            ClientError::TlsOnPlaintext => "tls_on_plaintext",
        }
    }
}

/// Counts one connection as open until dropped.
pub struct Open {
    stats: Arc<Stats>,
}

impl Stats {
    /// Counts one accepted connection, open until the guard drops.
    pub fn connection(self: &Arc<Self>) -> Open {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        Open {
            stats: self.clone(),
        }
    }

    /// Counts `n` messages answered, which waited `service` (when measured)
    /// from the read that brought them to the write that answered them.
    pub fn answered(&self, n: u64, service: Option<Duration>) {
        if n > 0 {
            self.lines.fetch_add(n, Ordering::Relaxed);
            if let Some(service) = service {
                self.service.record(service, n);
                self.service_total.record(service, n);
            }
        }
    }

    /// Counts one turn that a worker started `waited` after its
    /// connection had work ready.
    pub fn queue_delay(&self, waited: Duration) {
        self.queue_delay.interval.record(waited, 1);
        self.queue_delay.total.record(waited, 1);
    }

    /// Counts bytes read from clients.
    pub fn received(&self, bytes: u64) {
        if bytes > 0 {
            self.received.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Counts bytes clients accepted.
    pub fn sent(&self, bytes: u64) {
        if bytes > 0 {
            self.sent.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Counts a connection closed by the idle rule.
    pub fn idle_close(&self, why: IdleClose) {
        self.idle_closes[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a client error that closed its connection.
    pub fn client_error(&self, kind: ClientError) {
        self.client_errors[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one failed TLS handshake.
    pub fn tls_failure(&self, why: Failure) {
        self.tls_failures[why.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Logs a warning about a client through `log`, unless ten were logged
    /// in the last second already; those held back are counted and said in
    /// one line once the second is over.
    pub fn warn_about_client(&self, log: impl FnOnce()) {
        let now = Instant::now();
        self.flush_client_warnings_at(now);
        if self.client_warnings.allow(now) {
            log();
        }
    }

    /// Says how many client warnings were held back, once their second is
    /// over (the watchdog calls this on every tick).
    pub fn flush_client_warnings(&self) {
        self.flush_client_warnings_at(Instant::now());
    }

    fn flush_client_warnings_at(&self, now: Instant) {
        if let Some(n) = self.client_warnings.take_suppressed(now) {
            warn!(
                "{} about clients held back in the last second",
                logfmt::count(n, "warning")
            );
        }
    }

    /// Everything counted since the start, for the metrics endpoint.
    pub fn totals(&self) -> Totals {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Totals {
            summary: self.summary(),
            open: self.open(),
            received: load(&self.received),
            sent: load(&self.sent),
            idle_closes: [load(&self.idle_closes[0]), load(&self.idle_closes[1])],
            client_errors: ClientError::ALL.map(|k| load(&self.client_errors[k as usize])),
            tls_failures: Failure::ALL.map(|f| load(&self.tls_failures[f.index()])),
            service: self.service_total.snapshot(),
            queue_delay: self.queue_delay.total.snapshot(),
        }
    }

    /// Counts one connection turned away with `ERR server busy`.
    pub fn rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one connection turned away because its address has
    /// `--max-per-ip` open.
    pub fn rejected_per_address(&self) {
        self.rejected_per_address.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as they are now.
    pub fn summary(&self) -> Summary {
        Summary {
            connections: self.connections.load(Ordering::Relaxed),
            lines: self.lines.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            rejected_per_ip: self.rejected_per_address.load(Ordering::Relaxed),
        }
    }

    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// A snapshot for the periodic stats line. Service times and queue
    /// delays are taken and reset, so each line covers only its own
    /// interval.
    pub fn interval(&self) -> Interval {
        let (service_mean, service_p99) = self.service.take();
        let (queue_mean, queue_p99) = self.queue_delay.interval.take();
        Interval {
            summary: self.summary(),
            open: self.open(),
            service_mean,
            service_p99,
            queue_mean,
            queue_p99,
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Connections accepted on one listener, for the metrics, which name the
/// listener a connection came in on.
#[derive(Debug)]
pub(crate) struct ListenerCount {
    /// The listener's name in logs and metrics.
    pub(crate) name: Arc<str>,
    accepted: AtomicU64,
}

impl ListenerCount {
    pub(crate) fn new(name: Arc<str>) -> Arc<ListenerCount> {
        Arc::new(ListenerCount {
            name,
            accepted: AtomicU64::new(0),
        })
    }

    /// One more connection accepted and served.
    pub(crate) fn add(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections accepted so far.
    pub(crate) fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// What a server did over its life, returned by [`Server::run`](crate::Server::run).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Connections accepted and served.
    pub connections: u64,
    /// Lines answered.
    pub lines: u64,
    /// Connections turned away with `ERR server busy`.
    pub rejected: u64,
    /// Connections turned away with `ERR too many connections from your
    /// address`.
    pub rejected_per_ip: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connections={} lines={} rejected={} rejected_per_ip={}",
            self.connections, self.lines, self.rejected, self.rejected_per_ip
        )
    }
}

/// Everything counted since the start.
#[derive(Clone, Debug)]
pub struct Totals {
    /// Connections, messages, rejections.
    pub summary: Summary,
    /// Connections open now.
    pub open: u64,
    /// Bytes read from clients.
    pub received: u64,
    /// Bytes clients accepted.
    pub sent: u64,
    /// Idle closes: [read, write].
    pub idle_closes: [u64; 2],
    /// Client errors, in the order of [`ClientError::ALL`].
    pub client_errors: [u64; ClientError::ALL.len()],
    /// Failed TLS handshakes, in the order of [`Failure::ALL`].
    pub tls_failures: [u64; Failure::ALL.len()],
    /// Service times, when measured.
    pub service: HistogramSnapshot,
    /// How long ready connections waited for a worker.
    pub queue_delay: HistogramSnapshot,
}

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

/// The service-time buckets, which the chat bus's delivery times share.
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

/// One stats interval's figures.
#[derive(Clone, Copy, Debug)]
pub struct Interval {
    /// The totals so far.
    pub summary: Summary,
    /// Connections open now, served or idle.
    pub open: u64,
    /// Mean service time over the interval (zero when not measured).
    pub service_mean: Duration,
    /// 99th-percentile service time over the interval, to within 1/8.
    pub service_p99: Duration,
    /// Mean time ready connections waited for a worker over the interval
    /// (zero when no turn started).
    pub queue_mean: Duration,
    /// 99th-percentile wait for a worker over the interval, to within 1/8.
    pub queue_p99: Duration,
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
struct QueueDelays {
    interval: ServiceTimes,
    total: Buckets,
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
struct ServiceTimes {
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
    fn record(&self, time: Duration, weight: u64) {
        // As for `Buckets`: the count is the buckets' sum.
        let nanos = u64::try_from(time.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket(nanos)].fetch_add(weight, Ordering::Relaxed);
        self.total_nanos
            .fetch_add(nanos.saturating_mul(weight), Ordering::Relaxed);
    }

    /// Mean and 99th percentile since the last call, then starts afresh.
    fn take(&self) -> (Duration, Duration) {
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
fn bucket(nanos: u64) -> usize {
    if nanos < SUB {
        return nanos as usize;
    }
    let exp = 63 - nanos.leading_zeros();
    let sub = (nanos >> (exp - SUB_BITS)) & (SUB - 1);
    ((exp - SUB_BITS + 1) as u64 * SUB + sub) as usize
}

/// The largest value that falls in bucket `i`.
fn upper_bound(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let exp = i / SUB + SUB_BITS as u64 - 1;
    let sub = i % SUB;
    ((SUB + sub + 1) << (exp - SUB_BITS as u64)).saturating_sub(1)
}

#[cfg(test)]
mod tests;
