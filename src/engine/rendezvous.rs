//! Where the pool's workers meet: the ready queue, which worker leads in
//! the poller, and the followers waiting for work. It knows nothing of
//! sockets or pollers (the engine does the polling), so the
//! leader/followers discipline is model-checked on its own.
//!
//! The rules: at most one worker leads (waits in the poller) at a time; a
//! worker with nothing ready leads if nobody does, and otherwise waits as a
//! follower; a leader back from the poller queues what became ready and
//! wakes one follower per queued item, plus one to lead next while it
//! serves the item it kept. So work that is ready always has a worker on
//! the way to it, and a worker that waits always has a leader that will
//! hand it work.
//!
//! The pool can be resized while it serves ([`Rendezvous::resize`]). A
//! worker retires only between turns, when it asks what to do next, so its
//! turn is never cut short; and it passes on whatever wake-up it may have
//! been given (to serve a queued item, or to lead), so that work it leaves
//! in the queue still has a worker on the way to it.
//!
//! Its unit tests are `rendezvous/tests.rs`, its loom models
//! `rendezvous/loom_tests.rs`.

use std::collections::VecDeque;

use crate::sync::{Condvar, Mutex};

/// While items are ready, a worker also looks into the poller (without
/// waiting) after this many turns, so that connections that became ready
/// meanwhile join the queue: otherwise a connection that always has more
/// to do would keep the queue from ever emptying, and nobody would poll.
/// tokio's scheduler checks its driver after the same number of tasks.
pub(crate) const POLL_EVERY: usize = 61;

/// The ready queue and the workers' rendezvous.
pub(crate) struct Rendezvous<T> {
    shared: Mutex<Shared<T>>,
    /// Followers wait here for work or for their turn to lead.
    followers: Condvar,
}

struct Shared<T> {
    ready: VecDeque<T>,
    /// Whether a worker leads (waits in the poller, or looks into it) now.
    leader: bool,
    /// Followers waiting on the condition variable.
    idle: usize,
    /// Turns served since a worker last looked into the poller.
    since_poll: usize,
    /// The server has stopped: workers return.
    done: bool,
    /// Worker loops started and not retired.
    workers: usize,
    /// How many there should be: while `workers` is more, the next to ask
    /// what to do retires.
    wanted: usize,
}

/// What a worker does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next<T> {
    /// Serve this item.
    Serve(T),
    /// Lead: wait in the poller, as nothing is ready; then
    /// [`Rendezvous::hand_off`] with one item kept.
    Lead,
    /// Look into the poller without waiting: items wait, but nobody has
    /// polled for a while; then [`Rendezvous::hand_off`] keeping none.
    Look,
    /// The pool is smaller now: this worker's loop ends. If
    /// `wake_leader`, work waits in the queue with no follower to take it
    /// and the leader is in the poller: the engine must wake it.
    Retire { wake_leader: bool },
    /// The server has stopped.
    Done,
}

impl<T> Rendezvous<T> {
    /// An empty queue, nobody leading, no worker yet: [`Rendezvous::resize`]
    /// says how many loops to start.
    pub(crate) fn new() -> Self {
        Rendezvous {
            shared: Mutex::new(Shared {
                ready: VecDeque::new(),
                leader: false,
                idle: 0,
                since_poll: 0,
                done: false,
                workers: 0,
                wanted: 0,
            }),
            followers: Condvar::new(),
        }
    }

    /// What the calling worker does next. Waits, as a follower, while
    /// another worker leads and nothing is ready.
    pub(crate) fn next(&self) -> Next<T> {
        let mut shared = self.shared.lock();
        loop {
            if shared.done {
                return Next::Done;
            }
            if shared.workers > shared.wanted {
                return self.retire(&mut shared);
            }
            let lead = !shared.leader;
            if lead && !shared.ready.is_empty() && shared.since_poll >= POLL_EVERY {
                shared.leader = true;
                shared.since_poll = 0;
                return Next::Look;
            }
            if let Some(item) = shared.ready.pop_front() {
                shared.since_poll += 1;
                return Next::Serve(item);
            }
            if lead {
                shared.leader = true;
                shared.since_poll = 0;
                return Next::Lead;
            }
            shared.idle += 1;
            self.followers.wait(&mut shared);
            shared.idle -= 1;
        }
    }

    /// Ends the calling worker's loop. It may have been woken to serve an
    /// item or to lead: a follower takes that wake-up over. With no
    /// follower, the workers serving come back to the queue when their
    /// turn ends; the leader alone may not come back, so it is woken if
    /// items wait.
    fn retire(&self, shared: &mut Shared<T>) -> Next<T> {
        shared.workers -= 1;
        let unserved = !shared.ready.is_empty();
        if (unserved || !shared.leader) && shared.idle > 0 {
            self.followers.notify_one();
            return Next::Retire { wake_leader: false };
        }
        Next::Retire {
            wake_leader: unserved && shared.leader,
        }
    }

    /// Sets how many worker loops there should be; returns how many the
    /// caller must start now (counted from this call on, so a later resize
    /// counts them too). Fewer: as many workers as there are too many
    /// retire, each between its turns, the followers at once.
    pub(crate) fn resize(&self, wanted: usize) -> usize {
        assert!(wanted >= 1, "a pool of no worker");
        let mut shared = self.shared.lock();
        shared.wanted = wanted;
        if wanted > shared.workers {
            let start = wanted - shared.workers;
            shared.workers = wanted;
            return start;
        }
        if shared.workers > wanted {
            self.followers.notify_all();
        }
        0
    }

    /// How many worker loops there should be, as last resized.
    pub(crate) fn wanted(&self) -> usize {
        self.shared.lock().wanted
    }

    /// The leader is back from the poller with the items that became
    /// ready: it stops leading, keeps the first of them if `keep_one` (to
    /// serve it itself, with no hand-off), queues the rest behind those
    /// already waiting, and wakes one follower per queued item and one
    /// more to lead while it serves. Returns the item kept.
    pub(crate) fn hand_off(&self, woken: impl IntoIterator<Item = T>, keep_one: bool) -> Option<T> {
        let mut woken = woken.into_iter();
        let mine = if keep_one { woken.next() } else { None };
        let mut shared = self.shared.lock();
        assert!(shared.leader, "handed off without leading");
        shared.leader = false;
        shared.ready.extend(woken);
        let wanted = shared.ready.len() + usize::from(mine.is_some());
        for _ in 0..wanted.min(shared.idle) {
            self.followers.notify_one();
        }
        mine
    }

    /// Queues items from outside the workers (the stop, waking every
    /// connection), and wakes a follower for each.
    pub(crate) fn queue(&self, items: impl IntoIterator<Item = T>) {
        let mut shared = self.shared.lock();
        let before = shared.ready.len();
        shared.ready.extend(items);
        let added = shared.ready.len() - before;
        for _ in 0..added.min(shared.idle) {
            self.followers.notify_one();
        }
    }

    /// Puts an item at the back of the queue. The calling worker asks for
    /// its next item at once, so nobody needs waking.
    pub(crate) fn requeue(&self, item: T) {
        self.shared.lock().ready.push_back(item);
    }

    /// Ends every worker: the followers wake and return; the engine must
    /// also end the leader's wait in the poller.
    pub(crate) fn finish(&self) {
        self.shared.lock().done = true;
        self.followers.notify_all();
    }

    /// A worker died while it may have been leading (a panic in the
    /// engine's own code). Two leaders only take turns at the poller's
    /// lock, so clearing the flag is always safe; without it, nobody would
    /// lead again.
    pub(crate) fn leader_lost(&self) {
        self.shared.lock().leader = false;
    }

    /// Items waiting in the queue.
    pub(crate) fn ready(&self) -> usize {
        self.shared.lock().ready.len()
    }

    /// Workers not serving an item now: waiting as followers, or leading.
    pub(crate) fn waiting(&self) -> usize {
        let shared = self.shared.lock();
        shared.idle + usize::from(shared.leader)
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests;
