//! The connection limit. A [`Permit`] is taken for every connection before
//! it is handed to the engine, and given back when the permit is dropped,
//! which happens when the connection is, however it ended.
//!
//! Its lock and condition variable come from `crate::sync`, so that the
//! model checker (`scripts/loom.sh`) proves the bound and the wake-ups of
//! `acquire`, `close` and `wait_idle` under every interleaving.

use std::sync::Arc;
use std::time::Instant;

use crate::sync::{Condvar, Mutex};

/// A counting gate with a fixed number of slots.
pub struct Gate {
    capacity: usize,
    state: Mutex<State>,
    cond: Condvar,
}

struct State {
    in_use: usize,
    closed: bool,
    /// Threads waiting in `acquire` for a slot.
    acquiring: usize,
    /// Threads waiting in `wait_idle` for every slot.
    draining: usize,
}

/// One slot of a [`Gate`], released on drop.
pub struct Permit {
    gate: Arc<Gate>,
}

impl Gate {
    /// A gate with `capacity` slots.
    pub fn new(capacity: usize) -> Arc<Gate> {
        Arc::new(Gate {
            capacity,
            state: Mutex::new(State {
                in_use: 0,
                closed: false,
                acquiring: 0,
                draining: 0,
            }),
            cond: Condvar::new(),
        })
    }

    /// Waits for a free slot. Returns `None` once the gate is closed.
    pub fn acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut state = self.state.lock();
        while !state.closed && state.in_use >= self.capacity {
            state.acquiring += 1;
            self.cond.wait(&mut state);
            state.acquiring -= 1;
        }
        self.take(&mut state)
    }

    /// Takes a free slot if there is one, without waiting.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut state = self.state.lock();
        if state.in_use >= self.capacity {
            return None;
        }
        self.take(&mut state)
    }

    fn take(self: &Arc<Self>, state: &mut State) -> Option<Permit> {
        if state.closed {
            return None;
        }
        state.in_use += 1;
        Some(Permit { gate: self.clone() })
    }

    /// Refuses every later `acquire` and wakes the ones waiting. Permits
    /// already out stay valid until dropped.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.cond.notify_all();
    }

    /// How many slots are taken now.
    pub fn in_use(&self) -> usize {
        self.state.lock().in_use
    }

    /// Waits until every permit is back, or until `deadline`. Returns whether
    /// every permit is back.
    pub fn wait_idle(&self, deadline: Instant) -> bool {
        let mut state = self.state.lock();
        while state.in_use > 0 {
            state.draining += 1;
            let timed_out = self.cond.wait_until(&mut state, deadline).timed_out();
            state.draining -= 1;
            if timed_out {
                return state.in_use == 0;
            }
        }
        true
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.gate.state.lock();
        state.in_use -= 1;
        // Both the acceptor (waiting for a slot) and the stop sequence
        // (waiting for none in use) may be waiting; wake them all, but only
        // when one of them waits: a stop closing thousands of connections
        // should not wake its own thread thousands of times for nothing.
        let wake = state.acquiring > 0 || (state.draining > 0 && state.in_use == 0);
        drop(state);
        if wake {
            self.gate.cond.notify_all();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn slots_are_bounded_and_come_back_on_drop() {
        let gate = Gate::new(2);
        let a = gate.try_acquire().expect("first slot");
        let _b = gate.try_acquire().expect("second slot");
        assert!(gate.try_acquire().is_none());
        drop(a);
        assert!(gate.try_acquire().is_some());
    }

    #[test]
    fn a_panicking_pool_job_gives_its_slot_back() {
        let gate = Gate::new(1);
        let permit = gate.try_acquire().expect("slot");
        let pool = threadpool::ThreadPool::new(1);
        pool.execute(move || {
            let _permit = permit;
            panic!("handler failed");
        });
        pool.join();
        assert_eq!(pool.panic_count(), 1);
        assert_eq!(gate.in_use(), 0);
    }

    #[test]
    fn acquire_waits_for_a_release() {
        let gate = Gate::new(1);
        let held = gate.try_acquire().expect("slot");
        let waiter = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.acquire().is_some())
        };
        drop(held);
        assert!(waiter.join().expect("waiter panicked"));
    }

    #[test]
    fn close_wakes_a_waiting_acquire() {
        let gate = Gate::new(1);
        let _held = gate.try_acquire().expect("slot");
        let waiter = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.acquire().is_none())
        };
        gate.close();
        assert!(waiter.join().expect("waiter panicked"));
        assert!(gate.try_acquire().is_none());
    }

    #[test]
    fn wait_idle_reports_permits_still_out() {
        let gate = Gate::new(1);
        let held = gate.try_acquire().expect("slot");
        assert!(!gate.wait_idle(Instant::now() + Duration::from_millis(10)));
        drop(held);
        assert!(gate.wait_idle(Instant::now() + Duration::from_secs(5)));
    }

    /// Waits until `n` threads wait in `acquire` and `m` in `wait_idle`.
    fn until_waiting(gate: &Gate, acquiring: usize, draining: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let state = gate.state.lock();
            if (state.acquiring, state.draining) == (acquiring, draining) {
                return;
            }
            drop(state);
            assert!(Instant::now() < deadline, "the waiters never waited");
            std::thread::yield_now();
        }
    }

    /// A thread already waiting in `acquire` is counted while it waits and
    /// woken by a release, not by its own deadline: the test gives it none.
    #[test]
    fn a_release_wakes_a_thread_waiting_for_a_slot() {
        let gate = Gate::new(1);
        let held = gate.try_acquire().expect("slot");
        let (tx, got) = std::sync::mpsc::channel();
        {
            let gate = gate.clone();
            std::thread::spawn(move || tx.send(gate.acquire().is_some()));
        }
        until_waiting(&gate, 1, 0);
        drop(held);
        let got = got.recv_timeout(Duration::from_secs(10));
        assert_eq!(got, Ok(true), "the waiter was not woken");
        until_waiting(&gate, 0, 0);
    }

    /// A stop waiting for every slot is woken by the last release only;
    /// releases before it leave it waiting.
    #[test]
    fn the_last_release_wakes_a_stop_waiting_for_every_slot() {
        let gate = Gate::new(2);
        let first = gate.try_acquire().expect("slot");
        let second = gate.try_acquire().expect("slot");
        let (tx, idle) = std::sync::mpsc::channel();
        {
            let gate = gate.clone();
            std::thread::spawn(move || {
                tx.send(gate.wait_idle(Instant::now() + Duration::from_secs(30)))
            });
        }
        until_waiting(&gate, 0, 1);
        drop(first);
        // Still one out: the stop still waits.
        assert!(idle.recv_timeout(Duration::from_millis(50)).is_err());
        until_waiting(&gate, 0, 1);
        drop(second);
        let idle = idle.recv_timeout(Duration::from_secs(10));
        assert_eq!(idle, Ok(true), "the stop was not woken");
        until_waiting(&gate, 0, 0);
    }
}

/// The model checks (`scripts/loom.sh`): the bound holds and every waiter is
/// woken, however acquires and releases interleave.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::thread;
    use std::time::Duration;

    /// Far enough off never to matter: under loom a timed wait waits for
    /// its notification anyway, so a model that ends proves it comes.
    fn far_off() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    /// Never more permits out than slots, and a thread waiting in `acquire`
    /// is woken when the permit it waits for is dropped.
    #[test]
    fn loom_gate_bounds_holders_and_wakes_a_waiting_acquire() {
        loom::model(|| {
            let gate = Gate::new(1);
            let holders = Arc::new(AtomicUsize::new(0));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let (gate, holders) = (gate.clone(), holders.clone());
                    thread::spawn(move || {
                        let permit = gate.acquire().expect("the gate is open");
                        let before = holders.fetch_add(1, Ordering::SeqCst);
                        assert_eq!(before, 0, "two permits out of one slot");
                        holders.fetch_sub(1, Ordering::SeqCst);
                        drop(permit);
                    })
                })
                .collect();
            for t in threads {
                t.join().expect("acquiring thread");
            }
            assert_eq!(gate.in_use(), 0);
        });
    }

    /// `wait_idle` returns, and reports every permit back, once the last
    /// permit is dropped, whichever thread drops it.
    #[test]
    fn loom_gate_wait_idle_ends_when_the_last_permit_drops() {
        loom::model(|| {
            let gate = Gate::new(2);
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let permit = gate.try_acquire().expect("a free slot");
                    thread::spawn(move || drop(permit))
                })
                .collect();
            assert!(gate.wait_idle(far_off()));
            assert_eq!(gate.in_use(), 0);
            for t in threads {
                t.join().expect("releasing thread");
            }
        });
    }

    /// `close` wakes a thread waiting in `acquire`, which then gets no
    /// permit.
    #[test]
    fn loom_gate_close_wakes_a_waiting_acquire() {
        loom::model(|| {
            let gate = Gate::new(1);
            let held = gate.try_acquire().expect("a free slot");
            let waiter = {
                let gate = gate.clone();
                thread::spawn(move || gate.acquire().is_none())
            };
            gate.close();
            assert!(waiter.join().expect("waiting thread"));
            drop(held);
        });
    }
}
