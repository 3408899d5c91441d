//! TLS as a transport under every protocol (`--tls-cert`, `--tls-key`):
//! the settings, the certificates loaded from their files and swapped
//! whole on a reload, the server side of one TLS connection driven over a
//! non-blocking socket, and why a handshake failed.
//!
//! - `settings`: what the operator chose (paths, client authentication,
//!   the lowest version, the handshake deadline). Plain data.
//! - `certs`: reads and checks the files into a `rustls` configuration,
//!   keeps the current one behind a lock for new connections, and reloads
//!   it on SIGHUP; old connections keep the configuration they started
//!   with, since each holds its own `Arc` of it.
//! - `session`: one connection's `rustls::ServerConnection` and the socket
//!   I/O through it, sans blocking: ciphertext in and out as far as the
//!   socket goes now, plaintext in bounded steps.
//! - `failure`: the snake_case reasons a handshake fails for, as logs and
//!   `linepool_tls_handshake_failures_total{reason}` give them.
//!
//! Nothing here knows connections, protocols or the engine: `conn` keeps a
//! `Session` beside its outbox, and the handler drives the handshake.

mod certs;
mod failure;
mod session;
mod settings;
#[cfg(test)]
pub(crate) mod testing;

pub use self::certs::{Certs, check};
pub(crate) use self::failure::Failure;
pub(crate) use self::session::Session;
pub use self::settings::{ClientAuth, Settings, TlsVersion};
pub(crate) use self::settings::{DEFAULT_HANDSHAKE_TIMEOUT, ListeningFields};

/// Whether the first bytes of a connection are a TLS handshake record:
/// content type 22 (handshake), then a record version 3.0 to 3.4 (every
/// TLS ClientHello starts `16 03 0X`). `None` while fewer than three bytes
/// have come and they could still be one. On a plaintext port this tells a
/// client that meant to speak TLS from one that sent garbage.
pub(crate) fn handshake_record(first: &[u8]) -> Option<bool> {
    match first {
        [0x16, 0x03, version, ..] => Some(*version <= 0x04),
        [] | [0x16] | [0x16, 0x03] => None,
        _ => Some(false),
    }
}

/// The crypto provider: `ring`, which builds with the C compiler alone.
pub(crate) fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests {
    use super::handshake_record;

    #[test]
    fn a_client_hello_is_told_from_lines_and_frames() {
        assert_eq!(handshake_record(b"\x16\x03\x01\x02\x00\x01"), Some(true));
        assert_eq!(handshake_record(b"\x16\x03\x03"), Some(true));
        assert_eq!(handshake_record(b"\x16\x03\x05"), Some(false));
        assert_eq!(handshake_record(b"hello\n"), Some(false));
        assert_eq!(handshake_record(b"\x16\n"), Some(false));
        assert_eq!(handshake_record(b"\x00\x00\x00\x05"), Some(false));
        for undecided in [&b""[..], b"\x16", b"\x16\x03"] {
            assert_eq!(handshake_record(undecided), None, "{undecided:?}");
        }
    }
}
