//! The rendezvous's model checks (`scripts/loom.sh`): two workers and a
//! mocked poller under every interleaving (up to four preemptions for the
//! larger models, see `crate::sync::bounded_model`). A model that ends
//! shows that no worker waits forever: loom fails one in which every
//! thread is blocked.

use super::*;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::thread;

/// The poller, mocked (tokio's `mock_park`): `poll` blocks until events
/// are pushed or the poller is closed.
#[derive(Default)]
struct MockPoller {
    state: Mutex<Events>,
    cond: Condvar,
}

/// What the mocked poller holds.
#[derive(Default)]
struct Events {
    ready: Vec<u32>,
    closed: bool,
    /// The next wait ends, with or without items (the engine's waker).
    woken: bool,
}

impl MockPoller {
    /// An item becomes ready (a client sent something).
    fn push(&self, item: u32) {
        self.state.lock().ready.push(item);
        // At most one worker polls (the models assert it).
        self.cond.notify_one();
    }

    /// Ends the wait of whoever polls, now and later (the engine's
    /// waker on a stop).
    fn close(&self) {
        self.state.lock().closed = true;
        self.cond.notify_all();
    }

    /// Ends the wait of whoever polls, once, as the engine's waker does
    /// for a retiring worker.
    fn wake(&self) {
        self.state.lock().woken = true;
        self.cond.notify_all();
    }

    /// Waits for items (or a wake-up), and takes them.
    fn poll(&self) -> Vec<u32> {
        let mut state = self.state.lock();
        while state.ready.is_empty() && !state.closed && !state.woken {
            self.cond.wait(&mut state);
        }
        state.woken = false;
        std::mem::take(&mut state.ready)
    }

    /// Takes the items ready now, without waiting.
    fn look(&self) -> Vec<u32> {
        std::mem::take(&mut self.state.lock().ready)
    }
}

/// A turn that lasts until another one lets it end.
#[derive(Default)]
struct Latch {
    open: Mutex<bool>,
    cond: Condvar,
}

impl Latch {
    /// Lets the waiting turn end.
    fn open(&self) {
        *self.open.lock() = true;
        self.cond.notify_all();
    }

    /// Waits until the latch is opened.
    fn wait(&self) {
        let mut open = self.open.lock();
        while !*open {
            self.cond.wait(&mut open);
        }
    }
}

// So that a `World` can derive `Default`.
impl<T> Default for Rendezvous<T> {
    fn default() -> Self {
        Rendezvous::new()
    }
}

/// What the workers share in a model.
#[derive(Default)]
struct World {
    rendezvous: Rendezvous<u32>,
    poller: MockPoller,
    /// Workers leading now; more than one fails the model.
    leaders: AtomicUsize,
    /// Turns that finished their item.
    served: AtomicUsize,
    /// Workers whose loop ended as the pool shrank.
    retired: AtomicUsize,
    /// Whether an item has spent a turn's budget already.
    yielded: AtomicBool,
    /// Holds a long turn until another item is served.
    latch: Latch,
}

impl World {
    /// The engine's worker loop (`Engine::work`), with `serve` for a
    /// turn.
    fn work(&self, serve: fn(&World, u32)) {
        loop {
            match self.rendezvous.next() {
                Next::Serve(item) => serve(self, item),
                Next::Lead => {
                    let ready = self.lead(|| self.poller.poll());
                    if let Some(item) = self.rendezvous.hand_off(ready, true) {
                        serve(self, item);
                    }
                }
                // No model serves `POLL_EVERY` turns, so this does not
                // happen here; it is handled as the engine does.
                Next::Look => {
                    let ready = self.lead(|| self.poller.look());
                    self.rendezvous.hand_off(ready, false);
                }
                Next::Retire { wake_leader } => {
                    self.retired.fetch_add(1, Ordering::SeqCst);
                    if wake_leader {
                        self.poller.wake();
                    }
                    return;
                }
                Next::Done => return,
            }
        }
    }

    /// Runs `poll` as the leader, failing the model if another worker
    /// leads at the same time.
    fn lead(&self, poll: impl FnOnce() -> Vec<u32>) -> Vec<u32> {
        let before = self.leaders.fetch_add(1, Ordering::SeqCst);
        assert_eq!(before, 0, "two workers lead at once");
        let ready = poll();
        self.leaders.fetch_sub(1, Ordering::SeqCst);
        ready
    }

    /// Counts a finished item; the last of `expected` stops the
    /// server.
    fn finished(&self, expected: usize) {
        if self.served.fetch_add(1, Ordering::SeqCst) + 1 == expected {
            self.stop();
        }
    }

    /// Stops the server as the engine does: the rendezvous, then the
    /// poller.
    fn stop(&self) {
        self.rendezvous.finish();
        self.poller.close();
    }

    /// Two items become ready, one after the other.
    fn two_items(&self) {
        self.poller.push(1);
        self.poller.push(2);
    }
}

/// Starts two workers with `serve` for a turn, as the engine does (the
/// rendezvous counts them, then they start), runs `meanwhile` on the main
/// thread, and waits for both workers to end.
fn run(serve: fn(&World, u32), meanwhile: fn(&World)) -> Arc<World> {
    let world = Arc::new(World::default());
    assert_eq!(world.rendezvous.resize(2), 2);
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let world = world.clone();
            thread::spawn(move || world.work(serve))
        })
        .collect();
    meanwhile(&world);
    for w in workers {
        w.join().expect("worker");
    }
    world
}

/// At most one worker leads at a time, and ready work always has a
/// worker on the way to it: two items arrive apart, one of them goes
/// back to the queue once, and both workers end once both are served.
#[test]
fn loom_rendezvous_one_leader_and_no_stranded_work() {
    crate::sync::bounded_model(|| {
        let serve = |world: &World, item| {
            if item == 1 && !world.yielded.swap(true, Ordering::SeqCst) {
                // Item 1's first turn spends its budget.
                world.rendezvous.requeue(item);
            } else {
                world.finished(2);
            }
        };
        let world = run(serve, World::two_items);
        assert_eq!(world.served.load(Ordering::SeqCst), 2);
        assert_eq!(world.rendezvous.next(), Next::Done);
    });
}

/// A worker busy with a long turn holds up no other work: item 1's turn
/// lasts until item 2 is served, so item 2, and the poller, must reach
/// the other worker.
#[test]
fn loom_rendezvous_a_long_turn_holds_up_no_other_work() {
    crate::sync::bounded_model(|| {
        let serve = |world: &World, item| {
            if item == 1 {
                world.latch.wait();
            } else {
                world.latch.open();
            }
            world.finished(2);
        };
        let world = run(serve, World::two_items);
        assert_eq!(world.served.load(Ordering::SeqCst), 2);
    });
}

/// `finish` ends every worker: the follower waiting for work and the
/// leader waiting in the poller.
#[test]
fn loom_rendezvous_finish_ends_every_worker() {
    loom::model(|| {
        let world = run(|_, _| unreachable!("nothing is ever ready"), World::stop);
        assert_eq!(world.rendezvous.next(), Next::Done);
    });
}

/// A worker that retires strands no work: item 1 goes back to the queue
/// once while the pool shrinks to one worker; whichever worker retires,
/// even leaving the item queued behind a leader waiting in the poller, the
/// other serves it.
#[test]
fn loom_rendezvous_a_retiring_worker_strands_no_work() {
    crate::sync::bounded_model(|| {
        let serve = |world: &World, item| {
            if !world.yielded.swap(true, Ordering::SeqCst) {
                world.rendezvous.requeue(item);
            } else {
                world.finished(1);
            }
        };
        let world = run(serve, |world| {
            world.poller.push(1);
            world.rendezvous.resize(1);
        });
        assert_eq!(world.served.load(Ordering::SeqCst), 1);
        // The stop may come first, and then nobody retires.
        assert!(world.retired.load(Ordering::SeqCst) <= 1);
    });
}
