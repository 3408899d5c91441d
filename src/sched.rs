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
//!
//! Every transition is one atomic read-modify-write whose precondition is
//! asserted (tokio's `task/state.rs` rule): a transition from a state the
//! discipline rules out panics, in tests and in the model checker
//! (`scripts/loom.sh`), instead of quietly serialising a broken invariant.
//! In the server such a panic ends the worker loop, which is replaced.

use crate::sync::{AtomicU8, Ordering};

const PARKED: u8 = 0;
const SCHEDULED: u8 = 1;
const RUNNING: u8 = 2;
const NOTIFIED: u8 = 3;
const CLOSED: u8 = 4;

/// Where one connection stands between the poller and the workers.
#[derive(Debug, Default)]
pub(crate) struct Schedule(AtomicU8);

/// What [`Schedule::park`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Park {
    /// Nothing happened during the turn: the connection waits in the poller.
    Parked,
    /// An event came during the turn: the connection is `Scheduled` again
    /// and the caller must queue it.
    Requeue,
}

/// The states, for tests.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
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
    pub(crate) fn new() -> Self {
        Schedule(AtomicU8::new(PARKED))
    }

    /// The state now.
    #[cfg(test)]
    pub(crate) fn state(&self) -> State {
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
    pub(crate) fn notify(&self) -> bool {
        let prev = self.transition(|s| match s {
            PARKED => Some(SCHEDULED),
            RUNNING => Some(NOTIFIED),
            _ => None,
        });
        prev == Ok(PARKED)
    }

    /// A worker takes the connection out of the ready queue: `Scheduled`
    /// becomes `Running`.
    ///
    /// # Panics
    /// If the connection was not `Scheduled`, which the queue discipline
    /// rules out (it is queued exactly when it is `Scheduled`).
    pub(crate) fn start(&self) {
        let prev = self.transition(|s| (s == SCHEDULED).then_some(RUNNING));
        assert_eq!(
            prev,
            Ok(SCHEDULED),
            "started a connection that was not scheduled"
        );
    }

    /// The worker has nothing more to do now. Parks the connection unless an
    /// event came during the turn, in which case it is `Scheduled` again.
    ///
    /// # Panics
    /// If no worker was serving it.
    pub(crate) fn park(&self) -> Park {
        let prev = self.transition(|s| match s {
            RUNNING => Some(PARKED),
            NOTIFIED => Some(SCHEDULED),
            _ => None,
        });
        match prev {
            Ok(RUNNING) => Park::Parked,
            Ok(_) => Park::Requeue,
            Err(state) => panic!("parked a connection nobody served: state {state}"),
        }
    }

    /// The worker spent its turn's budget with work left: the connection
    /// goes to the back of the ready queue (the caller queues it). An event
    /// noted during the turn is absorbed: the next turn reads anyway.
    ///
    /// # Panics
    /// If no worker was serving it.
    pub(crate) fn yield_turn(&self) {
        let prev = self.transition(|s| matches!(s, RUNNING | NOTIFIED).then_some(SCHEDULED));
        assert!(prev.is_ok(), "yielded a connection nobody served");
    }

    /// The worker serving the connection closed it; later events do
    /// nothing.
    ///
    /// # Panics
    /// If no worker was serving it: only the worker that serves a
    /// connection closes it.
    pub(crate) fn close(&self) {
        let prev = self.transition(|s| matches!(s, RUNNING | NOTIFIED).then_some(CLOSED));
        assert!(prev.is_ok(), "closed a connection nobody served");
    }

    /// One read-modify-write: `next` maps the current state to the next,
    /// or refuses it. Returns the state before, or the state that refused.
    fn transition(&self, next: impl FnMut(u8) -> Option<u8>) -> Result<u8, u8> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, next)
    }
}

#[cfg(all(test, not(loom)))]
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
        s.start();
        assert_eq!(s.state(), State::Running);
        assert_eq!(s.park(), Park::Parked);
        assert_eq!(s.state(), State::Parked);
    }

    #[test]
    fn an_event_during_a_turn_is_not_lost() {
        let s = Schedule::new();
        assert!(s.notify());
        s.start();
        // The worker serves it: the event must not queue it (double service)...
        assert!(!s.notify());
        assert_eq!(s.state(), State::Notified);
        assert!(!s.notify());
        // ...but must bring it back once the turn ends.
        assert_eq!(s.park(), Park::Requeue);
        assert_eq!(s.state(), State::Scheduled);
        s.start();
    }

    #[test]
    fn a_spent_budget_requeues() {
        let s = Schedule::new();
        assert!(s.notify());
        s.start();
        s.yield_turn();
        assert_eq!(s.state(), State::Scheduled);
        assert!(!s.notify(), "queued already");
        s.start();
    }

    #[test]
    #[should_panic(expected = "not scheduled")]
    fn starting_a_parked_connection_panics() {
        Schedule::new().start();
    }

    #[test]
    #[should_panic(expected = "not scheduled")]
    fn starting_a_connection_twice_panics() {
        let s = Schedule::new();
        assert!(s.notify());
        s.start();
        s.start();
    }

    #[test]
    #[should_panic(expected = "nobody served")]
    fn parking_a_queued_connection_panics() {
        let s = Schedule::new();
        assert!(s.notify());
        s.park();
    }

    #[test]
    #[should_panic(expected = "nobody served")]
    fn closing_a_parked_connection_panics() {
        Schedule::new().close();
    }

    #[test]
    fn closed_is_final() {
        let s = Schedule::new();
        assert!(s.notify());
        s.start();
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
                s.start();
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

/// The model checks (`scripts/loom.sh`): loom runs each test under every
/// interleaving of its threads with up to four preemptions
/// (`crate::sync::bounded_model`), so a property that holds here holds
/// however the poller and the workers race.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::{AtomicBool, AtomicUsize};
    use loom::sync::{Arc, Mutex};
    use loom::thread;

    /// The ready queue, as far as one connection is concerned: how many
    /// times the connection is in it. Queuing it while it is queued already
    /// fails the model.
    #[derive(Default)]
    struct Queue(AtomicUsize);

    impl Queue {
        fn push(&self) {
            let before = self.0.fetch_add(1, Ordering::SeqCst);
            assert_eq!(before, 0, "the connection is in the ready queue twice");
        }

        /// Takes the connection out of the queue, if it is in it.
        fn pop(&self) -> bool {
            self.0
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        }
    }

    /// What the poller does with an event: records it, and queues the
    /// connection if that made it `Scheduled`.
    fn event(s: &Schedule, queue: &Queue) {
        if s.notify() {
            queue.push();
        }
    }

    /// One worker's turn: serve, then park, queuing it again if an event
    /// came meanwhile. `serving` counts the workers inside a turn.
    fn turn(s: &Schedule, queue: &Queue, serving: &AtomicUsize) {
        s.start();
        let before = serving.fetch_add(1, Ordering::SeqCst);
        assert_eq!(before, 0, "two workers serve the connection at once");
        serving.fetch_sub(1, Ordering::SeqCst);
        if s.park() == Park::Requeue {
            queue.push();
        }
    }

    /// A connection is served by at most one worker at a time and sits in
    /// the ready queue at most once, however events and turns interleave.
    #[test]
    fn loom_sched_one_worker_and_one_queue_entry_at_most() {
        crate::sync::bounded_model(|| {
            let s = Arc::new(Schedule::new());
            let queue = Arc::new(Queue::default());
            let serving = Arc::new(AtomicUsize::new(0));
            // Two workers that each take an event from the poller, then
            // serve whatever is queued (a leader serves what it found), and
            // a third event from the main thread.
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let (s, queue, serving) = (s.clone(), queue.clone(), serving.clone());
                    thread::spawn(move || {
                        event(&s, &queue);
                        while queue.pop() {
                            turn(&s, &queue, &serving);
                        }
                    })
                })
                .collect();
            event(&s, &queue);
            for w in workers {
                w.join().expect("worker");
            }
        });
    }

    /// An event that arrives during a turn is never lost: either a turn
    /// that started after it sees it, or the turn it interrupted ends in a
    /// requeue and another turn follows.
    #[test]
    fn loom_sched_an_event_during_a_turn_is_never_lost() {
        crate::sync::bounded_model(|| {
            let s = Arc::new(Schedule::new());
            let queue = Arc::new(Queue::default());
            // The socket: how many events' bytes have arrived. It is a lock
            // because the kernel's socket buffer is one, and that matters:
            // with a bare atomic counter the model loses an event. A
            // notifier sees `Scheduled` and leaves its event to the coming
            // turn, while that turn's read misses the bytes, which the
            // memory model allows when the two sides share no lock (the
            // store-buffering pattern).
            let socket = Arc::new(Mutex::new(0));
            // The most events any turn has read.
            let read = Arc::new(AtomicUsize::new(0));
            let serve = {
                let (s, queue) = (s.clone(), queue.clone());
                let (socket, read) = (socket.clone(), read.clone());
                move || {
                    while queue.pop() {
                        s.start();
                        // A turn reads the socket once it has started, as
                        // the handler does.
                        read.fetch_max(*socket.lock().expect("socket"), Ordering::SeqCst);
                        if s.park() == Park::Requeue {
                            queue.push();
                        }
                    }
                }
            };
            let notifiers: Vec<_> = (0..2)
                .map(|_| {
                    let (s, queue, socket) = (s.clone(), queue.clone(), socket.clone());
                    thread::spawn(move || {
                        // The bytes land first, then the poller sees the edge.
                        *socket.lock().expect("socket") += 1;
                        event(&s, &queue);
                    })
                })
                .collect();
            let worker = thread::spawn(serve.clone());
            for n in notifiers {
                n.join().expect("notifier");
            }
            worker.join().expect("worker");
            // Every turn still owed is taken now that nothing else runs.
            serve();
            assert_eq!(
                read.load(Ordering::SeqCst),
                2,
                "an event came after the last turn read and no turn followed"
            );
            assert_eq!(s.state(), State::Parked);
        });
    }

    /// Closed is final: an event after the close never queues the
    /// connection, and it stays closed.
    #[test]
    fn loom_sched_closed_is_final() {
        crate::sync::bounded_model(|| {
            let s = Arc::new(Schedule::new());
            let queue = Arc::new(Queue::default());
            let closed = Arc::new(AtomicBool::new(false));
            event(&s, &queue);
            // Two events race a worker whose second turn closes the
            // connection.
            let notifiers: Vec<_> = (0..2)
                .map(|_| {
                    let (s, queue, closed) = (s.clone(), queue.clone(), closed.clone());
                    thread::spawn(move || {
                        let after_close = closed.load(Ordering::SeqCst);
                        if s.notify() {
                            assert!(!after_close, "an event after the close queued it");
                            queue.push();
                        }
                    })
                })
                .collect();
            let mut turns = 0;
            while queue.pop() {
                s.start();
                turns += 1;
                if turns == 2 {
                    s.close();
                    closed.store(true, Ordering::SeqCst);
                } else if s.park() == Park::Requeue {
                    queue.push();
                }
            }
            for n in notifiers {
                n.join().expect("notifier");
            }
            if closed.load(Ordering::SeqCst) {
                assert!(!s.notify(), "an event after the close queued it");
                assert_eq!(s.state(), State::Closed);
                assert!(!queue.pop(), "a closed connection is queued");
            }
        });
    }
}
