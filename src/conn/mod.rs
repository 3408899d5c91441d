//! One client connection as every thread sees it: the non-blocking socket,
//! the outbox of bytes the client has not taken yet, its idle
//! [`Activity`] and its [`Schedule`].
//!
//! Only the worker serving the connection reads from it; writes go through
//! the outbox's lock, because other connections' sessions may deliver to it
//! too (a chat room). Nothing here ever blocks: what the socket does not
//! take stays in the outbox, and the poller brings the connection back when
//! the socket has room again.
//!
//! The socket's bytes go through a transport: plain, or a TLS session
//! (`crate::tls`) kept beside the outbox under the same lock, since reading
//! (ciphertext in, handshake and alerts out) and writing (replies, other
//! connections' deliveries) both change it. With TLS the lock is held
//! across the socket's system calls, which never wait. The TLS half of it
//! is in `transport`.

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::Shutdown;
#[cfg(test)]
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use socket2::SockRef;

use crate::access::AddressSlot;
use crate::activity::Activity;
use crate::sched::Schedule;
use crate::socket::{Peer, Stream};
use crate::stats::Stats;
use crate::tls;

mod transport;

/// The most a closing connection reads off from a client that is still
/// sending, so that closing does not turn into a reset that destroys our
/// last replies in flight.
pub(crate) const LINGER_BYTES: usize = 256 * 1024;

/// A client connection's shared state.
pub(crate) struct Conn {
    /// Released with the connection: its slot, its gauges. Declared first,
    /// so dropped first: before the socket closes, so that a client that
    /// sees the close and connects again finds its slot free.
    _guards: Box<dyn Send + Sync>,
    id: u64,
    stream: Stream,
    peer: Peer,
    outbox: Mutex<Outbox>,
    /// Progress for the idle rule.
    pub(crate) activity: Activity,
    /// Where the connection stands between poller and workers.
    pub(crate) sched: Schedule,
    /// The poller saw the client's end of stream (or an error): a short read
    /// no longer means that everything has been read.
    read_closed: AtomicBool,
    /// An operator closed it (the admin console's `kill`).
    killed: AtomicBool,
    /// When the connection was made: the origin of `ready_at`.
    opened: Instant,
    /// When the connection last had work ready, in nanoseconds after
    /// `opened`. It is written before the connection goes into the ready
    /// queue and read after a worker takes it out; the queue's lock orders
    /// the two, so relaxed loads and stores are enough.
    ready_at: AtomicU64,
    /// Counts the bytes the client accepts, and the queue delays.
    stats: Arc<Stats>,
    /// Bytes this client has accepted, for the admin console.
    bytes_out: AtomicU64,
    /// The client address's `--max-per-ip` slot, given back as soon as the
    /// server ends its side of the stream, before the client can see the
    /// close: a client that connects again at once finds it free.
    address_slot: Mutex<Option<AddressSlot>>,
    /// The connection speaks TLS (its session is in the outbox).
    tls: bool,
}

/// What became of a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Sent, or waiting for the client's socket to take it.
    Queued,
    /// The client was this many bytes behind: it is disconnected now.
    Dropped(usize),
    /// The client is disconnected already, or its connection is closing.
    Gone,
}

#[derive(Default)]
struct Outbox {
    pending: Vec<u8>,
    /// Bytes at the front of `pending` already written.
    sent: usize,
    /// Disconnected for falling too far behind: nothing more is queued.
    kicked: bool,
    /// The TLS session, on a TLS port.
    tls: Option<Box<tls::Session>>,
}

impl Outbox {
    /// Bytes waiting: ours, and those the TLS session has yet to send.
    fn len(&self) -> usize {
        self.pending.len() - self.sent + self.tls.as_ref().map_or(0, |t| t.waiting())
    }

    /// Bytes of ours waiting (not yet handed to the transport).
    fn queued(&self) -> usize {
        self.pending.len() - self.sent
    }
}

impl Conn {
    /// Wraps an accepted socket, which must already be non-blocking.
    /// `guards` are dropped when the connection is.
    pub(crate) fn new(
        id: u64,
        stream: Stream,
        peer: Peer,
        stats: Arc<Stats>,
        guards: Box<dyn Send + Sync>,
    ) -> Self {
        Conn {
            id,
            stream,
            peer,
            outbox: Mutex::default(),
            activity: Activity::default(),
            sched: Schedule::new(),
            read_closed: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            opened: Instant::now(),
            ready_at: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            stats,
            _guards: guards,
            address_slot: Mutex::new(None),
            tls: false,
        }
    }

    /// The connection's id, unique for the server's life (its poller token).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The client's address.
    pub(crate) fn peer(&self) -> Peer {
        self.peer
    }

    /// The socket, for shutting it down from another thread.
    pub(crate) fn stream(&self) -> &Stream {
        &self.stream
    }

    /// Holds the client address's `--max-per-ip` slot for the connection.
    pub(crate) fn hold_address_slot(&self, slot: AddressSlot) {
        *self.address_slot.lock() = Some(slot);
    }

    /// Gives the address slot back: the server is ending its side.
    pub(crate) fn release_address_slot(&self) {
        self.address_slot.lock().take();
    }

    /// Records that the poller saw the end of the client's stream.
    pub(crate) fn set_read_closed(&self) {
        self.read_closed.store(true, Ordering::Relaxed);
    }

    /// Whether the poller saw the end of the client's stream.
    pub(crate) fn read_closed(&self) -> bool {
        self.read_closed.load(Ordering::Relaxed)
    }

    /// Notes that the connection has work ready as of `now`: an event
    /// scheduled it, or its worker is queueing it again.
    pub(crate) fn queued(&self, now: Instant) {
        let nanos = now.saturating_duration_since(self.opened).as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        self.ready_at.store(nanos, Ordering::Relaxed);
    }

    /// A worker starts the connection's turn: counts how long it waited
    /// for one since [`Conn::queued`].
    pub(crate) fn taken(&self) {
        let ready = self.opened + Duration::from_nanos(self.ready_at.load(Ordering::Relaxed));
        self.stats.queue_delay(ready.elapsed());
    }

    /// Sends `replies` (emptying it) after whatever is already waiting, and
    /// writes what the socket takes now. Returns how many bytes still wait.
    pub(crate) fn send(&self, replies: &mut Vec<u8>) -> io::Result<usize> {
        if replies.is_empty() {
            return self.flush();
        }
        let mut outbox = self.outbox.lock();
        if outbox.kicked {
            replies.clear();
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        let result = if outbox.queued() == 0 {
            // The usual case: write straight from the caller's buffer and
            // keep only what the transport did not take.
            let result = self.write_via(&mut outbox.tls, replies);
            let written = *result.as_ref().unwrap_or(&0);
            if written < replies.len() {
                outbox.pending.clear();
                outbox.sent = 0;
                outbox.pending.extend_from_slice(&replies[written..]);
            }
            result.map(|_| ())
        } else {
            outbox.pending.extend_from_slice(replies);
            self.write_outbox(&mut outbox)
        };
        replies.clear();
        self.after_write(&mut outbox, result)
    }

    /// Writes what waits in the outbox as far as the socket takes it.
    /// Returns how many bytes still wait.
    pub(crate) fn flush(&self) -> io::Result<usize> {
        let mut outbox = self.outbox.lock();
        if outbox.len() == 0 {
            return Ok(0);
        }
        let result = self.write_outbox(&mut outbox);
        self.after_write(&mut outbox, result)
    }

    /// Bytes waiting for the client to read them.
    pub(crate) fn pending(&self) -> usize {
        self.outbox.lock().len()
    }

    /// Queues `bytes` from another connection's session and writes what the
    /// socket takes now. A client more than `max_behind` bytes behind is
    /// disconnected; its own worker then closes it.
    pub(crate) fn deliver(&self, bytes: &[u8], max_behind: usize) -> Delivery {
        let mut outbox = self.outbox.lock();
        // After close_notify nothing more is written: queued, the bytes
        // would wait for ever, and the close with them.
        if outbox.kicked || outbox.tls.as_ref().is_some_and(|t| t.closing()) {
            return Delivery::Gone;
        }
        outbox.pending.extend_from_slice(bytes);
        let result = self.write_outbox(&mut outbox);
        match self.after_write(&mut outbox, result) {
            Ok(waiting) if waiting <= max_behind => Delivery::Queued,
            // A broken socket: its own worker sees it and closes.
            Err(_) => Delivery::Gone,
            Ok(waiting) => {
                outbox.kicked = true;
                outbox.pending = Vec::new();
                outbox.sent = 0;
                drop(outbox);
                self.kick();
                Delivery::Dropped(waiting)
            }
        }
    }

    /// Closes the connection for an operator: its socket is shut down, so
    /// its worker wakes, and the turn ends it as killed.
    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.kick();
    }

    /// Whether an operator closed the connection.
    pub(crate) fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// How long ago the connection was made.
    pub(crate) fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    /// How long since the connection last had work to do (an event from
    /// its client, or its own turn queued again); its age if never.
    pub(crate) fn idle(&self) -> Duration {
        let ready = Duration::from_nanos(self.ready_at.load(Ordering::Relaxed));
        self.age().saturating_sub(ready)
    }

    /// Bytes the client has accepted.
    pub(crate) fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }

    /// The TLS version the connection speaks (`1.3`, as the logs give
    /// it; `unknown` until its handshake settles one), on a TLS port.
    pub(crate) fn tls_version(&self) -> Option<&'static str> {
        self.outbox.lock().tls.as_ref().map(|t| t.version())
    }

    /// Disconnects the client: its worker wakes to a dead socket and closes.
    pub(crate) fn kick(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Writes `line` only if nothing else waits and the socket takes it
    /// whole now; for last words to a client that may have stopped reading.
    pub(crate) fn try_say(&self, line: &[u8]) {
        let mut outbox = self.outbox.lock();
        if outbox.len() == 0 && !outbox.kicked {
            match outbox.tls.as_mut() {
                Some(session) => {
                    let _ = session.write(&self.stream, line);
                    let _ = session.close_notify(&self.stream);
                }
                None => {
                    let _ = (&self.stream).write(line);
                }
            }
        }
    }

    /// Sends our end of stream after the replies; the address slot is
    /// given back first.
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        self.release_address_slot();
        self.stream.shutdown(Shutdown::Write)
    }

    fn write_outbox(&self, outbox: &mut Outbox) -> io::Result<()> {
        let Outbox {
            pending, sent, tls, ..
        } = outbox;
        let result = self.write_via(tls, &pending[*sent..]);
        *sent += *result.as_ref().unwrap_or(&0);
        result.map(|_| ())
    }

    /// Writes as much of `bytes` as the transport takes now; counts the
    /// progress. Returns how many bytes of `bytes` it took.
    fn write_via(&self, tls: &mut Option<Box<tls::Session>>, bytes: &[u8]) -> io::Result<usize> {
        let (result, progressed) = match tls {
            None => {
                let result = write_some(&self.stream, bytes);
                let progressed = result.as_ref().is_ok_and(|&n| n > 0);
                (result, progressed)
            }
            Some(session) => match session.write(&self.stream, bytes) {
                Ok(w) => (Ok(w.taken), w.progressed),
                Err(e) => (Err(e), false),
            },
        };
        if progressed {
            self.activity.write_progress();
        }
        if let Ok(n) = result
            && n > 0
        {
            self.stats.sent(n as u64);
            self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        }
        result
    }

    fn after_write(&self, outbox: &mut Outbox, result: io::Result<()>) -> io::Result<usize> {
        let waiting = outbox.len();
        if outbox.queued() == 0 && outbox.pending.capacity() > 0 {
            // A drained outbox gives its memory back: an idle connection
            // holds no buffer.
            outbox.pending = Vec::new();
            outbox.sent = 0;
        } else if outbox.sent > 0 && outbox.sent >= waiting {
            // Move the rest to the front once the sent part is the larger,
            // so each byte moves at most once on average.
            let sent = outbox.sent;
            outbox.pending.drain(..sent);
            outbox.sent = 0;
        }
        self.activity.set_waiting_write(waiting > 0);
        result.map(|()| waiting)
    }
}

/// Reads go through the transport; only the connection's worker reads.
/// A short read means the socket had nothing more, with TLS too.
impl Read for &Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.tls {
            return (&self.stream).read(buf);
        }
        let mut outbox = self.outbox.lock();
        let Some(session) = outbox.tls.as_mut() else {
            return (&self.stream).read(buf);
        };
        let result = session.read(&self.stream, buf);
        if session.ended() {
            // A short read no longer means that everything was read.
            self.set_read_closed();
        }
        // Reading may have given TLS something to send (an alert, a key
        // update): it goes out now, as far as the socket takes it.
        if outbox.tls.as_ref().is_some_and(|t| t.waiting() > 0) {
            let written = self.write_outbox(&mut outbox);
            let _ = self.after_write(&mut outbox, written);
        }
        result
    }
}

/// Writes as much of `bytes` as the socket takes without waiting. A full
/// socket is not an error: the count says how much went.
fn write_some(mut stream: &Stream, bytes: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match stream.write(&bytes[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// What [`drain_pending`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Drained {
    /// This many bytes were read (at most the limit); the client may still
    /// be sending.
    Bytes(usize),
    /// The client's end of stream, or an error: nothing more will come.
    Closed,
}

/// Reads off, without waiting, what the client has already sent, up to
/// `limit` bytes, so that closing the socket does not turn into a reset that
/// destroys our replies in flight. Bounded, so a client that keeps sending
/// cannot keep the caller here.
pub(crate) fn drain_pending(stream: &Stream, limit: usize) -> Drained {
    let mut scratch = [MaybeUninit::<u8>::uninit(); 4096];
    let socket = SockRef::from(stream);
    let mut drained = 0;
    while drained < limit {
        let want = scratch.len().min(limit - drained);
        match socket.recv_with_flags(&mut scratch[..want], libc::MSG_DONTWAIT) {
            Ok(0) => return Drained::Closed,
            Ok(n) => drained += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => return Drained::Closed,
        }
    }
    Drained::Bytes(drained)
}

/// A client socket and the server's side of it as a fresh connection, for
/// tests.
#[cfg(test)]
pub(crate) fn test_pair() -> (TcpStream, Conn) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server, peer) = listener.accept().expect("accept");
    server.set_nonblocking(true).expect("nonblocking");
    let stream = Stream::Tcp(Arc::new(server));
    let conn = Conn::new(1, stream, peer.into(), Arc::default(), Box::new(()));
    (client, conn)
}

/// Waits until `n` bytes are waiting on `stream`, without reading them,
/// for tests.
#[cfg(test)]
pub(crate) fn wait_waiting(stream: &Stream, n: usize) {
    let mut peek = vec![MaybeUninit::<u8>::uninit(); n];
    // MSG_WAITALL waits only on a blocking socket.
    stream.set_nonblocking(false).expect("blocking");
    let waiting = SockRef::from(stream)
        .recv_with_flags(&mut peek, libc::MSG_PEEK | libc::MSG_WAITALL)
        .expect("peek");
    stream.set_nonblocking(true).expect("nonblocking");
    assert_eq!(waiting, n);
}

#[cfg(test)]
mod tests;
