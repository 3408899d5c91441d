//! One connection, start to end: the ACK line protocol run by a worker.
//!
//! The loop answers every complete line already buffered into one reply
//! buffer, writes that buffer once, and only then reads again, so pipelined
//! input costs one read and one write per batch, not per line.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use crate::config::Config;
use crate::connection::Connection;
use crate::line::{LineError, LineReader};
use crate::shutdown::Shutdown;
use crate::stats::Stats;

/// Replies are written out once this many bytes are waiting, even if more
/// input is buffered, so the reply buffer stays small.
const FLUSH_AT: usize = 64 * 1024;

/// The per-connection limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest accepted line in bytes, not counting the line ending.
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

/// Serves one client connection with the line protocol.
pub struct ClientHandler {
    /// The client's socket, shared with the registry so a stop can shut it down.
    pub conn: Arc<TcpStream>,
    /// The client's address, for logs.
    pub addr: SocketAddr,
    /// The server-wide stop signal; `quit_server` triggers it.
    pub shutdown: Shutdown,
    limits: Limits,
    stats: Arc<Stats>,
    /// The socket already carries the idle timeout as its read and write
    /// timeouts (inherited from the listener).
    timeouts_preset: bool,
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// The client closed its side.
    ClientLeft,
    /// The client sent `shutdown`.
    Shutdown,
    /// The client sent `quit_server`.
    QuitServer,
    /// The server is stopping.
    Stopping,
    TooLong,
    InvalidUtf8,
    /// No complete line for the idle timeout.
    IdleRead,
    /// Our replies were not read for the idle timeout.
    IdleWrite,
    Io(io::Error),
}

impl ClientHandler {
    /// A handler for `conn`, with the default limits.
    pub fn new(conn: Arc<TcpStream>, addr: SocketAddr, shutdown: Shutdown) -> Self {
        ClientHandler {
            conn,
            addr,
            shutdown,
            limits: Limits::default(),
            stats: Arc::default(),
            timeouts_preset: false,
        }
    }

    /// Sets the per-connection limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub(crate) fn with_stats(mut self, stats: Arc<Stats>) -> Self {
        self.stats = stats;
        self
    }

    pub(crate) fn with_timeouts_preset(mut self, preset: bool) -> Self {
        self.timeouts_preset = preset;
        self
    }

    /// Serves the connection until the client leaves, breaks a rule, idles
    /// out, or the server stops; then closes it.
    pub fn run(self) {
        let mut conn = Connection::new(
            self.conn.clone(),
            self.addr,
            self.limits.idle_timeout,
            self.timeouts_preset,
        );
        debug!("client connected peer={}", self.addr);
        let mut session = Session {
            handler: &self,
            reader: LineReader::new(self.limits.max_line),
            unreported: 0,
            answered: 0,
            read_at: None,
        };
        let end = session.serve(&mut conn);
        if let End::IdleRead = end {
            conn.try_say(b"ERR idle timeout\n");
        }
        conn.close();
        session.report();
        self.log_end(&end, session.answered);
    }

    fn log_end(&self, end: &End, lines: u64) {
        let peer = self.addr;
        match end {
            End::ClientLeft | End::Shutdown | End::Stopping => {
                debug!("client closed peer={peer} lines={lines} reason={end:?}");
            }
            End::QuitServer => info!("quit_server received peer={peer}"),
            End::TooLong => warn!(
                "line too long, closing peer={peer} max={}",
                self.limits.max_line
            ),
            End::InvalidUtf8 => warn!("invalid utf-8 in line, closing peer={peer}"),
            End::IdleRead => warn!("idle timeout, closing peer={peer}"),
            End::IdleWrite => warn!("client not reading replies, closing peer={peer}"),
            End::Io(e) => warn!("connection error peer={peer} error={e}"),
        }
    }
}

/// The state of one served connection.
struct Session<'a> {
    handler: &'a ClientHandler,
    reader: LineReader,
    /// Lines answered but not yet added to the shared counters.
    unreported: u64,
    answered: u64,
    /// When the read that started the current batch of lines returned.
    read_at: Option<Instant>,
}

impl Session<'_> {
    fn serve(&mut self, conn: &mut Connection) -> End {
        // A connection that waited in the queue while the stop began is
        // closed without being served.
        if self.handler.shutdown.is_triggered() {
            return End::Stopping;
        }
        loop {
            let mut progressed = false;
            while let Some(line) = self.reader.next_line() {
                progressed = true;
                if let Some(end) = answer(line, conn.out(), self.handler) {
                    return end;
                }
                self.unreported += 1;
                if conn.out().len() >= FLUSH_AT
                    && let Err(e) = self.flush(conn)
                {
                    return e;
                }
            }
            if let Err(e) = self.flush(conn) {
                return e;
            }
            // Lines already read have their replies; a stop ends the rest.
            if self.handler.shutdown.is_triggered() {
                return End::Stopping;
            }
            conn.set_partial(self.reader.has_partial(), progressed);
            match self.reader.fill(conn) {
                Ok(0) if self.handler.shutdown.is_triggered() => return End::Stopping,
                Ok(0) => {
                    // A last line with no newline is answered like any other.
                    if let Some(line) = self.reader.take_rest() {
                        if let Some(end) = answer(line, conn.out(), self.handler) {
                            return end;
                        }
                        self.unreported += 1;
                    }
                    return End::ClientLeft;
                }
                // Service times cost two clock reads a batch: only when asked.
                Ok(_) if self.handler.limits.timing => self.read_at = Some(Instant::now()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return End::IdleRead,
                Err(e) => return End::Io(e),
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

    /// Adds the lines answered since the last report to the shared counters.
    fn report(&mut self) {
        if self.unreported > 0 {
            let service = self.read_at.map(|t| t.elapsed());
            self.handler.stats.answered(self.unreported, service);
        }
        self.answered += self.unreported;
        self.unreported = 0;
    }
}

/// Appends the reply to one line, or says why the connection must end.
fn answer(
    line: Result<&str, LineError>,
    out: &mut Vec<u8>,
    handler: &ClientHandler,
) -> Option<End> {
    match line {
        Ok("shutdown") => Some(End::Shutdown),
        Ok("quit_server") => {
            handler.shutdown.trigger();
            Some(End::QuitServer)
        }
        Ok(text) => {
            out.extend_from_slice(b"ACK: ");
            out.extend_from_slice(text.as_bytes());
            out.push(b'\n');
            None
        }
        Err(LineError::TooLong) => {
            // Writing to a Vec cannot fail.
            let _ = writeln!(
                out,
                "ERR line too long (max {} bytes)",
                handler.limits.max_line
            );
            Some(End::TooLong)
        }
        Err(LineError::InvalidUtf8) => Some(End::InvalidUtf8),
    }
}
