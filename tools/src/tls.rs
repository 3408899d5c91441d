//! The TLS side of the project's own clients (`linepool client --tls`,
//! `linepool load --tls`): a client configuration that verifies the server
//! against a given CA or the system's roots, with a client certificate if
//! asked, and a non-blocking stream that is plain or TLS for the load
//! tool's event loop.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// What a client needs to start TLS connections to one server.
#[derive(Clone, Debug)]
pub struct Connector {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

/// The files and the name a TLS client is given.
#[derive(Clone, Debug, Default)]
pub struct ClientFiles {
    /// CA certificates (PEM) the server's certificate must chain to;
    /// `None`: the system's roots.
    pub ca: Option<PathBuf>,
    /// A client certificate chain and its key (PEM).
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl Connector {
    /// A connector for the server called `name` (checked against its
    /// certificate). The error is one line naming the file.
    pub fn new(files: &ClientFiles, name: &str) -> Result<Connector, String> {
        let mut roots = RootCertStore::empty();
        match &files.ca {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("cannot read --tls-ca {}: {e}", path.display()))?;
                for cert in certs {
                    let cert = cert.map_err(|e| format!("--tls-ca {}: {e}", path.display()))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("--tls-ca {}: {e}", path.display()))?;
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    // A system root rustls cannot use is skipped, as
                    // browsers skip them.
                    let _ = roots.add(cert);
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .with_root_certificates(roots);
        let mut config = match &files.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("cannot read --tls-cert {}: {e}", cert.display()))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("cannot read --tls-key {}: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("--tls-key does not go with --tls-cert: {e}"))?
            }
        };
        // No session resumption: with `load --connect-per-request` every
        // connection is a full handshake, which is what it measures.
        config.resumption = rustls::client::Resumption::disabled();
        let name = ServerName::try_from(name.to_string())
            .map_err(|_| format!("'{name}' is not a server name for TLS"))?;
        Ok(Connector {
            config: Arc::new(config),
            name,
        })
    }

    /// A fresh client session.
    pub fn session(&self) -> io::Result<ClientConnection> {
        ClientConnection::new(self.config.clone(), self.name.clone()).map_err(io::Error::other)
    }
}

/// A non-blocking connection, plain or TLS, for an event loop. Reads and
/// writes never wait; a read returns short only when the socket had nothing
/// more, as a plain socket's does, so edge-triggered readiness is never
/// lost. `flush` writes what TLS still holds, on the next writable event.
pub enum Stream {
    /// The socket itself.
    Plain(TcpStream),
    /// TLS over the socket, and whether the last socket read emptied it.
    Tls(Box<ClientConnection>, TcpStream, bool),
}

impl Stream {
    /// Starts connecting to `addr`, with TLS if `tls` is given.
    pub fn connect(addr: SocketAddr, tls: Option<&Connector>) -> io::Result<Stream> {
        let socket = TcpStream::connect(addr)?;
        Ok(match tls {
            None => Stream::Plain(socket),
            Some(connector) => Stream::Tls(Box::new(connector.session()?), socket, false),
        })
    }
}

impl Deref for Stream {
    type Target = TcpStream;

    /// The socket, for its options and errors.
    fn deref(&self) -> &TcpStream {
        match self {
            Stream::Plain(socket) | Stream::Tls(_, socket, _) => socket,
        }
    }
}

/// Writes what `tls` has to send until it has nothing more or the socket
/// is full.
fn send_tls(tls: &mut ClientConnection, socket: &mut TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(socket) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `send_tls`, where a full socket is not an error.
fn send_what_fits(tls: &mut ClientConnection, socket: &mut TcpStream) -> io::Result<()> {
    match send_tls(tls, socket) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        other => other,
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (tls, socket, drained) = match self {
            Stream::Plain(socket) => return socket.read(buf),
            Stream::Tls(tls, socket, drained) => (tls, socket, drained),
        };
        let mut n = 0;
        while n < buf.len() {
            match tls.reader().read(&mut buf[n..]) {
                Ok(0) => return Ok(n),
                Ok(k) => {
                    n += k;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The server's end of stream without close_notify.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(n),
                Err(e) => return Err(e),
            }
            // A short socket read emptied the socket: the read that would
            // only say "not yet" is skipped.
            if n > 0 && *drained {
                return Ok(n);
            }
            let mut source = Drains { socket, drained };
            match tls.read_tls(&mut source) {
                Ok(0) => return Ok(n),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && n > 0 => return Ok(n),
                Err(e) => return Err(e),
            }
            tls.process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            // The handshake's next flight, as far as it goes now.
            send_what_fits(tls, socket)?;
        }
        Ok(n)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (tls, socket) = match self {
            Stream::Plain(socket) => return socket.write(buf),
            Stream::Tls(tls, socket, _) => (tls, socket),
        };
        // What was encrypted before goes first; while it cannot, nothing
        // more is taken, so TLS holds one batch at most.
        send_tls(tls, socket)?;
        let taken = tls.writer().write(buf)?;
        if taken == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        send_what_fits(tls, socket)?;
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(_) => Ok(()),
            Stream::Tls(tls, socket, _) => send_tls(tls, socket),
        }
    }
}

/// The socket, remembering whether the last read emptied it.
struct Drains<'a> {
    socket: &'a mut TcpStream,
    drained: &'a mut bool,
}

impl Read for Drains<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.socket.read(buf)?;
        *self.drained = n < buf.len();
        Ok(n)
    }
}

impl Stream {
    fn socket_mut(&mut self) -> &mut TcpStream {
        match self {
            Stream::Plain(socket) | Stream::Tls(_, socket, _) => socket,
        }
    }
}

/// Registered with the poller as its socket.
impl Source for Stream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.socket_mut().register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.socket_mut().reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.socket_mut().deregister(registry)
    }
}
