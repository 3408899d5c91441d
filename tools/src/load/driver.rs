//! One load thread: a `mio` event loop over its share of the connections.
//! Each connection is a small state machine: connect, keep `pipeline`
//! requests in flight (closed loop) or send each request when it is due
//! (open loop), check every reply, close. Open-loop arrivals
//! (`arrivals.rs`) use the connections as slots: an arrival takes a free
//! one for its one request, or is counted as dropped.
//!
//! The file is about 600 lines because the loop and the
//! connections' state machine are one piece: each step of one reads and
//! writes the other's state, and split apart they would need each other's
//! private fields.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use super::arrivals::{Lane, Schedule};
use super::counts::Counts;
use super::payload::{busy, is_reply_to, split_reply, write_message};
use super::report::Outcome;
use super::series::Recorder;
use super::{Limit, LoadConfig, Progress, share};
use crate::tls::Stream;

/// How often timeouts and the end of a timed run are checked.
const TICK: Duration = Duration::from_millis(10);

/// Open loop: the most requests one connection may have in flight when the
/// server falls behind its schedule.
const OPEN_LOOP_MAX_IN_FLIGHT: usize = 100_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Connecting,
    Running,
    /// We sent `shutdown` (or were rejected) and wait for the server to close.
    Closing,
    Done,
}

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

    /// Whether slot `i` may start another request now. An arrival that
    /// came before the end of a timed run still sends its request.
    fn may_issue(&self, i: usize) -> bool {
        (!self.stop_issuing || self.arrivals.is_some())
            && self.conns[i].issued < self.conns[i].quota
    }

    /// Open-loop arrivals: each one due by `now` opens a connection in a
    /// free slot, or is counted as dropped when every slot is in use.
    /// A late arrival is never held back for a slot: that would slow the
    /// arrivals down to what the server takes, the closed loop again.
    fn arrive(&mut self, now: Instant) {
        loop {
            let Some((schedule, free)) = &mut self.arrivals else {
                return;
            };
            let Some(arrival) = schedule.pop_due(now) else {
                return;
            };
            let Some(i) = free.pop() else {
                self.counts.dropped += 1;
                self.progress.errors.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let conn = &mut self.conns[i];
            // The arrival's number is the connection id its request
            // carries, so every arrival sends a request of its own.
            conn.id = arrival.id;
            conn.issued = 0;
            conn.answered = 0;
            conn.quota = 1;
            conn.next_due = arrival.due;
            self.live += 1;
            self.open(i);
        }
    }

    fn depth(&self) -> usize {
        if self.config.connect_per_request {
            1
        } else if self.interval.is_some() {
            OPEN_LOOP_MAX_IN_FLIGHT
        } else {
            self.config.pipeline
        }
    }

    /// Open loop: sends what is due on every running connection.
    fn send_due(&mut self, now: Instant) {
        for i in 0..self.conns.len() {
            let conn = &self.conns[i];
            if conn.phase == Phase::Running && conn.next_due <= now {
                self.top_up(i);
            }
        }
    }

    /// Open loop: the earliest time a running connection has a request due.
    fn next_due(&self) -> Option<Instant> {
        self.conns
            .iter()
            .enumerate()
            .filter(|(i, c)| c.phase == Phase::Running && self.may_issue(*i))
            .map(|(_, c)| c.next_due)
            .min()
    }

    fn open(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        conn.phase = Phase::Connecting;
        conn.since = Instant::now();
        conn.out.clear();
        conn.written = 0;
        conn.input.clear();
        conn.in_flight.clear();
        match Stream::connect(self.config.addr, self.config.tls.as_ref()) {
            Ok(mut stream) => {
                let interest = Interest::READABLE | Interest::WRITABLE;
                if let Err(e) = self
                    .poll
                    .registry()
                    .register(&mut stream, Token(i), interest)
                {
                    self.fail(i, &e);
                    return;
                }
                let _ = stream.set_nodelay(true);
                self.conns[i].stream = Some(stream);
            }
            Err(e) => self.fail(i, &e),
        }
    }

    fn on_event(&mut self, i: usize, readable: bool, writable: bool) {
        if self.conns[i].phase == Phase::Connecting {
            if !self.check_connected(i) {
                return;
            }
            self.counts.established += 1;
            self.conns[i].phase = Phase::Running;
            self.top_up(i);
        }
        if writable && self.conns[i].phase != Phase::Done {
            self.flush(i);
        }
        if readable && self.conns[i].phase != Phase::Done {
            self.read(i);
        }
    }

    /// After a readiness event on a connecting socket: whether it is now
    /// connected. Failures are counted and end the socket.
    fn check_connected(&mut self, i: usize) -> bool {
        let Some(stream) = &self.conns[i].stream else {
            return false;
        };
        let result = match stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => stream.peer_addr().map(|_| ()),
        };
        match result {
            Ok(()) => true,
            // Not connected yet: a spurious wake-up.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => false,
            Err(e) => {
                self.fail(i, &e);
                false
            }
        }
    }

    /// Sends requests until the pipeline is full or the limit is reached;
    /// in the open loop, every request that is due. (With a fresh
    /// connection per request the depth is one, and a socket leaves the
    /// running phase with its reply, so it carries one request.)
    fn top_up(&mut self, i: usize) {
        let depth = self.depth();
        let now = Instant::now();
        while self.conns[i].in_flight.len() < depth && self.may_issue(i) {
            let conn = &mut self.conns[i];
            // Latency runs from when the request was due, not from when
            // this loop got round to it.
            let sent = match self.interval {
                Some(interval) if conn.next_due <= now => {
                    let due = conn.next_due;
                    conn.next_due += interval;
                    due
                }
                Some(_) => break,
                // An arrival's one request counts from when it was due, so
                // its connect is in its latency.
                None if self.arrivals.is_some() => conn.next_due,
                None => now,
            };
            write_message(
                &mut conn.out,
                self.config.protocol,
                conn.id,
                conn.issued,
                self.config.payload,
            );
            conn.in_flight.push_back(sent);
            conn.issued += 1;
        }
        if self.conns[i].in_flight.is_empty() && !self.may_issue(i) {
            self.finish(i);
        } else {
            self.flush(i);
        }
    }

    fn flush(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        let Some(stream) = &mut conn.stream else {
            return;
        };
        while conn.written < conn.out.len() {
            match stream.write(&conn.out[conn.written..]) {
                Ok(n) => conn.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(i, &e);
                    return;
                }
            }
        }
        conn.out.clear();
        conn.written = 0;
        // What TLS still holds goes out now or at the next writable event.
        match stream.flush() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => self.fail(i, &e),
        }
    }

    fn read(&mut self, i: usize) {
        loop {
            let Some(stream) = &mut self.conns[i].stream else {
                return;
            };
            match stream.read(&mut self.buf) {
                Ok(0) => {
                    self.eof(i);
                    return;
                }
                Ok(n) => {
                    let conn = &mut self.conns[i];
                    conn.input.extend_from_slice(&self.buf[..n]);
                    self.replies(i);
                    if self.conns[i].phase == Phase::Done {
                        return;
                    }
                    // A short read emptied the socket; whatever arrives next
                    // raises a new readiness event, so reading again now would
                    // only cost a system call to learn `WouldBlock`. Not while
                    // closing: the end of stream may have come with the same
                    // event (the server's `ERR server busy` and its close), and
                    // no new event would report it.
                    if n < self.buf.len() && self.conns[i].phase == Phase::Running {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(i, &e);
                    return;
                }
            }
        }
        if self.conns[i].phase == Phase::Running {
            self.top_up(i);
        }
    }

    /// Checks every complete reply in the input buffer.
    fn replies(&mut self, i: usize) {
        let now = Instant::now();
        // Whatever was counted before this batch belongs to the intervals
        // that ended before `now`.
        self.series.advance(now, &self.counts);
        let protocol = self.config.protocol;
        let mut consumed = 0;
        let mut replies = 0;
        loop {
            let conn = &mut self.conns[i];
            let input = &conn.input[consumed..];
            if conn.answered == 0
                && let Some(refusal) = busy(input, protocol)
            {
                self.counts.rejected += 1;
                self.progress.errors.fetch_add(1, Ordering::Relaxed);
                conn.in_flight.clear();
                conn.phase = Phase::Closing;
                conn.since = now;
                consumed += refusal;
                break;
            }
            let Some((body, used)) = split_reply(input, protocol) else {
                break;
            };
            let body = &input[body];
            consumed += used;
            let Some(sent) = conn.in_flight.pop_front() else {
                self.counts.mismatch += 1;
                self.progress.errors.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let expected = (conn.id, conn.answered, self.config.payload);
            if is_reply_to(
                body,
                protocol,
                expected.0,
                expected.1,
                expected.2,
                &mut self.scratch,
            ) {
                let nanos = u64::try_from(now.duration_since(sent).as_nanos()).unwrap_or(u64::MAX);
                self.series.record(nanos);
                self.counts.replies += 1;
                replies += 1;
            } else {
                self.counts.mismatch += 1;
                self.progress.errors.fetch_add(1, Ordering::Relaxed);
            }
            conn.answered += 1;
            if self.config.connect_per_request {
                // One request per connection, then close as a short-lived
                // client does: end our side (the request went out whole,
                // as its reply came) and wait for the server's close.
                if let Some(stream) = &conn.stream {
                    let _ = stream.shutdown(std::net::Shutdown::Write);
                }
                conn.phase = Phase::Closing;
                conn.since = now;
                break;
            }
        }
        let conn = &mut self.conns[i];
        conn.input.drain(..consumed.min(conn.input.len()));
        if replies > 0 {
            self.progress.replies.fetch_add(replies, Ordering::Relaxed);
        }
    }

    fn eof(&mut self, i: usize) {
        let conn = &self.conns[i];
        if conn.phase != Phase::Closing && !conn.in_flight.is_empty() {
            // The server closed with requests unanswered.
            self.counts.closed += 1;
            self.progress.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.close_socket(i);
        self.next(i);
    }

    /// Counts a failed socket by kind and moves the slot on.
    fn fail(&mut self, i: usize, e: &io::Error) {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => self.counts.refused += 1,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => self.counts.reset += 1,
            io::ErrorKind::TimedOut => self.counts.timeout += 1,
            _ => self.counts.other += 1,
        }
        self.progress.errors.fetch_add(1, Ordering::Relaxed);
        self.close_socket(i);
        self.next(i);
    }

    /// A slot with nothing more to send closes its socket.
    fn finish(&mut self, i: usize) {
        self.close_socket(i);
        self.next(i);
    }

    /// After a socket ends: another connection (connect-per-request, while
    /// requests remain), a free slot (arrivals) or done.
    fn next(&mut self, i: usize) {
        if let Some((_, free)) = &mut self.arrivals {
            // The arrival is over: its slot is free for the next.
            if self.conns[i].phase != Phase::Done {
                self.conns[i].phase = Phase::Done;
                self.live -= 1;
                free.push(i);
            }
        } else if self.config.connect_per_request && self.may_issue(i) {
            // Reopened from the event loop, not from here, so that a server
            // refusing every connection cannot recurse.
            self.conns[i].phase = Phase::Connecting;
            self.reopen.push(i);
        } else if self.conns[i].phase != Phase::Done {
            self.conns[i].phase = Phase::Done;
            self.live -= 1;
        }
    }

    fn close_socket(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        conn.in_flight.clear();
        // Requests lost with the socket will never be answered: the next
        // reply answers the next request sent.
        conn.answered = conn.issued;
        if let Some(mut stream) = conn.stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
        }
    }

    /// Timeouts, and the end of a timed run for idle connections.
    fn tick(&mut self, now: Instant) {
        let timeout = self.config.timeout;
        for i in 0..self.conns.len() {
            let conn = &self.conns[i];
            if conn.stream.is_none() {
                continue;
            }
            let waiting_since = match conn.phase {
                // An arrival's timeout covers its connect, request and
                // reply, from when it was due.
                Phase::Connecting | Phase::Running if self.arrivals.is_some() => {
                    Some(conn.next_due)
                }
                Phase::Connecting | Phase::Closing => Some(conn.since),
                Phase::Running => conn.in_flight.front().copied(),
                Phase::Done => None,
            };
            if waiting_since.is_some_and(|since| now.duration_since(since) >= timeout) {
                self.fail(i, &io::ErrorKind::TimedOut.into());
            } else if conn.phase == Phase::Running && conn.in_flight.is_empty() && self.stop_issuing
            {
                self.finish(i);
            }
        }
    }
}
