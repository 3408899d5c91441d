//! The schedule of open-loop arrivals (`-R` with `--connect-per-request`):
//! arrival `k` of the run is due `k / rate` seconds after the start,
//! whatever the server does, and each load thread (lane) takes every
//! `lanes`-th one. Pure: the driver asks what is due and opens the
//! connections.

use std::time::{Duration, Instant};

use super::{Limit, LoadConfig, share};

/// One load thread's place among the threads: its number and how many
/// there are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lane {
    /// This thread, from 0.
    pub index: u64,
    /// The threads in all.
    pub of: u64,
}

/// One arrival: its number in the whole run (which its request carries,
/// so its reply is matched to it) and when it was due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// Its number in the run, from 0.
    pub id: u64,
    /// When it was due.
    pub due: Instant,
}

/// One lane's arrivals still to come.
#[derive(Clone, Debug)]
pub struct Schedule {
    start: Instant,
    rate: f64,
    lane: Lane,
    /// The next arrival's number in the run.
    next: u64,
    /// Arrivals of this lane still to come.
    remaining: u64,
}

/// The run's arrivals in all: `-n`, or one per `1 / rate` of `-d`
/// (arrivals at 0, 1/rate, ... up to but not at the end), or, with
/// neither, the default count of requests (1,000): arrivals have no
/// connections to multiply it by, and `-c` plays no part.
pub fn total(limit: Limit, rate: f64) -> u64 {
    match limit {
        Limit::Requests(n) | Limit::PerConnection(n) => n,
        // A duration of a year at most and a finite rate: the product is
        // far from u64's end.
        Limit::Duration(d) => (d.as_secs_f64() * rate).ceil() as u64,
    }
}

impl Schedule {
    /// Lane `lane`'s share of the run's arrivals, the run starting at
    /// `start`; `None` unless the run is one of arrivals.
    pub fn new(config: &LoadConfig, lane: Lane, start: Instant) -> Option<Schedule> {
        let rate = config.rate.filter(|r| r.is_finite() && *r > 0.0)?;
        if !config.connect_per_request {
            return None;
        }
        let all = total(config.limit, rate);
        Some(Schedule {
            start,
            rate,
            lane,
            next: lane.index,
            remaining: share(all, lane.of as usize, lane.index),
        })
    }

    /// When the next arrival is due; `None` when there are no more.
    pub fn next_due(&self) -> Option<Instant> {
        (self.remaining > 0)
            .then(|| self.start + Duration::from_secs_f64(self.next as f64 / self.rate))
    }

    /// The next arrival, if it is due by `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Arrival> {
        let due = self.next_due().filter(|due| *due <= now)?;
        let arrival = Arrival { id: self.next, due };
        self.next += self.lane.of;
        self.remaining -= 1;
        Some(arrival)
    }

    /// Whether arrivals remain.
    pub fn pending(&self) -> bool {
        self.remaining > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(limit: Limit, rate: f64, lane: Lane, start: Instant) -> Schedule {
        let all = total(limit, rate);
        Schedule {
            start,
            rate,
            lane,
            next: lane.index,
            remaining: share(all, lane.of as usize, lane.index),
        }
    }

    /// `-R 200 -d 2s` is 400 arrivals, 5 ms apart from the start; two
    /// lanes take them in turn, so together they keep the one schedule.
    #[test]
    fn arrivals_keep_the_rate_over_the_lanes() {
        let start = Instant::now();
        let limit = Limit::Duration(Duration::from_secs(2));
        assert_eq!(total(limit, 200.0), 400);
        assert_eq!(total(Limit::Requests(9), 200.0), 9);
        assert_eq!(total(Limit::PerConnection(10), 200.0), 10);
        let mut seen = Vec::new();
        for index in 0..2 {
            let mut lane = schedule(limit, 200.0, Lane { index, of: 2 }, start);
            let end = start + Duration::from_secs(10);
            while let Some(arrival) = lane.pop_due(end) {
                seen.push(arrival);
            }
            assert!(!lane.pending());
            assert_eq!(lane.next_due(), None);
        }
        seen.sort_by_key(|a| a.id);
        assert_eq!(seen.len(), 400);
        for (k, arrival) in seen.iter().enumerate() {
            assert_eq!(arrival.id, k as u64);
            let at = arrival.due.duration_since(start).as_secs_f64();
            assert!((at - k as f64 * 0.005).abs() < 1e-6, "{k} at {at}");
        }
    }

    /// Nothing is given before it is due.
    #[test]
    fn nothing_comes_early() {
        let start = Instant::now();
        let lane = Lane { index: 0, of: 1 };
        let mut s = schedule(Limit::Requests(3), 10.0, lane, start);
        assert_eq!(s.pop_due(start).map(|a| a.id), Some(0));
        assert_eq!(s.pop_due(start + Duration::from_millis(99)), None);
        assert_eq!(s.next_due(), Some(start + Duration::from_millis(100)));
        assert_eq!(
            s.pop_due(start + Duration::from_millis(250)).map(|a| a.id),
            Some(1)
        );
        assert_eq!(
            s.pop_due(start + Duration::from_millis(250)).map(|a| a.id),
            Some(2)
        );
        assert_eq!(s.pop_due(start + Duration::from_secs(9)), None);
    }
}
