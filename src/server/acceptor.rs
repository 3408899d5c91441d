//! The acceptor thread: takes a slot from the gate, accepts a socket,
//! admits it (`--max-per-ip`) and hands it to the engine, whose poller
//! brings it to the pool's workers whenever it has something to do; or
//! turns it away with one line. It never ends the server over an accept
//! error: it skips those that concern one connection and backs off from
//! the rest.

use std::io::{self, Write};
use std::net::{Shutdown as Direction, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use log::{debug, warn};
use parking_lot::Mutex;

use super::listen::{self, ACCEPTED_INHERIT_OPTIONS};
use crate::access::{self, AddrList, AddressSlot, PerAddress, TOO_MANY_FROM_ADDRESS};
use crate::config::Overload;
use crate::conn::{Conn, LINGER_BYTES, drain_pending};
use crate::engine::{Engine, Served};
use crate::gate::{Gate, Permit};
use crate::handler::{ClientHandler, Limits};
use crate::logfmt;
use crate::protocol::Protocol;
use crate::shutdown::Shutdown;
use crate::stats::Stats;
use crate::tls::{self, Certs};

/// The first and the longest pause after an accept error such as running
/// out of file descriptors.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What the acceptor needs; it owns its share, as it runs on a thread of
/// its own.
pub(super) struct Acceptor {
    pub(super) listener: TcpListener,
    pub(super) overload: Overload,
    pub(super) proxy_protocol: bool,
    pub(super) protocol: Arc<dyn Protocol>,
    pub(super) limits: Limits,
    pub(super) shutdown: Shutdown,
    pub(super) gate: Arc<Gate>,
    pub(super) engine: Arc<Engine>,
    pub(super) stats: Arc<Stats>,
    pub(super) admin_from: Arc<AddrList>,
    /// Connections per client address, with `--max-per-ip`.
    pub(super) per_address: Option<Arc<PerAddress>>,
    /// The certificates, on a TLS port.
    pub(super) tls: Option<Arc<Certs>>,
    /// Certificate names that may stop the server (`--admin-cert`).
    pub(super) admin_certs: Option<Arc<Vec<String>>>,
    pub(super) next_id: u64,
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

impl Acceptor {
    /// Accepts until the stop; the listener closes when this returns, so
    /// clients still in the backlog are refused.
    pub(super) fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        while !self.shutdown.is_triggered() {
            // In block mode the slot is taken before accept(), so a full
            // server leaves new clients in the kernel's listen backlog.
            let reserved = match self.overload {
                Overload::Block => match self.gate.acquire() {
                    Some(permit) => Some(permit),
                    None => break,
                },
                Overload::Reject => None,
            };
            let (stream, peer) = match listen::accept(&self.listener) {
                Ok(accepted) => accepted,
                Err(_) if self.shutdown.is_triggered() => break,
                Err(e) if is_transient(&e) => {
                    debug!(
                        "accept skipped a failed connection error={}",
                        logfmt::error(&e)
                    );
                    continue;
                }
                Err(e) => {
                    warn!(
                        "accept failed, backing off error={} retry_in_ms={}",
                        logfmt::error(&e),
                        backoff.as_millis()
                    );
                    self.shutdown.wait_timeout(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            backoff = BACKOFF_MIN;
            if self.shutdown.is_triggered() {
                // Accepted just as the stop began: close it like the rest.
                break;
            }
            let Some(permit) = reserved.or_else(|| self.gate.try_acquire()) else {
                self.reject(stream, peer, Refusal::Busy);
                continue;
            };
            // Behind a proxy the address to count is known only once the
            // header is read: the handler admits it then.
            let table = self.per_address.as_ref().filter(|_| !self.proxy_protocol);
            match access::admit(table, peer.ip()) {
                Ok(slot) => self.dispatch(stream, peer, permit, slot),
                Err(access::TooMany) => self.reject(stream, peer, Refusal::PerAddress),
            }
        }
    }

    /// Hands the connection to the engine, which serves it from now on.
    fn dispatch(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        permit: Permit,
        slot: Option<AddressSlot>,
    ) {
        // Replies are written in batches; Nagle's algorithm would only delay
        // them. Failing to set it costs latency, not correctness.
        if !ACCEPTED_INHERIT_OPTIONS {
            let _ = stream.set_nodelay(true);
        }
        let id = self.next_id;
        self.next_id += 1;
        // Released when the connection is dropped, however it ends (the
        // address slot earlier, when the server ends its side).
        let guards = Box::new((permit, self.stats.connection()));
        let mut conn = Conn::new(id, Arc::new(stream), peer, self.stats.clone(), guards);
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
            .with_admin_certs(self.admin_certs.clone());
        if self.proxy_protocol {
            handler = handler.with_proxy_protocol(self.per_address.clone());
        }
        let served = Arc::new(Served {
            conn,
            handler: Mutex::new(handler),
        });
        if let Err(e) = self.engine.add(served) {
            warn!(
                "cannot watch connection peer={peer} error={}",
                logfmt::error(&e)
            );
        }
    }

    /// Turns a connection away: one line, then close. Runs on the acceptor,
    /// so nothing here may block.
    fn reject(&self, stream: TcpStream, peer: SocketAddr, why: Refusal) {
        let text: &[u8] = match why {
            Refusal::Busy => {
                self.stats.rejected();
                self.stats.warn_about_client(|| {
                    warn!("server busy, rejecting peer={peer}");
                });
                b"ERR server busy"
            }
            Refusal::PerAddress => {
                self.stats.rejected_per_address();
                self.stats.warn_about_client(|| {
                    warn!("too many connections from one address, rejecting peer={peer}");
                });
                TOO_MANY_FROM_ADDRESS
            }
        };
        debug!(
            "client closed peer={peer} messages=0 reason={}",
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
        // so a client that keeps sending cannot hold the acceptor.
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
