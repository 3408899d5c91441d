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

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::access::{AddrList, AddressSlot, PerAddress, TOO_MANY_FROM_ADDRESS};
use crate::config::{Config, DEFAULT_IDLE_SECS, DEFAULT_MAX_LINE};
use crate::conn::{Conn, Drained, LINGER_BYTES, drain_pending};
use crate::framing::{FrameError, Framing, Reader, write_frame};
use crate::logfmt;
use crate::protocol::{self, Action, Link, Protocol, Session};
use crate::proxy::{self, Parsed};
use crate::shutdown::Shutdown;
use crate::stats::{ClientError, IdleClose, Stats};
use crate::watchdog::{self, Idle};

/// Replies are sent once this many bytes are collected, even if more input
/// is buffered, so the reply buffer stays small.
pub const FLUSH_AT: usize = 64 * 1024;

/// How many reply bytes may wait for a client beyond what its socket
/// buffers hold. At this the server stops reading that client until it
/// reads its replies, so a client that never reads costs bounded memory
/// (this, plus one batch and one reply) and no worker time.
pub const MAX_PENDING: usize = 64 * 1024;

/// The most messages one turn answers before the connection goes to the
/// back of the ready queue, so a client that pipelines without end cannot
/// starve the others on its worker (memcached's `-R`).
pub const TURN_MESSAGES: usize = 128;

/// The most reads one turn makes, for the same reason, when reads bring
/// only parts of a long message.
pub const TURN_READS: usize = 16;

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
pub enum Turn {
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
    admin: bool,
    /// The client's address: the socket's peer, or the one a PROXY
    /// protocol header names.
    client: SocketAddr,
    /// With `--proxy-protocol`: the header's bytes so far, then whatever
    /// followed it, for the reader.
    header: Vec<u8>,
    /// With `--proxy-protocol` and `--max-per-ip`: the table the client's
    /// address is counted in once the header names it, and its slot.
    per_address: Option<Arc<PerAddress>>,
    _address_slot: Option<AddressSlot>,
    /// Messages answered, and bytes read, not yet added to the shared
    /// counters.
    unreported: u64,
    unreported_bytes: u64,
    answered: u64,
    /// When the read that started the current batch returned (only when
    /// service times are measured).
    read_at: Option<Instant>,
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// The client closed its side.
    ClientLeft,
    /// The protocol closed the client (`shutdown`).
    Closed,
    /// The client stopped the server: with `quit_server` (`true`), or by
    /// a protocol's own rule, which the protocol logs itself (`false`).
    StopServer(bool),
    /// The server is stopping.
    Stopping,
    TooLong,
    InvalidUtf8,
    /// The input ended inside a length-prefixed message.
    Truncated,
    Idle(Idle),
    /// No valid PROXY protocol header, and why.
    BadHeader(&'static str),
    /// The address the PROXY header names has `--max-per-ip` open.
    TooManyFromAddress,
    Io(io::Error),
}

impl End {
    /// The reason as logs give it.
    fn reason(&self) -> &'static str {
        match self {
            End::ClientLeft => "client_left",
            End::Closed => "closed",
            End::StopServer(_) => "stop_server",
            End::Stopping => "server_stopping",
            End::TooLong => "too_long",
            End::InvalidUtf8 => "invalid_utf8",
            End::Truncated => "truncated",
            End::Idle(Idle::Read) => "idle_read",
            End::Idle(Idle::Write) => "idle_write",
            End::Idle(Idle::Linger) => "linger",
            End::Idle(Idle::Header) => "no_proxy_header",
            End::BadHeader(_) => "bad_proxy_header",
            End::TooManyFromAddress => "too_many_from_address",
            End::Io(_) => "io_error",
        }
    }
}

impl ClientHandler {
    /// A handler for an accepted socket speaking the ACK protocol, with the
    /// default limits. [`run`](ClientHandler::run) serves it.
    pub fn new(conn: Arc<TcpStream>, addr: SocketAddr, shutdown: Shutdown) -> Self {
        let conn = Conn::new(0, conn, addr, Arc::default(), Box::new(()));
        ClientHandler::serving(Arc::new(conn), shutdown)
    }

    /// A handler for a connection the server accepted.
    pub(crate) fn serving(conn: Arc<Conn>, shutdown: Shutdown) -> Self {
        let limits = Limits::default();
        let client = conn.peer();
        ClientHandler {
            conn,
            shutdown,
            limits,
            protocol: protocol::ack(),
            stats: Arc::default(),
            session: None,
            reader: Reader::lines(limits.max_line),
            phase: Phase::Fresh,
            admin_from: Arc::new(AddrList::loopback()),
            admin: false,
            client,
            header: Vec::new(),
            per_address: None,
            _address_slot: None,
            unreported: 0,
            unreported_bytes: 0,
            answered: 0,
            read_at: None,
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

    /// Expects a PROXY protocol header (v1 or v2) first: the address it
    /// names is the client's, for logs, `--admin-from` and, with a table,
    /// `--max-per-ip`.
    pub fn with_proxy_protocol(mut self, per_address: Option<Arc<PerAddress>>) -> Self {
        self.phase = Phase::Header;
        self.per_address = per_address;
        self
    }

    pub(crate) fn with_stats(mut self, stats: Arc<Stats>) -> Self {
        self.stats = stats;
        self
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.client
    }

    /// Serves the connection on this thread until the client leaves, breaks
    /// a rule, idles out, or the server stops; then closes it. Between
    /// turns it waits for the socket in a poller of its own, and enforces
    /// the idle rule itself.
    pub fn run(mut self) {
        let peer = self.peer();
        let mut poll = match self.own_poll() {
            Ok(poll) => poll,
            Err(e) => {
                warn!(
                    "cannot serve connection peer={peer} error={}",
                    logfmt::error(&e)
                );
                self.abandon();
                return;
            }
        };
        let tick = watchdog::tick(self.limits.idle_timeout);
        let mut events = Events::with_capacity(4);
        let mut out = Vec::new();
        loop {
            match self.turn(&mut out) {
                Turn::Done => return,
                Turn::Yield => continue,
                Turn::Park => {}
            }
            // Wait for the socket; look at the idle rule and the stop
            // signal every tick.
            loop {
                if let Err(e) = poll.poll(&mut events, Some(tick))
                    && e.kind() != io::ErrorKind::Interrupted
                {
                    warn!(
                        "cannot wait for connection peer={peer} error={}",
                        logfmt::error(&e)
                    );
                    self.abandon();
                    return;
                }
                if events.iter().any(|e| e.is_read_closed() || e.is_error()) {
                    self.conn.set_read_closed();
                }
                let idle = self
                    .conn
                    .activity
                    .check(Instant::now(), self.limits.idle_timeout);
                if !events.is_empty() || idle.is_some() || self.shutdown.is_triggered() {
                    break;
                }
            }
        }
    }

    fn own_poll(&self) -> io::Result<Poll> {
        let stream = self.conn.stream();
        stream.set_nonblocking(true)?;
        let poll = Poll::new()?;
        poll.registry().register(
            &mut SourceFd(&stream.as_raw_fd()),
            Token(0),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        Ok(poll)
    }

    /// Serves the connection as far as it can go without waiting. `out` is
    /// a scratch buffer for replies, empty on entry and on return.
    pub(crate) fn turn(&mut self, out: &mut Vec<u8>) -> Turn {
        let result = match self.phase {
            Phase::Header => match self.read_header(out) {
                Ok(true) => self.start(out).and_then(|()| self.serve(out)),
                Ok(false) => Ok(Turn::Park),
                Err(end) => Err(end),
            },
            Phase::Fresh => self.start(out).and_then(|()| self.serve(out)),
            Phase::Open => self.serve(out),
            Phase::Flushing => return self.flush_and_close(),
            Phase::Lingering(drained) => return self.linger(drained),
            Phase::Done => return Turn::Done,
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

    /// Reads the PROXY protocol header. Returns whether it is complete (and
    /// the client's address known); `false` means wait for more.
    fn read_header(&mut self, out: &mut Vec<u8>) -> Result<bool, End> {
        self.conn.activity.set_awaiting_header(true);
        if let Some(idle) = self.conn.activity.timed_out() {
            return Err(End::Idle(idle));
        }
        let mut chunk = [0u8; 1024];
        loop {
            match Read::read(&mut &*self.conn, &mut chunk) {
                Ok(0) => return Err(End::BadHeader("the connection ended before it")),
                Ok(n) => self.header.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(End::Io(e)),
            }
            match proxy::parse(&self.header) {
                Parsed::Incomplete => continue,
                Parsed::Invalid => return Err(End::BadHeader("not a PROXY protocol header")),
                Parsed::Header { len, client } => {
                    self.conn.activity.set_awaiting_header(false);
                    // What followed the header is the protocol's.
                    self.header.drain(..len);
                    self.header.shrink_to_fit();
                    if let Some(client) = client {
                        self.client = client;
                    }
                    break;
                }
            }
        }
        if let Some(table) = &self.per_address {
            match table.try_take(self.client.ip()) {
                Some(slot) => self._address_slot = Some(slot),
                None => {
                    self.stats.rejected_per_address();
                    out.extend_from_slice(TOO_MANY_FROM_ADDRESS);
                    return Err(End::TooManyFromAddress);
                }
            }
        }
        self.phase = Phase::Fresh;
        Ok(true)
    }

    fn start(&mut self, out: &mut Vec<u8>) -> Result<(), End> {
        self.phase = Phase::Open;
        self.reader = Reader::new(self.protocol.framing(), self.limits.max_line);
        if !self.header.is_empty() {
            self.reader.preload(&std::mem::take(&mut self.header));
        }
        self.admin = self.admin_from.contains(self.peer().ip());
        debug!("client connected peer={}", self.peer());
        let mut session = self
            .protocol
            .open(Link::new(&self.conn, self.client, self.admin));
        let action = session.start(out);
        self.session = Some(session);
        let rules = Rules::new(
            &self.shutdown,
            &self.stats,
            self.admin,
            self.reader.framing(),
            self.client,
        );
        // A greeting is not a message answered.
        let mut greetings = 0;
        act(action, &rules, &mut greetings, out)
    }

    fn serve(&mut self, out: &mut Vec<u8>) -> Result<Turn, End> {
        if let Some(idle) = self.conn.activity.timed_out() {
            return Err(End::Idle(idle));
        }
        if self.shutdown.is_triggered() {
            return Err(self.answer_all(out));
        }
        let mut budget = TURN_MESSAGES;
        let mut reads = TURN_READS;
        // A short read took everything there was: the poller reports what
        // comes next, so the read that would only say "nothing yet" is
        // skipped. Not when the stream has ended, as the end of stream may
        // have come with the same event.
        let mut drained = false;
        loop {
            // Tried again even right after a send: on loopback the socket
            // often has room again by now, which saves a wake-up.
            if self.conn.flush().map_err(End::Io)? > MAX_PENDING {
                // Backed up: read nothing more until the client reads.
                self.conn.activity.set_paused(true);
                return Ok(Turn::Park);
            }
            self.conn.activity.set_paused(false);
            let more = self.answer(out, &mut budget);
            self.conn.send(out).map_err(End::Io)?;
            self.report();
            if more? {
                if budget == 0 {
                    return Ok(Turn::Yield);
                }
                continue;
            }
            // Messages already read have their replies; a stop ends the rest.
            if self.shutdown.is_triggered() {
                return Err(End::Stopping);
            }
            if drained {
                return Ok(Turn::Park);
            }
            if reads == 0 {
                return Ok(Turn::Yield);
            }
            reads -= 1;
            match self.reader.fill(&mut &*self.conn) {
                Ok(0) => return Err(self.at_end_of_input(out)),
                Ok(n) => {
                    self.unreported_bytes += n as u64;
                    // Service times cost two clock reads a batch: only when asked.
                    if self.limits.timing {
                        self.read_at = Some(Instant::now());
                    }
                    drained = !self.reader.filled() && !self.conn.read_closed();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Turn::Park),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(End::Io(e)),
            }
        }
    }

    /// Answers complete messages already buffered, until none is left, the
    /// budget is spent or the replies reach [`FLUSH_AT`]. Returns whether
    /// messages may be left, or how the connection ends.
    fn answer(&mut self, out: &mut Vec<u8>, budget: &mut usize) -> Result<bool, End> {
        let Some(session) = self.session.as_mut() else {
            return Err(End::Closed);
        };
        let rules = Rules::new(
            &self.shutdown,
            &self.stats,
            self.admin,
            self.reader.framing(),
            self.client,
        );
        let mut progressed = false;
        let result = loop {
            if *budget == 0 || out.len() >= FLUSH_AT {
                break Ok(true);
            }
            let Some(message) = self.reader.next_message() else {
                break Ok(false);
            };
            *budget -= 1;
            progressed |= message.is_ok();
            let step = handle(
                &mut **session,
                message,
                &rules,
                self.limits.max_line,
                &mut self.unreported,
                out,
            );
            if let Err(end) = step {
                break Err(end);
            }
        };
        if progressed {
            self.conn.activity.read_progress();
        }
        result
    }

    /// When the server stops: answers every complete message already read,
    /// whatever the budget and backlog, then the connection ends.
    fn answer_all(&mut self, out: &mut Vec<u8>) -> End {
        loop {
            let mut budget = usize::MAX;
            match self.answer(out, &mut budget) {
                Ok(true) => {
                    if self.conn.send(out).is_err() {
                        return End::Stopping;
                    }
                }
                Ok(false) => return End::Stopping,
                Err(end) => return end,
            }
        }
    }

    /// At the client's end of input: a last line with no newline is
    /// answered like any other; a cut frame is an error.
    fn at_end_of_input(&mut self, out: &mut Vec<u8>) -> End {
        if self.shutdown.is_triggered() {
            return End::Stopping;
        }
        if let Some(idle) = self.conn.activity.timed_out() {
            return End::Idle(idle);
        }
        let rules = Rules::new(
            &self.shutdown,
            &self.stats,
            self.admin,
            self.reader.framing(),
            self.client,
        );
        let (Some(session), Some(rest)) = (self.session.as_mut(), self.reader.take_rest()) else {
            return End::ClientLeft;
        };
        let max_line = self.limits.max_line;
        let step = handle(
            &mut **session,
            rest,
            &rules,
            max_line,
            &mut self.unreported,
            out,
        );
        step.err().unwrap_or(End::ClientLeft)
    }

    /// The connection has ended: tells the session, logs why, and starts
    /// closing. Replies go out first unless the client is gone or idle.
    fn finish(&mut self, end: End, out: &mut Vec<u8>) -> Turn {
        if let Some(mut session) = self.session.take() {
            session.end();
        }
        self.log_end(&end);
        match end {
            End::Io(_) => {
                out.clear();
                self.report();
                self.done()
            }
            End::Idle(_) => {
                out.clear();
                self.report();
                if matches!(end, End::Idle(Idle::Read)) {
                    self.conn.try_say(b"ERR idle timeout\n");
                }
                let _ = self.conn.shutdown_write();
                drain_pending(self.conn.stream(), LINGER_BYTES);
                self.done()
            }
            _ => {
                let sent = self.conn.send(out);
                self.report();
                if sent.is_err() {
                    return self.done();
                }
                self.phase = Phase::Flushing;
                self.flush_and_close()
            }
        }
    }

    /// Sends the last replies, then our end of stream, then reads off what
    /// the client still sends, so that closing does not turn into a reset
    /// that destroys replies in flight.
    fn flush_and_close(&mut self) -> Turn {
        // The watchdog gave up on a client that never read its replies.
        if self.conn.activity.timed_out().is_some() {
            return self.done();
        }
        match self.conn.flush() {
            Ok(0) => {}
            Ok(_) => return Turn::Park,
            Err(_) => return self.done(),
        }
        if self.conn.shutdown_write().is_err() {
            return self.done();
        }
        self.linger(0)
    }

    /// Reads off what the client still sends, up to [`LINGER_BYTES`] and
    /// until the watchdog's linger ends; nothing waiting means done.
    fn linger(&mut self, drained: usize) -> Turn {
        if self.conn.activity.timed_out().is_some() {
            return self.done();
        }
        match drain_pending(self.conn.stream(), LINGER_BYTES - drained) {
            Drained::Closed | Drained::Bytes(0) => self.done(),
            Drained::Bytes(n) if drained + n >= LINGER_BYTES => self.done(),
            Drained::Bytes(n) => {
                self.phase = Phase::Lingering(drained + n);
                self.conn.activity.set_lingering();
                Turn::Park
            }
        }
    }

    fn done(&mut self) -> Turn {
        self.phase = Phase::Done;
        Turn::Done
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

    fn log_end(&self, end: &End) {
        match end {
            End::TooLong => self.stats.client_error(ClientError::TooLong),
            End::InvalidUtf8 => self.stats.client_error(ClientError::InvalidUtf8),
            End::Truncated => self.stats.client_error(ClientError::Truncated),
            End::Io(_) => self.stats.client_error(ClientError::Io),
            End::Idle(Idle::Read) => self.stats.idle_close(IdleClose::Read),
            End::Idle(Idle::Write) => self.stats.idle_close(IdleClose::Write),
            _ => {}
        }
        let peer = self.peer();
        let messages = self.answered + self.unreported;
        if let End::ClientLeft | End::Closed | End::Stopping | End::TooManyFromAddress = end {
            debug!(
                "client closed peer={peer} messages={messages} reason={}",
                end.reason()
            );
            return;
        }
        if let End::StopServer(by_command) = end {
            if *by_command {
                info!("quit_server received peer={peer}");
            }
            return;
        }
        // Everything else is a warning about this client: rate-limited.
        let max = self.limits.max_line;
        self.stats.warn_about_client(|| match end {
            End::TooLong => warn!("message too long, closing peer={peer} max={max}"),
            End::InvalidUtf8 => warn!("invalid utf-8 in line, closing peer={peer}"),
            End::Truncated => warn!("connection ended inside a message peer={peer}"),
            End::Idle(Idle::Read) => warn!("idle timeout, closing peer={peer}"),
            End::Idle(Idle::Header) => warn!(
                "no PROXY protocol header within {} s, closing peer={peer}",
                watchdog::HEADER_DEADLINE.as_secs()
            ),
            End::BadHeader(why) => warn!(
                "invalid PROXY protocol header, closing peer={peer} reason={}",
                logfmt::Quoted(why)
            ),
            End::Idle(_) => warn!("client not reading replies, closing peer={peer}"),
            End::Io(e) => warn!("connection error peer={peer} error={}", logfmt::error(e)),
            End::ClientLeft
            | End::Closed
            | End::Stopping
            | End::StopServer(_)
            | End::TooManyFromAddress => {}
        });
    }
}

/// What the core needs to act on a session's action.
#[derive(Clone, Copy)]
struct Rules<'a> {
    shutdown: &'a Shutdown,
    /// The client may stop the server.
    admin: bool,
    framing: Framing,
    peer: SocketAddr,
    stats: &'a Stats,
    /// The message is the `quit_server` command itself.
    quit_server: bool,
}

impl<'a> Rules<'a> {
    /// The rules for a connection; taken field by field, so that the
    /// session can be borrowed at the same time.
    fn new(
        shutdown: &'a Shutdown,
        stats: &'a Stats,
        admin: bool,
        framing: Framing,
        peer: SocketAddr,
    ) -> Self {
        Rules {
            shutdown,
            admin,
            framing,
            peer,
            stats,
            quit_server: false,
        }
    }
}

/// One message through the session and the core's rules, or the framing's
/// refusal of it.
fn handle(
    session: &mut dyn Session,
    message: Result<&[u8], FrameError>,
    rules: &Rules,
    max_line: usize,
    answered: &mut u64,
    out: &mut Vec<u8>,
) -> Result<(), End> {
    match message {
        Ok(msg) => {
            // The command itself, not a protocol's own stop rule.
            let rules = Rules {
                quit_server: protocol::command(msg) == Some(Action::StopServer),
                ..*rules
            };
            act(session.message(msg, out), &rules, answered, out)
        }
        Err(e) => Err(refuse(e, rules.framing, max_line, out)),
    }
}

/// What the core does for a session's action. Messages that keep the
/// connection going count as answered; commands do not. A stop from an
/// address outside `--admin-from` is refused, and the connection goes on.
fn act(action: Action, rules: &Rules, answered: &mut u64, out: &mut Vec<u8>) -> Result<(), End> {
    match action {
        Action::Continue => {
            *answered += 1;
            Ok(())
        }
        Action::Close => Err(End::Closed),
        Action::StopServer if rules.admin => {
            rules.shutdown.trigger();
            Err(End::StopServer(rules.quit_server))
        }
        Action::StopServer => {
            let peer = rules.peer;
            rules.stats.warn_about_client(|| {
                warn!("quit_server refused, address may not stop the server peer={peer}");
            });
            const REFUSAL: &[u8] = b"ERR quit_server not allowed";
            match rules.framing {
                Framing::Lines => {
                    out.extend_from_slice(REFUSAL);
                    out.push(b'\n');
                }
                // The framing has no text channel: the refusal is a frame.
                Framing::LengthPrefixed => write_frame(out, REFUSAL),
            }
            Ok(())
        }
    }
}

/// The last words for a message the framing refused, and why the
/// connection ends.
fn refuse(error: FrameError, framing: Framing, max_line: usize, out: &mut Vec<u8>) -> End {
    match error {
        FrameError::TooLong => {
            // A line client gets an error line; a length-prefixed one is
            // closed without a word, as its framing has no place for text.
            if framing == Framing::Lines {
                out.extend_from_slice(
                    format!("ERR line too long (max {max_line} bytes)\n").as_bytes(),
                );
            }
            End::TooLong
        }
        FrameError::InvalidUtf8 => End::InvalidUtf8,
        FrameError::Truncated => End::Truncated,
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
        let socket = socket2::SockRef::from(&**handler.conn.stream());
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

    #[test]
    fn default_limits_are_the_default_configs() {
        let from_config = Limits::from_config(&Config::default());
        let default = Limits::default();
        assert_eq!(default.max_line, from_config.max_line);
        assert_eq!(default.idle_timeout, from_config.idle_timeout);
        assert_eq!(default.timing, from_config.timing);
    }
}
