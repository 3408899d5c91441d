//! What a connection sends and when: the closed loop keeps `pipeline`
//! requests in flight, the open loop sends each request when it is due,
//! and open-loop arrivals take a free slot each for their one request.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Driver, Phase};
use crate::load::payload::write_message;

/// Open loop: the most requests one connection may have in flight when the
/// server falls behind its schedule.
const OPEN_LOOP_MAX_IN_FLIGHT: usize = 100_000;

impl Driver<'_> {
    /// Whether slot `i` may start another request now. An arrival that
    /// came before the end of a timed run still sends its request.
    pub(super) fn may_issue(&self, i: usize) -> bool {
        (!self.stop_issuing || self.arrivals.is_some())
            && self.conns[i].issued < self.conns[i].quota
    }

    /// Open-loop arrivals: each one due by `now` opens a connection in a
    /// free slot, or is counted as dropped when every slot is in use.
    /// A late arrival is never held back for a slot: that would slow the
    /// arrivals down to what the server takes, the closed loop again.
    pub(super) fn arrive(&mut self, now: Instant) {
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

    /// How many requests a connection may have in flight.
    pub(super) fn depth(&self) -> usize {
        if self.config.connect_per_request {
            1
        } else if self.interval.is_some() {
            OPEN_LOOP_MAX_IN_FLIGHT
        } else {
            self.config.pipeline
        }
    }

    /// Open loop: sends what is due on every running connection.
    pub(super) fn send_due(&mut self, now: Instant) {
        for i in 0..self.conns.len() {
            let conn = &self.conns[i];
            if conn.phase == Phase::Running && conn.next_due <= now {
                self.top_up(i);
            }
        }
    }

    /// Open loop: the earliest time a running connection has a request due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.conns
            .iter()
            .enumerate()
            .filter(|(i, c)| c.phase == Phase::Running && self.may_issue(*i))
            .map(|(_, c)| c.next_due)
            .min()
    }

    /// Sends requests until the pipeline is full or the limit is reached;
    /// in the open loop, every request that is due. (With a fresh
    /// connection per request the depth is one, and a socket leaves the
    /// running phase with its reply, so it carries one request.)
    pub(super) fn top_up(&mut self, i: usize) {
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
}
