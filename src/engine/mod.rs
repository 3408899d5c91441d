//! The engine the pool's workers run: one `mio` poller that parks every
//! connection with nothing to do, and a ready queue of connections that
//! have, served leader/followers style.
//!
//! Each worker of the fixed-size pool runs [`Engine::work`] until the
//! server stops. At any moment at most one worker, the leader, waits in the
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
//! The listening socket is in the same poller, under a token of its own:
//! the leader that sees it ready lets the [`Door`] accept (a batch at
//! most), and new sockets are added as they come, so accepting costs no
//! thread of its own and no wake-up per connection.
//!
//! The queue and the leader/followers discipline are [`rendezvous`]'s;
//! this module adds the poller, the door, the registry and the turns.

mod door;
mod rendezvous;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use log::{error, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use parking_lot::Mutex;
use threadpool::ThreadPool;

pub(crate) use self::door::{ACCEPT_BATCH, Again, Door};
use self::rendezvous::{Next, Rendezvous};
use crate::conn::Conn;
use crate::handler::{ClientHandler, Turn};
use crate::logfmt;
use crate::registry::Registry;
use crate::sched::Park;

/// The token of the waker that ends the leader's wait at a stop.
const WAKER: Token = Token(usize::MAX);

/// The token of the listening socket.
const DOOR: Token = Token(usize::MAX - 1);

/// Events taken from the poller at once.
const EVENTS: usize = 1024;

/// One live connection: its shared state and its protocol driver, which
/// only the worker serving it locks.
pub(crate) struct Served {
    pub(crate) conn: Arc<Conn>,
    pub(crate) handler: Mutex<ClientHandler>,
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
    /// The listening side, once the server opens it.
    door: OnceLock<Arc<dyn Door>>,
    /// When the door is to be tried again without an event from the
    /// poller (a batch spent, a back-off, a permit back), if it is.
    door_due: Mutex<Option<Instant>>,
    workers: Rendezvous<Arc<Served>>,
    conns: Arc<Connections>,
    panics: AtomicUsize,
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
            door: OnceLock::new(),
            door_due: Mutex::new(None),
            workers: Rendezvous::new(),
            conns,
            panics: AtomicUsize::new(0),
        }))
    }

    /// Starts `workers` worker loops on the pool.
    pub(crate) fn start(self: &Arc<Self>, pool: &ThreadPool, workers: usize) {
        for _ in 0..workers {
            spawn_worker(self.clone(), pool.clone());
        }
    }

    /// Puts the listening socket `fd` into the poller, edge-triggered, with
    /// `door` to accept from it. Clients already waiting in its backlog
    /// make it ready at once. Done once, before or after the workers start.
    pub(crate) fn open_door(&self, door: Arc<dyn Door>, fd: RawFd) -> io::Result<()> {
        if self.door.set(door).is_err() {
            return Err(io::Error::other("the door is open already"));
        }
        self.registry
            .register(&mut SourceFd(&fd), DOOR, Interest::READABLE)
    }

    /// Has the door tried again at the next look into the poller, and
    /// wakes the leader for it: what the door waited for (a permit) has
    /// come. Any thread may call it.
    pub(crate) fn door_ready(&self) {
        self.door_again(Instant::now());
        if let Err(e) = self.waker.wake() {
            error!("cannot wake the poller error={}", logfmt::error(&e));
        }
    }

    /// Has the door tried again at `at`, or earlier if it already is.
    fn door_again(&self, at: Instant) {
        let mut due = self.door_due.lock();
        *due = Some(due.map_or(at, |d| d.min(at)));
    }

    /// How long the leader may wait in the poller: at most `timeout`, and
    /// no later than the door is due.
    fn wait_for(&self, timeout: Option<Duration>) -> Option<Duration> {
        let Some(at) = *self.door_due.lock() else {
            return timeout;
        };
        let until_due = at.saturating_duration_since(Instant::now());
        Some(timeout.map_or(until_due, |t| t.min(until_due)))
    }

    /// Lets the door accept if the poller reported it (`event`) or it is
    /// due, and remembers when it wants to be tried again.
    fn try_door(&self, event: bool) {
        let Some(door) = self.door.get() else {
            return;
        };
        {
            let mut due = self.door_due.lock();
            let is_due = due.is_some_and(|at| at <= Instant::now());
            if !event && !is_due {
                return;
            }
            // Taken before the call: what comes meanwhile (a permit back)
            // sets it again and is not lost.
            if is_due {
                *due = None;
            }
        }
        match door.accept_ready(self) {
            Again::OnEvent => {}
            Again::Soon => self.door_again(Instant::now()),
            Again::At(at) => self.door_again(at),
        }
    }

    /// Adds an accepted connection: into the registry, so that its events
    /// find it, then into the poller. A new socket is writable at once, so
    /// its first turn (the protocol's greeting, the first read) follows
    /// straight away.
    pub(crate) fn add(&self, served: Arc<Served>) -> io::Result<()> {
        let id = served.conn.id();
        let fd = served.conn.stream().as_raw_fd();
        self.conns.insert(id, served);
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
        let woken = self
            .conns
            .copy_out(|served| served.conn.sched.notify().then(|| served.clone()));
        self.workers.queue(woken);
        // The leader, waiting in the poller, comes back and serves too.
        if let Err(e) = self.waker.wake() {
            error!("cannot wake the poller error={}", logfmt::error(&e));
        }
    }

    /// Ends every worker loop: followers wake, the leader's wait ends.
    pub(crate) fn finish(&self) {
        self.workers.finish();
        if let Err(e) = self.waker.wake() {
            error!("cannot wake the poller to stop error={}", logfmt::error(&e));
        }
    }

    /// A worker's life: serve ready connections, lead when there are none.
    fn work(&self) {
        let mut events = Events::with_capacity(EVENTS);
        let mut woken = Vec::new();
        let mut out = Vec::new();
        loop {
            match self.workers.next() {
                Next::Serve(served) => self.serve(served, &mut out),
                Next::Lead => {
                    if let Some(served) = self.lead(&mut events, &mut woken, None) {
                        self.serve(served, &mut out);
                    }
                }
                Next::Look => {
                    self.lead(&mut events, &mut woken, Some(Duration::ZERO));
                }
                Next::Done => return,
            }
        }
    }

    /// Waits in the poller (at most `timeout`), queues the connections that
    /// became ready and hands leadership on. After a wait, returns one ready
    /// connection to serve now; after a look (`timeout` zero), queues them
    /// all behind those already waiting.
    fn lead(
        &self,
        events: &mut Events,
        woken: &mut Vec<Arc<Served>>,
        timeout: Option<Duration>,
    ) -> Option<Arc<Served>> {
        let wait = self.wait_for(timeout);
        if let Err(e) = self.poll.lock().poll(events, wait)
            && e.kind() != io::ErrorKind::Interrupted
        {
            // Nothing in the poller's contract makes this happen; say so
            // and carry on rather than lose the server.
            error!("poll failed error={}", logfmt::error(&e));
        }
        let mut door = false;
        let ready = events.iter().filter(|e| {
            door |= e.token() == DOOR;
            e.token() != WAKER && e.token() != DOOR
        });
        let ready = ready.map(|e| {
            let ended = e.is_read_closed() || e.is_error();
            (e.token().0 as u64, ended)
        });
        self.conns.lookup(ready, |ended, served| {
            if ended {
                served.conn.set_read_closed();
            }
            if served.conn.sched.notify() {
                woken.push(served.clone());
            }
        });
        // New sockets are added to the poller now; their first events come
        // at the next look.
        self.try_door(door);
        // After a wait this worker serves one itself; after a look it goes
        // back to the queue, where others wait already.
        self.workers.hand_off(woken.drain(..), timeout.is_none())
    }

    /// Runs one turn of a ready connection, then parks it, queues it again
    /// or closes it.
    fn serve(&self, served: Arc<Served>, out: &mut Vec<u8>) {
        served.conn.sched.start();
        let turn = {
            let mut handler = served.handler.lock();
            match panic::catch_unwind(AssertUnwindSafe(|| handler.turn(out))) {
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
    // Ids count up from 0 and never reach the door's or the waker's token.
    Token(id as usize)
}

/// Runs a worker loop on the pool. Protocol code cannot end a loop (a
/// panicking turn is caught); should the engine itself ever panic, the
/// pool gets a fresh loop in place of the lost one.
fn spawn_worker(engine: Arc<Engine>, pool: ThreadPool) {
    let job_pool = pool.clone();
    pool.execute(move || {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{ErrorKind, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    use crate::gate::Gate;
    use crate::protocol::{Action, Link, Protocol, Session};
    use crate::shutdown::Shutdown;

    /// How long a test waits for any one thing.
    const DEADLINE: Duration = Duration::from_secs(10);

    /// A protocol with a bug: its sessions answer `ok: <message>`, and
    /// panic on the message `boom`. It counts the sessions ended.
    #[derive(Default)]
    struct Boom {
        ended: Arc<AtomicUsize>,
    }

    struct BoomSession {
        ended: Arc<AtomicUsize>,
    }

    impl Protocol for Boom {
        fn open(&self, _link: Link) -> Box<dyn Session> {
            Box::new(BoomSession {
                ended: self.ended.clone(),
            })
        }
    }

    impl Session for BoomSession {
        fn message(&mut self, msg: &[u8], out: &mut Vec<u8>) -> Action {
            if msg == b"boom" {
                panic!("a bug in protocol code");
            }
            out.extend_from_slice(b"ok: ");
            out.extend_from_slice(msg);
            out.push(b'\n');
            Action::Continue
        }

        fn end(&mut self) {
            self.ended.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// An engine over an empty registry, run by a pool of one worker, and
    /// what it takes to hand it connections.
    struct OneWorker {
        conns: Arc<Connections>,
        engine: Arc<Engine>,
        pool: ThreadPool,
        gate: Arc<Gate>,
        protocol: Arc<Boom>,
        listener: TcpListener,
        next_id: u64,
    }

    impl OneWorker {
        fn start() -> OneWorker {
            let conns = Connections::new();
            let engine = Engine::new(conns.clone()).expect("engine");
            let pool = ThreadPool::new(1);
            engine.start(&pool, 1);
            OneWorker {
                conns,
                engine,
                pool,
                gate: Gate::new(4),
                protocol: Arc::default(),
                listener: TcpListener::bind("127.0.0.1:0").expect("bind"),
                next_id: 0,
            }
        }

        /// A connection accepted as the acceptor's `dispatch` does it: a
        /// permit among its guards, a handler speaking `Boom`, into the
        /// registry and the poller. Returns the client's end.
        fn connect(&mut self) -> TcpStream {
            let client =
                TcpStream::connect(self.listener.local_addr().expect("addr")).expect("connect");
            client.set_read_timeout(Some(DEADLINE)).expect("timeout");
            let (stream, peer) = self.listener.accept().expect("accept");
            stream.set_nonblocking(true).expect("nonblocking");
            let permit = self.gate.try_acquire().expect("a permit");
            let conn = Arc::new(Conn::new(
                self.next_id,
                Arc::new(stream),
                peer,
                Arc::default(),
                Box::new(permit),
            ));
            self.next_id += 1;
            let protocol: Arc<dyn Protocol> = self.protocol.clone();
            let handler =
                ClientHandler::serving(conn.clone(), Shutdown::new()).with_protocol(protocol);
            let served = Arc::new(Served {
                conn,
                handler: Mutex::new(handler),
            });
            self.engine.add(served).expect("add");
            client
        }

        /// Ends the loops and joins the pool.
        fn stop(self) {
            self.engine.finish();
            self.pool.join();
        }
    }

    /// Sends `line` and expects its answer.
    fn exchange(client: &mut TcpStream, line: &str) {
        client
            .write_all(format!("{line}\n").as_bytes())
            .expect("send");
        let want = format!("ok: {line}\n");
        let mut got = vec![0u8; want.len()];
        client.read_exact(&mut got).expect("answer");
        assert_eq!(String::from_utf8_lossy(&got), want);
    }

    /// Reads until the server closes (an end of stream or a reset) and
    /// asserts that it said nothing more.
    fn expect_closed(client: &mut TcpStream) {
        let mut rest = Vec::new();
        match client.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected the server to close: {e}"),
        }
        assert!(rest.is_empty(), "got {:?}", String::from_utf8_lossy(&rest));
    }

    /// A panic in protocol code closes only its connection: its session is
    /// told, its registry entry and its permit go (before its socket
    /// closes), the panic is counted, and the same worker loop goes on
    /// serving another connection.
    #[test]
    fn a_panicking_session_closes_only_its_connection() {
        let mut engine = OneWorker::start();
        let mut victim = engine.connect();
        exchange(&mut victim, "hi");
        assert_eq!(engine.gate.in_use(), 1);
        assert_eq!(engine.conns.len(), 1);
        victim.write_all(b"boom\n").expect("send");
        expect_closed(&mut victim);
        assert_eq!(engine.gate.in_use(), 0);
        assert_eq!(engine.conns.len(), 0);
        assert_eq!(engine.engine.panics(), 1);
        assert_eq!(engine.protocol.ended.load(Ordering::SeqCst), 1);
        let mut other = engine.connect();
        exchange(&mut other, "still served");
        // The loop itself never died: the pool lost no job.
        assert_eq!(engine.pool.panic_count(), 0);
        other.write_all(b"shutdown\n").expect("send");
        expect_closed(&mut other);
        // An orderly close sends our end of stream before the connection
        // goes: its permit comes back a moment after.
        assert!(
            engine.gate.wait_idle(Instant::now() + DEADLINE),
            "a permit was not given back"
        );
        assert_eq!(engine.conns.len(), 0);
        engine.stop();
    }

    /// Should the engine's own code panic, the pool gets a fresh loop in
    /// place of the lost one (`Respawn`): here a connection is put in the
    /// ready queue without being scheduled, and starting it trips the
    /// schedule's assertion, outside the turn's catch. The worker takes
    /// from the queue before it polls again, so the connections served
    /// after (one parked before, one added after) are the new loop's.
    #[test]
    fn a_panicking_engine_loop_is_replaced() {
        let mut engine = OneWorker::start();
        let mut before = engine.connect();
        exchange(&mut before, "before");
        let (_client, conn) = crate::conn::test_pair();
        let conn = Arc::new(conn);
        let handler = ClientHandler::serving(conn.clone(), Shutdown::new());
        let unscheduled = Arc::new(Served {
            conn,
            handler: Mutex::new(handler),
        });
        engine.engine.requeue(unscheduled);
        // End the leader's wait, so that it takes from the queue.
        engine.engine.waker.wake().expect("wake");
        let mut after = engine.connect();
        exchange(&mut after, "after");
        exchange(&mut before, "before, again");
        assert_eq!(engine.pool.panic_count(), 1);
        assert_eq!(engine.engine.panics(), 0);
        engine.stop();
    }
}
