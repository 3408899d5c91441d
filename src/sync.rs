//! The synchronisation primitives the scheduling and coordination code
//! uses, behind one door: `std`'s atomics and `parking_lot`'s locks
//! normally, `loom`'s under `--cfg loom`, so that `scripts/loom.sh` can
//! explore every interleaving of the code that decides who serves what
//! (tokio's `crate::loom` facade, in small).
//!
//! Only the modules whose concurrency is model-checked take their types
//! from here (`sched`, `activity`, `gate`, `shutdown`, the engine's
//! rendezvous); the rest of the crate uses `std` and `parking_lot`
//! directly. Their `Arc`s stay `std`'s too: a reference count is no
//! protocol of ours, and the models share their own state through loom's.
//!
//! Each of those modules ends with a `loom_tests` module: small models of
//! two or three threads, one property per test, every name containing
//! `loom`, and `scripts/loom.sh` runs just them. Loom's types work only
//! inside a model, so the facade modules' plain unit tests are
//! `cfg(not(loom))`; the rest of the crate's tests still compile under
//! `--cfg loom`, but are not run there. A model too large to explore in
//! full runs under `bounded_model`.

#[cfg(not(loom))]
pub(crate) use parking_lot::{Condvar, Mutex};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use self::model::{Condvar, Mutex};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

/// `loom`'s lock and condition variable with `parking_lot`'s API, which
/// the code is written against: no poisoning, `wait` takes the guard by
/// reference.
#[cfg(loom)]
mod model {
    use std::time::Instant;

    /// A mutex without poisoning.
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    /// Its guard. The inner guard is taken out only while a condition
    /// variable waits with it.
    pub(crate) struct MutexGuard<'a, T>(Option<loom::sync::MutexGuard<'a, T>>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            // loom's lock fails only if a holder panicked, which ends the
            // model anyway.
            MutexGuard(Some(self.0.lock().expect("lock poisoned")))
        }
    }

    impl<T> std::ops::Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.0.as_ref().expect("guard held")
        }
    }

    impl<T> std::ops::DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_mut().expect("guard held")
        }
    }

    /// What a timed wait reports, as `parking_lot`'s does.
    pub(crate) struct WaitTimeoutResult(bool);

    impl WaitTimeoutResult {
        pub(crate) fn timed_out(&self) -> bool {
            self.0
        }
    }

    /// A condition variable.
    #[derive(Debug, Default)]
    pub(crate) struct Condvar(loom::sync::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Self {
            Condvar(loom::sync::Condvar::new())
        }

        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let inner = guard.0.take().expect("guard held");
            guard.0 = Some(self.0.wait(inner).expect("lock poisoned"));
        }

        /// loom has no clock: a timed wait is a wait for a notification,
        /// as if the deadline were far off. A model therefore proves that
        /// the notification comes, which is what the deadline only bounds.
        pub(crate) fn wait_until<T>(
            &self,
            guard: &mut MutexGuard<'_, T>,
            _deadline: Instant,
        ) -> WaitTimeoutResult {
            self.wait(guard);
            WaitTimeoutResult(false)
        }

        /// See [`Condvar::wait_until`].
        pub(crate) fn wait_for<T>(
            &self,
            guard: &mut MutexGuard<'_, T>,
            _timeout: std::time::Duration,
        ) -> WaitTimeoutResult {
            self.wait(guard);
            WaitTimeoutResult(false)
        }

        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}

/// How many preemptions `bounded_model` allows unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise.
#[cfg(all(test, loom))]
const PREEMPTIONS: usize = 4;

/// Runs a model too large to explore in full: loom explores every
/// interleaving with at most `PREEMPTIONS` preemptions (switches away from
/// a thread that could have gone on), or `LOOM_MAX_PREEMPTIONS` if set.
/// Few bugs need more than two (the finding of Microsoft's CHESS, which
/// introduced the bound; tokio's CI runs its loom models with 2); four
/// keeps the slowest of these models to seconds, where exploring every
/// interleaving takes many minutes.
#[cfg(all(test, loom))]
pub(crate) fn bounded_model<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound.get_or_insert(PREEMPTIONS);
    builder.check(f);
}
