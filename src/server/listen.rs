//! Listening sockets: the ones clients connect to ([`Listener`]: TCP, on
//! IPv4 or IPv6, and Unix domain sockets), each with our backlog and
//! accepted from without blocking; the side ports; and how a stop wakes a
//! thread blocked in `accept()` on one of those.

use std::fs;
use std::io;
use std::net::{Shutdown as Direction, SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::config::Config;
use crate::shutdown::Shutdown;
use crate::socket::{Peer, Stream, normalised};

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
    // `[::]:P` takes only IPv6 clients, so that `0.0.0.0:P` can be bound
    // beside it, as the operator asked for both.
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
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

/// Adds what could not be done to an error.
pub(super) fn context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// What a listener accepts on.
#[derive(Debug)]
enum Kind {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// A listening socket clients connect to, with the name logs and metrics
/// give it.
#[derive(Debug)]
pub struct Listener {
    socket: Kind,
    /// `127.0.0.1:8000`, `[::]:8000`, `unix:/run/linepool.sock`.
    addr: String,
    /// The name in logs and metrics: the address unless named otherwise
    /// (socket activation's `LISTEN_FDNAMES`).
    name: Arc<str>,
    /// The socket file we bound, removed when the server closes it.
    bound_path: Option<PathBuf>,
}

impl Listener {
    /// A TCP listener, named by its address.
    pub fn tcp(listener: TcpListener) -> io::Result<Listener> {
        let addr = normalised(listener.local_addr()?).to_string();
        Ok(Listener::new(Kind::Tcp(listener), addr))
    }

    /// A Unix domain socket listener, named `unix:PATH`. Its clients' user
    /// ids decide whether they may stop the server.
    pub fn unix(listener: UnixListener) -> io::Result<Listener> {
        let local = listener.local_addr()?;
        let addr = match local.as_pathname() {
            Some(path) => format!("unix:{}", path.display()),
            None => "unix:".to_string(),
        };
        Ok(Listener::new(Kind::Unix(listener), addr))
    }

    fn new(socket: Kind, addr: String) -> Listener {
        Listener {
            socket,
            name: addr.as_str().into(),
            addr,
            bound_path: None,
        }
    }

    /// Gives the listener another name for logs and metrics.
    pub fn named(mut self, name: &str) -> Listener {
        self.name = name.into();
        self
    }

    /// The name logs and metrics give the listener.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it listens: `127.0.0.1:8000`, `[::]:8000` or `unix:PATH`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The address, for a TCP listener.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.socket {
            Kind::Tcp(l) => l.local_addr().ok(),
            Kind::Unix(_) => None,
        }
    }

    /// Whether clients come over a Unix domain socket.
    pub(super) fn is_unix(&self) -> bool {
        matches!(self.socket, Kind::Unix(_))
    }

    pub(super) fn shared_name(&self) -> Arc<str> {
        self.name.clone()
    }

    /// Makes `accept` return at once; on TCP, has accepted sockets inherit
    /// `TCP_NODELAY` where the system does that.
    pub(super) fn prepare(&self) -> io::Result<()> {
        match &self.socket {
            Kind::Tcp(l) => {
                l.set_nonblocking(true)?;
                if ACCEPTED_INHERIT_OPTIONS {
                    socket2::SockRef::from(l).set_tcp_nodelay(true)?;
                }
            }
            Kind::Unix(l) => l.set_nonblocking(true)?,
        }
        Ok(())
    }

    /// Accepts one connection, already non-blocking (Linux's `accept4` with
    /// `SOCK_NONBLOCK`: no separate system call to switch it). A Unix
    /// client comes with the user id the kernel vouches for.
    pub(super) fn accept(&self) -> io::Result<(Stream, Peer)> {
        match &self.socket {
            Kind::Tcp(l) => {
                let (socket, peer) = accept_nonblocking(l)?;
                let peer = peer
                    .as_socket()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP peer"))?;
                Ok((Stream::Tcp(Arc::new(socket.into())), Peer::ip(peer)))
            }
            Kind::Unix(l) => {
                let (socket, _) = accept_nonblocking(l)?;
                let stream: UnixStream = socket.into();
                // Fails only for a client already gone: skipped like one
                // that aborted, not a reason for the acceptor to back off.
                let uid = getsockopt(&stream, PeerCredentials)
                    .map_err(|e| io::Error::new(io::ErrorKind::ConnectionAborted, e))?
                    .uid();
                Ok((Stream::Unix(Arc::new(stream)), Peer::Local { uid }))
            }
        }
    }
}

/// Closing a listener removes the socket file if we bound it, so that a
/// stop, or a start that fails after binding, leaves no stale file behind
/// (one that systemd passed is systemd's).
impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(path) = &self.bound_path {
            let _ = fs::remove_file(path);
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.socket {
            Kind::Tcp(l) => l.as_fd(),
            Kind::Unix(l) => l.as_fd(),
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// `accept4` with `SOCK_NONBLOCK | SOCK_CLOEXEC` on Linux; elsewhere an
/// accept and a switch to non-blocking mode.
fn accept_nonblocking(listener: &impl AsFd) -> io::Result<(Socket, SockAddr)> {
    let listener = socket2::SockRef::from(listener);
    #[cfg(target_os = "linux")]
    {
        listener.accept4(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let (socket, peer) = listener.accept()?;
        socket.set_nonblocking(true)?;
        Ok((socket, peer))
    }
}

/// Opens a Unix domain socket listener at `path` with our backlog and the
/// file mode `mode`. A socket file left by a server that is gone (nothing
/// answers on it) is replaced; one a live server holds, or a file that is
/// not a socket, is refused (`AlreadyExists`), and left alone.
pub(super) fn listen_unix(path: &Path, mode: u32, backlog: u32) -> io::Result<Listener> {
    let shown = path.display();
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("cannot listen on unix:{shown}: the file exists and is not a socket"),
            ));
        }
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("cannot listen on unix:{shown}: a running server holds it"),
                ));
            }
            // Nobody answers: a crashed run's file.
            Err(_) => fs::remove_file(path).map_err(|e| {
                context(e, &format!("cannot replace the stale socket unix:{shown}"))
            })?,
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(context(e, &format!("cannot listen on unix:{shown}"))),
    }
    let bind = || -> io::Result<UnixListener> {
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        socket.bind(&SockAddr::unix(path)?)?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
        Ok(socket.into())
    };
    let listener = bind().map_err(|e| context(e, &format!("cannot listen on unix:{shown}")))?;
    let mut listener = Listener::unix(listener)?;
    listener.bound_path = Some(path.to_path_buf());
    Ok(listener)
}
