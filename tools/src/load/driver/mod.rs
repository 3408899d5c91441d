//! One load thread: a `mio` event loop over its share of the connections.
//! Each connection is a small state machine: connect, keep `pipeline`
//! requests in flight (closed loop) or send each request when it is due
//! (open loop), check every reply, close. Open-loop arrivals
//! (`arrivals.rs`) use the connections as slots: an arrival takes a free
//! one for its one request, or is counted as dropped.
//!
//! This module holds the loop ([`drive`]) and the state it shares with the
//! steps of the state machine, one concern a module, each an `impl` of the
//! same `Driver` (the steps read and write one another's state, so the
//! state is defined once, here):
//!
//! - `issue`: what a connection sends and when (closed loop, open loop,
//!   arrivals).
//! - `socket`: connecting, writing and reading a connection's socket.
//! - `replies`: checking the replies read and timing them.
//! - `end`: how a socket ends (the server's close, an error, a timeout,
//!   nothing left to send) and what its slot does next.

mod end;
mod issue;
mod replies;
mod socket;

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use super::arrivals::{Lane, Schedule};
use super::counts::Counts;
use super::report::Outcome;
use super::series::Recorder;
use super::{Limit, LoadConfig, Progress, share};
use crate::tls::Stream;

/// How often timeouts and the end of a timed run are checked.
const TICK: Duration = Duration::from_millis(10);

/// Where a connection slot is in its state machine.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Connecting,
    Running,
    /// We sent `shutdown` (or were rejected) and wait for the server to close.
    Closing,
    Done,
}

/// One connection slot: its socket, if any, and its requests.
struct Conn {
    id: u64,
    stream: Option<Stream>,
    phase: Phase,
    /// Requests started on this connection slot, over all its sockets.
    issued: u64,
    /// Replies received on this slot; the next reply answers request `answered`.
    answered: u64,
    /// Requests this slot sends in all (`-n`), or `u64::MAX`.
    quota: u64,
    /// Send times (open loop: due times) of the requests in flight, oldest
    /// first.
    in_flight: VecDeque<Instant>,
    /// Open loop: when the next request is due. Arrivals: when the
    /// arrival holding this slot was due.
    next_due: Instant,
    out: Vec<u8>,
    written: usize,
    input: Vec<u8>,
    /// When the current phase started waiting (connect, close).
    since: Instant,
}

/// One load thread's state: its connection slots, its poller and its
/// counts.
struct Driver<'a> {
    config: &'a LoadConfig,
    progress: &'a Progress,
    /// Open loop: the time between two requests on one connection.
    interval: Option<Duration>,
    /// Open-loop arrivals: this thread's schedule, and the slots with no
    /// connection.
    arrivals: Option<(Schedule, Vec<usize>)>,
    poll: Poll,
    conns: Vec<Conn>,
    live: usize,
    stop_issuing: bool,
    reopen: Vec<usize>,
    counts: Counts,
    /// Reply latencies and counts, second by second.
    series: Recorder,
    scratch: Vec<u8>,
    buf: Box<[u8]>,
}

/// Drives connections `ids` until the run's limit is reached; `lane` is
/// this thread's place among the threads (arrivals are shared by it).
pub fn drive(
    config: &LoadConfig,
    ids: &[u64],
    lane: Lane,
    start: Instant,
    progress: &Progress,
    stop: &AtomicBool,
) -> io::Result<Outcome> {
    let now = Instant::now();
    // Open loop: each connection sends every `connections / rate` seconds,
    // connection k first at k / rate, so the total is spread evenly.
    let arrivals = Schedule::new(config, lane, start);
    let rate = config
        .rate
        .filter(|r| r.is_finite() && *r > 0.0 && arrivals.is_none());
    let interval = rate.map(|r| Duration::from_secs_f64(config.connections as f64 / r));
    let mut driver = Driver {
        config,
        progress,
        interval,
        // Every slot starts free, its phase done.
        arrivals: arrivals.map(|schedule| (schedule, (0..ids.len()).rev().collect())),
        poll: Poll::new()?,
        conns: ids
            .iter()
            .map(|&id| Conn {
                id,
                stream: None,
                phase: Phase::Connecting,
                issued: 0,
                answered: 0,
                quota: match config.limit {
                    Limit::Requests(total) => share(total, config.connections, id),
                    Limit::PerConnection(n) => n,
                    Limit::Duration(_) => u64::MAX,
                },
                in_flight: VecDeque::with_capacity(config.pipeline),
                next_due: match rate {
                    Some(r) => start + Duration::from_secs_f64(id as f64 / r),
                    None => start,
                },
                out: Vec::new(),
                written: 0,
                input: Vec::new(),
                since: now,
            })
            .collect(),
        live: 0,
        stop_issuing: false,
        reopen: Vec::new(),
        counts: Counts::default(),
        series: Recorder::new(start),
        scratch: Vec::new(),
        buf: vec![0u8; 64 * 1024].into_boxed_slice(),
    };
    let end = match config.limit {
        Limit::Duration(d) => Some(start + d),
        Limit::Requests(_) | Limit::PerConnection(_) => None,
    };
    if driver.arrivals.is_some() {
        for conn in &mut driver.conns {
            conn.phase = Phase::Done;
        }
    } else {
        driver.live = driver.conns.len();
        for i in 0..driver.conns.len() {
            driver.open(i);
        }
    }
    let mut events = Events::with_capacity(1024);
    let mut next_tick = Instant::now() + TICK;
    while driver.busy() && !stop.load(Ordering::Relaxed) {
        for i in std::mem::take(&mut driver.reopen) {
            driver.open(i);
        }
        let now = Instant::now();
        let mut wake = next_tick;
        if driver.arrivals.is_some() {
            driver.arrive(now);
            if let Some(due) = driver.arrivals.as_ref().and_then(|(s, _)| s.next_due()) {
                wake = wake.min(due);
            }
        }
        if driver.interval.is_some() {
            driver.send_due(now);
            if let Some(due) = driver.next_due() {
                wake = wake.min(due);
            }
        }
        let wait = wake.saturating_duration_since(now);
        match driver.poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            let readable = event.is_readable() || event.is_read_closed() || event.is_error();
            driver.on_event(event.token().0, readable, event.is_writable());
        }
        let now = Instant::now();
        driver.series.advance(now, &driver.counts);
        if now >= next_tick {
            next_tick = now + TICK;
            if end.is_some_and(|end| now >= end) {
                driver.stop_issuing = true;
            }
            driver.tick(now);
        }
    }
    Ok(Outcome {
        slices: driver.series.finish(&driver.counts),
        counts: driver.counts,
    })
}

impl Driver<'_> {
    /// Whether the run goes on: a connection is live, or arrivals remain.
    fn busy(&self) -> bool {
        self.live > 0
            || self
                .arrivals
                .as_ref()
                .is_some_and(|(schedule, _)| schedule.pending())
    }
}
