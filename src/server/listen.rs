//! Listening sockets: the main one with our backlog (accepted from without
//! blocking), the side ports, and how a stop wakes a thread blocked in
//! `accept()` on one of those.

use std::io;
use std::net::{Shutdown as Direction, SocketAddr, TcpListener, TcpStream};

use socket2::{Domain, Socket, Type};

use crate::config::Config;
use crate::shutdown::Shutdown;

/// Whether accepted sockets inherit `TCP_NODELAY` from the listener, as
/// Linux's do: setting it once on the listener saves a system call per
/// connection.
pub(super) const ACCEPTED_INHERIT_OPTIONS: bool = cfg!(target_os = "linux");

/// Opens a listening socket with our backlog; std's `TcpListener::bind`
/// always asks for 128.
pub(super) fn listen(addr: SocketAddr, config: &Config) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    // Lets a restarted server bind while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    if ACCEPTED_INHERIT_OPTIONS {
        socket.set_tcp_nodelay(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(config.backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// Binds a side port (the agent, the metrics), if one is configured.
pub(super) fn bind_side(addr: Option<SocketAddr>, what: &str) -> io::Result<Option<TcpListener>> {
    addr.map(|addr| TcpListener::bind(addr).map_err(|e| context(e, &format!("{what} {addr}"))))
        .transpose()
}

/// Makes the stop end a side port's wait in `accept()`.
pub(super) fn stopped_with(listener: &TcpListener, shutdown: &Shutdown) -> io::Result<()> {
    let waker = Socket::from(listener.try_clone()?);
    shutdown.on_trigger(move || {
        let _ = waker.shutdown(Direction::Read);
    });
    Ok(())
}

/// Accepts one connection, already non-blocking (Linux's `accept4` with
/// `SOCK_NONBLOCK`: no separate system call to switch it).
pub(super) fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    #[cfg(target_os = "linux")]
    {
        let (socket, peer) =
            socket2::SockRef::from(listener).accept4(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)?;
        let peer = peer
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP peer"))?;
        Ok((socket.into(), peer))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let (stream, peer) = listener.accept()?;
        stream.set_nonblocking(true)?;
        Ok((stream, peer))
    }
}

/// Adds what could not be done to an error.
pub(super) fn context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}
