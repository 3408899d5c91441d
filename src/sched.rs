//! The scheduling state of one connection, which makes double service
//! impossible and loses no wake-up.
//!
//! ```text
//!            event                    worker takes it
//!   Parked ─────────► Scheduled ───────────────────► Running
//!     ▲                   ▲                            │  │
//!     │ park (nothing     │ yield (budget spent), or   │  │ event while
//!     │ new came)         │ park after a notification  │  ▼ running
//!     └───────────────────┴──────────────────────── Notified
//! ```
//!
//! A connection is in the ready queue exactly when it is `Scheduled`, and
//! served by exactly one worker when it is `Running` or `Notified`. Events
//! are edge-triggered, so an event that arrives while a worker serves the
//! connection must not be lost: it turns `Running` into `Notified`, and the
//! worker, instead of parking, queues the connection again. `Closed` is
//! final: events for a closed connection do nothing.

use std::sync::atomic::{AtomicU8, Ordering};

const PARKED: u8 = 0;
const SCHEDULED: u8 = 1;
const RUNNING: u8 = 2;
const NOTIFIED: u8 = 3;
const CLOSED: u8 = 4;

/// Where one connection stands between the poller and the workers.
#[derive(Debug, Default)]
pub struct Schedule(AtomicU8);

/// What [`Schedule::park`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Park {
    /// Nothing happened during the turn: the connection waits in the poller.
    Parked,
    /// An event came during the turn: the connection is `Scheduled` again
    /// and the caller must queue it.
    Requeue,
}

/// The states, for tests and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Waiting in the poller for an event.
    Parked,
    /// In the ready queue, waiting for a worker.
    Scheduled,
    /// Served by a worker.
    Running,
    /// Served by a worker, and an event arrived meanwhile.
    Notified,
    /// Closed; nothing more happens to it.
    Closed,
}

impl Schedule {
    /// A new connection: parked until its first event.
    pub fn new() -> Self {
        Schedule(AtomicU8::new(PARKED))
    }

    /// The state now.
    pub fn state(&self) -> State {
        match self.0.load(Ordering::Acquire) {
            PARKED => State::Parked,
            SCHEDULED => State::Scheduled,
            RUNNING => State::Running,
            NOTIFIED => State::Notified,
            _ => State::Closed,
        }
    }

    /// Records an event. Returns `true` when the connection was parked and
    /// is now `Scheduled`: the caller must put it in the ready queue. In
    /// every other state the event is absorbed (queued already, or noted for
    /// the worker serving it).
    pub fn notify(&self) -> bool {
        let mut current = self.0.load(Ordering::Acquire);
        loop {
            let next = match current {
                PARKED => SCHEDULED,
                RUNNING => NOTIFIED,
                _ => return false,
            };
            match self
                .0
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return next == SCHEDULED,
                Err(actual) => current = actual,
            }
        }
    }

    /// A worker takes the connection out of the ready queue. Returns `false`
    /// (and leaves the state alone) if it was not `Scheduled`, which the
    /// queue discipline rules out.
    pub fn start(&self) -> bool {
        self.0
            .compare_exchange(SCHEDULED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The worker has nothing more to do now. Parks the connection unless an
    /// event came during the turn, in which case it is `Scheduled` again.
    pub fn park(&self) -> Park {
        match self
            .0
            .compare_exchange(RUNNING, PARKED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Park::Parked,
            Err(_) => {
                // Only an event can have moved it, and only to Notified.
                self.0.store(SCHEDULED, Ordering::Release);
                Park::Requeue
            }
        }
    }

    /// The worker spent its turn's budget with work left: the connection
    /// goes to the back of the ready queue (the caller queues it).
    pub fn yield_turn(&self) {
        self.0.store(SCHEDULED, Ordering::Release);
    }

    /// The connection is closed; later events do nothing.
    pub fn close(&self) {
        self.0.store(CLOSED, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn an_event_schedules_a_parked_connection_once() {
        let s = Schedule::new();
        assert_eq!(s.state(), State::Parked);
        assert!(s.notify());
        assert_eq!(s.state(), State::Scheduled);
        // Queued already: a second event must not queue it twice.
        assert!(!s.notify());
        assert_eq!(s.state(), State::Scheduled);
    }

    #[test]
    fn a_turn_without_events_parks() {
        let s = Schedule::new();
        assert!(s.notify());
        assert!(s.start());
        assert_eq!(s.state(), State::Running);
        assert_eq!(s.park(), Park::Parked);
        assert_eq!(s.state(), State::Parked);
    }

    #[test]
    fn an_event_during_a_turn_is_not_lost() {
        let s = Schedule::new();
        assert!(s.notify());
        assert!(s.start());
        // The worker serves it: the event must not queue it (double service)...
        assert!(!s.notify());
        assert_eq!(s.state(), State::Notified);
        assert!(!s.notify());
        // ...but must bring it back once the turn ends.
        assert_eq!(s.park(), Park::Requeue);
        assert_eq!(s.state(), State::Scheduled);
        assert!(s.start());
    }

    #[test]
    fn a_spent_budget_requeues() {
        let s = Schedule::new();
        assert!(s.notify());
        assert!(s.start());
        s.yield_turn();
        assert_eq!(s.state(), State::Scheduled);
        assert!(!s.notify(), "queued already");
        assert!(s.start());
    }

    #[test]
    fn only_a_scheduled_connection_can_be_started() {
        let s = Schedule::new();
        assert!(!s.start());
        assert!(s.notify());
        assert!(s.start());
        assert!(!s.start());
    }

    #[test]
    fn closed_is_final() {
        let s = Schedule::new();
        assert!(s.notify());
        assert!(s.start());
        s.close();
        assert!(!s.notify());
        assert_eq!(s.state(), State::Closed);
    }

    /// Events from many threads against one worker: every event is either
    /// absorbed by a turn or causes exactly one more, and the connection is
    /// never served twice at once.
    #[test]
    fn concurrent_events_never_double_schedule() {
        let s = Arc::new(Schedule::new());
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let notifiers: Vec<_> = (0..4)
            .map(|_| {
                let (s, queued) = (s.clone(), queued.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if s.notify() {
                            queued.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        // The worker: takes every queued turn, one at a time.
        let mut turns = 0;
        let mut done = false;
        while !done {
            done = notifiers.iter().all(|n| n.is_finished());
            while queued.load(Ordering::SeqCst) > 0 {
                queued.fetch_sub(1, Ordering::SeqCst);
                assert!(s.start(), "queued but not scheduled");
                turns += 1;
                if s.park() == Park::Requeue {
                    queued.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        for n in notifiers {
            n.join().expect("notifier panicked");
        }
        assert!(turns >= 1);
        assert_eq!(s.state(), State::Parked);
    }
}
