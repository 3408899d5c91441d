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

pub(crate) mod exposition;
mod histogram;

pub(crate) use self::histogram::Buckets;
pub use self::histogram::HistogramSnapshot;
use self::histogram::{QueueDelays, ServiceTimes};

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

#[cfg(test)]
mod tests;
