//! The connection limit. A [`Permit`] is taken for every connection before
//! it is handed to the engine, and given back when the permit is dropped,
//! which happens when the connection is, however it ended.
//!
//! A full gate can also call back instead of making anyone wait: the door
//! asks with [`Gate::try_acquire_or_hook`], and the next release calls the
//! gate's release hook once, so the door knows when to accept again
//! without a thread blocked here.
//!
//! Its lock and condition variable come from `crate::sync`, so that the
//! model checker (`scripts/loom.sh`) proves the bound and the wake-ups of
//! the release hook, `close` and `wait_idle` under every interleaving.

use std::sync::Arc;
use std::time::Instant;

use crate::sync::{Condvar, Mutex};

/// What a release calls when the door asked for it.
type Hook = Box<dyn Fn() + Send + Sync>;

/// A counting gate with a fixed number of slots.
pub struct Gate {
    capacity: usize,
    state: Mutex<State>,
    cond: Condvar,
    /// Called by the first release after `try_acquire_or_hook` found the
    /// gate full.
    on_release: Option<Hook>,
}

struct State {
    in_use: usize,
    closed: bool,
    /// Threads waiting in `wait_idle` for every slot.
    draining: usize,
    /// Whether the next release is to call the release hook.
    hooked: bool,
}

/// One slot of a [`Gate`], released on drop.
pub struct Permit {
    gate: Arc<Gate>,
}

impl Gate {
    /// A gate with `capacity` slots.
    pub fn new(capacity: usize) -> Arc<Gate> {
        Gate::build(capacity, None)
    }

    /// A gate with `capacity` slots whose releases call `hook` when
    /// [`Gate::try_acquire_or_hook`] asked for it. The hook runs on the
    /// releasing thread, without the gate's lock: it must be quick and must
    /// not wait.
    pub fn with_release_hook(
        capacity: usize,
        hook: impl Fn() + Send + Sync + 'static,
    ) -> Arc<Gate> {
        Gate::build(capacity, Some(Box::new(hook)))
    }

    fn build(capacity: usize, on_release: Option<Hook>) -> Arc<Gate> {
        Arc::new(Gate {
            capacity,
            state: Mutex::new(State {
                in_use: 0,
                closed: false,
                draining: 0,
                hooked: false,
            }),
            cond: Condvar::new(),
            on_release,
        })
    }

    /// Takes a free slot if there is one, without waiting.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut state = self.state.lock();
        if state.in_use >= self.capacity {
            return None;
        }
        self.take(&mut state)
    }

    /// Takes a free slot if there is one; otherwise has the next release
    /// call the release hook (once), so that the caller can try again then
    /// instead of waiting. Deciding and arming happen under one lock, so a
    /// release cannot slip in between and be missed. A closed gate gives
    /// nothing and arms nothing.
    pub fn try_acquire_or_hook(self: &Arc<Self>) -> Option<Permit> {
        let mut state = self.state.lock();
        if state.in_use >= self.capacity {
            state.hooked = !state.closed && self.on_release.is_some();
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

    /// Refuses every later permit. Permits already out stay valid until
    /// dropped.
    pub fn close(&self) {
        self.state.lock().closed = true;
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
        // The stop sequence may wait for none in use; wake it only then: a
        // stop closing thousands of connections should not wake its own
        // thread thousands of times for nothing.
        let wake = state.draining > 0 && state.in_use == 0;
        // The hook is asked for once, and only when the door found the gate
        // full, so a release normally costs nothing more.
        let hook = std::mem::take(&mut state.hooked);
        drop(state);
        if wake {
            self.gate.cond.notify_all();
        }
        if hook && let Some(on_release) = &self.gate.on_release {
            on_release();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
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

    /// A gate of one slot whose release hook counts its calls.
    fn counting_gate() -> (Arc<Gate>, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let gate = Gate::with_release_hook(1, move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        (gate, calls)
    }

    #[test]
    fn a_closed_gate_gives_no_permit_and_arms_no_hook() {
        let (gate, calls) = counting_gate();
        let held = gate.try_acquire().expect("slot");
        gate.close();
        assert!(gate.try_acquire_or_hook().is_none());
        drop(held);
        assert!(gate.try_acquire().is_none());
        assert!(gate.try_acquire_or_hook().is_none());
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_release_calls_the_hook_once_when_asked() {
        let (gate, calls) = counting_gate();
        let held = gate.try_acquire_or_hook().expect("a free slot");
        drop(held);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        let held = gate.try_acquire_or_hook().expect("a free slot");
        assert!(gate.try_acquire_or_hook().is_none());
        drop(held);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let held = gate.try_acquire().expect("the slot came back");
        drop(held);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
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
/// ends and no release hook is lost, however acquires and releases
/// interleave.
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
            let gate = Gate::with_release_hook(1, || {});
            let holders = Arc::new(AtomicUsize::new(0));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let (gate, holders) = (gate.clone(), holders.clone());
                    thread::spawn(move || {
                        if let Some(permit) = gate.try_acquire_or_hook() {
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

    /// A release after the door found the gate full always calls the
    /// release hook, and one before leaves a slot for the door: however the
    /// two interleave, the door either gets a permit or is called back, and
    /// then finds one.
    #[test]
    fn loom_gate_release_hook_loses_no_wake() {
        loom::model(|| {
            let calls = Arc::new(AtomicUsize::new(0));
            let gate = {
                let calls = calls.clone();
                Gate::with_release_hook(1, move || {
                    calls.fetch_add(1, Ordering::SeqCst);
                })
            };
            let held = gate.try_acquire().expect("a free slot");
            let releaser = thread::spawn(move || drop(held));
            let got = gate.try_acquire_or_hook();
            releaser.join().expect("releasing thread");
            match got {
                Some(permit) => {
                    assert_eq!(calls.load(Ordering::SeqCst), 0, "a hook nobody asked for");
                    drop(permit);
                }
                None => {
                    assert_eq!(calls.load(Ordering::SeqCst), 1, "the release was missed");
                    assert!(gate.try_acquire().is_some(), "called back to a full gate");
                }
            }
        });
    }
}
