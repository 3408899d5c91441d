//! The connection limit. A [`Permit`] is taken for every connection before
//! it is handed to the engine, and given back when the permit is dropped,
//! which happens when the connection is, however it ended.
//!
//! In `block` mode the acceptor thread waits here, in [`Gate::acquire`],
//! while every slot is taken: that one thread waiting is the server's
//! backpressure, and new clients wait in the kernel's listen backlog
//! meanwhile. A release wakes it; so does [`Gate::close`], at a stop.
//!
//! Its lock and condition variable come from `crate::sync`, so that the
//! model checker (`scripts/loom.sh`) proves the bound and the wake-ups of
//! `acquire`, `close` and `wait_idle` under every interleaving.

use std::sync::Arc;
use std::time::Instant;

use crate::sync::{Condvar, Mutex};

/// A counting gate with a number of slots, which an operator may change
/// while it is in use.
pub struct Gate {
    state: Mutex<State>,
    cond: Condvar,
}

struct State {
    /// Slots in all. Lowered below `in_use`, nothing is taken back: no
    /// permit is given until enough come back.
    capacity: usize,
    in_use: usize,
    closed: bool,
    /// Threads waiting in `wait_idle` for every slot.
    draining: usize,
    /// Threads waiting in `acquire` for a free slot (the acceptor).
    acquiring: usize,
}

/// One slot of a [`Gate`], released on drop.
pub struct Permit {
    gate: Arc<Gate>,
}

impl Gate {
    /// A gate with `capacity` slots.
    pub fn new(capacity: usize) -> Arc<Gate> {
        Arc::new(Gate {
            state: Mutex::new(State {
                capacity,
                in_use: 0,
                closed: false,
                draining: 0,
                acquiring: 0,
            }),
            cond: Condvar::new(),
        })
    }

    /// Takes a free slot if there is one, without waiting.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut state = self.state.lock();
        if state.in_use >= state.capacity {
            return None;
        }
        self.take(&mut state)
    }

    /// Takes a slot, waiting while every slot is taken. Returns `None`
    /// once the gate is closed, at once if a closing wakes the wait.
    #[cfg(test)]
    pub fn acquire(self: &Arc<Self>) -> Option<Permit> {
        self.acquire_while(|| true)
    }

    /// As [`Gate::acquire`], but waits only while `wanted` says so, asked
    /// again at each wake-up ([`Gate::wake`]): `None` when the gate is
    /// closed, or full and no longer wanted.
    pub fn acquire_while(self: &Arc<Self>, wanted: impl Fn() -> bool) -> Option<Permit> {
        let mut state = self.state.lock();
        while state.in_use >= state.capacity && !state.closed {
            if !wanted() {
                return None;
            }
            state.acquiring += 1;
            self.cond.wait(&mut state);
            state.acquiring -= 1;
        }
        self.take(&mut state)
    }

    /// Wakes a thread waiting in [`Gate::acquire_while`] to ask again
    /// whether it still wants to wait. Under the lock, so that a change
    /// made before it is seen: the waiter either has not asked yet or is
    /// waiting.
    pub fn wake(&self) {
        let state = self.state.lock();
        let wake = state.acquiring > 0;
        drop(state);
        if wake {
            self.cond.notify_all();
        }
    }

    fn take(self: &Arc<Self>, state: &mut State) -> Option<Permit> {
        if state.closed {
            return None;
        }
        state.in_use += 1;
        Some(Permit { gate: self.clone() })
    }

    /// Refuses every later permit, and wakes a thread waiting in
    /// [`Gate::acquire`] with nothing. Permits already out stay valid until
    /// dropped.
    pub fn close(&self) {
        let mut state = self.state.lock();
        state.closed = true;
        let wake = state.acquiring > 0;
        drop(state);
        if wake {
            self.cond.notify_all();
        }
    }

    /// Changes the number of slots; returns the number before. Permits out
    /// stay valid: lowered below those in use, the gate gives none until
    /// enough come back; raised, it wakes a thread waiting in
    /// [`Gate::acquire`].
    pub fn set_capacity(&self, capacity: usize) -> usize {
        let mut state = self.state.lock();
        let before = std::mem::replace(&mut state.capacity, capacity);
        let wake = capacity > before && state.acquiring > 0;
        drop(state);
        if wake {
            self.cond.notify_all();
        }
        before
    }

    /// How many slots there are.
    pub fn capacity(&self) -> usize {
        self.state.lock().capacity
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
        // Wake only someone who waits for this release: the acceptor
        // blocked on a full gate, or a stop waiting for none in use. A
        // stop closing thousands of connections should not wake its own
        // thread thousands of times for nothing, and a release normally
        // costs no system call at all.
        let wake = state.acquiring > 0 || (state.draining > 0 && state.in_use == 0);
        drop(state);
        if wake {
            // The acceptor and a stop may wait at once, on one condition
            // variable: wake both, each checks its own condition.
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
    fn a_closed_gate_gives_no_permit() {
        let gate = Gate::new(1);
        let held = gate.try_acquire().expect("slot");
        gate.close();
        drop(held);
        assert!(gate.try_acquire().is_none());
        assert!(gate.acquire().is_none(), "a closed gate made acquire wait");
    }

    /// Waits until `acquiring` threads wait in `acquire`.
    fn until_acquiring(gate: &Gate, acquiring: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while gate.state.lock().acquiring != acquiring {
            assert!(Instant::now() < deadline, "the acquirer never waited");
            std::thread::yield_now();
        }
    }

    /// `acquire` waits on a full gate, and the next release hands it the
    /// slot.
    #[test]
    fn acquire_waits_for_a_release() {
        let gate = Gate::new(1);
        let held = gate.try_acquire().expect("slot");
        let (tx, got) = std::sync::mpsc::channel();
        {
            let gate = gate.clone();
            std::thread::spawn(move || tx.send(gate.acquire()));
        }
        until_acquiring(&gate, 1);
        assert!(
            got.try_recv().is_err(),
            "acquire took a slot of a full gate"
        );
        drop(held);
        let permit = got.recv_timeout(Duration::from_secs(10));
        assert!(permit.is_ok_and(|p| p.is_some()), "the release was missed");
        assert_eq!(gate.in_use(), 0, "the permit did not go back");
    }

    /// A wait that is no longer wanted ends at the next wake-up, with
    /// nothing, and takes no slot.
    #[test]
    fn a_wait_no_longer_wanted_ends_on_wake() {
        let gate = Gate::new(1);
        let _held = gate.try_acquire().expect("slot");
        let wanted = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (tx, got) = std::sync::mpsc::channel();
        {
            let (gate, wanted) = (gate.clone(), wanted.clone());
            std::thread::spawn(move || {
                tx.send(gate.acquire_while(|| wanted.load(std::sync::atomic::Ordering::SeqCst)))
            });
        }
        until_acquiring(&gate, 1);
        wanted.store(false, std::sync::atomic::Ordering::SeqCst);
        gate.wake();
        let ended = got.recv_timeout(Duration::from_secs(10));
        assert!(ended.is_ok_and(|p| p.is_none()), "the wait went on");
        assert_eq!(gate.in_use(), 1);
    }

    /// Lowering the limit takes no permit back but gives none until enough
    /// come back; raising it wakes a waiting `acquire`.
    #[test]
    fn the_capacity_changes_in_use() {
        let gate = Gate::new(2);
        let first = gate.try_acquire().expect("slot");
        let _second = gate.try_acquire().expect("slot");
        assert_eq!(gate.set_capacity(1), 2);
        assert!(gate.try_acquire().is_none());
        drop(first);
        assert!(gate.try_acquire().is_none(), "over the lowered limit");
        let (tx, got) = std::sync::mpsc::channel();
        {
            let gate = gate.clone();
            std::thread::spawn(move || tx.send(gate.acquire()));
        }
        until_acquiring(&gate, 1);
        assert_eq!(gate.set_capacity(3), 1);
        let permit = got.recv_timeout(Duration::from_secs(10));
        assert!(permit.is_ok_and(|p| p.is_some()), "the raise was missed");
        assert_eq!(gate.capacity(), 3);
    }

    /// Closing the gate ends a wait in `acquire` at once, with nothing.
    #[test]
    fn closing_wakes_a_waiting_acquire() {
        let gate = Gate::new(1);
        let _held = gate.try_acquire().expect("slot");
        let (tx, got) = std::sync::mpsc::channel();
        {
            let gate = gate.clone();
            std::thread::spawn(move || tx.send(gate.acquire().is_some()));
        }
        until_acquiring(&gate, 1);
        gate.close();
        assert_eq!(got.recv_timeout(Duration::from_secs(10)), Ok(false));
    }

    #[test]
    fn wait_idle_reports_permits_still_out() {
        let gate = Gate::new(1);
        let held = gate.try_acquire().expect("slot");
        assert!(!gate.wait_idle(Instant::now() + Duration::from_millis(10)));
        drop(held);
        assert!(gate.wait_idle(Instant::now() + Duration::from_secs(5)));
    }

    /// Waits until `draining` threads wait in `wait_idle`.
    fn until_waiting(gate: &Gate, draining: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let state = gate.state.lock();
            if state.draining == draining {
                return;
            }
            drop(state);
            assert!(Instant::now() < deadline, "the waiters never waited");
            std::thread::yield_now();
        }
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
        until_waiting(&gate, 1);
        drop(first);
        // Still one out: the stop still waits.
        assert!(idle.recv_timeout(Duration::from_millis(50)).is_err());
        until_waiting(&gate, 1);
        drop(second);
        let idle = idle.recv_timeout(Duration::from_secs(10));
        assert_eq!(idle, Ok(true), "the stop was not woken");
        until_waiting(&gate, 0);
    }
}

/// The model checks (`scripts/loom.sh`): the bound holds, the stop's wait
/// ends, and the acceptor waiting for a slot is woken by a release or a
/// close, however they interleave with the workers' releases.
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

    /// Never more permits out than slots, however two threads taking and
    /// dropping them interleave.
    #[test]
    fn loom_gate_bounds_holders() {
        loom::model(|| {
            let gate = Gate::new(1);
            let holders = Arc::new(AtomicUsize::new(0));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let (gate, holders) = (gate.clone(), holders.clone());
                    thread::spawn(move || {
                        if let Some(permit) = gate.try_acquire() {
                            let before = holders.fetch_add(1, Ordering::SeqCst);
                            assert_eq!(before, 0, "two permits out of one slot");
                            holders.fetch_sub(1, Ordering::SeqCst);
                            drop(permit);
                        }
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

    /// The acceptor's hand-off: waiting in `acquire` on a full gate, it
    /// gets the slot a worker releases, whether the release comes before
    /// or during its wait; no release is missed.
    #[test]
    fn loom_gate_acquire_gets_the_released_slot() {
        loom::model(|| {
            let gate = Gate::new(1);
            let held = gate.try_acquire().expect("a free slot");
            let worker = thread::spawn(move || drop(held));
            let got = gate.acquire();
            assert!(got.is_some(), "the release was missed");
            assert_eq!(gate.in_use(), 1);
            worker.join().expect("releasing thread");
        });
    }

    /// An operator raising the limit wakes the acceptor waiting on a full
    /// gate, which then gets a slot while the old ones are still out.
    #[test]
    fn loom_gate_raising_the_capacity_wakes_the_acceptor() {
        loom::model(|| {
            let gate = Gate::new(1);
            let held = gate.try_acquire().expect("a free slot");
            let operator = {
                let gate = gate.clone();
                thread::spawn(move || {
                    gate.set_capacity(2);
                })
            };
            let got = gate.acquire();
            assert!(got.is_some(), "the raise was missed");
            assert_eq!(gate.in_use(), 2);
            operator.join().expect("operator thread");
            drop(held);
        });
    }

    /// A stop's close ends the acceptor's wait with nothing, while a
    /// worker releases slots and a stop waits for none in use: every wait
    /// ends, and no permit is given after the close.
    #[test]
    fn loom_gate_close_ends_the_acceptors_wait() {
        loom::model(|| {
            let gate = Gate::new(1);
            let held = gate.try_acquire().expect("a free slot");
            let stopper = {
                let gate = gate.clone();
                thread::spawn(move || {
                    gate.close();
                    drop(held);
                    assert!(gate.wait_idle(far_off()));
                })
            };
            if let Some(permit) = gate.acquire() {
                // Taken before the close: it stays valid until dropped.
                drop(permit);
            }
            assert!(gate.acquire().is_none(), "a permit after the close");
            stopper.join().expect("stopping thread");
        });
    }
}
