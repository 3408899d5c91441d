//! One connection's protocol driver: reads what the client sent, hands each
//! complete message to the protocol's session, sends the replies, and
//! closes the connection without losing them. It never blocks: it works in
//! turns, and a turn ends when the socket has nothing more to give
//! ([`Turn::Park`]), when the turn's budget is spent ([`Turn::Yield`]), or
//! when the connection is closed ([`Turn::Done`]).
//!
//! The engine's workers run turns for the connections the poller finds
//! ready; [`ClientHandler::run`] runs the same turns on a single socket for
//! a caller that accepted it by hand.
//!
//! Within a turn, every complete message already buffered is answered into
//! one reply buffer, which is written once, before reading again: pipelined
//! input costs one read and one write per batch, not per message.
//!
//! A connection's handler is its connection, the server's [`Policy`]
//! (shared by every connection, built once), who the client is, its
//! counters, and the [`Phase`] it is in, which owns what that phase needs.
//! The engine keeps the connection beside a locked [`Driver`] (the rest),
//! so that others reach the connection without the lock; a
//! [`ClientHandler`] holds both for a socket served on its own.
//!
//! The parts: this file holds the driver, its budgets and the life of a
//! connection; `policy` what every connection shares and the limits;
//! `opening` the phases before the session (the PROXY header, the TLS
//! handshake); `serve` the open phase (the session's start, reading and
//! answering); `rules` what the core does with a message and a session's
//! answer (the shared commands, who may stop the server); `close` the close
//! that loses no reply; `end` why a connection ended and how that is logged
//! and counted; `standalone` the driver with a poller of its own behind
//! [`ClientHandler::run`].

mod close;
mod end;
mod opening;
mod policy;
mod rules;
mod serve;
mod standalone;

use std::mem;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use crate::access::AddrList;
use crate::conn::Conn;
use crate::protocol::Protocol;
use crate::proxy::HeaderReader;
use crate::shutdown::Shutdown;
use crate::socket::{Peer, Stream};
use crate::stats::Stats;

use self::end::End;
use self::serve::Open;

pub use self::policy::Limits;
pub(crate) use self::policy::Policy;

/// Replies are sent once this many bytes are collected, even if more input
/// is buffered, so the reply buffer stays small.
pub(crate) const FLUSH_AT: usize = 64 * 1024;

/// How many reply bytes may wait for a client beyond what its socket
/// buffers hold. At this the server stops reading that client until it
/// reads its replies, so a client that never reads costs bounded memory
/// (this, plus one batch and one reply) and no worker time.
pub(crate) const MAX_PENDING: usize = 64 * 1024;

/// The most messages one turn answers before the connection goes to the
/// back of the ready queue, so a client that pipelines without end cannot
/// starve the others on its worker (memcached's `-R`).
pub(crate) const TURN_MESSAGES: usize = 128;

/// The most reads one turn makes, for the same reason, when reads bring
/// only parts of a long message.
pub(crate) const TURN_READS: usize = 16;

/// How a turn ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Nothing more to do until the socket is ready again.
    Park,
    /// The turn's budget is spent and work is left: serve it again later.
    Yield,
    /// The connection is closed.
    Done,
}

/// Where a connection is in its life, with what that part of it needs.
enum Phase {
    /// Waiting for the PROXY protocol header (`--proxy-protocol`): the
    /// header so far.
    Header(HeaderReader),
    /// In the TLS handshake, on a TLS port.
    Handshake,
    /// Not served yet: the session opens on the next turn. `preload` is
    /// what followed a PROXY header, for the reader; `cert_ok` whether the
    /// client's certificate passes `--admin-cert` (or there is none to
    /// pass).
    Fresh {
        preload: Vec<u8>,
        cert_ok: bool,
    },
    /// Serving messages: the session, the reader and the rules.
    Open(Open),
    /// Ended; the last replies are still going out. `input_ended`: a read
    /// returned the client's end of stream, nothing more can come.
    Flushing {
        input_ended: bool,
    },
    /// Our end of stream is sent; reading off what the client still sends
    /// (this many bytes so far) so that closing does not reset.
    Lingering(usize),
    Done,
}

/// Who the client is, for the logs and the rules.
struct Client {
    /// The client's address: the socket's peer, or the one a PROXY
    /// protocol header names.
    peer: Peer,
    /// The name of the client's verified certificate.
    cert: Option<Arc<str>>,
    /// The name of the listener the connection came in on.
    listener: Option<Arc<str>>,
}

impl Client {
    /// The name of the client's certificate as logs give it (`-` for none).
    fn cert_name(&self) -> &str {
        self.cert.as_deref().unwrap_or("-")
    }
}

/// Messages answered and bytes read, and how many of them are not yet
/// added to the shared counters.
#[derive(Default)]
struct Tally {
    unreported: u64,
    unreported_bytes: u64,
    answered: u64,
    /// Bytes read from the client, reported or not.
    read: u64,
    /// When the read that started the current batch returned (only when
    /// service times are measured).
    read_at: Option<Instant>,
}

impl Tally {
    /// Adds the messages answered since the last report to the shared
    /// counters.
    fn report(&mut self, stats: &Stats) {
        if self.unreported > 0 {
            let service = self.read_at.map(|t| t.elapsed());
            stats.answered(self.unreported, service);
        }
        let bytes = mem::take(&mut self.unreported_bytes);
        self.read += bytes;
        stats.received(bytes);
        self.answered += self.unreported;
        self.unreported = 0;
    }
}

/// Drives one connection, which the caller passes to each turn: the
/// engine keeps the connection outside the driver's lock.
pub(crate) struct Driver {
    policy: Arc<Policy>,
    client: Client,
    tally: Tally,
    phase: Phase,
}

impl Driver {
    /// A driver for a connection the server accepted on the listener
    /// `listener`. With `proxy`, a PROXY protocol header (v1 or v2) is
    /// expected first: the address it names is the client's, for logs,
    /// `--admin-from` and, with a table, `--max-per-ip`.
    pub(crate) fn new(
        policy: Arc<Policy>,
        conn: &Conn,
        listener: Option<Arc<str>>,
        proxy: bool,
    ) -> Self {
        let phase = if proxy {
            Phase::Header(HeaderReader::default())
        } else if conn.is_tls() {
            Phase::Handshake
        } else {
            Phase::Fresh {
                preload: Vec::new(),
                cert_ok: true,
            }
        };
        Driver {
            policy,
            client: Client {
                peer: conn.peer(),
                cert: None,
                listener,
            },
            tally: Tally::default(),
            phase,
        }
    }

    /// The name of the listener the client came in on, once accepted.
    pub(crate) fn listener_name(&self) -> Option<&str> {
        self.client.listener.as_deref()
    }

    /// Messages answered so far.
    pub(crate) fn messages(&self) -> u64 {
        self.tally.answered + self.tally.unreported
    }

    /// Bytes read from the client so far.
    pub(crate) fn bytes_in(&self) -> u64 {
        self.tally.read + self.tally.unreported_bytes
    }

    /// The client's address: the one a PROXY header named, once read.
    pub(crate) fn peer(&self) -> Peer {
        self.client.peer
    }

    /// The name of the client's verified certificate (`-` for none).
    pub(crate) fn cert_name(&self) -> &str {
        self.client.cert_name()
    }

    /// The protocol the connection speaks.
    pub(crate) fn protocol_name(&self) -> &str {
        self.policy.protocol.name()
    }

    /// Serves the connection `conn` as far as it can go without waiting.
    /// `out` is a scratch buffer for replies, empty on entry and on return.
    pub(crate) fn turn(&mut self, conn: &Arc<Conn>, out: &mut Vec<u8>) -> Turn {
        let result = loop {
            let Driver {
                policy,
                client,
                tally,
                phase,
            } = self;
            break match phase {
                // An operator closed it: whatever it was doing ends here.
                Phase::Header(_) | Phase::Handshake | Phase::Fresh { .. } | Phase::Open(_)
                    if conn.is_killed() =>
                {
                    Err(End::Killed)
                }
                // A connection still without its header or its handshake
                // has nothing to answer.
                Phase::Header(_) | Phase::Handshake if policy.shutdown.is_triggered() => {
                    Err(End::Stopping)
                }
                Phase::Header(header) => match opening::read_header(conn, header) {
                    Ok(Some(header)) => match opening::admit(conn, policy, client, header, out) {
                        Ok(next) => {
                            *phase = next;
                            continue;
                        }
                        Err(end) => Err(end),
                    },
                    Ok(None) => Ok(Turn::Park),
                    Err(end) => Err(end),
                },
                Phase::Handshake => match opening::handshake(conn, policy, client) {
                    Ok(Some(next)) => {
                        *phase = next;
                        continue;
                    }
                    Ok(None) => Ok(Turn::Park),
                    Err(end) => Err(end),
                },
                Phase::Fresh { preload, cert_ok } => {
                    let preload = mem::take(preload);
                    let (mut open, greeted) =
                        Open::start(conn, policy, client, preload, *cert_ok, out);
                    let served = greeted.and_then(|()| open.serve(conn, tally, out));
                    *phase = Phase::Open(open);
                    served
                }
                Phase::Open(open) => open.serve(conn, tally, out),
                Phase::Flushing { input_ended } => {
                    let input_ended = *input_ended;
                    return self.flush_and_close(conn, input_ended);
                }
                Phase::Lingering(drained) => {
                    let drained = *drained;
                    return self.linger(conn, drained);
                }
                Phase::Done => return Turn::Done,
            };
        };
        match result {
            Ok(turn) => turn,
            Err(end) => self.finish(conn, end, out),
        }
    }

    /// Ends the connection after a panic in protocol code: the session is
    /// told, nothing more is sent.
    pub(crate) fn abandon(&mut self) {
        if let Phase::Open(mut open) = mem::replace(&mut self.phase, Phase::Done) {
            open.session.end();
        }
    }
}

/// Serves one client connection: the connection and its driver.
pub struct ClientHandler {
    conn: Arc<Conn>,
    driver: Driver,
}

impl ClientHandler {
    /// A handler for an accepted socket speaking the ACK protocol, with the
    /// default limits. [`run`](ClientHandler::run) serves it.
    pub fn new(conn: Arc<TcpStream>, addr: SocketAddr, shutdown: Shutdown) -> Self {
        let conn = Conn::new(
            0,
            Stream::Tcp(conn),
            addr.into(),
            Arc::default(),
            Box::new(()),
        );
        ClientHandler::serving(Arc::new(conn), shutdown)
    }

    /// A handler for a connection, with a policy of its own.
    pub(crate) fn serving(conn: Arc<Conn>, shutdown: Shutdown) -> Self {
        let policy = Arc::new(Policy::standalone(shutdown));
        let driver = Driver::new(policy, &conn, None, false);
        ClientHandler { conn, driver }
    }

    /// The handler's own policy, to change before it serves. Nothing else
    /// holds it yet, so this copies nothing.
    fn policy_mut(&mut self) -> &mut Policy {
        Arc::make_mut(&mut self.driver.policy)
    }

    /// Sets the per-connection limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.policy_mut().limits = limits;
        self
    }

    /// Sets the protocol spoken on the connection.
    pub fn with_protocol(mut self, protocol: Arc<dyn Protocol>) -> Self {
        self.policy_mut().protocol = protocol;
        self
    }

    /// Sets who may stop the server (default: the loopback addresses).
    pub fn with_admin_from(mut self, admin_from: Arc<AddrList>) -> Self {
        self.policy_mut().admin_from = admin_from;
        self
    }

    /// Who the client is: its address, or its user id over a Unix socket.
    pub fn peer(&self) -> Peer {
        self.driver.client.peer
    }

    /// Serves the connection as far as it can go without waiting.
    pub(crate) fn turn(&mut self, out: &mut Vec<u8>) -> Turn {
        self.driver.turn(&self.conn, out)
    }
}

#[cfg(test)]
mod tests;
