//! Why a connection ended, and how that is counted and logged: a debug
//! line for an ordinary close, a rate-limited warning naming the peer for
//! a client error.

use std::io;

use log::{debug, warn};

use super::Driver;
use crate::activity::{HEADER_DEADLINE, Idle};
use crate::logfmt;
use crate::stats::{ClientError, IdleClose};
use crate::tls::Failure;

/// Why a connection ended.
#[derive(Debug)]
pub(super) enum End {
    /// The client closed its side.
    ClientLeft,
    /// The client asked to be closed (`shutdown`).
    Closed,
    /// The client stopped the server (the cause is logged where the stop
    /// is decided, before it starts).
    StopServer,
    /// The server is stopping.
    Stopping,
    /// An operator closed it (the admin console's `kill`).
    Killed,
    TooLong,
    InvalidUtf8,
    /// The input ended inside a length-prefixed message.
    Truncated,
    /// A TLS handshake came first on a plaintext port.
    TlsOnPlaintext,
    Idle(Idle),
    /// No valid PROXY protocol header, and why.
    BadHeader(&'static str),
    /// The address the PROXY header names has `--max-per-ip` open.
    TooManyFromAddress,
    /// The TLS handshake failed, and how.
    Tls(Failure, String),
    Io(io::Error),
}

impl End {
    /// The reason as logs give it.
    pub(super) fn reason(&self) -> &'static str {
        match self {
            End::ClientLeft => "client_left",
            End::Closed => "closed",
            End::StopServer => "stop_server",
            End::Stopping => "server_stopping",
            End::Killed => "killed",
            End::TooLong => "too_long",
            End::InvalidUtf8 => "invalid_utf8",
            End::Truncated => "truncated",
            End::TlsOnPlaintext => "tls_on_plaintext",
            End::Idle(Idle::Read) => "idle_read",
            End::Idle(Idle::Write) => "idle_write",
            End::Idle(Idle::Linger) => "linger",
            End::Idle(Idle::Header) => "no_proxy_header",
            End::Idle(Idle::Handshake) => Failure::HandshakeTimeout.name(),
            End::Tls(failure, _) => failure.name(),
            End::BadHeader(_) => "bad_proxy_header",
            End::TooManyFromAddress => "too_many_from_address",
            End::Io(_) => "io_error",
        }
    }
}

impl Driver {
    /// Counts the end and logs it.
    pub(super) fn log_end(&self, end: &End) {
        match end {
            End::TooLong => self.policy.stats.client_error(ClientError::TooLong),
            End::InvalidUtf8 => self.policy.stats.client_error(ClientError::InvalidUtf8),
            End::Truncated => self.policy.stats.client_error(ClientError::Truncated),
            End::TlsOnPlaintext => self.policy.stats.client_error(ClientError::TlsOnPlaintext),
            End::Io(_) => self.policy.stats.client_error(ClientError::Io),
            End::Idle(Idle::Read) => self.policy.stats.idle_close(IdleClose::Read),
            End::Idle(Idle::Write) => self.policy.stats.idle_close(IdleClose::Write),
            End::Idle(Idle::Handshake) => self.policy.stats.tls_failure(Failure::HandshakeTimeout),
            End::Tls(failure, _) => self.policy.stats.tls_failure(*failure),
            _ => {}
        }
        let peer = self.client.peer;
        let messages = self.messages();
        // Every close has its line at debug, whatever ended it.
        debug!(
            "client closed peer={peer}{} messages={messages} reason={}{}",
            logfmt::Field("cert", self.client.cert.as_deref()),
            end.reason(),
            logfmt::Field("listener", self.client.listener.as_deref())
        );
        if let End::ClientLeft | End::Closed | End::Stopping | End::StopServer | End::Killed = end {
            return;
        }
        // Everything else is a warning about this client: rate-limited.
        let max = self.policy.limits.max_line;
        self.policy.stats.warn_about_client(|| match end {
            End::TooLong => warn!("message too long, closing peer={peer} max={max}"),
            End::InvalidUtf8 => warn!("invalid utf-8 in line, closing peer={peer}"),
            End::Truncated => warn!("connection ended inside a message peer={peer}"),
            End::TlsOnPlaintext => warn!("tls handshake on a plaintext port, closing peer={peer}"),
            End::Idle(Idle::Read) => warn!("idle timeout, closing peer={peer}"),
            End::Idle(Idle::Header) => warn!(
                "no PROXY protocol header within {} s, closing peer={peer}",
                HEADER_DEADLINE.as_secs()
            ),
            End::BadHeader(why) => warn!(
                "invalid PROXY protocol header, closing peer={peer} reason={}",
                logfmt::Quoted(why)
            ),
            End::Idle(Idle::Handshake) => warn!(
                "tls handshake failed, closing peer={peer} reason={}",
                Failure::HandshakeTimeout.name()
            ),
            End::Tls(failure, detail) => warn!(
                "tls handshake failed, closing peer={peer} reason={} error={}",
                failure.name(),
                logfmt::Quoted(detail)
            ),
            End::Idle(_) => warn!("client not reading replies, closing peer={peer}"),
            End::Io(e) => warn!("connection error peer={peer} error={}", logfmt::error(e)),
            End::TooManyFromAddress => {
                warn!("too many connections from one address, rejecting peer={peer}")
            }
            End::ClientLeft | End::Closed | End::Stopping | End::StopServer | End::Killed => {}
        });
    }
}
