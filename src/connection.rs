//! One client socket as a worker sees it: reads that honour the idle deadline,
//! a reply buffer written in one go, and a close that does not lose replies.

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::SockRef;

/// How late past the idle deadline a read may return. Re-arming the socket's
/// timeout costs a system call, so it is only shortened when it would
/// overshoot by more than this.
const TIMEOUT_SLACK: Duration = Duration::from_millis(10);

/// How long, and for how many bytes, a closing connection keeps reading from
/// a client that is still sending, so that closing with unread input does
/// not turn into a reset that could destroy our last replies in flight.
const LINGER_TIME: Duration = Duration::from_millis(500);
/// The most a closing connection reads off from a client (see above).
pub const LINGER_BYTES: usize = 256 * 1024;

/// A served client socket.
///
/// When it enforces the idle rule on reads itself (a handler run without the
/// server's watchdog): a client is closed when it sends nothing for the idle
/// timeout, or when a line it has started is not complete within the idle
/// timeout of its first bytes arriving. The first half is the socket's read
/// timeout, set once, so a read with no partial line pending reads no clock;
/// only while a partial line is pending does a read look at the clock.
pub struct Connection {
    stream: Arc<TcpStream>,
    peer: SocketAddr,
    out: Vec<u8>,
    idle: Option<Duration>,
    /// Whether the bytes read so far end in the middle of a line.
    partial: bool,
    /// When the pending partial line was first seen.
    partial_since: Option<Instant>,
    /// The read timeout currently set on the socket.
    armed: Option<Duration>,
}

impl Connection {
    /// Wraps an accepted socket. `read_idle` is the idle rule for reads
    /// (`None`: reads wait as long as it takes, as when the server's watchdog
    /// enforces the rule); `write_idle` fails writes that make no progress for
    /// that long. `write_preset` says the socket already has `write_idle` as
    /// its write timeout.
    pub fn new(
        stream: Arc<TcpStream>,
        peer: SocketAddr,
        read_idle: Option<Duration>,
        write_idle: Option<Duration>,
        write_preset: bool,
    ) -> Self {
        // Writes that make no progress for the idle timeout fail, so a client
        // that stops reading our replies cannot pin a worker. An error here
        // only means the socket is already dead, which the first read reports.
        if !write_preset {
            let _ = stream.set_write_timeout(write_idle);
        }
        Connection {
            stream,
            peer,
            out: Vec::new(),
            idle: read_idle,
            partial: false,
            partial_since: None,
            armed: None,
        }
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Before the next read: whether the input read so far ends inside a
    /// line, and whether complete lines arrived since the last read. A
    /// partial line must be completed within the idle timeout of when it was
    /// first seen; a line completing starts the clock afresh.
    pub fn set_partial(&mut self, partial: bool, progressed: bool) {
        self.partial = partial;
        if !partial || progressed {
            self.partial_since = None;
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
    /// end of stream after the buffered replies, then reads off what the
    /// client still sends before the socket is dropped, because closing with
    /// unread input answers the client with a reset that can destroy our
    /// last replies. Nothing pending (the usual case) means an immediate
    /// close; a client still sending gets a short linger.
    pub fn close(mut self) {
        let _ = self.flush();
        if self.stream.shutdown(Shutdown::Write).is_err() {
            return;
        }
        let mut drained = match drain_pending(&self.stream, LINGER_BYTES) {
            Drained::Bytes(0) | Drained::Closed => return,
            Drained::Bytes(n) => n,
        };
        let mut scratch = [MaybeUninit::<u8>::uninit(); 512];
        let socket = SockRef::from(&*self.stream);
        let until = Instant::now() + LINGER_TIME;
        while drained < LINGER_BYTES {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match socket.recv(&mut scratch) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
}

impl Read for Connection {
    /// Reads what the client sent, failing with `TimedOut` when the idle
    /// rule (see [`Connection`]) says the client is idle.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(idle) = self.idle else {
            return read_retrying(&self.stream, buf);
        };
        if !self.partial {
            return self.read_within(buf, idle);
        }
        let since = *self.partial_since.get_or_insert_with(Instant::now);
        let left = (since + idle).saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.read_within(buf, left)
    }
}

impl Connection {
    /// One read that fails with `TimedOut` if no byte comes within `limit`
    /// (give or take [`TIMEOUT_SLACK`]).
    fn read_within(&mut self, buf: &mut [u8], limit: Duration) -> io::Result<usize> {
        // A shorter timeout left armed from a partial line is kept: a read
        // that times out early simply waits again for the rest. Only a
        // timeout that would overshoot the limit is replaced before reading.
        if self.armed.is_none_or(|armed| armed > limit + TIMEOUT_SLACK) {
            self.arm(limit)?;
        }
        let mut waited = Duration::ZERO;
        loop {
            match read_retrying(&self.stream, buf) {
                Err(e) if is_timeout(&e) => {
                    waited += self.armed.unwrap_or(limit);
                    let rest = limit.saturating_sub(waited);
                    if rest <= TIMEOUT_SLACK {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    self.arm(rest)?;
                }
                other => return other,
            }
        }
    }

    fn arm(&mut self, timeout: Duration) -> io::Result<()> {
        self.stream.set_read_timeout(Some(timeout))?;
        self.armed = Some(timeout);
        Ok(())
    }
}

/// What [`drain_pending`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// This many bytes were read (at most the limit); the client may still
    /// be sending.
    Bytes(usize),
    /// The client's end of stream, or an error: nothing more will come.
    Closed,
}

/// Reads off, without waiting, what the client has already sent, up to
/// `limit` bytes, so that closing the socket does not turn into a reset that
/// destroys our replies in flight. Bounded, so a client that keeps sending
/// cannot keep the caller here.
pub fn drain_pending(stream: &TcpStream, limit: usize) -> Drained {
    // Small: a close is rare, and a large frame would cost every worker a
    // resident stack page.
    let mut scratch = [MaybeUninit::<u8>::uninit(); 512];
    let socket = SockRef::from(stream);
    let mut drained = 0;
    while drained < limit {
        let want = scratch.len().min(limit - drained);
        match socket.recv_with_flags(&mut scratch[..want], libc::MSG_DONTWAIT) {
            Ok(0) => return Drained::Closed,
            Ok(n) => drained += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => return Drained::Closed,
        }
    }
    Drained::Bytes(drained)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        (client, server)
    }

    #[test]
    fn drain_reads_what_is_waiting_and_stops_at_its_limit() {
        let (mut client, server) = pair();
        assert_eq!(drain_pending(&server, 1000), Drained::Bytes(0));
        client.write_all(&[b'x'; 3000]).expect("write");
        // Wait until all 3000 bytes are waiting, without reading them.
        let mut all = [MaybeUninit::<u8>::uninit(); 3000];
        let waiting = SockRef::from(&server)
            .recv_with_flags(&mut all, libc::MSG_PEEK | libc::MSG_WAITALL)
            .expect("peek");
        assert_eq!(waiting, 3000);
        assert_eq!(drain_pending(&server, 1000), Drained::Bytes(1000));
        assert_eq!(drain_pending(&server, 5000), Drained::Bytes(2000));
    }

    #[test]
    fn drain_reports_the_end_of_stream() {
        let (client, server) = pair();
        client.shutdown(Shutdown::Write).expect("shutdown");
        // A blocking peek returns 0 once the end of stream has arrived.
        assert_eq!(server.peek(&mut [0u8; 1]).expect("peek"), 0);
        assert_eq!(drain_pending(&server, LINGER_BYTES), Drained::Closed);
    }
}
