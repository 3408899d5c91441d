//! What a load run reports, as text for people and as one JSON object for
//! scripts. Both carry the same figures; the JSON also carries the run
//! second by second and its whole latency histogram, and reads back in
//! (`linepool load compare`).

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use linepool::logfmt;
use serde::{Deserialize, Serialize};

use super::about::About;
use super::counts::{Counts, per_sec};
pub use super::counts::{Errors, Latency};
use super::hist;
use super::series::{self, INTERVAL, Second, Slice};
use super::{Limit, LoadConfig, LoadProtocol};

/// The version of the JSON report's shape. Fields are only ever added;
/// this goes up when a reader of the old shape would be misled, and
/// `linepool load compare` reads only reports of its own version.
/// Reports without the field are version 1 (no series, no histogram).
pub const FORMAT_VERSION: u32 = 2;

/// The scenario that was run.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
    pub protocol: String,
    /// `-R`: the requests per second asked for (open loop), or `null`.
    pub target_rate_per_sec: Option<f64>,
    /// Open-loop arrivals (`-R` with `--connect-per-request`): the bound
    /// of connections in flight (`--max-in-flight`); `null` otherwise.
    #[serde(default)]
    pub max_in_flight: Option<usize>,
}

/// The `encoding` of the report's histogram.
const HISTOGRAM_ENCODING: &str = "hdrhistogram-v2-compressed-base64";

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

/// Connection figures.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Connections {
    /// TCP connections established.
    pub established: u64,
    /// Connections refused.
    pub refused: u64,
    /// Connections answered with `ERR server busy`.
    pub rejected: u64,
    /// Connections reset or broken in use.
    pub reset: u64,
    /// Arrivals dropped at the bound of connections in flight.
    #[serde(default)]
    pub dropped: u64,
    /// Idle connections held open for the whole run.
    pub idle_held: usize,
    /// Idle connections that could not be opened.
    pub idle_failed: usize,
}

/// The run second by second.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Series {
    /// The length of each interval: 1.
    pub interval_secs: f64,
    /// One entry per interval, from the start of the run.
    pub seconds: Vec<Second>,
}

/// A histogram in a form HdrHistogram's tools decode.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EncodedHistogram {
    /// The unit of the recorded values: `ns`.
    pub unit: String,
    /// `hdrhistogram-v2-compressed-base64`.
    pub encoding: String,
    /// The histogram.
    pub data: String,
}

/// The result of a load run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// The shape of this report: [`FORMAT_VERSION`].
    pub format_version: u32,
    /// When, by which command and from which host the run was made;
    /// absent from reports made before it was added.
    #[serde(default)]
    pub run: Option<About>,
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
    /// The run second by second.
    pub series: Series,
    /// Every reply's latency, the whole run.
    pub latency_histogram: EncodedHistogram,
    /// The same histogram, in nanoseconds, to draw and print from.
    #[serde(skip, default = "hist::new_latency")]
    pub histogram: Histogram<u64>,
}

/// What one thread measured.
pub struct Outcome {
    /// Interval by interval: counts and reply latencies.
    pub slices: Vec<Slice>,
    /// The whole run's counts.
    pub counts: Counts,
}

impl Report {
    /// Merges the threads' outcomes.
    pub(super) fn new(
        config: &LoadConfig,
        about: About,
        outcomes: Vec<Outcome>,
        elapsed: Duration,
        idle_held: usize,
        idle_failed: usize,
        interrupted: bool,
    ) -> Report {
        let mut counts = Counts::default();
        let mut slices = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            counts.add(&outcome.counts);
            slices.push(outcome.slices);
        }
        let (seconds, histogram) = series::merge(&slices, elapsed);
        let secs = elapsed.as_secs_f64();
        Report {
            format_version: FORMAT_VERSION,
            run: Some(about),
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
                }
                .to_string(),
                target_rate_per_sec: config.rate,
                max_in_flight: config.arrivals().then_some(config.max_in_flight),
            },
            closed_loop: config.rate.is_none(),
            interrupted,
            connections: Connections {
                established: counts.established,
                refused: counts.refused,
                rejected: counts.rejected,
                reset: counts.reset,
                dropped: counts.dropped,
                idle_held,
                idle_failed,
            },
            replies: counts.replies,
            elapsed_secs: secs,
            replies_per_sec: per_sec(counts.replies, secs),
            latency_us: Latency::of(&histogram),
            errors: Errors::of(&counts),
            series: Series {
                interval_secs: INTERVAL.as_secs_f64(),
                seconds,
            },
            latency_histogram: EncodedHistogram {
                unit: "ns".to_string(),
                encoding: HISTOGRAM_ENCODING.to_string(),
                data: hist::encode_v2(&histogram),
            },
            histogram,
        }
    }

    /// Reads a report back from its JSON: the histogram is decoded too.
    /// Refuses, with a sentence saying why, text that is not a load report
    /// or a report of another format version.
    pub fn from_json(text: &str) -> Result<Report, String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|_| "not a linepool load report (not JSON)")?;
        let looks_like_one = ["scenario", "replies_per_sec", "latency_us", "errors"]
            .iter()
            .all(|field| value.get(field).is_some());
        if !looks_like_one {
            return Err("not a linepool load report".to_string());
        }
        let version = value
            .get("format_version")
            .and_then(|v| v.as_u64())
            .unwrap_or(1);
        if version != u64::from(FORMAT_VERSION) {
            return Err(format!(
                "a load report of format {version}; this linepool reads format {FORMAT_VERSION} (run the load again with it)"
            ));
        }
        let mut report: Report = serde_json::from_value(value)
            .map_err(|e| format!("not a linepool load report ({e})"))?;
        if report.latency_histogram.encoding != HISTOGRAM_ENCODING
            || report.latency_histogram.unit != "ns"
        {
            return Err("a load report whose histogram is in an unknown form".to_string());
        }
        report.histogram = hist::decode_v2(&report.latency_histogram.data)
            .map_err(|e| format!("a load report whose histogram is damaged ({e})"))?;
        Ok(report)
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
            (e.dropped, "dropped at the bound of connections in flight"),
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
            (Some(n), _, _) => format!("{} in all", logfmt::count(n, "request")),
            (_, Some(d), _) => format!("{d} s"),
            (_, _, Some(n)) if s.max_in_flight.is_some() => {
                format!("{} in all", logfmt::count(n, "arrival"))
            }
            (_, _, Some(n)) => format!("{} each", logfmt::count(n, "request")),
            _ => String::new(),
        };
        let who = match s.max_in_flight {
            Some(bound) => format!("arrivals, at most {bound} in flight"),
            None => logfmt::count(s.connections as u64, "connection"),
        };
        writeln!(
            f,
            "target {}: {who}, {limit}, pipeline {}, payload {} B{}{}",
            s.addr,
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
            "connections  established {}  refused {}  rejected {}  reset {}  dropped {}  idle held {}",
            c.established, c.refused, c.rejected, c.reset, c.dropped, c.idle_held
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
            "errors       mismatch {}  refused {}  rejected {}  reset {}  timeout {}  closed {}  other {}  dropped {}",
            e.mismatch, e.refused, e.rejected, e.reset, e.timeout, e.closed, e.other, e.dropped
        )?;
        if self.interrupted {
            writeln!(f, "interrupted: the figures cover the run until then")?;
        }
        if self.closed_loop {
            write!(
                f,
                "note: closed loop; each connection waits for its replies before sending more"
            )
        } else if s.max_in_flight.is_some() {
            write!(
                f,
                "note: open loop; connections arrived on schedule, latency counts from when each was due"
            )
        } else {
            write!(
                f,
                "note: open loop; requests went out on schedule, latency counts from when each was due"
            )
        }
    }
}

/// Reports made up for the tests of what draws and reads them.
#[cfg(test)]
pub mod samples {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::{About, Outcome, Report};
    use crate::load::counts::Counts;
    use crate::load::series::Slice;
    use crate::load::{Limit, LoadConfig, LoadProtocol};

    /// A run of `seconds` seconds over two threads: in second k each
    /// thread answers 100 requests at (k + 1) * 100 µs plus one
    /// 5 ms straggler, and from the second on, one connection is reset
    /// per second. With `rate`, open loop.
    pub fn report(seconds: usize, rate: Option<f64>) -> Report {
        let config = LoadConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            connections: 4,
            limit: Limit::Duration(Duration::from_secs(seconds as u64)),
            pipeline: 1,
            payload: 32,
            connect_per_request: false,
            idle: 0,
            timeout: Duration::from_secs(5),
            threads: 2,
            rate,
            protocol: LoadProtocol::Ack,
            tls: None,
            command: Vec::new(),
            max_in_flight: 1000,
        };
        let thread = || {
            let slices: Vec<Slice> = (0..seconds as u64)
                .map(|k| Slice {
                    counts: Counts {
                        replies: 101,
                        reset: u64::from(k > 0),
                        ..Counts::default()
                    },
                    latency: vec![((k + 1) * 100_000, 100), (5_000_000, 1)],
                })
                .collect();
            let mut counts = Counts::default();
            for slice in &slices {
                counts.add(&slice.counts);
            }
            counts.established = 2;
            Outcome { slices, counts }
        };
        let about = About {
            started_at: "2026-12-07T11:20:00Z".to_string(),
            linepool_version: "9.9.9".to_string(),
            command: ["linepool", "load", "-d", "3s", "--html", "run <1>.html"]
                .map(String::from)
                .to_vec(),
            host: "bench-host".to_string(),
        };
        Report::new(
            &config,
            about,
            vec![thread(), thread()],
            Duration::from_secs(seconds as u64),
            0,
            0,
            false,
        )
    }
}
