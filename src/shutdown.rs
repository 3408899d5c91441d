//! The server-wide stop signal: a flag that is set once, plus the wake-ups that
//! must happen the moment it is set (the listener, the permit gate).
//! Before the stop a server may be draining: still serving and accepting,
//! but telling load balancers (the health endpoint, the HAProxy agent) to
//! send new clients elsewhere.
//!
//! Every copy of [`Shutdown`] shares one state, so the binary's signal handler,
//! a worker that read `quit_server` and a test all stop the server the same way.

use std::sync::Arc;
use std::time::Duration;

use crate::sync::{AtomicBool, Condvar, Mutex, Ordering};

type Waker = Box<dyn Fn() + Send + Sync>;

/// A cloneable handle that stops the server it belongs to.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

/// What a server tells load balancers about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Serving; send clients here.
    Serving,
    /// Still serving, but about to stop: send new clients elsewhere.
    Draining,
    /// Stopping.
    Stopping,
}

#[derive(Default)]
struct Inner {
    triggered: AtomicBool,
    draining: AtomicBool,
    // Guards the waker list and lets back-off sleeps end early on a stop.
    wakers: Mutex<Vec<Waker>>,
    cond: Condvar,
}

impl Shutdown {
    /// A fresh, untriggered signal.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Starts the stop. Only the first call does anything; it returns `true`.
    /// Later calls, concurrent or not, return `false`.
    pub fn trigger(&self) -> bool {
        self.trigger_by(|| {})
    }

    /// Starts the stop, as [`trigger`](Shutdown::trigger) does, and if this
    /// call is the one that starts it, runs `announce` first, before any
    /// wake-up: the log can name the stop's cause once, before the stop's
    /// first line, however many callers race to stop it.
    pub fn trigger_by(&self, announce: impl FnOnce()) -> bool {
        // The lock orders this against `on_trigger`: a waker is either in the
        // list when we run the list, or sees the flag and runs itself.
        let wakers = self.inner.wakers.lock();
        if self.inner.triggered.swap(true, Ordering::SeqCst) {
            return false;
        }
        announce();
        for wake in wakers.iter() {
            wake();
        }
        self.inner.cond.notify_all();
        true
    }

    /// Whether the stop has started.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.load(Ordering::SeqCst)
    }

    /// Starts draining: the server goes on serving and accepting, but
    /// reports [`Health::Draining`] until the stop. Returns `false` if it
    /// was draining or stopping already.
    pub fn start_draining(&self) -> bool {
        !self.is_triggered() && !self.inner.draining.swap(true, Ordering::SeqCst)
    }

    /// Stops the server once `time` has passed, on a thread of its own
    /// (`linepool-drain`) whose wait the stop ends: the end of a drain
    /// begun with [`Shutdown::start_draining`] (SIGTERM with `--drain`, the
    /// admin console's `drain`). If
    /// the thread cannot be started the server stops at once, since the
    /// drain would never end, and the error says why.
    pub fn stop_after(&self, time: Duration) -> std::io::Result<()> {
        let timer = self.clone();
        let spawned = std::thread::Builder::new()
            .name("linepool-drain".to_string())
            .spawn(move || {
                if !timer.wait_timeout(time) {
                    log::info!("drain over, stopping");
                    timer.trigger();
                }
            });
        spawned.map(drop).inspect_err(|_| {
            self.trigger();
        })
    }

    /// Whether the server drains (and has not begun its stop).
    pub fn is_draining(&self) -> bool {
        self.health() == Health::Draining
    }

    /// What the server tells load balancers now.
    pub fn health(&self) -> Health {
        if self.is_triggered() {
            Health::Stopping
        } else if self.inner.draining.load(Ordering::SeqCst) {
            Health::Draining
        } else {
            Health::Serving
        }
    }

    /// Runs `wake` when the stop starts, or at once if it already has.
    /// Wakers run with the signal's lock held, so they must be quick and must
    /// not call back into this signal.
    pub fn on_trigger(&self, wake: impl Fn() + Send + Sync + 'static) {
        let mut wakers = self.inner.wakers.lock();
        if self.is_triggered() {
            drop(wakers);
            wake();
        } else {
            wakers.push(Box::new(wake));
        }
    }

    /// Waits until the stop starts.
    pub fn wait(&self) {
        let mut guard = self.inner.wakers.lock();
        while !self.is_triggered() {
            self.inner.cond.wait(&mut guard);
        }
    }

    /// Sleeps for `timeout`, or less if the stop starts meanwhile. Returns
    /// whether the stop has started.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let mut guard = self.inner.wakers.lock();
        if !self.is_triggered() {
            // A spurious wake-up only shortens a back-off sleep, which is harmless.
            self.inner.cond.wait_for(&mut guard, timeout);
        }
        self.is_triggered()
    }
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("triggered", &self.is_triggered())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Instant;

    #[test]
    fn only_the_first_trigger_counts() {
        let shutdown = Shutdown::new();
        let woken = Arc::new(AtomicUsize::new(0));
        let counter = woken.clone();
        shutdown.on_trigger(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        assert!(shutdown.trigger());
        assert!(!shutdown.clone().trigger());
        assert_eq!(woken.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn health_goes_from_serving_to_draining_to_stopping() {
        let shutdown = Shutdown::new();
        assert_eq!(shutdown.health(), Health::Serving);
        assert!(shutdown.start_draining());
        assert!(!shutdown.start_draining());
        assert_eq!(shutdown.health(), Health::Draining);
        assert!(!shutdown.is_triggered());
        shutdown.trigger();
        assert_eq!(shutdown.health(), Health::Stopping);
        let stopped = Shutdown::new();
        stopped.trigger();
        assert!(!stopped.start_draining());
        assert_eq!(stopped.health(), Health::Stopping);
    }

    #[test]
    fn late_wakers_run_at_once() {
        let shutdown = Shutdown::new();
        shutdown.trigger();
        let woken = Arc::new(AtomicBool::new(false));
        let flag = woken.clone();
        shutdown.on_trigger(move || flag.store(true, Ordering::SeqCst));
        assert!(woken.load(Ordering::SeqCst));
    }

    #[test]
    fn trigger_ends_a_wait_early() {
        let shutdown = Shutdown::new();
        let other = shutdown.clone();
        let waiter = std::thread::spawn(move || {
            let start = Instant::now();
            let stopped = other.wait_timeout(Duration::from_secs(30));
            (stopped, start.elapsed())
        });
        // Whether this lands before or during the wait, the wait must end
        // well before its timeout.
        shutdown.trigger();
        let (stopped, waited) = waiter.join().expect("waiter panicked");
        assert!(stopped);
        assert!(waited < Duration::from_secs(30));
    }
}

/// The model checks (`scripts/loom.sh`) of the stop signal's wake-ups.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicUsize;
    use loom::thread;

    /// A waker that counts its runs in `runs`.
    fn counting(runs: &Arc<AtomicUsize>) -> impl Fn() + Send + Sync + 'static {
        let runs = runs.clone();
        move || {
            runs.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A waker registered while the stop starts runs exactly once, whether
    /// it lands in the list or sees the flag.
    #[test]
    fn loom_shutdown_a_waker_racing_the_trigger_runs_once() {
        loom::model(|| {
            let shutdown = Shutdown::new();
            let runs = Arc::new(AtomicUsize::new(0));
            let registering = {
                let (shutdown, wake) = (shutdown.clone(), counting(&runs));
                thread::spawn(move || shutdown.on_trigger(wake))
            };
            assert!(shutdown.trigger());
            registering.join().expect("registering thread");
            assert_eq!(runs.load(Ordering::SeqCst), 1);
        });
    }

    /// Two triggers at once: one of them starts the stop, and each waker
    /// runs exactly once.
    #[test]
    fn loom_shutdown_racing_triggers_run_each_waker_once() {
        loom::model(|| {
            let shutdown = Shutdown::new();
            let runs = Arc::new(AtomicUsize::new(0));
            shutdown.on_trigger(counting(&runs));
            let other = {
                let shutdown = shutdown.clone();
                thread::spawn(move || shutdown.trigger())
            };
            let mine = shutdown.trigger();
            let theirs = other.join().expect("triggering thread");
            assert!(mine != theirs, "exactly one trigger starts the stop");
            assert_eq!(runs.load(Ordering::SeqCst), 1);
        });
    }

    /// `wait` and `wait_timeout` end when the stop starts, whenever it
    /// lands (a timed wait under loom waits for the notification itself).
    #[test]
    fn loom_shutdown_trigger_ends_the_waits() {
        loom::model(|| {
            let shutdown = Shutdown::new();
            let waiting = {
                let shutdown = shutdown.clone();
                thread::spawn(move || shutdown.wait())
            };
            let sleeping = {
                let shutdown = shutdown.clone();
                thread::spawn(move || shutdown.wait_timeout(Duration::from_secs(3600)))
            };
            shutdown.trigger();
            waiting.join().expect("waiting thread");
            assert!(sleeping.join().expect("sleeping thread"));
        });
    }
}
