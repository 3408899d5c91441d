//! How the leader waits in the poller: straight into a blocking wait, or,
//! while clients keep the server busy, after a short nap on a timer.
//!
//! A worker blocked in the poller is woken by the kernel when a client's
//! bytes arrive, and that wake-up is paid in the client's own write: on
//! another CPU it is a cross-CPU interrupt, the dearest part of a small
//! write (in a virtual machine, where a halted CPU must be woken by the
//! host, dearer still). A server a little faster than its clients goes idle
//! thousands of times a second, and each time the next client write pays
//! for waking it: the clients get fewer replies a second although the
//! server has time to spare.
//!
//! So while the server is busy (its last wait in the poller ended within
//! [`BUSY`], and it spent at most a fifth of the last [`WINDOW`] waiting),
//! the leader first looks into the poller without waiting and,
//! with nothing there, naps for [`NAP`] on a timer before it waits as
//! before. Nobody waits in the poller during the nap, so a client's write
//! wakes nobody; the wait after it returns at once if anything arrived
//! meanwhile. A wait that ends late clears the busy mark, so the leader
//! naps at most once per idle spell, and an idle server not at all: it
//! never spins.
//!
//! The fifth matters: a nap costs the server more than a sleep in the
//! poller (a timer to set and to take), so a server that waits half its
//! time would nap several times per thousand replies and pay for each,
//! while a nearly saturated one waits seldom and briefly, so that a nap is
//! rare and nearly always catches the next arrival.
//!
//! It does not nap while the acceptor is adding connections (any added in
//! the last [`QUIET`]): waking the leader costs the acceptor little, and
//! under connect-per-request load the timer cost more CPU per connection
//! than it saved (docs/benchmarks.md, "The pipelined gap").

use std::io;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

/// How long the leader naps before it waits, while busy.
const NAP: Duration = Duration::from_micros(8);

/// A wait that ended within this long marks the server busy.
const BUSY: Duration = Duration::from_micros(16);

/// How long after a connection was added the leader naps again.
const QUIET: Duration = Duration::from_millis(1);

/// The span over which the share of time spent waiting is taken.
const WINDOW: Duration = Duration::from_millis(1);

/// The leader naps only while it waited at most 1 / `IDLE_SHARE` of the
/// last window.
const IDLE_SHARE: u32 = 5;

/// The timer slack of a worker thread: without it, Linux lets a sleep this
/// short run 50 µs late.
const SLACK_NS: u64 = 1_000;

/// One worker's pacing of its waits (each worker keeps its own; only the
/// leader waits).
pub(super) struct Pace {
    /// How long to nap; zero if the thread's timer slack could not be set.
    nap: Duration,
    /// The last wait ended within [`BUSY`].
    busy: bool,
    /// When the current (or last) wait began.
    since: Instant,
    /// The engine's count of added connections, as last seen...
    added: usize,
    /// ...and when it was seen to change.
    added_at: Instant,
    /// When the current window began...
    window: Instant,
    /// ...and the time spent waiting in it.
    waited: Duration,
    /// The last whole window was spent waiting at most a fifth of the
    /// time.
    saturated: bool,
}

impl Pace {
    /// The pacing for the calling worker thread, whose timer slack it
    /// sets so that a nap lasts what it says.
    pub(super) fn new() -> Pace {
        let slack = nix::sys::prctl::set_timerslack(SLACK_NS);
        Pace::with_nap(
            if slack.is_ok() { NAP } else { Duration::ZERO },
            Instant::now(),
        )
    }

    fn with_nap(nap: Duration, now: Instant) -> Pace {
        Pace {
            nap,
            busy: false,
            since: now,
            added: 0,
            added_at: now.checked_sub(QUIET).unwrap_or(now),
            window: now,
            waited: Duration::ZERO,
            saturated: false,
        }
    }

    /// Waits in `poll` until events come, napping first while busy.
    /// `added` is the engine's count of connections added so far.
    pub(super) fn wait(
        &mut self,
        poll: &mut Poll,
        events: &mut Events,
        added: usize,
    ) -> io::Result<()> {
        if self.begin(Instant::now(), added) {
            poll.poll(events, Some(Duration::ZERO))?;
            if !events.is_empty() {
                return Ok(());
            }
            std::thread::sleep(self.nap);
        }
        poll.poll(events, None)
    }

    /// A wait begins at `now`: whether to nap first.
    fn begin(&mut self, now: Instant, added: usize) -> bool {
        self.since = now;
        if added != self.added {
            self.added = added;
            self.added_at = now;
        }
        let quiet = now.saturating_duration_since(self.added_at) > QUIET;
        self.busy && self.saturated && quiet && !self.nap.is_zero()
    }

    /// The wait ended at `now`, with events.
    pub(super) fn woke(&mut self, now: Instant) {
        let waited = now.saturating_duration_since(self.since);
        self.busy = waited <= BUSY;
        self.waited += waited;
        let span = now.saturating_duration_since(self.window);
        if span >= WINDOW {
            self.saturated = self.waited * IDLE_SHARE <= span;
            self.window = now;
            self.waited = Duration::ZERO;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// A pace that has seen a window of short waits, long after its last
    /// added connection; returns it and the time the last wait ended.
    fn busy() -> (Pace, Instant) {
        let start = Instant::now();
        let mut pace = Pace::with_nap(NAP, start);
        assert!(!pace.begin(start, 0), "a fresh pace has no reason to nap");
        pace.woke(start + us(5));
        let last = start + WINDOW;
        pace.begin(last, 0);
        let end = last + us(5);
        pace.woke(end);
        (pace, end)
    }

    #[test]
    fn waits_a_window_before_its_first_nap() {
        let start = Instant::now();
        let mut pace = Pace::with_nap(NAP, start);
        pace.begin(start, 0);
        pace.woke(start + us(5));
        assert!(!pace.begin(start + us(8), 0), "no whole window seen yet");
    }

    #[test]
    fn blocks_while_mostly_idle() {
        let (mut pace, end) = busy();
        let start = end + us(1);
        pace.begin(start, 0);
        let woke = start + us(400);
        pace.woke(woke);
        let last = woke + WINDOW;
        pace.begin(last, 0);
        pace.woke(last + us(5));
        assert!(
            !pace.begin(last + us(8), 0),
            "405 us of waiting in 1.4 ms is more than a fifth"
        );
    }

    #[test]
    fn naps_after_a_short_wait() {
        let (mut pace, end) = busy();
        assert!(pace.begin(end + us(3), 0));
    }

    #[test]
    fn blocks_after_a_long_wait() {
        let (mut pace, end) = busy();
        let start = end + us(3);
        pace.begin(start, 0);
        pace.woke(start + BUSY + us(1));
        assert!(
            !pace.begin(start + BUSY + us(5), 0),
            "idle: one nap per idle spell"
        );
    }

    #[test]
    fn blocks_while_connections_are_added() {
        let (mut pace, end) = busy();
        assert!(!pace.begin(end + us(3), 1), "a connection was just added");
        pace.woke(end + us(6));
        assert!(!pace.begin(end + us(9), 1), "still within QUIET of it");
        pace.woke(end + us(12));
        let later = end + us(3) + QUIET + us(1);
        pace.begin(later, 1);
        pace.woke(later + us(5));
        assert!(pace.begin(later + us(8), 1), "quiet again");
    }

    #[test]
    fn never_naps_without_a_nap() {
        let start = Instant::now();
        let mut pace = Pace::with_nap(Duration::ZERO, start);
        pace.begin(start, 0);
        pace.woke(start + us(1));
        assert!(!pace.begin(start + us(2), 0));
    }
}
