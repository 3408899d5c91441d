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
//! The parts: this file holds the handler, its budgets and the life of a
//! connection ([`Phase`]); `serve` the serving loop (the PROXY header, the
//! TLS handshake, the session's start, reading and answering); `rules`
//! what the core does with a message and a session's answer (the shared
//! commands, who may stop the server); `close` the close that loses no reply; `end` why a
//! connection ended and how that is logged and counted; `standalone` the
//! driver with a poller of its own behind [`ClientHandler::run`].

mod close;
mod end;
mod rules;
mod serve;
mod standalone;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::access::{AddrList, PerAddress};
use crate::config::{Config, DEFAULT_IDLE_SECS, DEFAULT_MAX_LINE};
use crate::conn::Conn;
use crate::framing::Reader;
use crate::protocol::{self, Protocol, Session};
use crate::proxy::HeaderReader;
use crate::shutdown::Shutdown;
use crate::socket::{Peer, Stream};
use crate::stats::Stats;

use self::end::End;
use self::rules::Admin;

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

/// The per-connection limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest accepted message in bytes (a line without its ending, a
    /// frame without its prefix).
    pub max_line: usize,
    /// See [`Config::idle_timeout`].
    pub idle_timeout: Option<Duration>,
    /// Measure service times (for `--stats-interval` and `--metrics`).
    pub timing: bool,
}

impl Limits {
    /// The limits a configuration sets.
    pub fn from_config(config: &Config) -> Self {
        Limits {
            max_line: config.max_line,
            idle_timeout: config.idle_timeout,
            timing: config.stats_interval.is_some() || config.metrics.is_some(),
        }
    }
}

impl Default for Limits {
    /// The defaults `Config::default()` sets, without building a whole
    /// configuration (which asks the system how many CPUs there are).
    fn default() -> Self {
        Limits {
            max_line: DEFAULT_MAX_LINE,
            idle_timeout: Some(Duration::from_secs(DEFAULT_IDLE_SECS)),
            timing: false,
        }
    }
}

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

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the PROXY protocol header (`--proxy-protocol`).
    Header,
    /// In the TLS handshake, on a TLS port.
    Handshake,
    /// Not served yet: the session opens on the first turn.
    Fresh,
    /// Serving messages.
    Open,
    /// Ended; the last replies are still going out.
    Flushing,
    /// Our end of stream is sent; reading off what the client still sends
    /// (this many bytes so far) so that closing does not reset.
    Lingering(usize),
    Done,
}

/// Serves one client connection.
pub struct ClientHandler {
    conn: Arc<Conn>,
    shutdown: Shutdown,
    limits: Limits,
    protocol: Arc<dyn Protocol>,
    stats: Arc<Stats>,
    session: Option<Box<dyn Session>>,
    reader: Reader,
    phase: Phase,
    /// Addresses that may stop the server, and whether this client's is one.
    admin_from: Arc<AddrList>,
    /// User ids that may stop the server, for a client of a Unix socket.
    admin_uids: Arc<[u32]>,
    admin: Admin,
    /// The name of the listener the connection came in on, for logs.
    listener: Option<Arc<str>>,
    /// With `--admin-cert`: the certificate names that may stop the
    /// server; the client's verified certificate must have one of them.
    admin_certs: Option<Arc<Vec<String>>>,
    /// The name of the client's verified certificate, for logs.
    cert: Option<String>,
    /// The certificate passes `--admin-cert` (or there is none to pass).
    admin_cert_ok: bool,
    /// The client's address: the socket's peer, or the one a PROXY
    /// protocol header names.
    client: Peer,
    /// With `--proxy-protocol`: the header so far, then what followed it,
    /// for the reader.
    header: HeaderReader,
    after_header: Vec<u8>,
    /// With `--proxy-protocol` and `--max-per-ip`: the table the client's
    /// address is counted in once the header names it.
    per_address: Option<Arc<PerAddress>>,
    /// Messages answered, and bytes read, not yet added to the shared
    /// counters.
    unreported: u64,
    unreported_bytes: u64,
    answered: u64,
    /// When the read that started the current batch returned (only when
    /// service times are measured).
    read_at: Option<Instant>,
    /// A read returned the client's end of stream: nothing more can come.
    input_ended: bool,
    /// The first bytes were looked at for a TLS handshake (never on a TLS
    /// port, where one belongs).
    first_bytes_seen: bool,
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

    /// A handler for a connection the server accepted.
    pub(crate) fn serving(conn: Arc<Conn>, shutdown: Shutdown) -> Self {
        let limits = Limits::default();
        let client = conn.peer();
        let phase = if conn.is_tls() {
            Phase::Handshake
        } else {
            Phase::Fresh
        };
        ClientHandler {
            conn,
            shutdown,
            limits,
            protocol: protocol::ack(),
            stats: Arc::default(),
            session: None,
            reader: Reader::lines(limits.max_line),
            phase,
            admin_from: Arc::new(AddrList::loopback()),
            admin_uids: Arc::new([]),
            admin: Admin::default(),
            listener: None,
            admin_certs: None,
            cert: None,
            admin_cert_ok: true,
            client,
            header: HeaderReader::default(),
            after_header: Vec::new(),
            per_address: None,
            unreported: 0,
            unreported_bytes: 0,
            answered: 0,
            read_at: None,
            input_ended: false,
            first_bytes_seen: false,
        }
    }

    /// Sets the per-connection limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the protocol spoken on the connection.
    pub fn with_protocol(mut self, protocol: Arc<dyn Protocol>) -> Self {
        self.protocol = protocol;
        self
    }

    /// Sets who may stop the server (default: the loopback addresses).
    pub fn with_admin_from(mut self, admin_from: Arc<AddrList>) -> Self {
        self.admin_from = admin_from;
        self
    }

    /// Sets which user ids may stop the server when the client is on a Unix
    /// socket (default: none).
    pub(crate) fn with_admin_uids(mut self, admin_uids: Arc<[u32]>) -> Self {
        self.admin_uids = admin_uids;
        self
    }

    /// Names the listener the connection came in on, for its log lines.
    pub(crate) fn with_listener(mut self, name: Arc<str>) -> Self {
        self.listener = Some(name);
        self
    }

    /// Sets the certificate names that may stop the server besides
    /// `--admin-from` (`--admin-cert`); both must allow.
    pub(crate) fn with_admin_certs(mut self, names: Option<Arc<Vec<String>>>) -> Self {
        self.admin_certs = names;
        self
    }

    /// Expects a PROXY protocol header (v1 or v2) first: the address it
    /// names is the client's, for logs, `--admin-from` and, with a table,
    /// `--max-per-ip`.
    pub(crate) fn with_proxy_protocol(mut self, per_address: Option<Arc<PerAddress>>) -> Self {
        self.phase = Phase::Header;
        self.per_address = per_address;
        self
    }

    pub(crate) fn with_stats(mut self, stats: Arc<Stats>) -> Self {
        self.stats = stats;
        self
    }

    /// The name of the listener the client came in on, once accepted.
    pub(crate) fn listener_name(&self) -> Option<&str> {
        self.listener.as_deref()
    }

    /// Messages answered so far.
    pub(crate) fn messages(&self) -> u64 {
        self.answered + self.unreported
    }

    /// Who the client is: its address, or its user id over a Unix socket.
    pub fn peer(&self) -> Peer {
        self.client
    }

    /// The name of the client's certificate as logs give it (`-` for none).
    fn cert_name(&self) -> &str {
        self.cert.as_deref().unwrap_or("-")
    }

    /// Serves the connection as far as it can go without waiting. `out` is
    /// a scratch buffer for replies, empty on entry and on return.
    pub(crate) fn turn(&mut self, out: &mut Vec<u8>) -> Turn {
        let result = loop {
            break match self.phase {
                // An operator closed it: whatever it was doing ends here.
                Phase::Header | Phase::Handshake | Phase::Fresh | Phase::Open
                    if self.conn.is_killed() =>
                {
                    Err(End::Killed)
                }
                // A connection still without its header or its handshake
                // has nothing to answer.
                Phase::Header | Phase::Handshake if self.shutdown.is_triggered() => {
                    Err(End::Stopping)
                }
                Phase::Header => match self.read_header(out) {
                    Ok(true) => continue,
                    Ok(false) => Ok(Turn::Park),
                    Err(end) => Err(end),
                },
                Phase::Handshake => match self.handshake() {
                    Ok(true) => continue,
                    Ok(false) => Ok(Turn::Park),
                    Err(end) => Err(end),
                },
                Phase::Fresh => self.start(out).and_then(|()| self.serve(out)),
                Phase::Open => self.serve(out),
                Phase::Flushing => return self.flush_and_close(),
                Phase::Lingering(drained) => return self.linger(drained),
                Phase::Done => return Turn::Done,
            };
        };
        match result {
            Ok(turn) => turn,
            Err(end) => self.finish(end, out),
        }
    }

    /// Ends the connection after a panic in protocol code: the session is
    /// told, nothing more is sent.
    pub(crate) fn abandon(&mut self) {
        self.phase = Phase::Done;
        if let Some(mut session) = self.session.take() {
            session.end();
        }
    }

    /// Adds the messages answered since the last report to the shared
    /// counters.
    fn report(&mut self) {
        if self.unreported > 0 {
            let service = self.read_at.map(|t| t.elapsed());
            self.stats.answered(self.unreported, service);
        }
        self.stats
            .received(std::mem::take(&mut self.unreported_bytes));
        self.answered += self.unreported;
        self.unreported = 0;
    }
}

#[cfg(test)]
mod tests;
