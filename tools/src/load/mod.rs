//! The load generator behind `linepool load`: many connections driven from a
//! few event-loop threads, every reply checked, latency in a histogram.
//!
//! By default it is closed-loop: each connection keeps at most `pipeline`
//! requests in flight and sends the next only when a reply comes back, so
//! the figures are what a fixed population of clients gets. With a `rate`
//! it is open-loop: requests go out on a fixed schedule whatever the
//! server does, and each request's latency runs from when it was due, so a
//! server that stalls shows in the percentiles instead of slowing the
//! clients down (coordinated omission; wrk2's `-R`). With a rate and a
//! fresh connection per request, the open loop is one of arrivals: new
//! connections at the rate, each taking one of `max_in_flight` slots, or
//! counted as dropped when none is free (k6's constant arrival rate).

pub mod about;
mod arrivals;
pub mod chart;
pub mod chat;
pub mod compare;
mod counts;
mod driver;
pub mod hist;
pub mod page;
mod payload;
pub mod report;
mod series;

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use about::About;
pub use report::Report;

/// How long a run goes on.
#[derive(Clone, Copy, Debug)]
pub enum Limit {
    /// This many requests in all, split evenly over the connections (`-n`).
    Requests(u64),
    /// This many requests on each connection: the default, without `-n`
    /// or `-d`.
    PerConnection(u64),
    /// Until this much time has passed.
    Duration(Duration),
}

/// What the server under load speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadProtocol {
    /// Lines answered with `ACK: <line>`.
    Ack,
    /// Length-prefixed messages echoed back exactly.
    Framed,
}

/// The shape of a load run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// The server.
    pub addr: SocketAddr,
    /// Connections sending requests at once.
    pub connections: usize,
    /// When to stop.
    pub limit: Limit,
    /// Requests in flight on each connection.
    pub pipeline: usize,
    /// Length of each request line, newline not counted.
    pub payload: usize,
    /// Open a fresh connection for every request.
    pub connect_per_request: bool,
    /// Extra connections held open, silent, for the whole run.
    pub idle: usize,
    /// How long a connect or a reply may take before it counts as a timeout.
    pub timeout: Duration,
    /// Event-loop threads driving the connections.
    pub threads: usize,
    /// Requests per second in all, spread over the connections: open loop.
    /// `None`: closed loop.
    pub rate: Option<f64>,
    /// The protocol spoken.
    pub protocol: LoadProtocol,
    /// Speak TLS, verifying the server with this.
    pub tls: Option<crate::tls::Connector>,
    /// The command line as given, program first, for the report.
    pub command: Vec<String>,
    /// Open-loop arrivals: the most connections in flight at once.
    pub max_in_flight: usize,
}

impl LoadConfig {
    /// Whether the run is one of open-loop arrivals: a rate, and a fresh
    /// connection for each request.
    pub fn arrivals(&self) -> bool {
        self.rate.is_some() && self.connect_per_request
    }

    /// How many slots the driver threads share: the connections, or the
    /// bound of arrivals in flight.
    fn slots(&self) -> usize {
        if self.arrivals() {
            self.max_in_flight.max(1)
        } else {
            self.connections.max(1)
        }
    }
}

/// Counters a progress display reads while a run goes on.
#[derive(Debug, Default)]
pub struct Progress {
    /// Replies that matched their request.
    pub replies: AtomicU64,
    /// Errors of every kind.
    pub errors: AtomicU64,
}

/// How many of `total` requests connection `id` of `connections` sends: an
/// even split, the first connections taking one more when it is not exact.
pub fn share(total: u64, connections: usize, id: u64) -> u64 {
    let connections = connections.max(1) as u64;
    total / connections + u64::from(id < total % connections)
}

/// Runs the load and returns its report. `progress` counts replies and
/// errors as they happen, for a progress display. Setting `stop` ends the
/// run early (an interrupt): the report covers what was done.
pub fn run(config: &LoadConfig, progress: &Progress, stop: &AtomicBool) -> io::Result<Report> {
    let mut idle_refused = 0;
    let idle: Vec<TcpStream> = (0..config.idle)
        .filter_map(
            |_| match TcpStream::connect_timeout(&config.addr, config.timeout) {
                Ok(stream) => Some(stream),
                Err(_) => {
                    idle_refused += 1;
                    None
                }
            },
        )
        .collect();

    let slots = config.slots();
    let threads = config.threads.clamp(1, slots);
    let about = About::new(SystemTime::now(), config.command.clone());
    let start = Instant::now();
    let results = thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                // Slot ids t, t + threads, t + 2 * threads, ...
                let ids: Vec<u64> = (t..slots).step_by(threads).map(|i| i as u64).collect();
                let lane = arrivals::Lane {
                    index: t as u64,
                    of: threads as u64,
                };
                scope.spawn(move || driver::drive(config, &ids, lane, start, progress, stop))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| io::Error::other("a load thread panicked"))?
            })
            .collect::<io::Result<Vec<_>>>()
    })?;
    let elapsed = start.elapsed();
    let held = idle.len();
    drop(idle);
    let interrupted = stop.load(std::sync::atomic::Ordering::Relaxed);
    Ok(Report::new(
        config,
        about,
        results,
        elapsed,
        held,
        idle_refused,
        interrupted,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `-n` is the total, split evenly: 10 over 3 connections is 4, 3 and 3.
    #[test]
    fn requests_are_a_total_split_over_the_connections() {
        assert_eq!(share(10, 3, 0), 4);
        assert_eq!(share(10, 3, 1), 3);
        assert_eq!(share(10, 3, 2), 3);
        assert_eq!(share(2, 3, 2), 0);
    }
}
