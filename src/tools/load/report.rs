//! What a load run reports, as text for people and as one JSON object for
//! scripts. Both carry the same figures.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use linepool::logfmt;
use serde::Serialize;

use super::{Limit, LoadConfig, LoadProtocol};

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
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.established += o.established;
        self.refused += o.refused;
        self.rejected += o.rejected;
        self.reset += o.reset;
        self.replies += o.replies;
        self.mismatch += o.mismatch;
        self.timeout += o.timeout;
        self.closed += o.closed;
        self.other += o.other;
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
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

/// The scenario that was run.
#[derive(Clone, Debug, Serialize)]
pub struct Scenario {
    /// The server's address.
    pub addr: String,
    /// Connections sending requests (`-c`).
    pub connections: usize,
    /// `-n`, the requests in all, when the run was bounded by requests.
    pub requests: Option<u64>,
    /// `-n` divided by the connections (rounded down; the first
    /// connections send one more when it does not divide evenly).
    pub requests_per_connection: Option<u64>,
    /// `-d`, when the run was bounded by time.
    pub duration_secs: Option<f64>,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Request length in bytes.
    pub payload: usize,
    /// A fresh connection for every request.
    pub connect_per_request: bool,
    /// Idle connections asked for (`--idle`).
    pub idle: usize,
    /// Event-loop threads.
    pub threads: usize,
    /// `ack` or `framed`.
    pub protocol: &'static str,
    /// `-R`: the requests per second asked for (open loop), or `null`.
    pub target_rate_per_sec: Option<f64>,
}

/// What a run says about the server, for the exit status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every reply matched, and at least one request was answered.
    Answered,
    /// This many replies did not match their requests: the server is broken.
    Mismatch(u64),
    /// No request was answered, for the reasons given (counts by kind).
    NothingAnswered(String),
}

/// Errors by kind; `total` is their sum.
#[derive(Clone, Copy, Debug, Default, Serialize)]
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
    /// The sum of the above.
    pub total: u64,
}

/// Connection figures.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Connections {
    /// TCP connections established.
    pub established: u64,
    /// Connections refused.
    pub refused: u64,
    /// Connections answered with `ERR server busy`.
    pub rejected: u64,
    /// Connections reset or broken in use.
    pub reset: u64,
    /// Idle connections held open for the whole run.
    pub idle_held: usize,
    /// Idle connections that could not be opened.
    pub idle_failed: usize,
}

/// The result of a load run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// What was run.
    pub scenario: Scenario,
    /// `true` unless `-R` was given: each connection waits for replies
    /// before sending more. `false`: requests went out on a schedule.
    pub closed_loop: bool,
    /// The run was cut short by an interrupt (Ctrl-C).
    pub interrupted: bool,
    /// Connection figures.
    pub connections: Connections,
    /// Replies that matched their request.
    pub replies: u64,
    /// Wall time of the run.
    pub elapsed_secs: f64,
    /// `replies / elapsed_secs`.
    pub replies_per_sec: f64,
    /// Per-request latency, in microseconds: from when the request was
    /// sent (closed loop) or due (open loop) to its reply.
    pub latency_us: Latency,
    /// Errors by kind.
    pub errors: Errors,
}

/// What one thread measured.
pub struct Outcome {
    /// Reply latencies in nanoseconds.
    pub latency: Histogram<u64>,
    pub counts: Counts,
}

impl Report {
    /// Merges the threads' outcomes.
    pub(super) fn new(
        config: &LoadConfig,
        outcomes: Vec<Outcome>,
        elapsed: Duration,
        idle_held: usize,
        idle_failed: usize,
        interrupted: bool,
    ) -> Report {
        let mut counts = Counts::default();
        let mut latency: Option<Histogram<u64>> = None;
        for outcome in outcomes {
            counts.add(&outcome.counts);
            match &mut latency {
                Some(all) => {
                    // Both histograms have the same bounds, so adding cannot fail.
                    let _ = all.add(&outcome.latency);
                }
                None => latency = Some(outcome.latency),
            }
        }
        let us = |nanos: u64| nanos as f64 / 1000.0;
        let latency = latency
            .filter(|h| !h.is_empty())
            .map(|h| Latency {
                mean: h.mean() / 1000.0,
                p50: us(h.value_at_quantile(0.50)),
                p90: us(h.value_at_quantile(0.90)),
                p99: us(h.value_at_quantile(0.99)),
                p999: us(h.value_at_quantile(0.999)),
                max: us(h.max()),
            })
            .unwrap_or_default();
        let secs = elapsed.as_secs_f64();
        let errors = Errors {
            mismatch: counts.mismatch,
            refused: counts.refused,
            rejected: counts.rejected,
            reset: counts.reset,
            timeout: counts.timeout,
            closed: counts.closed,
            other: counts.other,
            total: counts.mismatch
                + counts.refused
                + counts.rejected
                + counts.reset
                + counts.timeout
                + counts.closed
                + counts.other,
        };
        Report {
            scenario: Scenario {
                addr: config.addr.to_string(),
                connections: config.connections,
                requests: match config.limit {
                    Limit::Requests(n) => Some(n),
                    Limit::PerConnection(_) | Limit::Duration(_) => None,
                },
                requests_per_connection: match config.limit {
                    Limit::Requests(n) => Some(n / config.connections.max(1) as u64),
                    Limit::PerConnection(n) => Some(n),
                    Limit::Duration(_) => None,
                },
                duration_secs: match config.limit {
                    Limit::Duration(d) => Some(d.as_secs_f64()),
                    Limit::Requests(_) | Limit::PerConnection(_) => None,
                },
                pipeline: config.pipeline,
                payload: config.payload,
                connect_per_request: config.connect_per_request,
                idle: config.idle,
                threads: config.threads,
                protocol: match config.protocol {
                    LoadProtocol::Ack => "ack",
                    LoadProtocol::Framed => "framed",
                },
                target_rate_per_sec: config.rate,
            },
            closed_loop: config.rate.is_none(),
            interrupted,
            connections: Connections {
                established: counts.established,
                refused: counts.refused,
                rejected: counts.rejected,
                reset: counts.reset,
                idle_held,
                idle_failed,
            },
            replies: counts.replies,
            elapsed_secs: secs,
            replies_per_sec: if secs > 0.0 {
                counts.replies as f64 / secs
            } else {
                0.0
            },
            latency_us: latency,
            errors,
        }
    }

    /// Whether any reply failed to match its request.
    pub fn has_mismatch(&self) -> bool {
        self.errors.mismatch > 0
    }

    /// What the run says about the server: see [`Verdict`].
    pub fn verdict(&self) -> Verdict {
        if self.has_mismatch() {
            return Verdict::Mismatch(self.errors.mismatch);
        }
        if self.replies > 0 {
            return Verdict::Answered;
        }
        let e = &self.errors;
        let causes: Vec<String> = [
            (e.refused, "refused"),
            (e.rejected, "rejected with ERR server busy"),
            (e.reset, "reset"),
            (e.timeout, "timed out"),
            (e.closed, "closed by the server with requests unanswered"),
            (e.other, "failed otherwise"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        Verdict::NothingAnswered(if causes.is_empty() {
            "no request was sent".to_string()
        } else {
            causes.join(", ")
        })
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        // A struct of numbers and plain strings always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.scenario;
        let c = &self.connections;
        let l = &self.latency_us;
        let e = &self.errors;
        let limit = match (s.requests, s.duration_secs, s.requests_per_connection) {
            (Some(n), _, _) => format!("{n} requests in all"),
            (_, Some(d), _) => format!("{d} s"),
            (_, _, Some(n)) => format!("{} each", logfmt::count(n, "request")),
            _ => String::new(),
        };
        writeln!(
            f,
            "target {}: {}, {limit}, pipeline {}, payload {} B{}{}",
            s.addr,
            logfmt::count(s.connections as u64, "connection"),
            s.pipeline,
            s.payload,
            if s.connect_per_request {
                ", a new connection per request"
            } else {
                ""
            },
            if s.idle > 0 {
                format!(", {} idle held", s.idle)
            } else {
                String::new()
            },
        )?;
        writeln!(
            f,
            "connections  established {}  refused {}  rejected {}  reset {}  idle held {}",
            c.established, c.refused, c.rejected, c.reset, c.idle_held
        )?;
        writeln!(
            f,
            "replies      {} in {:.2} s = {:.0} replies/s{}",
            self.replies,
            self.elapsed_secs,
            self.replies_per_sec,
            match s.target_rate_per_sec {
                Some(target) => format!(" (target {target:.0}/s)"),
                None => String::new(),
            }
        )?;
        writeln!(
            f,
            "latency us   p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        )?;
        writeln!(
            f,
            "errors       mismatch {}  refused {}  rejected {}  reset {}  timeout {}  closed {}  other {}",
            e.mismatch, e.refused, e.rejected, e.reset, e.timeout, e.closed, e.other
        )?;
        if self.interrupted {
            writeln!(f, "interrupted: the figures cover the run until then")?;
        }
        if self.closed_loop {
            write!(
                f,
                "note: closed loop; each connection waits for its replies before sending more"
            )
        } else {
            write!(
                f,
                "note: open loop; requests went out on schedule, latency counts from when each was due"
            )
        }
    }
}
