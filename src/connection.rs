//! One client socket as a worker sees it: reads that honour the idle deadline,
//! a reply buffer written in one go, and a close that does not lose replies.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How late past the idle deadline a read may return. Re-arming the socket's
/// timeout costs a system call, so it is only shortened when it would
/// overshoot by more than this.
const TIMEOUT_SLACK: Duration = Duration::from_millis(10);

/// How long, and for how many bytes, a closing connection keeps reading what
/// the client still sends, so that closing with unread input does not turn
/// into a reset that could destroy our last replies in flight.
const LINGER_TIME: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 256 * 1024;

/// A served client socket.
pub struct Connection {
    stream: Arc<TcpStream>,
    peer: SocketAddr,
    out: Vec<u8>,
    idle: Option<Duration>,
    /// When the client counts as idle unless it sends a complete line first.
    deadline: Option<Instant>,
    /// The read timeout currently set on the socket.
    armed: Option<Duration>,
}

impl Connection {
    /// Wraps an accepted socket. `idle` is the idle timeout (`None`: never).
    pub fn new(stream: Arc<TcpStream>, peer: SocketAddr, idle: Option<Duration>) -> Self {
        // Writes that make no progress for the idle timeout fail, so a client
        // that stops reading our replies cannot pin a worker. An error here
        // only means the socket is already dead, which the first read reports.
        let _ = stream.set_write_timeout(idle);
        Connection {
            stream,
            peer,
            out: Vec::new(),
            idle,
            deadline: idle.map(|d| Instant::now() + d),
            armed: None,
        }
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Records that the client sent a complete message: the idle clock restarts.
    pub fn touch(&mut self) {
        if let Some(idle) = self.idle {
            self.deadline = Some(Instant::now() + idle);
        }
    }

    /// The reply buffer: what is appended here goes out on the next flush.
    pub fn out(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Writes the reply buffer out. Fails with `TimedOut` if the client reads
    /// nothing for the idle timeout.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = (&*self.stream).write_all(&self.out).map_err(timeout_kind);
        self.out.clear();
        result
    }

    /// Writes `line` only if it can go out at once in full; used for last
    /// words to a client that may have stopped reading.
    pub fn try_say(&mut self, line: &[u8]) {
        if self.stream.set_nonblocking(true).is_ok() {
            let _ = (&*self.stream).write(line);
            let _ = self.stream.set_nonblocking(false);
        }
    }

    /// Ends the connection without destroying replies in flight: sends our
    /// end of stream after the buffered replies, then reads and discards what
    /// the client still sends, briefly, before the socket is dropped.
    pub fn close(mut self) {
        let _ = self.flush();
        if self.stream.shutdown(Shutdown::Write).is_err() {
            return;
        }
        let until = Instant::now() + LINGER_TIME;
        // Small: a close is rare, and a large frame would cost every worker a
        // resident stack page.
        let mut scratch = [0u8; 512];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match (&*self.stream).read(&mut scratch) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
}

impl Read for Connection {
    /// Reads what the client sent, failing with `TimedOut` once the idle
    /// deadline passes without a complete line.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(deadline) = self.deadline else {
            return read_retrying(&self.stream, buf);
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            if self.armed.is_none_or(|armed| armed > left + TIMEOUT_SLACK) {
                self.stream.set_read_timeout(Some(left))?;
                self.armed = Some(left);
            }
            match read_retrying(&self.stream, buf) {
                // The timeout was armed for an earlier, nearer deadline: go
                // round and wait for the rest.
                Err(e) if is_timeout(&e) => continue,
                other => return other,
            }
        }
    }
}

/// A read that a signal interrupts is simply tried again.
fn read_retrying(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match (&*stream).read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Socket timeouts surface as `WouldBlock` on Unix; call them what they are.
fn timeout_kind(e: io::Error) -> io::Error {
    if is_timeout(&e) {
        io::ErrorKind::TimedOut.into()
    } else {
        e
    }
}
