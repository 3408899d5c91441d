//! The TLS half of a connection's transport: the session kept in the
//! outbox, the handshake driven as far as it goes, `close_notify`, and what
//! the handshake learnt of the client's certificate; and the socket read
//! past any TLS, for the PROXY header.

use super::Conn;
use crate::socket::Stream;
use crate::tls::{self, Failure};
use std::io::{self, Read};

impl Conn {
    /// Speaks TLS on the connection, in `session`.
    pub(crate) fn with_tls(mut self, session: tls::Session) -> Self {
        self.outbox.get_mut().tls = Some(Box::new(session));
        self.tls = true;
        self
    }

    /// Whether the connection speaks TLS.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls
    }

    /// Drives the TLS handshake as far as it goes now: `Ok(true)` once it
    /// is done (at once without TLS), `Ok(false)` while it waits for the
    /// client. What the handshake has to send is written, and replies held
    /// back until it ended go out.
    pub(crate) fn handshake(&self) -> Result<bool, (Failure, String)> {
        let mut outbox = self.outbox.lock();
        let Some(session) = outbox.tls.as_mut() else {
            return Ok(true);
        };
        let result = session.handshake(&self.stream);
        if let Err((failure, _)) = &result
            && (*failure == Failure::PlaintextOnTlsPort || session.plaintext_client())
        {
            // A plaintext client would read the alert as noise.
            outbox.tls = None;
        }
        let written = self.write_outbox(&mut outbox);
        let _ = self.after_write(&mut outbox, written);
        result
    }

    /// Gives the TLS session what came before it (the bytes after a PROXY
    /// protocol header).
    pub(crate) fn preload_tls(&self, bytes: &[u8]) -> io::Result<()> {
        match self.outbox.lock().tls.as_mut() {
            Some(session) => session.preload(bytes),
            None => Ok(()),
        }
    }

    /// The names of the client's verified certificate, and the TLS
    /// version, on a TLS connection.
    pub(crate) fn tls_peer(&self) -> Option<(Vec<String>, &'static str)> {
        let outbox = self.outbox.lock();
        let session = outbox.tls.as_ref()?;
        Some((session.peer_names(), session.version()))
    }

    /// Sends TLS's `close_notify` (once) after the replies, as an orderly
    /// close does; returns how many bytes still wait. Nothing without TLS.
    pub(crate) fn close_notify(&self) -> io::Result<usize> {
        let mut outbox = self.outbox.lock();
        if outbox.queued() > 0 || outbox.kicked {
            // A delivery came after the last flush: it goes first, and
            // close_notify only once it is all taken.
            let result = self.write_outbox(&mut outbox);
            if result.is_err() || outbox.queued() > 0 || outbox.kicked {
                return self.after_write(&mut outbox, result);
            }
        }
        let result = match outbox.tls.as_mut() {
            Some(session) => session.close_notify(&self.stream).map(|progressed| {
                if progressed {
                    self.activity.write_progress();
                }
            }),
            None => Ok(()),
        };
        self.after_write(&mut outbox, result)
    }
}

impl Conn {
    /// Reads the socket itself, past any TLS: the PROXY protocol header
    /// comes before the ClientHello.
    pub(crate) fn raw(&self) -> RawRead<'_> {
        RawRead(&self.stream)
    }
}

/// The socket's bytes as they come (see [`Conn::raw`]).
pub(crate) struct RawRead<'a>(&'a Stream);

impl Read for RawRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}
