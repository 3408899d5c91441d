//! The engine the pool's workers run: one `mio` poller that parks every
//! connection with nothing to do, and a ready queue of connections that
//! have, served leader/followers style.
//!
//! Each worker of the pool runs [`Engine::work`] until the server stops,
//! or until the pool is made smaller ([`pool`]: the admin console's
//! `set workers`). At any moment at most one worker, the leader, waits in the
//! poller. When events come, it marks each connection ready (see
//! [`crate::sched`]: a connection is queued at most once and served by at
//! most one worker), queues all but one, wakes as many idle followers as
//! there is work (one of them becomes the next leader), and serves the one
//! it kept itself. The common case, one connection ready at a time, thus
//! pays no hand-off between threads, as in Jetty's "eat what you kill". A
//! worker that finishes a turn takes the next ready connection, or leads
//! when there is none.
//!
//! Sockets are registered once, edge-triggered, for both directions. A
//! turn reads until the socket is empty (or its budget is spent, and the
//! connection is queued again), so no readiness is ever lost; replies that
//! do not fit wait in the connection's outbox and go out when the socket
//! reports room.
//!
//! The engine does not accept: the server's acceptor thread pushes each
//! new connection in with [`Engine::add`], from its own thread. The new
//! socket is writable at once, so registering it wakes the leader (once
//! for a batch: a waiter woken by the poller is not woken again), and the
//! connection's first turn is a worker's.
//!
//! The queue and the leader/followers discipline are [`rendezvous`]'s;
//! starting, resizing and replacing the loops on the pool's threads is
//! [`pool`]'s; how the leader waits (a short nap first while clients keep
//! the server busy) is [`pace`]'s; this module adds the poller, the
//! registry and the turns.

mod pace;
mod pool;
mod rendezvous;

use std::io;
use std::os::fd::AsRawFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use log::error;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use parking_lot::Mutex;
use threadpool::ThreadPool;

use self::pace::Pace;
use self::pool::PoolThreads;
use self::rendezvous::{Next, Rendezvous};
use crate::conn::Conn;
use crate::handler::{Driver, Turn};
use crate::logfmt;
use crate::registry::Registry;
use crate::sched::Park;

/// The token of the waker that ends the leader's wait at a stop.
const WAKER: Token = Token(usize::MAX);

/// Events taken from the poller at once.
const EVENTS: usize = 1024;

/// One live connection: its shared state, and its protocol driver, which
/// only the worker serving it locks. The driver does not hold the
/// connection: each turn is given this one.
pub(crate) struct Served {
    pub(crate) conn: Arc<Conn>,
    pub(crate) handler: Mutex<Driver>,
}

/// The live connections, by id.
pub(crate) type Connections = Registry<Served>;

/// The poller, the ready queue and the workers' rendezvous.
pub(crate) struct Engine {
    /// Locked only by the leader, for the length of one wait.
    poll: Mutex<Poll>,
    /// Registers sockets while the leader waits.
    registry: mio::Registry,
    waker: Waker,
    workers: Rendezvous<Arc<Served>>,
    conns: Arc<Connections>,
    panics: AtomicUsize,
    /// Connections added so far: the leader does not nap while they come
    /// ([`pace`]).
    added: AtomicUsize,
    /// The pool the loops run on, from the start to the stop: resizes
    /// take it in turns.
    pool: Mutex<Option<ThreadPool>>,
    /// The pool's threads that run, or ran, a loop.
    threads: Arc<PoolThreads>,
}

impl Engine {
    /// An engine over the connections in `conns`.
    pub(crate) fn new(conns: Arc<Connections>) -> io::Result<Arc<Engine>> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        Ok(Arc::new(Engine {
            poll: Mutex::new(poll),
            registry,
            waker,
            workers: Rendezvous::new(),
            conns,
            panics: AtomicUsize::new(0),
            added: AtomicUsize::new(0),
            pool: Mutex::new(None),
            threads: Arc::default(),
        }))
    }

    /// Adds an accepted connection: into the registry, so that its events
    /// find it, then into the poller. A new socket is writable at once, so
    /// its first turn (the protocol's greeting, the first read) follows
    /// straight away, on a worker. The acceptor thread calls it; any
    /// thread may.
    pub(crate) fn add(&self, served: Arc<Served>) -> io::Result<()> {
        let id = served.conn.id();
        let fd = served.conn.stream().as_raw_fd();
        self.conns.insert(id, served);
        self.added.fetch_add(1, Ordering::Relaxed);
        let registered = self.registry.register(
            &mut SourceFd(&fd),
            token(id),
            Interest::READABLE | Interest::WRITABLE,
        );
        if registered.is_err() {
            self.conns.remove(id);
        }
        registered
    }

    /// Connections waiting in the ready queue for a worker.
    pub(crate) fn ready(&self) -> usize {
        self.workers.ready()
    }

    /// Workers not serving a connection now: waiting as followers, or
    /// leading in the poller.
    pub(crate) fn waiting_workers(&self) -> usize {
        self.workers.waiting()
    }

    /// Workers serving a connection now.
    pub(crate) fn busy_workers(&self) -> usize {
        self.workers().saturating_sub(self.waiting_workers())
    }

    /// How many turns panicked.
    pub(crate) fn panics(&self) -> usize {
        self.panics.load(Ordering::Relaxed)
    }

    /// Gives every live connection a turn, as an event would: the stop's
    /// way to wake them all, wherever they are (parked, queued, being
    /// served). Each turn then sees the stop, answers what it has read and
    /// closes. Nothing is done to the sockets, so a client's end of stream
    /// still means what it says.
    pub(crate) fn wake_all(&self) {
        let now = Instant::now();
        let woken = self.conns.copy_out(|served| {
            let woken = served.conn.sched.notify();
            woken.then(|| {
                served.conn.queued(now);
                served.clone()
            })
        });
        self.workers.queue(woken);
        // The leader, waiting in the poller, comes back and serves too.
        self.wake_leader();
    }

    /// Ends every worker loop: followers wake, the leader's wait ends.
    pub(crate) fn finish(&self) {
        self.workers.finish();
        self.release_pool();
        if let Err(e) = self.waker.wake() {
            error!("cannot wake the poller to stop error={}", logfmt::error(&e));
        }
    }

    /// A worker's life: serve ready connections, lead when there are none.
    fn work(&self) {
        let mut events = Events::with_capacity(EVENTS);
        let mut woken = Vec::new();
        let mut out = Vec::new();
        let mut pace = Pace::new();
        loop {
            match self.workers.next() {
                Next::Serve(served) => self.serve(served, &mut out),
                Next::Lead => {
                    if let Some(served) = self.lead(&mut events, &mut woken, Some(&mut pace)) {
                        self.serve(served, &mut out);
                    }
                }
                Next::Look => {
                    self.lead(&mut events, &mut woken, None);
                }
                Next::Retire { wake_leader } => {
                    if wake_leader {
                        self.wake_leader();
                    }
                    return;
                }
                Next::Done => return,
            }
        }
    }

    /// Ends the leader's wait in the poller, so that it comes back to the
    /// ready queue.
    fn wake_leader(&self) {
        if let Err(e) = self.waker.wake() {
            error!("cannot wake the poller error={}", logfmt::error(&e));
        }
    }

    /// Waits in the poller (paced by `pace`), queues the connections that
    /// became ready and hands leadership on, returning one of them to
    /// serve now. With no `pace`, only looks (does not wait) and queues
    /// them all behind those already waiting.
    fn lead(
        &self,
        events: &mut Events,
        woken: &mut Vec<Arc<Served>>,
        mut pace: Option<&mut Pace>,
    ) -> Option<Arc<Served>> {
        let polled = {
            let mut poll = self.poll.lock();
            match pace.as_deref_mut() {
                Some(pace) => pace.wait(&mut poll, events, self.added.load(Ordering::Relaxed)),
                None => poll.poll(events, Some(Duration::ZERO)),
            }
        };
        if let Err(e) = polled
            && e.kind() != io::ErrorKind::Interrupted
        {
            // Nothing in the poller's contract makes this happen; say so
            // and carry on rather than lose the server.
            error!("poll failed error={}", logfmt::error(&e));
        }
        // One clock read for the whole batch: the queue delay of each
        // connection it schedules counts from here.
        let now = Instant::now();
        let waited = pace.is_some();
        if let Some(pace) = pace {
            pace.woke(now);
        }
        let ready = events.iter().filter(|e| e.token() != WAKER).map(|e| {
            let ended = e.is_read_closed() || e.is_error();
            (e.token().0 as u64, ended)
        });
        self.conns.lookup(ready, |ended, served| {
            if ended {
                served.conn.set_read_closed();
            }
            if served.conn.sched.notify() {
                served.conn.queued(now);
                woken.push(served.clone());
            }
        });
        // After a wait this worker serves one itself; after a look it goes
        // back to the queue, where others wait already.
        self.workers.hand_off(woken.drain(..), waited)
    }

    /// Runs one turn of a ready connection, then parks it, queues it again
    /// or closes it.
    fn serve(&self, served: Arc<Served>, out: &mut Vec<u8>) {
        served.conn.sched.start();
        served.conn.taken();
        let turn = {
            let mut handler = served.handler.lock();
            match panic::catch_unwind(AssertUnwindSafe(|| handler.turn(&served.conn, out))) {
                Ok(turn) => turn,
                Err(_) => {
                    self.panics.fetch_add(1, Ordering::Relaxed);
                    error!(
                        "connection handler panicked, closing peer={}",
                        served.conn.peer()
                    );
                    // The session may be broken too; a second panic here
                    // is caught and changes nothing.
                    let _ = panic::catch_unwind(AssertUnwindSafe(|| handler.abandon()));
                    Turn::Done
                }
            }
        };
        out.clear();
        match turn {
            Turn::Park => {
                if served.conn.sched.park() == Park::Requeue {
                    self.requeue(served);
                }
            }
            Turn::Yield => {
                served.conn.sched.yield_turn();
                self.requeue(served);
            }
            Turn::Done => self.close(&served),
        }
    }

    /// Puts a connection at the back of the ready queue. This worker takes
    /// from the queue next, so nobody needs waking.
    fn requeue(&self, served: Arc<Served>) {
        served.conn.queued(Instant::now());
        self.workers.requeue(served);
    }

    /// Forgets a closed connection. Its socket closes, and its slot and
    /// gauges are released, when the last reference goes, which is at once
    /// unless the leader holds it for a moment in a batch of events; those
    /// events find it closed and do nothing. Closing the socket also takes
    /// it out of the poller.
    fn close(&self, served: &Served) {
        served.conn.sched.close();
        self.conns.remove(served.conn.id());
    }
}

fn token(id: u64) -> Token {
    // Ids count up from 0 and never reach the waker's token.
    Token(id as usize)
}

#[cfg(test)]
mod tests;
