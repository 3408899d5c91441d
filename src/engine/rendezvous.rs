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
//! The file is over 500 lines because two thirds of it are its unit tests
//! and loom models, kept beside the 170 lines of code they check.

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
    /// The server has stopped.
    Done,
}

impl<T> Rendezvous<T> {
    /// An empty queue, nobody leading.
    pub(crate) fn new() -> Self {
        Rendezvous {
            shared: Mutex::new(Shared {
                ready: VecDeque::new(),
                leader: false,
                idle: 0,
                since_poll: 0,
                done: false,
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
mod tests {
    use super::*;

    #[test]
    fn a_worker_with_nothing_ready_leads_and_the_next_follows() {
        let r = std::sync::Arc::new(Rendezvous::<u32>::new());
        assert_eq!(r.next(), Next::Lead);
        // A second worker follows until the leader hands something off.
        let follower = {
            let r = r.clone();
            std::thread::spawn(move || r.next())
        };
        while r.waiting() < 2 {
            std::thread::yield_now();
        }
        assert_eq!(r.hand_off([1, 2], true), Some(1));
        assert_eq!(follower.join().expect("follower"), Next::Serve(2));
        // Both serve: nobody waits or leads.
        assert_eq!(r.waiting(), 0);
    }

    /// A leader that keeps one item and queues another wakes two
    /// followers: one to serve the queued item, one to lead meanwhile.
    #[test]
    fn a_hand_off_wakes_a_follower_per_item_and_one_to_lead() {
        let r = std::sync::Arc::new(Rendezvous::<u32>::new());
        assert_eq!(r.next(), Next::Lead);
        let (tx, woken) = std::sync::mpsc::channel();
        for _ in 0..2 {
            let (r, tx) = (r.clone(), tx.clone());
            std::thread::spawn(move || tx.send(r.next()));
        }
        while r.waiting() < 3 {
            std::thread::yield_now();
        }
        assert_eq!(r.hand_off([1, 2], true), Some(1));
        let mut got: Vec<Next<u32>> = (0..2)
            .map(|_| {
                woken
                    .recv_timeout(std::time::Duration::from_secs(10))
                    .expect("a follower was left waiting")
            })
            .collect();
        got.sort_by_key(|n| matches!(n, Next::Lead));
        assert_eq!(got, [Next::Serve(2), Next::Lead]);
    }

    #[test]
    fn queued_items_are_served_in_order() {
        let r = Rendezvous::new();
        assert_eq!(r.next(), Next::Lead);
        assert_eq!(r.hand_off([1, 2, 3], false), None);
        assert_eq!(r.ready(), 3);
        assert_eq!(r.next(), Next::Serve(1));
        r.requeue(1);
        assert_eq!(r.next(), Next::Serve(2));
        assert_eq!(r.next(), Next::Serve(3));
        assert_eq!(r.next(), Next::Serve(1));
        assert_eq!(r.ready(), 0);
    }

    #[test]
    fn after_enough_turns_a_worker_looks_into_the_poller() {
        let r = Rendezvous::new();
        assert_eq!(r.next(), Next::Lead);
        r.hand_off([0], false);
        for _ in 0..POLL_EVERY {
            let Next::Serve(item) = r.next() else {
                panic!("expected to serve");
            };
            r.requeue(item);
        }
        assert_eq!(r.next(), Next::Look);
        r.hand_off([], false);
        assert_eq!(r.next(), Next::Serve(0));
    }

    #[test]
    fn items_queued_from_outside_wake_a_follower() {
        let r = std::sync::Arc::new(Rendezvous::<u32>::new());
        assert_eq!(r.next(), Next::Lead);
        let (tx, next) = std::sync::mpsc::channel();
        {
            let r = r.clone();
            std::thread::spawn(move || tx.send(r.next()));
        }
        while r.waiting() < 2 {
            std::thread::yield_now();
        }
        r.queue([7]);
        let woken = next.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(woken.expect("the follower was never woken"), Next::Serve(7));
    }

    /// A leader lost to a panic is forgotten, so another worker leads.
    #[test]
    fn after_a_lost_leader_another_worker_leads() {
        let r = std::sync::Arc::new(Rendezvous::<u32>::new());
        assert_eq!(r.next(), Next::Lead);
        r.leader_lost();
        let (tx, next) = std::sync::mpsc::channel();
        {
            let r = r.clone();
            std::thread::spawn(move || tx.send(r.next()));
        }
        let next = next.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(next.expect("nobody leads"), Next::Lead);
    }

    #[test]
    fn finish_ends_every_worker() {
        let r = std::sync::Arc::new(Rendezvous::<u32>::new());
        assert_eq!(r.next(), Next::Lead);
        let follower = {
            let r = r.clone();
            std::thread::spawn(move || r.next())
        };
        r.finish();
        assert_eq!(follower.join().expect("follower"), Next::Done);
        assert_eq!(r.next(), Next::Done);
    }
}

/// The model checks (`scripts/loom.sh`): two workers and a mocked poller
/// under every interleaving (up to four preemptions for the two larger
/// models, see `crate::sync::bounded_model`). A model that ends shows that
/// no worker waits forever: loom fails one in which every thread is
/// blocked.
#[cfg(all(test, loom))]
mod loom_tests {
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

        /// Waits for items, and takes them.
        fn poll(&self) -> Vec<u32> {
            let mut state = self.state.lock();
            while state.ready.is_empty() && !state.closed {
                self.cond.wait(&mut state);
            }
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

    /// Starts two workers with `serve` for a turn, runs `meanwhile` on the
    /// main thread, and waits for both workers to end.
    fn run(serve: fn(&World, u32), meanwhile: fn(&World)) -> Arc<World> {
        let world = Arc::new(World::default());
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
}
