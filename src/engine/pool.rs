//! The worker loops on the pool's threads: starting them, resizing the pool
//! while it serves, and replacing a loop lost to a panic.
//!
//! `threadpool` resizes its own threads: grown, it starts threads at once;
//! shrunk, a thread ends when the job it ran returns and the pool has
//! more jobs running than its size. Each of our jobs is one worker loop
//! that runs until the stop, so the two must move together. Growing, the
//! pool gets its threads first, then the new loops are queued for them.
//! Shrinking, the pool's size comes first, then the rendezvous retires as
//! many loops (each between two turns): the thread of each retired loop
//! sees too many jobs for the size and ends. Had the loops retired first,
//! their threads would have stayed, idle, for ever.
//!
//! A shrink waits until the retired loops' threads have ended before it
//! returns. Each pool thread counts itself in [`PoolThreads`] when it
//! first runs a loop and counts itself out as it ends; without that wait,
//! a grow right after a shrink could find a retired thread not yet gone,
//! which would then stay, idle, beside the new ones.

use std::cell::RefCell;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use log::warn;
use parking_lot::{Condvar, Mutex};
use threadpool::ThreadPool;

use super::Engine;

/// How long a shrink waits for the retired loops' threads to end: the
/// longest a turn takes is far less, as its budget keeps it short.
const RETIRE_WAIT: Duration = Duration::from_secs(5);

/// The pool's threads that have run a worker loop and not ended yet.
#[derive(Default)]
pub(super) struct PoolThreads {
    count: Mutex<usize>,
    ended: Condvar,
}

impl PoolThreads {
    /// Counts the calling thread in, once, until it ends.
    fn enlist(self: &Arc<Self>) {
        ENLISTED.with(|enlisted| {
            let mut enlisted = enlisted.borrow_mut();
            if enlisted.is_none() {
                *self.count.lock() += 1;
                *enlisted = Some(Enlisted(self.clone()));
            }
        });
    }

    /// Waits until at most `threads` are left, or `deadline`; says whether
    /// they are.
    fn wait_at_most(&self, threads: usize, deadline: Instant) -> bool {
        let mut count = self.count.lock();
        while *count > threads {
            if self.ended.wait_until(&mut count, deadline).timed_out() {
                return *count <= threads;
            }
        }
        true
    }
}

thread_local! {
    /// Set on a pool thread by its first loop; dropped as the thread ends.
    static ENLISTED: RefCell<Option<Enlisted>> = const { RefCell::new(None) };
}

/// A pool thread's place in [`PoolThreads`], given up as the thread ends
/// (thread-local values are dropped then).
struct Enlisted(Arc<PoolThreads>);

impl Drop for Enlisted {
    fn drop(&mut self) {
        *self.0.count.lock() -= 1;
        self.0.ended.notify_all();
    }
}

/// Why the pool could not be resized.
#[derive(Debug)]
pub(crate) enum ResizeError {
    /// The stop has ended the loops.
    Stopped,
    /// The system refused a thread; the pool keeps its size.
    NoThread,
}

impl fmt::Display for ResizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResizeError::Stopped => "the server is stopping",
            ResizeError::NoThread => "cannot start the worker threads",
        })
    }
}

impl Engine {
    /// Starts `workers` worker loops on `pool`, which is then the pool
    /// [`Engine::resize`] resizes.
    pub(crate) fn start(self: &Arc<Self>, pool: &ThreadPool, workers: usize) {
        *self.pool.lock() = Some(pool.clone());
        for _ in 0..self.workers.resize(workers) {
            spawn_worker(self.clone(), pool.clone());
        }
    }

    /// Resizes the pool to `workers` threads while it serves; returns the
    /// size it had. Growing, the new loops start at once. Shrinking, each
    /// loop too many ends after its current turn, handing any ready work
    /// on, and this returns once their threads have ended (or, should a
    /// turn last that long, after [`RETIRE_WAIT`], the rest ending later).
    pub(crate) fn resize(self: &Arc<Self>, workers: usize) -> Result<usize, ResizeError> {
        // Held throughout, so that resizes take turns, and a stop that
        // comes during one waits for it (at most `RETIRE_WAIT`) before it
        // lets go of the pool.
        let mut pool = self.pool.lock();
        let pool = pool.as_mut().ok_or(ResizeError::Stopped)?;
        let before = pool.max_count();
        if workers > before {
            // `threadpool` panics when the system refuses a thread. The
            // pool goes back to its old size and no loop is added; a
            // thread it did start may wait, idle, until the stop.
            let grown = panic::catch_unwind(AssertUnwindSafe(|| pool.set_num_threads(workers)));
            if grown.is_err() {
                pool.set_num_threads(before);
                return Err(ResizeError::NoThread);
            }
            for _ in 0..self.workers.resize(workers) {
                spawn_worker(self.clone(), pool.clone());
            }
        } else if workers < before {
            pool.set_num_threads(workers);
            self.workers.resize(workers);
            if !self
                .threads
                .wait_at_most(workers, Instant::now() + RETIRE_WAIT)
            {
                warn!("worker threads still ending after a resize workers={workers}");
            }
        }
        Ok(before)
    }

    /// How many workers the pool has, as last started or resized.
    pub(crate) fn workers(&self) -> usize {
        self.workers.wanted()
    }

    /// Lets go of the pool at the stop: no resize after it.
    pub(super) fn release_pool(&self) {
        self.pool.lock().take();
    }
}

/// Runs a worker loop on the pool. Protocol code cannot end a loop (a
/// panicking turn is caught); should the engine itself ever panic, the
/// pool gets a fresh loop in place of the lost one.
fn spawn_worker(engine: Arc<Engine>, pool: ThreadPool) {
    let job_pool = pool.clone();
    pool.execute(move || {
        engine.threads.enlist();
        let respawn = Respawn {
            engine: engine.clone(),
            pool: job_pool,
        };
        engine.work();
        drop(respawn);
    });
}

struct Respawn {
    engine: Arc<Engine>,
    pool: ThreadPool,
}

impl Drop for Respawn {
    fn drop(&mut self) {
        if thread::panicking() {
            warn!("a worker loop panicked, starting another");
            self.engine.workers.leader_lost();
            spawn_worker(self.engine.clone(), self.pool.clone());
        }
    }
}
