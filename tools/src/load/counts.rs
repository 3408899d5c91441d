//! The figures a load run counts, below everything that reports them:
//! event counts as the driver keeps them, errors by kind and latency
//! percentiles as the report gives them.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Event counts, summed over every connection.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    /// TCP connections established.
    pub established: u64,
    /// Connections refused by the server's host (nothing listening, or a
    /// full backlog answered with a reset).
    pub refused: u64,
    /// Connections answered with `ERR server busy`.
    pub rejected: u64,
    /// Connections reset or broken while in use.
    pub reset: u64,
    /// Replies that matched their request.
    pub replies: u64,
    /// Replies that did not match their request.
    pub mismatch: u64,
    /// Connects or replies that took longer than the timeout.
    pub timeout: u64,
    /// Connections the server closed with requests unanswered.
    pub closed: u64,
    /// Any other socket error.
    pub other: u64,
    /// Open-loop arrivals not started because the bound of connections in
    /// flight was reached.
    pub dropped: u64,
}

impl Counts {
    /// Adds `o` to these counts.
    pub fn add(&mut self, o: &Counts) {
        self.established += o.established;
        self.refused += o.refused;
        self.rejected += o.rejected;
        self.reset += o.reset;
        self.replies += o.replies;
        self.mismatch += o.mismatch;
        self.timeout += o.timeout;
        self.closed += o.closed;
        self.other += o.other;
        self.dropped += o.dropped;
    }

    /// What was counted since `earlier`, a snapshot of the same counts.
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            established: self.established - earlier.established,
            refused: self.refused - earlier.refused,
            rejected: self.rejected - earlier.rejected,
            reset: self.reset - earlier.reset,
            replies: self.replies - earlier.replies,
            mismatch: self.mismatch - earlier.mismatch,
            timeout: self.timeout - earlier.timeout,
            closed: self.closed - earlier.closed,
            other: self.other - earlier.other,
            dropped: self.dropped - earlier.dropped,
        }
    }
}

/// `n` events in `secs` seconds, per second; 0 over no time.
pub fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// Errors by kind; `total` is their sum.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Errors {
    /// Replies that did not match their request.
    pub mismatch: u64,
    /// Connections refused.
    pub refused: u64,
    /// Connections answered with `ERR server busy`.
    pub rejected: u64,
    /// Connections reset or broken in use.
    pub reset: u64,
    /// Connects or replies slower than `--timeout`.
    pub timeout: u64,
    /// Connections the server closed with requests unanswered.
    pub closed: u64,
    /// Any other socket error.
    pub other: u64,
    /// Open-loop arrivals dropped at the bound of connections in flight
    /// (`--max-in-flight`); absent from reports made before it, 0.
    #[serde(default)]
    pub dropped: u64,
    /// The sum of the above.
    pub total: u64,
}

impl Errors {
    /// The errors among `counts`.
    pub fn of(counts: &Counts) -> Errors {
        Errors {
            mismatch: counts.mismatch,
            refused: counts.refused,
            rejected: counts.rejected,
            reset: counts.reset,
            timeout: counts.timeout,
            closed: counts.closed,
            other: counts.other,
            dropped: counts.dropped,
            total: counts.mismatch
                + counts.refused
                + counts.rejected
                + counts.reset
                + counts.timeout
                + counts.closed
                + counts.other
                + counts.dropped,
        }
    }

    /// Each kind with its name, in the report's order.
    pub fn kinds(&self) -> [(&'static str, u64); 8] {
        [
            ("mismatch", self.mismatch),
            ("refused", self.refused),
            ("rejected", self.rejected),
            ("reset", self.reset),
            ("timeout", self.timeout),
            ("closed", self.closed),
            ("other", self.other),
            ("dropped", self.dropped),
        ]
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest reply.
    pub max: f64,
}

impl Latency {
    /// The percentiles of `h`, a histogram in nanoseconds; zeros when it
    /// is empty.
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let us = |nanos: u64| nanos as f64 / 1000.0;
        Latency {
            mean: h.mean() / 1000.0,
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}
