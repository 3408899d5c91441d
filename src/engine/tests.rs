//! The engine's unit tests: a panicking session and a panicking loop, on
//! one worker with real sockets.

use super::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use crate::gate::Gate;
use crate::handler::Policy;
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
    fn name(&self) -> &str {
        "boom"
    }

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
            crate::socket::Stream::Tcp(Arc::new(stream)),
            peer.into(),
            Arc::default(),
            Box::new(permit),
        ));
        self.next_id += 1;
        let policy = Policy {
            protocol: self.protocol.clone(),
            ..Policy::standalone(Shutdown::new())
        };
        let driver = Driver::new(Arc::new(policy), &conn, None, false);
        let served = Arc::new(Served {
            conn,
            handler: Mutex::new(driver),
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
    let policy = Arc::new(Policy::standalone(Shutdown::new()));
    let driver = Driver::new(policy, &conn, None, false);
    let unscheduled = Arc::new(Served {
        conn,
        handler: Mutex::new(driver),
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
