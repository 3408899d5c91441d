//! How a socket ends, and what its slot does next: the server's close, a
//! failure counted by kind, a timeout, or nothing left to send; then
//! another connection (connect-per-request), a free slot (arrivals) or
//! done.

use std::io;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Driver, Phase};

impl Driver<'_> {
    /// The server closed slot `i`'s socket; requests it left unanswered are
    /// counted as closed.
    pub(super) fn eof(&mut self, i: usize) {
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
    pub(super) fn fail(&mut self, i: usize, e: &io::Error) {
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
    pub(super) fn finish(&mut self, i: usize) {
        self.close_socket(i);
        self.next(i);
    }

    /// After a socket ends: another connection (connect-per-request, while
    /// requests remain), a free slot (arrivals) or done.
    pub(super) fn next(&mut self, i: usize) {
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

    /// Ends slot `i`'s socket: it leaves the poller, and its requests in
    /// flight are given up.
    pub(super) fn close_socket(&mut self, i: usize) {
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
    pub(super) fn tick(&mut self, now: Instant) {
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
