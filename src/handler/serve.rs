//! The open phase: the session's start, then reading and answering until
//! the socket has nothing more, the budget is spent or the replies back
//! up. What it needs (the session, the reader, the rules, what was seen of
//! the input) is its own; what every connection shares comes from the
//! policy its rules hold.

use std::io;
use std::sync::{Arc, Weak};
use std::time::Instant;

use log::debug;

use super::end::End;
use super::rules::Rules;
use super::{Client, MAX_PENDING, Policy, TURN_MESSAGES, TURN_READS, Tally, Turn};
use crate::conn::Conn;
use crate::framing::Reader;
use crate::logfmt::Field;
use crate::protocol::{Link, Port, Session};

/// A connection whose session is open.
pub(super) struct Open {
    pub(super) session: Box<dyn Session>,
    reader: Reader,
    /// What the core does with a message and the session's answers.
    rules: Rules,
    /// The first bytes were looked at for a TLS handshake (never on a TLS
    /// port, where one belongs).
    first_bytes_seen: bool,
    /// A read returned the client's end of stream: nothing more can come.
    pub(super) input_ended: bool,
}

impl Open {
    /// Opens the session, with what followed a PROXY header (`preload`)
    /// ahead of what the socket brings; `cert_ok` says whether the
    /// client's certificate passes `--admin-cert`. The greeting is the
    /// first reply; the result says whether the session's first answer
    /// ends the connection.
    pub(super) fn start(
        conn: &Arc<Conn>,
        policy: &Arc<Policy>,
        client: &Client,
        preload: Vec<u8>,
        cert_ok: bool,
        out: &mut Vec<u8>,
    ) -> (Open, Result<(), End>) {
        let mut reader = Reader::new(policy.protocol.framing(), policy.limits.max_line);
        if !preload.is_empty() {
            reader.preload(&preload);
        }
        let admin = policy.admin(client.peer, cert_ok);
        debug!(
            "client connected peer={}{}{}",
            client.peer,
            Field("cert", client.cert.as_deref()),
            Field("listener", client.listener.as_deref())
        );
        let port: Weak<dyn Port> = Arc::downgrade(conn) as Weak<dyn Port>;
        let mut session = policy
            .protocol
            .open(Link::new(port, client.peer, admin.allowed));
        let action = session.start(out);
        let rules = Rules::new(policy.clone(), admin, reader.framing(), client);
        // A greeting is not a message answered.
        let mut greetings = 0;
        let greeted = rules.act(action, &mut greetings, out);
        let open = Open {
            session,
            reader,
            rules,
            first_bytes_seen: false,
            input_ended: false,
        };
        (open, greeted)
    }

    /// Answers, writes and reads until the socket has nothing more, the
    /// turn's budget is spent, or the replies back up.
    pub(super) fn serve(
        &mut self,
        conn: &Conn,
        tally: &mut Tally,
        out: &mut Vec<u8>,
    ) -> Result<Turn, End> {
        if let Some(idle) = conn.activity.timed_out() {
            return Err(End::Idle(idle));
        }
        if self.stopping() {
            return Err(self.answer_all(conn, tally, out));
        }
        let mut budget = TURN_MESSAGES;
        let mut reads = TURN_READS;
        // A short read took everything there was: the poller reports what
        // comes next, so the read that would only say "nothing yet" is
        // skipped. Not when the stream has ended, as the end of stream may
        // have come with the same event.
        let mut drained = false;
        loop {
            // Tried again even right after a send: on loopback the socket
            // often has room again by now, which saves a wake-up.
            if conn.flush().map_err(End::Io)? > MAX_PENDING {
                // Backed up: read nothing more until the client reads.
                conn.activity.set_paused(true);
                return Ok(Turn::Park);
            }
            conn.activity.set_paused(false);
            if !self.first_bytes_seen && !conn.is_tls() {
                self.look_for_tls()?;
            }
            let more = self.answer(conn, tally, &mut budget, out);
            conn.send(out).map_err(End::Io)?;
            tally.report(&self.rules.policy().stats);
            if more? {
                if budget == 0 {
                    return Ok(Turn::Yield);
                }
                continue;
            }
            // Messages already read have their replies; a stop ends the rest.
            if self.stopping() {
                return Err(End::Stopping);
            }
            if drained {
                return Ok(Turn::Park);
            }
            if reads == 0 {
                return Ok(Turn::Yield);
            }
            reads -= 1;
            match self.reader.fill(&mut &*conn) {
                Ok(0) => {
                    // The client's end of stream, unless the watchdog shut
                    // the reading side down to wake an idle connection.
                    self.input_ended = conn.activity.timed_out().is_none();
                    return Err(self.at_end_of_input(conn, tally, out));
                }
                Ok(n) => {
                    tally.unreported_bytes += n as u64;
                    // Service times cost two clock reads a batch: only when asked.
                    if self.rules.policy().limits.timing {
                        tally.read_at = Some(Instant::now());
                    }
                    drained = !self.reader.filled() && !conn.read_closed();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Turn::Park),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(End::Io(e)),
            }
        }
    }

    /// Refuses a client whose first bytes on this plaintext port are a TLS
    /// handshake: its ClientHello would otherwise be taken for a bad line
    /// or an oversized frame, and the warning would not say what happened.
    /// Decided once three bytes have come (or fewer that cannot be one).
    fn look_for_tls(&mut self) -> Result<(), End> {
        match crate::tls::handshake_record(self.reader.buffered()) {
            Some(true) => Err(End::TlsOnPlaintext),
            Some(false) => {
                self.first_bytes_seen = true;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Answers complete messages already buffered, until none is left, the
    /// budget is spent or the replies reach [`super::FLUSH_AT`]. Returns
    /// whether messages may be left, or how the connection ends.
    fn answer(
        &mut self,
        conn: &Conn,
        tally: &mut Tally,
        budget: &mut usize,
        out: &mut Vec<u8>,
    ) -> Result<bool, End> {
        let mut progressed = false;
        let result = loop {
            if *budget == 0 || out.len() >= super::FLUSH_AT {
                break Ok(true);
            }
            let Some(message) = self.reader.next_message() else {
                break Ok(false);
            };
            *budget -= 1;
            progressed |= message.is_ok();
            let step = self
                .rules
                .handle(&mut *self.session, message, &mut tally.unreported, out);
            if let Err(end) = step {
                break Err(end);
            }
        };
        if progressed {
            conn.activity.read_progress();
        }
        result
    }

    /// When the server stops: answers every complete message already read,
    /// whatever the budget and backlog, then the connection ends.
    fn answer_all(&mut self, conn: &Conn, tally: &mut Tally, out: &mut Vec<u8>) -> End {
        loop {
            let mut budget = usize::MAX;
            match self.answer(conn, tally, &mut budget, out) {
                Ok(true) => {
                    if conn.send(out).is_err() {
                        return End::Stopping;
                    }
                }
                Ok(false) => return End::Stopping,
                Err(end) => return end,
            }
        }
    }

    /// At the client's end of input: a last line with no newline is
    /// answered like any other; a cut frame is an error.
    fn at_end_of_input(&mut self, conn: &Conn, tally: &mut Tally, out: &mut Vec<u8>) -> End {
        if self.stopping() {
            return End::Stopping;
        }
        if let Some(idle) = conn.activity.timed_out() {
            return End::Idle(idle);
        }
        let Some(rest) = self.reader.take_rest() else {
            return End::ClientLeft;
        };
        let step = self
            .rules
            .handle(&mut *self.session, rest, &mut tally.unreported, out);
        step.err().unwrap_or(End::ClientLeft)
    }

    /// The server is stopping.
    fn stopping(&self) -> bool {
        self.rules.policy().shutdown.is_triggered()
    }
}
