//! What a client socket is: a TCP or a Unix domain stream, and who is at
//! the other end ([`Peer`]: an address, or a local user). The rest of the
//! server reads, writes and shuts a `Stream` down without asking which
//! kind it is; only the admin rule tells the peers apart.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

/// A connected client socket, cheap to clone (the stop and the watchdog
/// copy it out of the registry to shut it down outside the lock).
#[derive(Clone, Debug)]
pub(crate) enum Stream {
    Tcp(Arc<TcpStream>),
    Unix(Arc<UnixStream>),
}

impl Stream {
    /// Shuts one or both directions down.
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        }
    }

    /// Makes reads and writes return at once.
    pub(crate) fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(on),
            Stream::Unix(s) => s.set_nonblocking(on),
        }
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&**s).read(buf),
            Stream::Unix(s) => (&**s).read(buf),
        }
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&**s).write(buf),
            Stream::Unix(s) => (&**s).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// Who is at the other end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A TCP client: its address (as the socket gives it, or as a PROXY
    /// protocol header names it), IPv4 clients of a dual-stack socket
    /// written as plain IPv4.
    Ip(SocketAddr),
    /// A client of a Unix domain socket: the user id the kernel vouches for
    /// (`SO_PEERCRED`).
    Local {
        /// The client process's user id.
        uid: u32,
    },
}

impl Peer {
    /// The peer of a TCP client at `addr`, normalised.
    pub fn ip(addr: SocketAddr) -> Peer {
        Peer::Ip(normalised(addr))
    }

    /// The client's IP address, for a TCP client.
    pub fn ip_addr(&self) -> Option<IpAddr> {
        match self {
            Peer::Ip(addr) => Some(addr.ip()),
            Peer::Local { .. } => None,
        }
    }
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Peer {
        Peer::ip(addr)
    }
}

/// As logs give it: `127.0.0.1:5123`, `[::1]:5123`, or `uid:1000` for a
/// client of a Unix domain socket.
impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Ip(addr) => addr.fmt(f),
            Peer::Local { uid } => write!(f, "uid:{uid}"),
        }
    }
}

/// An IPv4 client of a dual-stack IPv6 socket (`::ffff:127.0.0.1`) written
/// as the IPv4 address it is, so that logs, `--admin-from` and
/// `--max-per-ip` see one address per client.
pub(crate) fn normalised(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv4_addresses_are_written_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5123".parse().expect("addr");
        assert_eq!(Peer::ip(mapped).to_string(), "127.0.0.1:5123");
        let v6: SocketAddr = "[::1]:5123".parse().expect("addr");
        assert_eq!(Peer::ip(v6).to_string(), "[::1]:5123");
        assert_eq!(Peer::Local { uid: 1000 }.to_string(), "uid:1000");
    }
}
