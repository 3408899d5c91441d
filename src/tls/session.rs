//! The server side of one TLS connection over a non-blocking socket, in
//! the shape of rustls's `tlsserver-mio` example: ciphertext is read from
//! the socket into `rustls` and decrypted, plaintext is taken out in the
//! caller's buffer, and what `rustls` has to send (handshake flights,
//! alerts, encrypted replies, `close_notify`) is written as far as the
//! socket takes it now. Nothing waits; a step that wants more bytes says
//! `WouldBlock` and the connection parks in the poller.
//!
//! Every buffer stays bounded: ciphertext is read only once the
//! plaintext already decrypted has been taken, and reply plaintext is
//! handed to `rustls` only once what it encrypted before is on the wire,
//! so `rustls` holds at most one batch beside its own record buffers, and
//! the caller keeps whatever it did not take (`Writer::write` says how
//! much it took; nothing is dropped).

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::{ServerConfig, ServerConnection};

use super::certs;
use super::failure::Failure;
use crate::socket::Stream;

/// The first byte of a TLS handshake record.
const HANDSHAKE_RECORD: u8 = 0x16;

/// One connection's TLS state.
pub(crate) struct Session {
    tls: ServerConnection,
    /// Reply plaintext handed to `rustls` whose ciphertext may not all be
    /// on the wire yet.
    in_flight: usize,
    /// The first byte the client sent, to tell a plaintext client.
    first_byte: Option<u8>,
    close_notify: bool,
    /// The client's stream ended (close_notify or FIN) behind plaintext
    /// not yet taken: the next read says so.
    ended: bool,
}

/// What one write through TLS did.
pub(crate) struct Written {
    /// Plaintext bytes taken from the caller.
    pub(crate) taken: usize,
    /// Some ciphertext went out on the socket.
    pub(crate) progressed: bool,
}

impl Session {
    /// A fresh session under `config`.
    pub(crate) fn new(config: Arc<ServerConfig>) -> Result<Session, rustls::Error> {
        Ok(Session {
            tls: ServerConnection::new(config)?,
            in_flight: 0,
            first_byte: None,
            close_notify: false,
            ended: false,
        })
    }

    /// Bytes that still wait to go out: reply plaintext not yet known to
    /// be on the wire, at least 1 while `rustls` has anything to send.
    pub(crate) fn waiting(&self) -> usize {
        if self.tls.wants_write() {
            self.in_flight.max(1)
        } else {
            0
        }
    }

    /// Feeds bytes that came before the session started (what followed a
    /// PROXY protocol header) to `rustls`, as if read from the socket.
    pub(crate) fn preload(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        if let Some(&first) = bytes.first() {
            self.first_byte.get_or_insert(first);
        }
        while !bytes.is_empty() {
            if self.tls.read_tls(&mut bytes)? == 0 {
                break;
            }
        }
        Ok(())
    }

    /// Drives the handshake as far as it goes now. `Ok(true)`: done;
    /// `Ok(false)`: it waits for the client.
    pub(crate) fn handshake(&mut self, stream: &Stream) -> Result<bool, (Failure, String)> {
        let io_failure = |e: io::Error| (Failure::IoError, e.to_string());
        // What came with a PROXY header may hold the whole ClientHello.
        self.process()?;
        while self.tls.is_handshaking() {
            self.flush(stream).map_err(io_failure)?;
            match self.read_tls(stream, &mut false) {
                Ok(0) => {
                    return Err((Failure::ClosedDuringHandshake, "end of stream".to_string()));
                }
                Ok(_) => self.process()?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_failure(e)),
            }
        }
        self.flush(stream).map_err(io_failure)?;
        Ok(true)
    }

    /// Decrypts what `rustls` has read; a client whose first byte was not
    /// a handshake record is a plaintext client.
    fn process(&mut self) -> Result<(), (Failure, String)> {
        match self.tls.process_new_packets() {
            Ok(_) => Ok(()),
            Err(e) => {
                let failure = match self.first_byte {
                    Some(b) if b != HANDSHAKE_RECORD => Failure::PlaintextOnTlsPort,
                    _ => Failure::of(&e),
                };
                Err((failure, e.to_string()))
            }
        }
    }

    /// Whether the client turned out to speak plaintext: the alert
    /// `rustls` queued would be noise to it.
    pub(crate) fn plaintext_client(&self) -> bool {
        self.first_byte.is_some_and(|b| b != HANDSHAKE_RECORD)
    }

    /// Reads plaintext into `buf`. Returns short only when the socket has
    /// nothing more now (or its stream ended), so a short read still means
    /// "everything was read" to the caller; `Ok(0)` is the client's end,
    /// with `close_notify` or a bare FIN alike.
    pub(crate) fn read(&mut self, stream: &Stream, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        // Whether a socket read of this call came up short. Only this
        // call's: by the next, more may have come, and its event may have
        // gone to a turn that read nothing (one that parked, backed up).
        let mut drained = false;
        while n < buf.len() {
            match self.tls.reader().read(&mut buf[n..]) {
                // The client's close_notify.
                Ok(0) => return Ok(self.end_after(n)),
                Ok(k) => {
                    n += k;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // A bare FIN: an ordinary end, not an error.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(self.end_after(n)),
                Err(e) => return Err(e),
            }
            // A short socket read already emptied the socket: the read
            // that would only say "not yet" is skipped, as on a plain
            // connection.
            if n > 0 && drained {
                return Ok(n);
            }
            // Decrypted plaintext is all taken: only now read more, so
            // `rustls`' plaintext buffer never passes its limit.
            match self.read_tls(stream, &mut drained) {
                Ok(0) => return Ok(self.end_after(n)),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && n > 0 => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if let Err((_, text)) = self.process() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, text));
            }
        }
        Ok(n)
    }

    /// The stream ended after `n` bytes of this read: remembered when there
    /// are some, so that the caller, which takes a short read for "nothing
    /// more now", reads once more and sees the end.
    fn end_after(&mut self, n: usize) -> usize {
        self.ended |= n > 0;
        n
    }

    /// Whether the client's stream has ended behind what was read.
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    /// Reads ciphertext off the socket into `rustls`; `drained` is set
    /// when the socket gave less than was asked (it is empty now).
    fn read_tls(&mut self, stream: &Stream, drained: &mut bool) -> io::Result<usize> {
        let mut source = FirstByte {
            stream,
            first: &mut self.first_byte,
            drained,
        };
        self.tls.read_tls(&mut source)
    }

    /// Encrypts as much of `bytes` as can go out now and writes it. Reply
    /// plaintext is held back during the handshake, and until what was
    /// encrypted before is on the wire.
    pub(crate) fn write(&mut self, stream: &Stream, bytes: &[u8]) -> io::Result<Written> {
        let mut written = Written {
            taken: 0,
            progressed: false,
        };
        loop {
            written.progressed |= self.flush(stream)?;
            if self.tls.wants_write() {
                return Ok(written);
            }
            self.in_flight = 0;
            if written.taken == bytes.len() || self.tls.is_handshaking() || self.close_notify {
                return Ok(written);
            }
            // Takes at most the buffer limit; whatever it does not take
            // stays with the caller.
            let taken = self.tls.writer().write(&bytes[written.taken..])?;
            if taken == 0 {
                return Ok(written);
            }
            written.taken += taken;
            self.in_flight += taken;
        }
    }

    /// Whether `close_notify` is queued: no reply plaintext is taken after.
    pub(crate) fn closing(&self) -> bool {
        self.close_notify
    }

    /// Queues `close_notify` (once) and writes what the socket takes.
    pub(crate) fn close_notify(&mut self, stream: &Stream) -> io::Result<bool> {
        if !self.close_notify {
            self.close_notify = true;
            self.tls.send_close_notify();
        }
        self.flush(stream)
    }

    /// Writes what `rustls` has to send until it has nothing more or the
    /// socket is full. Returns whether anything went out.
    fn flush(&mut self, stream: &Stream) -> io::Result<bool> {
        let mut progressed = false;
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut &*stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => progressed = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(progressed)
    }

    /// The names of the client's verified certificate (see
    /// `certs::names`); empty without one.
    pub(crate) fn peer_names(&self) -> Vec<String> {
        self.tls
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(certs::names)
            .unwrap_or_default()
    }

    /// The TLS version agreed, for the log.
    pub(crate) fn version(&self) -> &'static str {
        match self.tls.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "1.2",
            _ => "unknown",
        }
    }
}

/// The socket, remembering the first byte the client ever sent and
/// whether the last read emptied it.
struct FirstByte<'a> {
    stream: &'a Stream,
    first: &'a mut Option<u8>,
    drained: &'a mut bool,
}

impl Read for FirstByte<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (&*self.stream).read(buf)?;
        if n > 0 && self.first.is_none() {
            *self.first = Some(buf[0]);
        }
        *self.drained = n < buf.len();
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
