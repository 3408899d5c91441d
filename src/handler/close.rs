//! The close that loses no reply: the session is told, the last replies
//! go out, then TLS's `close_notify` on a TLS connection, then our end of
//! stream, then what the client still sends is read off (bounded), so that
//! closing does not turn into a reset that destroys replies in flight.

use std::mem;

use super::end::End;
use super::{Driver, Phase, Turn};
use crate::activity::Idle;
use crate::conn::{Conn, Drained, LINGER_BYTES, drain_pending};

impl Driver {
    /// The connection has ended: tells the session, logs why, and starts
    /// closing. Replies go out first unless the client is gone or idle.
    pub(super) fn finish(&mut self, conn: &Conn, end: End, out: &mut Vec<u8>) -> Turn {
        // Whatever phase it was in is over: an open session is told.
        let input_ended = match mem::replace(&mut self.phase, Phase::Done) {
            Phase::Open(mut open) => {
                open.session.end();
                open.input_ended
            }
            _ => false,
        };
        self.log_end(&end);
        match end {
            // A failed handshake's alert went out with it, if any.
            End::Io(_) | End::Tls(..) => {
                out.clear();
                self.tally.report(&self.policy.stats);
                self.done(conn)
            }
            End::Idle(idle) => {
                out.clear();
                self.tally.report(&self.policy.stats);
                if idle == Idle::Read {
                    let mut line = Vec::new();
                    self.policy
                        .protocol
                        .framing()
                        .say(b"ERR idle timeout", &mut line);
                    conn.try_say(&line);
                }
                let _ = conn.shutdown_write();
                drain_pending(conn.stream(), LINGER_BYTES);
                self.done(conn)
            }
            _ => {
                let sent = conn.send(out);
                self.tally.report(&self.policy.stats);
                if sent.is_err() {
                    return self.done(conn);
                }
                self.phase = Phase::Flushing { input_ended };
                self.flush_and_close(conn, input_ended)
            }
        }
    }

    /// Sends the last replies, then our end of stream, then reads off what
    /// the client still sends. `input_ended`: a read returned the client's
    /// end of stream.
    pub(super) fn flush_and_close(&mut self, conn: &Conn, mut input_ended: bool) -> Turn {
        // The watchdog gave up on a client that never read its replies.
        if conn.activity.timed_out().is_some() {
            return self.done(conn);
        }
        match conn.flush() {
            Ok(0) => {}
            Ok(_) => return Turn::Park,
            Err(_) => return self.done(conn),
        }
        // On TLS, the orderly end says so, after the replies.
        if conn.is_tls() {
            match conn.close_notify() {
                Ok(0) => {}
                Ok(_) => return Turn::Park,
                Err(_) => return self.done(conn),
            }
        }
        // When the poller saw the client's end of stream, what it sent
        // before it is read off now, without waiting.
        if !input_ended
            && conn.read_closed()
            && drain_pending(conn.stream(), LINGER_BYTES) == Drained::Closed
        {
            input_ended = true;
        }
        // With the client's end of stream read, nothing is left unread and
        // nothing more can come: closing the socket sends our end of stream
        // after the replies, without a reset, so a separate shutdown and a
        // linger would be system calls for nothing.
        if input_ended {
            return self.done(conn);
        }
        if conn.shutdown_write().is_err() {
            return self.done(conn);
        }
        self.linger(conn, 0)
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
    pub(super) fn linger(&mut self, conn: &Conn, drained: usize) -> Turn {
        if conn.activity.timed_out().is_some() {
            return self.done(conn);
        }
        let stopping = self.policy.shutdown.is_triggered();
        let sending = matches!(self.phase, Phase::Lingering(_));
        let room = if stopping {
            LINGER_BYTES
        } else {
            LINGER_BYTES.saturating_sub(drained)
        };
        match drain_pending(conn.stream(), room) {
            Drained::Closed => self.done(conn),
            Drained::Bytes(0) if !sending => self.done(conn),
            Drained::Bytes(n) if !stopping && drained + n >= LINGER_BYTES => self.done(conn),
            Drained::Bytes(n) => {
                self.phase = Phase::Lingering(drained.saturating_add(n));
                conn.activity.set_lingering();
                // A drain that stopped at its limit left bytes unread, and
                // no event says so: the next turn reads on.
                if n == room { Turn::Yield } else { Turn::Park }
            }
        }
    }

    /// The connection is closed: the socket closes when the connection is
    /// dropped, and the address slot is given back before that.
    pub(super) fn done(&mut self, conn: &Conn) -> Turn {
        conn.release_address_slot();
        self.phase = Phase::Done;
        Turn::Done
    }
}
