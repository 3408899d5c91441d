//! One connection, start to end: the loop a worker runs, with the session
//! of whichever protocol the server speaks.
//!
//! The loop hands every complete message already buffered to the session,
//! collects the replies in one buffer, writes that buffer once, and only then
//! reads again, so pipelined input costs one read and one write per batch,
//! not per message.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use crate::config::Config;
use crate::connection::Connection;
use crate::framing::{FrameError, Framing, Reader};
use crate::protocol::{self, Action, Link, Protocol, Session};
use crate::shutdown::Shutdown;
use crate::stats::Stats;
use crate::watchdog::Activity;

/// Replies are written out once this many bytes are waiting, even if more
/// input is buffered, so the reply buffer stays small.
const FLUSH_AT: usize = 64 * 1024;

/// The per-connection limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest accepted message in bytes (a line without its ending, a
    /// frame without its prefix).
    pub max_line: usize,
    /// See [`Config::idle_timeout`].
    pub idle_timeout: Option<Duration>,
    /// Measure service times (for `--stats-interval`).
    pub timing: bool,
}

impl Limits {
    /// The limits a configuration sets.
    pub fn from_config(config: &Config) -> Self {
        Limits {
            max_line: config.max_line,
            idle_timeout: config.idle_timeout,
            timing: config.stats_interval.is_some(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_config(&Config::default())
    }
}

/// Serves one client connection.
pub struct ClientHandler {
    /// The client's socket, shared with the registry so a stop can shut it down.
    pub conn: Arc<TcpStream>,
    /// The client's address, for logs.
    pub addr: SocketAddr,
    /// The server-wide stop signal; `quit_server` triggers it.
    pub shutdown: Shutdown,
    limits: Limits,
    protocol: Arc<dyn Protocol>,
    stats: Arc<Stats>,
    /// Set when the server's watchdog enforces the idle rule on reads.
    activity: Option<Arc<Activity>>,
    /// The socket already carries the idle timeout as its write timeout
    /// (inherited from the listener).
    write_timeout_preset: bool,
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// The client closed its side.
    ClientLeft,
    /// The protocol closed the client (`shutdown`).
    Closed,
    /// The client asked the server to stop (`quit_server`).
    StopServer,
    /// The server is stopping.
    Stopping,
    TooLong,
    InvalidUtf8,
    /// The input ended inside a length-prefixed message.
    Truncated,
    /// No complete message for the idle timeout.
    IdleRead,
    /// Our replies were not read for the idle timeout.
    IdleWrite,
    Io(io::Error),
}

impl ClientHandler {
    /// A handler for `conn` speaking the ACK protocol, with the default limits.
    pub fn new(conn: Arc<TcpStream>, addr: SocketAddr, shutdown: Shutdown) -> Self {
        ClientHandler {
            conn,
            addr,
            shutdown,
            limits: Limits::default(),
            protocol: protocol::ack(),
            stats: Arc::default(),
            activity: None,
            write_timeout_preset: false,
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

    pub(crate) fn with_stats(mut self, stats: Arc<Stats>) -> Self {
        self.stats = stats;
        self
    }

    /// Leaves idle reads to the server's watchdog, which tracks `activity`.
    pub(crate) fn with_watchdog(
        mut self,
        activity: Arc<Activity>,
        write_timeout_preset: bool,
    ) -> Self {
        self.activity = Some(activity);
        self.write_timeout_preset = write_timeout_preset;
        self
    }

    /// Serves the connection until the client leaves, breaks a rule, idles
    /// out, or the server stops; then closes it.
    pub fn run(self) {
        // Without the server's watchdog (a handler run on its own) the
        // socket's read timeout enforces the idle rule instead.
        let read_idle = match &self.activity {
            Some(activity) => {
                activity.start();
                None
            }
            None => self.limits.idle_timeout,
        };
        let mut conn = Connection::new(
            self.conn.clone(),
            self.addr,
            read_idle,
            self.limits.idle_timeout,
            self.write_timeout_preset,
        );
        debug!("client connected peer={}", self.addr);
        let mut serving = Serving {
            handler: &self,
            session: self.protocol.open(Link::new(self.conn.clone(), self.addr)),
            reader: Reader::new(self.protocol.framing(), self.limits.max_line),
            unreported: 0,
            answered: 0,
            read_at: None,
        };
        let end = serving.serve(&mut conn);
        if let End::IdleRead = end {
            conn.try_say(b"ERR idle timeout\n");
        }
        conn.close();
        serving.session.end();
        serving.report();
        self.log_end(&end, serving.answered);
    }

    fn log_end(&self, end: &End, messages: u64) {
        let peer = self.addr;
        match end {
            End::ClientLeft | End::Closed | End::Stopping => {
                debug!("client closed peer={peer} messages={messages} reason={end:?}");
            }
            End::StopServer => info!("quit_server received peer={peer}"),
            End::TooLong => warn!(
                "message too long, closing peer={peer} max={}",
                self.limits.max_line
            ),
            End::InvalidUtf8 => warn!("invalid utf-8 in line, closing peer={peer}"),
            End::Truncated => warn!("connection ended inside a message peer={peer}"),
            End::IdleRead => warn!("idle timeout, closing peer={peer}"),
            End::IdleWrite => warn!("client not reading replies, closing peer={peer}"),
            End::Io(e) => warn!("connection error peer={peer} error={e}"),
        }
    }
}

/// The state of one served connection.
struct Serving<'a> {
    handler: &'a ClientHandler,
    session: Box<dyn Session>,
    reader: Reader,
    /// Messages answered but not yet added to the shared counters.
    unreported: u64,
    answered: u64,
    /// When the read that started the current batch returned (only when
    /// service times are measured).
    read_at: Option<Instant>,
}

impl Serving<'_> {
    fn serve(&mut self, conn: &mut Connection) -> End {
        // A connection that waited in the queue while the stop began is
        // closed without being served.
        if self.handler.shutdown.is_triggered() {
            return End::Stopping;
        }
        let action = self.session.start(conn.out());
        if action != Action::Continue
            && let Some(end) = self.act(action)
        {
            return end;
        }
        loop {
            let mut progressed = false;
            while let Some(message) = self.reader.next_message() {
                progressed = true;
                let end = match message {
                    Ok(msg) => {
                        let action = self.session.message(msg, conn.out());
                        self.act(action)
                    }
                    Err(e) => Some(self.refuse(e, conn.out())),
                };
                if let Some(end) = end {
                    return end;
                }
                if conn.out().len() >= FLUSH_AT
                    && let Err(end) = self.flush(conn)
                {
                    return end;
                }
            }
            if let Err(end) = self.flush(conn) {
                return end;
            }
            // Messages already read have their replies; a stop ends the rest.
            if self.handler.shutdown.is_triggered() {
                return End::Stopping;
            }
            if progressed && let Some(activity) = &self.handler.activity {
                activity.touch();
            }
            conn.set_partial(self.reader.has_partial(), progressed);
            // Give the other workers the CPU once before reading. With many
            // busy connections this client's next input has often arrived by
            // the time this thread runs again, and the read takes it without
            // the thread going to sleep and being woken: on one core, 50
            // ping-pong connections went from 0.70 to 0.87 of the tokio
            // reference (docs/benchmarks.md). With nothing else to run it
            // costs one cheap system call.
            std::thread::yield_now();
            match self.reader.fill(conn) {
                Ok(0) if self.handler.shutdown.is_triggered() => return End::Stopping,
                Ok(0)
                    if self
                        .handler
                        .activity
                        .as_ref()
                        .is_some_and(|a| a.timed_out()) =>
                {
                    return End::IdleRead;
                }
                Ok(0) => return self.last_message(conn),
                // Service times cost two clock reads a batch: only when asked.
                Ok(_) if self.handler.limits.timing => self.read_at = Some(Instant::now()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return End::IdleRead,
                Err(e) => return End::Io(e),
            }
        }
    }

    /// At the client's end of input: a last line with no newline is
    /// answered like any other; a cut frame is an error.
    fn last_message(&mut self, conn: &mut Connection) -> End {
        let end = match self.reader.take_rest() {
            Some(Ok(msg)) => {
                let action = self.session.message(msg, conn.out());
                self.act(action)
            }
            Some(Err(e)) => Some(self.refuse(e, conn.out())),
            None => None,
        };
        end.unwrap_or(End::ClientLeft)
    }

    /// What the core does for a session's action. Messages that keep the
    /// connection going count as answered; commands do not.
    fn act(&mut self, action: Action) -> Option<End> {
        match action {
            Action::Continue => {
                self.unreported += 1;
                None
            }
            Action::Close => Some(End::Closed),
            Action::StopServer => {
                self.handler.shutdown.trigger();
                Some(End::StopServer)
            }
        }
    }

    fn flush(&mut self, conn: &mut Connection) -> Result<(), End> {
        conn.flush().map_err(|e| match e.kind() {
            io::ErrorKind::TimedOut => End::IdleWrite,
            _ => End::Io(e),
        })?;
        self.report();
        Ok(())
    }

    /// The last words for a message the framing refused, and why the
    /// connection ends.
    fn refuse(&self, error: FrameError, out: &mut Vec<u8>) -> End {
        match error {
            FrameError::TooLong => {
                // A line client gets an error line; a length-prefixed one is
                // closed without a word, as its framing has no place for text.
                if self.reader.framing() == Framing::Lines {
                    let max = self.handler.limits.max_line;
                    out.extend_from_slice(
                        format!("ERR line too long (max {max} bytes)\n").as_bytes(),
                    );
                }
                End::TooLong
            }
            FrameError::InvalidUtf8 => End::InvalidUtf8,
            FrameError::Truncated => End::Truncated,
        }
    }

    /// Adds the messages answered since the last report to the shared counters.
    fn report(&mut self) {
        if self.unreported > 0 {
            let service = self.read_at.map(|t| t.elapsed());
            self.handler.stats.answered(self.unreported, service);
        }
        self.answered += self.unreported;
        self.unreported = 0;
    }
}
