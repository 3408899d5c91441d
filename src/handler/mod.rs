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
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::mem::MaybeUninit;

    /// A handler on the server side of a fresh connection, and the client.
    fn pair() -> (ClientHandler, TcpStream) {
        let (client, conn) = crate::conn::test_pair();
        (
            ClientHandler::serving(Arc::new(conn), Shutdown::new()),
            client,
        )
    }

    /// Waits until `n` bytes sent by the client are waiting at the server.
    fn arrived(handler: &ClientHandler, n: usize) {
        let mut peek = vec![MaybeUninit::<u8>::uninit(); n];
        let socket = socket2::SockRef::from(handler.conn.stream());
        handler
            .conn
            .stream()
            .set_nonblocking(false)
            .expect("blocking");
        let waiting = socket
            .recv_with_flags(&mut peek, libc::MSG_PEEK | libc::MSG_WAITALL)
            .expect("peek");
        handler
            .conn
            .stream()
            .set_nonblocking(true)
            .expect("nonblocking");
        assert_eq!(waiting, n);
    }

    #[test]
    fn a_turn_answers_at_most_its_budget_then_yields() {
        let (mut handler, mut client) = pair();
        let lines = 3 * TURN_MESSAGES + 10;
        client.write_all(&b"x\n".repeat(lines)).expect("send");
        arrived(&handler, 2 * lines);
        let mut out = Vec::new();
        let mut turns = Vec::new();
        loop {
            let turn = handler.turn(&mut out);
            assert!(out.is_empty(), "replies left in the scratch buffer");
            turns.push(turn);
            if turn != Turn::Yield {
                break;
            }
        }
        assert_eq!(turns, [Turn::Yield, Turn::Yield, Turn::Yield, Turn::Park]);
        let mut replies = vec![0u8; lines * b"ACK: x\n".len()];
        client.read_exact(&mut replies).expect("replies");
        assert_eq!(replies, b"ACK: x\n".repeat(lines));
    }

    #[test]
    fn backed_up_replies_stop_the_reading() {
        let (mut handler, client) = pair();
        // Long lines whose replies back up far beyond the cap while the
        // client reads nothing.
        let line = format!("{}\n", "y".repeat(1000));
        let mut writer = client.try_clone().expect("clone");
        let sender = std::thread::spawn(move || {
            writer
                .set_write_timeout(Some(Duration::from_millis(300)))
                .expect("timeout");
            let mut sent = 0;
            while writer.write_all(line.as_bytes()).is_ok() {
                sent += 1;
            }
            sent
        });
        let mut out = Vec::new();
        let mut turns = 0;
        while !sender.is_finished() {
            if handler.turn(&mut out) == Turn::Park && handler.conn.pending() > MAX_PENDING {
                break;
            }
            turns += 1;
            assert!(turns < 100_000, "the handler never backed off");
        }
        let pending = handler.conn.pending();
        assert!(pending > MAX_PENDING, "pending {pending}");
        assert!(pending < MAX_PENDING + FLUSH_AT + 2048, "pending {pending}");
        // While backed up, a turn reads nothing more.
        let before = pending;
        assert_eq!(handler.turn(&mut out), Turn::Park);
        assert_eq!(handler.conn.pending(), before);
        let _ = client.shutdown(std::net::Shutdown::Both);
        let _ = sender.join();
    }

    /// A client that said `shutdown`, sent more and ended its input is
    /// closed in the same turn, and what it sent after `shutdown` is read
    /// off first, so the close is an orderly end of stream, not a reset
    /// that would destroy the reply.
    #[test]
    fn an_ended_client_is_closed_at_once_without_a_reset() {
        let (mut handler, mut client) = pair();
        // More than one read takes, so that the kernel still holds some.
        let mut input = b"a\nshutdown\n".to_vec();
        input.extend_from_slice(&b"sent after shutdown\n".repeat(4000));
        client.write_all(&input).expect("send");
        client
            .shutdown(std::net::Shutdown::Write)
            .expect("half close");
        arrived(&handler, input.len());
        // What the poller reports with the client's end of stream.
        handler.conn.set_read_closed();
        let mut out = Vec::new();
        assert_eq!(handler.turn(&mut out), Turn::Done);
        drop(handler);
        let mut all = Vec::new();
        client
            .read_to_end(&mut all)
            .expect("an end of stream, not a reset");
        assert_eq!(all, b"ACK: a\n");
    }

    /// At a stop, a client that sent more than one linger turn reads off
    /// is read on in the next turn, not parked on bytes no event will
    /// report once it has stopped sending.
    #[test]
    fn a_linger_at_its_limit_reads_on_in_the_next_turn() {
        let (client, conn) = crate::conn::test_pair();
        let stop = Shutdown::new();
        let mut handler = ClientHandler::serving(Arc::new(conn), stop.clone());
        // All sent at once (kernel buffers), then nothing more.
        let input = vec![b'x'; 2 * crate::conn::LINGER_BYTES + 1000];
        client.set_nonblocking(true).expect("nonblocking");
        assert_eq!((&client).write(&input).expect("send"), input.len());
        arrived(&handler, 1000);
        stop.trigger();
        let mut out = Vec::new();
        let mut turns = Vec::new();
        loop {
            let turn = handler.turn(&mut out);
            turns.push(turn);
            if turn != Turn::Yield {
                break;
            }
        }
        assert_eq!(turns.last(), Some(&Turn::Park), "{turns:?}");
        // It parks only with nothing left unread.
        let left = crate::conn::drain_pending(handler.conn.stream(), usize::MAX);
        assert_eq!(left, crate::conn::Drained::Bytes(0), "{turns:?}");
    }

    #[test]
    fn default_limits_are_the_default_configs() {
        let from_config = Limits::from_config(&Config::default());
        let default = Limits::default();
        assert_eq!(default.max_line, from_config.max_line);
        assert_eq!(default.idle_timeout, from_config.idle_timeout);
        assert_eq!(default.timing, from_config.timing);
    }
}
