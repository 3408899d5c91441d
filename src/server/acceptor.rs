//! The door: the engine's leader calls it when a listening socket is
//! ready (see [`crate::engine::Door`]); it takes a slot from the gate,
//! accepts a socket, admits it (`--max-per-ip`) and hands it to the
//! engine, whose poller brings it to the pool's workers whenever it has
//! something to do; or turns it away with one line. Every listener (TCP,
//! IPv4 or IPv6, and Unix domain sockets) shares the one gate, registry,
//! pool and stop. The door never blocks and never ends the server over an
//! accept error: it skips those that concern one connection and backs off
//! from the rest, leaving the retry to the leader's next look into the
//! poller.

use std::io::{self, Write};
use std::net::Shutdown as Direction;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, error, warn};
use parking_lot::Mutex;

use super::listen::{ACCEPTED_INHERIT_OPTIONS, Listener};
use crate::access::{self, AddrList, AddressSlot, PerAddress, TOO_MANY_FROM_ADDRESS};
use crate::config::Overload;
use crate::conn::{Conn, LINGER_BYTES, drain_pending};
use crate::engine::{ACCEPT_BATCH, Again, Door, Engine, Served};
use crate::gate::{Gate, Permit};
use crate::handler::{ClientHandler, Limits};
use crate::logfmt;
use crate::protocol::Protocol;
use crate::shutdown::Shutdown;
use crate::socket::{Peer, Stream};
use crate::stats::{ListenerCount, Stats};
use crate::tls::{self, Certs};

/// The first and the longest pause after an accept error such as running
/// out of file descriptors.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What the door needs to accept and hand connections on. Whichever worker
/// leads calls it, so what changes is behind a lock.
pub(super) struct Acceptor {
    pub(super) overload: Overload,
    pub(super) proxy_protocol: bool,
    pub(super) protocol: Arc<dyn Protocol>,
    pub(super) limits: Limits,
    pub(super) shutdown: Shutdown,
    pub(super) gate: Arc<Gate>,
    pub(super) stats: Arc<Stats>,
    pub(super) admin_from: Arc<AddrList>,
    /// User ids that may stop the server from a Unix socket.
    pub(super) admin_uids: Arc<[u32]>,
    /// Connections per client address, with `--max-per-ip`.
    pub(super) per_address: Option<Arc<PerAddress>>,
    /// The certificates, on a TLS server (TCP listeners only).
    pub(super) tls: Option<Arc<Certs>>,
    /// Certificate names that may stop the server (`--admin-cert`).
    pub(super) admin_certs: Option<Arc<Vec<String>>>,
    /// Connections accepted, per listener, in the listeners' order.
    pub(super) counts: Vec<Arc<ListenerCount>>,
    pub(super) state: Mutex<State>,
}

/// The door's changing part.
pub(super) struct State {
    /// Empty once the stop has closed them.
    listeners: Vec<Listener>,
    /// Per listener: whether clients may wait in its backlog (the poller
    /// said so, and no accept has said `EAGAIN` since). The poller is
    /// edge-triggered, so this is what remembers a backlog left for later
    /// (a spent batch, a full gate, a back-off).
    waiting: Vec<bool>,
    /// The listener the next call starts with, so that a flood on one
    /// cannot starve the others.
    first: usize,
    next_id: u64,
    /// The pause after the next accept error.
    backoff: Duration,
    /// No accept before this, after an error.
    retry_at: Option<Instant>,
}

impl State {
    pub(super) fn new(listeners: Vec<Listener>) -> Mutex<State> {
        Mutex::new(State {
            waiting: vec![false; listeners.len()],
            listeners,
            first: 0,
            next_id: 0,
            backoff: BACKOFF_MIN,
            retry_at: None,
        })
    }
}

/// One accepted connection, with what the door knows of where it came in.
struct Accepted {
    stream: Stream,
    peer: Peer,
    /// The index of its listener.
    on: usize,
    unix: bool,
}

/// Why a connection is turned away at the door.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    /// Every slot is taken (`--overload reject`).
    Busy,
    /// Its address has `--max-per-ip` connections open.
    PerAddress,
}

impl Refusal {
    /// The reason as the close's log line gives it, as a connection's end
    /// reasons are given.
    fn reason(self) -> &'static str {
        match self {
            Refusal::Busy => "server_busy",
            Refusal::PerAddress => "too_many_from_address",
        }
    }
}

impl Door for Acceptor {
    /// Accepts until the listeners have nothing more, a batch at most.
    ///
    /// The lock is held throughout: only the leader calls this, so it
    /// delays nobody but the stop, which takes it once to close the
    /// listeners and so knows that no accept is under way.
    fn accept_ready(&self, engine: &Engine, ready: &[usize]) -> Again {
        // Should the door ever panic, the server stops rather than serve on
        // without accepting.
        let _stop = StopOnPanic(&self.shutdown);
        let mut state = self.state.lock();
        for &i in ready {
            if let Some(waiting) = state.waiting.get_mut(i) {
                *waiting = true;
            }
        }
        if let Some(at) = state.retry_at {
            if Instant::now() < at {
                return Again::At(at);
            }
            state.retry_at = None;
        }
        let count = state.listeners.len();
        let first = state.first;
        state.first = (first + 1) % count.max(1);
        let mut budget = ACCEPT_BATCH;
        for on in (0..count).map(|k| (first + k) % count) {
            while state.waiting[on] {
                if budget == 0 {
                    // The batch is spent and clients may still wait, with
                    // no new event to say so: the leader tries again at
                    // its next look.
                    return Again::Soon;
                }
                budget -= 1;
                if let Some(again) = self.accept_one(engine, &mut state, on) {
                    return again;
                }
            }
        }
        Again::OnEvent
    }
}

impl Acceptor {
    /// Accepts one connection from listener `on` and hands it on (or turns
    /// it away). Returns what to tell the engine if the door is to stop
    /// here; `None` to go on.
    fn accept_one(&self, engine: &Engine, state: &mut State, on: usize) -> Option<Again> {
        if self.shutdown.is_triggered() {
            return Some(Again::OnEvent);
        }
        let listener = &state.listeners[on];
        // In block mode the slot is taken before accept(), so a full
        // server leaves new clients in the kernel's listen backlog; the
        // gate calls back (`Engine::door_ready`) when one comes free.
        let reserved = match self.overload {
            Overload::Block => match self.gate.try_acquire_or_hook() {
                Some(permit) => Some(permit),
                None => return Some(Again::OnEvent),
            },
            Overload::Reject => None,
        };
        let unix = listener.is_unix();
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                state.waiting[on] = false;
                return None;
            }
            Err(_) if self.shutdown.is_triggered() => return Some(Again::OnEvent),
            Err(e) if is_transient(&e) => {
                debug!(
                    "accept skipped a failed connection error={} listener={}",
                    logfmt::error(&e),
                    listener.name()
                );
                return None;
            }
            Err(e) => {
                warn!(
                    "accept failed, backing off error={} retry_in_ms={}",
                    logfmt::error(&e),
                    state.backoff.as_millis()
                );
                // No worker sleeps: the leader's wait in the poller ends
                // when the pause does, and the door is tried then.
                let at = Instant::now() + state.backoff;
                state.retry_at = Some(at);
                state.backoff = (state.backoff * 2).min(BACKOFF_MAX);
                return Some(Again::At(at));
            }
        };
        state.backoff = BACKOFF_MIN;
        if self.shutdown.is_triggered() {
            // Accepted just as the stop began: close it like the rest.
            return Some(Again::OnEvent);
        }
        let accepted = Accepted {
            stream,
            peer,
            on,
            unix,
        };
        let Some(permit) = reserved.or_else(|| self.gate.try_acquire()) else {
            self.reject(accepted, Refusal::Busy);
            return None;
        };
        // Behind a proxy the address to count is known only once the
        // header is read: the handler admits it then. A Unix client has no
        // address to count.
        let table = self.per_address.as_ref().filter(|_| !self.proxy_protocol);
        let admitted = match accepted.peer.ip_addr() {
            Some(ip) => access::admit(table, ip),
            None => Ok(None),
        };
        match admitted {
            Ok(slot) => {
                let id = state.next_id;
                state.next_id += 1;
                self.dispatch(engine, id, accepted, permit, slot);
            }
            Err(access::TooMany) => self.reject(accepted, Refusal::PerAddress),
        }
        None
    }

    /// Opens the door: the listeners go into the engine's poller, and from
    /// then on the leader accepts.
    pub(super) fn open(self: &Arc<Self>, engine: &Engine) -> io::Result<()> {
        let fds: Vec<RawFd> = self
            .state
            .lock()
            .listeners
            .iter()
            .map(AsRawFd::as_raw_fd)
            .collect();
        engine.open_door(self.clone(), &fds)
    }

    /// Shuts the listeners down, as the stop begins: on Linux the kernel
    /// refuses new TCP clients from then on. Waits for an accept under way.
    pub(super) fn shut(&self) {
        for listener in &self.state.lock().listeners {
            listener.shut();
        }
    }

    /// Closes the door for good (the stop's step 2): the listeners are
    /// closed, so clients still in the kernel's backlogs are refused, and
    /// socket files we bound are removed. Taking the lock waits for an
    /// accept under way.
    pub(super) fn close(&self) {
        let listeners = std::mem::take(&mut self.state.lock().listeners);
        drop(listeners);
    }

    /// Hands the connection to the engine, which serves it from now on.
    fn dispatch(
        &self,
        engine: &Engine,
        id: u64,
        accepted: Accepted,
        permit: Permit,
        slot: Option<AddressSlot>,
    ) {
        let Accepted {
            stream,
            peer,
            on,
            unix,
        } = accepted;
        // Replies are written in batches; Nagle's algorithm would only delay
        // them. Failing to set it costs latency, not correctness.
        if !ACCEPTED_INHERIT_OPTIONS && let Stream::Tcp(tcp) = &stream {
            let _ = tcp.set_nodelay(true);
        }
        let counted = &self.counts[on];
        counted.add();
        // Released when the connection is dropped, however it ends (the
        // address slot earlier, when the server ends its side).
        let guards = Box::new((permit, self.stats.connection()));
        let mut conn = Conn::new(id, stream, peer, self.stats.clone(), guards);
        if let Some(certs) = &self.tls {
            // The configuration current now, for the connection's life: a
            // reload changes nothing for it.
            match tls::Session::new(certs.current()) {
                Ok(session) => conn = conn.with_tls(session),
                Err(e) => {
                    warn!("cannot start tls peer={peer} error={e}");
                    return;
                }
            }
        }
        let conn = Arc::new(conn);
        if let Some(slot) = slot {
            conn.hold_address_slot(slot);
        }
        let mut handler = ClientHandler::serving(conn.clone(), self.shutdown.clone())
            .with_limits(self.limits)
            .with_protocol(self.protocol.clone())
            .with_stats(self.stats.clone())
            .with_admin_from(self.admin_from.clone())
            .with_admin_uids(self.admin_uids.clone())
            .with_admin_certs(self.admin_certs.clone())
            .with_listener(counted.name.clone());
        // The PROXY header comes from a proxy in front of TCP listeners; a
        // Unix socket is for local clients.
        if self.proxy_protocol && !unix {
            handler = handler.with_proxy_protocol(self.per_address.clone());
        }
        let served = Arc::new(Served {
            conn,
            handler: Mutex::new(handler),
        });
        if let Err(e) = engine.add(served) {
            warn!(
                "cannot watch connection peer={peer} error={}",
                logfmt::error(&e)
            );
        }
    }

    /// Turns a connection away: one line, then close. Runs on a worker, in
    /// the door, so nothing here may block.
    fn reject(&self, accepted: Accepted, why: Refusal) {
        let Accepted {
            stream, peer, on, ..
        } = accepted;
        let listener = &self.counts[on].name;
        let text: &[u8] = match why {
            Refusal::Busy => {
                self.stats.rejected();
                self.stats.warn_about_client(|| {
                    warn!("server busy, rejecting peer={peer} listener={listener}");
                });
                b"ERR server busy"
            }
            Refusal::PerAddress => {
                self.stats.rejected_per_address();
                self.stats.warn_about_client(|| {
                    warn!(
                        "too many connections from one address, rejecting peer={peer} listener={listener}"
                    );
                });
                TOO_MANY_FROM_ADDRESS
            }
        };
        debug!(
            "client closed peer={peer} messages=0 reason={} listener={listener}",
            why.reason()
        );
        // In the client's framing: a framed client would read a bare
        // line's first bytes as a length. A TLS client could read it only
        // after a handshake, which the acceptor does not wait for: it is
        // closed without a word.
        if self.tls.is_none() {
            let mut line = Vec::with_capacity(text.len() + 4);
            self.protocol.framing().say(text, &mut line);
            // A fresh socket's send buffer is empty: the line goes out whole.
            let _ = (&stream).write_all(&line);
        }
        let _ = stream.shutdown(Direction::Write);
        // Read what the client already sent so that closing does not
        // reset the connection and destroy the line in flight; bounded,
        // so a client that keeps sending cannot hold the door.
        drain_pending(&stream, LINGER_BYTES);
    }
}

/// Accept errors that concern only the one connection being accepted.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || matches!(
        e.raw_os_error(),
        Some(
            libc::EPROTO
                | libc::ENETDOWN
                | libc::ENETUNREACH
                | libc::EHOSTUNREACH
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::ENOPROTOOPT
                | libc::EOPNOTSUPP
        )
    )
}

/// Stops the server if the door panics.
struct StopOnPanic<'a>(&'a Shutdown);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            error!("the door panicked, stopping");
            self.0.trigger();
        }
    }
}
