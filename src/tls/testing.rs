//! What the unit tests of TLS connections share: a certificate, the
//! configurations of both sides, a client past its handshake, and a wait
//! for a socket's bytes.

use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use rcgen::{CertificateParams, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, StreamOwned};

/// A server and a client configuration sharing one self-signed
/// certificate for `localhost`.
pub(crate) fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    let cert = params.self_signed(&key).expect("cert").der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let server = ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("server config");
    let mut roots = RootCertStore::empty();
    roots.add(cert).expect("root");
    let client = ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// Waits until the socket has bytes to read, at most ten seconds.
pub(crate) fn readable(socket: &impl AsRawFd) {
    wait_for(socket, |_| true);
}

/// Waits until the peer's end of stream has come, at most ten seconds.
pub(crate) fn read_closed(socket: &impl AsRawFd) {
    wait_for(socket, mio::event::Event::is_read_closed);
}

/// Waits, at most ten seconds, until the poller reports the socket
/// readable in the way `wanted` asks.
fn wait_for(socket: &impl AsRawFd, wanted: fn(&mio::event::Event) -> bool) {
    let mut poll = mio::Poll::new().expect("poll");
    let fd = socket.as_raw_fd();
    poll.registry()
        .register(&mut SourceFd(&fd), mio::Token(0), mio::Interest::READABLE)
        .expect("register");
    let mut events = mio::Events::with_capacity(1);
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        poll.poll(&mut events, Some(left)).expect("poll");
        if events.iter().any(wanted) {
            return;
        }
        assert!(Instant::now() < until, "nothing came to read");
    }
}

/// A client for `localhost` over the blocking `socket`, once its side of
/// the handshake is done (the server's must be driven meanwhile).
pub(crate) fn handshaken_client(
    config: Arc<ClientConfig>,
    socket: TcpStream,
) -> StreamOwned<ClientConnection, TcpStream> {
    let name = ServerName::try_from("localhost").expect("name");
    let tls = ClientConnection::new(config, name).expect("client");
    let mut client = StreamOwned::new(tls, socket);
    while client.conn.is_handshaking() {
        client
            .conn
            .complete_io(&mut client.sock)
            .expect("handshake");
    }
    client
}
