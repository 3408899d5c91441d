//! The close that loses no reply: the session is told, the last replies
//! go out, then TLS's `close_notify` on a TLS connection, then our end of
//! stream, then what the client still sends is read off (bounded), so that
//! closing does not turn into a reset that destroys replies in flight.

use super::end::End;
use super::{ClientHandler, Phase, Turn};
use crate::activity::Idle;
use crate::conn::{Drained, LINGER_BYTES, drain_pending};

impl ClientHandler {
    /// The connection has ended: tells the session, logs why, and starts
    /// closing. Replies go out first unless the client is gone or idle.
    pub(super) fn finish(&mut self, end: End, out: &mut Vec<u8>) -> Turn {
        if let Some(mut session) = self.session.take() {
            session.end();
        }
        self.log_end(&end);
        match end {
            // A failed handshake's alert went out with it, if any.
            End::Io(_) | End::Tls(..) => {
                out.clear();
                self.report();
                self.done()
            }
            End::Idle(idle) => {
                out.clear();
                self.report();
                if idle == Idle::Read {
                    let mut line = Vec::new();
                    self.protocol.framing().say(b"ERR idle timeout", &mut line);
                    self.conn.try_say(&line);
                }
                let _ = self.conn.shutdown_write();
                drain_pending(self.conn.stream(), LINGER_BYTES);
                self.done()
            }
            _ => {
                let sent = self.conn.send(out);
                self.report();
                if sent.is_err() {
                    return self.done();
                }
                self.phase = Phase::Flushing;
                self.flush_and_close()
            }
        }
    }

    /// Sends the last replies, then our end of stream, then reads off what
    /// the client still sends.
    pub(super) fn flush_and_close(&mut self) -> Turn {
        // The watchdog gave up on a client that never read its replies.
        if self.conn.activity.timed_out().is_some() {
            return self.done();
        }
        match self.conn.flush() {
            Ok(0) => {}
            Ok(_) => return Turn::Park,
            Err(_) => return self.done(),
        }
        // On TLS, the orderly end says so, after the replies.
        if self.conn.is_tls() {
            match self.conn.close_notify() {
                Ok(0) => {}
                Ok(_) => return Turn::Park,
                Err(_) => return self.done(),
            }
        }
        // When the poller saw the client's end of stream, what it sent
        // before it is read off now, without waiting.
        if !self.input_ended
            && self.conn.read_closed()
            && drain_pending(self.conn.stream(), LINGER_BYTES) == Drained::Closed
        {
            self.input_ended = true;
        }
        // With the client's end of stream read, nothing is left unread and
        // nothing more can come: closing the socket sends our end of stream
        // after the replies, without a reset, so a separate shutdown and a
        // linger would be system calls for nothing.
        if self.input_ended {
            return self.done();
        }
        if self.conn.shutdown_write().is_err() {
            return self.done();
        }
        self.linger(0)
    }

    /// Reads off what the client still sends, at most [`LINGER_BYTES`] a
    /// turn (`drained` so far). A client with nothing waiting at the first
    /// look is closed at once (an idle client costs a stop nothing); one
    /// that was still sending is read off until it ends its stream or the
    /// watchdog's linger ends (about a second), not at the first moment its
    /// bytes pause: closing while it still sends would reset it and destroy
    /// the replies it is still reading. A client closed for an error or its
    /// own `shutdown` is read off for [`LINGER_BYTES`] in all; at a stop,
    /// where the client is owed its replies whatever it sends, only the
    /// time bounds it.
    pub(super) fn linger(&mut self, drained: usize) -> Turn {
        if self.conn.activity.timed_out().is_some() {
            return self.done();
        }
        let stopping = self.shutdown.is_triggered();
        let sending = matches!(self.phase, Phase::Lingering(_));
        let room = if stopping {
            LINGER_BYTES
        } else {
            LINGER_BYTES.saturating_sub(drained)
        };
        match drain_pending(self.conn.stream(), room) {
            Drained::Closed => self.done(),
            Drained::Bytes(0) if !sending => self.done(),
            Drained::Bytes(n) if !stopping && drained + n >= LINGER_BYTES => self.done(),
            Drained::Bytes(n) => {
                self.phase = Phase::Lingering(drained.saturating_add(n));
                self.conn.activity.set_lingering();
                // A drain that stopped at its limit left bytes unread, and
                // no event says so: the next turn reads on.
                if n == room { Turn::Yield } else { Turn::Park }
            }
        }
    }

    /// The connection is closed: the socket closes when the connection is
    /// dropped, and the address slot is given back before that.
    pub(super) fn done(&mut self) -> Turn {
        self.conn.release_address_slot();
        self.phase = Phase::Done;
        Turn::Done
    }
}
