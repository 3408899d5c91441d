//! What the acceptor gives each connection it accepts, and how it hands it
//! over: the server's connection policy, built once and shared by every
//! connection (`Admission`), with its `Conn` and a driver, pushed into the
//! pool; or the one-line refusal, written without blocking, for a socket
//! it has no room for.

use std::io::Write;
use std::net::Shutdown as Direction;
use std::sync::Arc;

use log::{debug, warn};
use parking_lot::Mutex;

use super::listen::ACCEPTED_INHERIT_OPTIONS;
use super::live::Live;
use crate::access::{AddressSlot, TOO_MANY_FROM_ADDRESS};
use crate::conn::{Conn, LINGER_BYTES, drain_pending};
use crate::engine::{Engine, Served};
use crate::gate::{Gate, Permit};
use crate::handler::{Driver, Policy};
use crate::logfmt;
use crate::shutdown::Shutdown;
use crate::socket::{Peer, Stream};
use crate::stats::ListenerCount;
use crate::tls::{self, Certs};

/// What every accepted connection is given: the policy it shares with the
/// others, the rules of admission, and where it goes.
pub(super) struct Admission {
    pub(super) proxy_protocol: bool,
    /// What every connection shares (limits, protocol, admin rules, the
    /// per-address table, the counters, the stop), which each driver gets
    /// a reference to, and the other settings the console may change
    /// (`--overload`).
    pub(super) live: Arc<Live>,
    pub(super) shutdown: Shutdown,
    pub(super) gate: Arc<Gate>,
    pub(super) engine: Arc<Engine>,
    /// The certificates, on a TLS server (TCP listeners only).
    pub(super) tls: Option<Arc<Certs>>,
    /// Connections accepted, per listener, in the listeners' order.
    pub(super) counts: Vec<Arc<ListenerCount>>,
}

/// One accepted connection, with what the acceptor knows of where it came
/// in.
pub(super) struct Accepted {
    pub(super) stream: Stream,
    pub(super) peer: Peer,
    /// The index of its listener.
    pub(super) on: usize,
    pub(super) unix: bool,
}

/// Why a connection is turned away.
#[derive(Clone, Copy, Debug)]
pub(super) enum Refusal {
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

impl Admission {
    /// Pushes the connection into the pool: its `Conn` and handler go into
    /// the registry and the workers' poller, and a worker runs its first
    /// turn.
    pub(super) fn dispatch(
        &self,
        policy: Arc<Policy>,
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
        let stats = &policy.stats;
        let guards = Box::new((permit, stats.connection()));
        let mut conn = Conn::new(id, stream, peer, stats.clone(), guards);
        if let Some(certs) = &self.tls {
            // The configuration current now, for the connection's life: a
            // reload changes nothing for it. The handshake itself is the
            // workers'.
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
        // The PROXY header comes from a proxy in front of TCP listeners; a
        // Unix socket is for local clients.
        let proxy = self.proxy_protocol && !unix;
        let driver = Driver::new(policy, &conn, Some(counted.name.clone()), proxy);
        let served = Arc::new(Served {
            conn,
            handler: Mutex::new(driver),
        });
        if let Err(e) = self.engine.add(served) {
            warn!(
                "cannot watch connection peer={peer} error={}",
                logfmt::error(&e)
            );
        }
    }

    /// Turns a connection away: one line, then close, without blocking.
    pub(super) fn reject(&self, policy: &Policy, accepted: Accepted, why: Refusal) {
        let Accepted {
            stream, peer, on, ..
        } = accepted;
        let listener = &self.counts[on].name;
        let stats = &policy.stats;
        let text: &[u8] = match why {
            Refusal::Busy => {
                stats.rejected();
                stats.warn_about_client(|| {
                    warn!("server busy, rejecting peer={peer} listener={listener}");
                });
                b"ERR server busy"
            }
            Refusal::PerAddress => {
                stats.rejected_per_address();
                stats.warn_about_client(|| {
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
        // after a handshake, which the acceptor does not do: it is closed
        // without a word.
        if self.tls.is_none() {
            let mut line = Vec::with_capacity(text.len() + 4);
            policy.protocol.framing().say(text, &mut line);
            // A fresh socket's send buffer is empty: the line goes out whole.
            let _ = (&stream).write_all(&line);
        }
        let _ = stream.shutdown(Direction::Write);
        // Read what the client already sent so that closing does not
        // reset the connection and destroy the line in flight; bounded,
        // so a client that keeps sending cannot hold the acceptor.
        drain_pending(&stream, LINGER_BYTES);
    }
}
