//! The serving loop of a turn: the PROXY header, the TLS handshake, the
//! session's start, then reading and answering until the socket has
//! nothing more, the budget is spent or the replies back up.

use std::io;
use std::sync::{Arc, Weak};
use std::time::Instant;

use log::debug;

use super::end::End;
use super::rules::{self, Admin, Rules};
use super::{ClientHandler, MAX_PENDING, Phase, TURN_MESSAGES, TURN_READS, Turn};
use crate::access::{self, TOO_MANY_FROM_ADDRESS};
use crate::framing::Reader;
use crate::logfmt::Field;
use crate::protocol::{Link, Port};
use crate::proxy::HeaderError;
use crate::socket::Peer;

impl ClientHandler {
    /// Reads the PROXY protocol header. Returns whether it is complete (and
    /// the client's address known); `false` means wait for more. Behind a
    /// proxy, `--max-per-ip` is counted here, once the header names the
    /// client.
    pub(super) fn read_header(&mut self, out: &mut Vec<u8>) -> Result<bool, End> {
        self.conn.activity.set_awaiting_header(true);
        if let Some(idle) = self.conn.activity.timed_out() {
            return Err(End::Idle(idle));
        }
        // The header comes before the ClientHello: it is read off the
        // socket itself.
        let header = match self.header.read_from(self.conn.raw()) {
            Ok(Some(header)) => header,
            Ok(None) => return Ok(false),
            Err(HeaderError::Ended) => {
                return Err(End::BadHeader("the connection ended before it"));
            }
            Err(HeaderError::Invalid) => return Err(End::BadHeader("not a PROXY protocol header")),
            Err(HeaderError::Io(e)) => return Err(End::Io(e)),
        };
        self.conn.activity.set_awaiting_header(false);
        if let Some(client) = header.client {
            self.client = Peer::ip(client);
        }
        // What followed the header is the transport's: TLS's, or the
        // protocol's.
        if self.conn.is_tls() {
            self.conn.preload_tls(&header.rest).map_err(End::Io)?;
        } else {
            self.after_header = header.rest;
        }
        let admitted = match self.client.ip_addr() {
            Some(ip) => access::admit(self.per_address.as_ref(), ip),
            None => Ok(None),
        };
        match admitted {
            Ok(slot) => {
                if let Some(slot) = slot {
                    self.conn.hold_address_slot(slot);
                }
            }
            Err(access::TooMany) => {
                self.stats.rejected_per_address();
                // Over TLS the handshake has not begun: a plaintext line
                // would be noise, and the session would hold it for ever.
                // The client is closed without a word, as the acceptor
                // closes one it has no room for.
                if !self.conn.is_tls() {
                    self.protocol.framing().say(TOO_MANY_FROM_ADDRESS, out);
                }
                return Err(End::TooManyFromAddress);
            }
        }
        self.phase = if self.conn.is_tls() {
            Phase::Handshake
        } else {
            Phase::Fresh
        };
        Ok(true)
    }

    /// Drives the TLS handshake. Returns whether it is done; `false` means
    /// wait for the client, parked in the poller like an idle connection
    /// (no worker waits on a handshake), until the watchdog's deadline.
    pub(super) fn handshake(&mut self) -> Result<bool, End> {
        self.conn.activity.set_awaiting_handshake(true);
        if let Some(idle) = self.conn.activity.timed_out() {
            return Err(End::Idle(idle));
        }
        match self.conn.handshake() {
            Ok(false) => return Ok(false),
            Ok(true) => {}
            Err((failure, detail)) => return Err(End::Tls(failure, detail)),
        }
        self.conn.activity.set_awaiting_handshake(false);
        if let Some((names, version)) = self.conn.tls_peer() {
            self.cert = names.first().cloned();
            self.admin_cert_ok = match &self.admin_certs {
                None => true,
                Some(allowed) => names.iter().any(|n| allowed.contains(n)),
            };
            debug!(
                "tls handshake done peer={} version={version} cert={}",
                self.peer(),
                self.cert_name()
            );
        }
        self.phase = Phase::Fresh;
        Ok(true)
    }

    /// Opens the session: its greeting is the first reply.
    pub(super) fn start(&mut self, out: &mut Vec<u8>) -> Result<(), End> {
        self.phase = Phase::Open;
        self.reader = Reader::new(self.protocol.framing(), self.limits.max_line);
        if !self.after_header.is_empty() {
            self.reader.preload(&std::mem::take(&mut self.after_header));
        }
        // A TCP client needs its address in `--admin-from` and, with
        // `--admin-cert`, a named certificate; a Unix client (never on TLS)
        // needs its user id in `--admin-uid`.
        self.admin = match self.client {
            Peer::Ip(addr) => {
                let address_ok = self.admin_from.contains(addr.ip());
                Admin {
                    allowed: address_ok && self.admin_cert_ok,
                    refused_for: if address_ok { "certificate" } else { "address" },
                }
            }
            Peer::Local { uid } => Admin {
                allowed: self.admin_uids.contains(&uid),
                refused_for: "uid",
            },
        };
        debug!(
            "client connected peer={}{}{}",
            self.peer(),
            Field("cert", self.cert.as_deref()),
            Field("listener", self.listener.as_deref())
        );
        let port: Weak<dyn Port> = Arc::downgrade(&self.conn) as Weak<dyn Port>;
        let mut session = self
            .protocol
            .open(Link::new(port, self.client, self.admin.allowed));
        let action = session.start(out);
        self.session = Some(session);
        // A greeting is not a message answered.
        let mut greetings = 0;
        let rules = Rules::new(
            &self.shutdown,
            &self.stats,
            self.admin,
            self.reader.framing(),
            self.client,
            self.cert.as_deref(),
        );
        rules::act(action, &rules, &mut greetings, out)
    }

    /// Answers, writes and reads until the socket has nothing more, the
    /// turn's budget is spent, or the replies back up.
    pub(super) fn serve(&mut self, out: &mut Vec<u8>) -> Result<Turn, End> {
        if let Some(idle) = self.conn.activity.timed_out() {
            return Err(End::Idle(idle));
        }
        if self.shutdown.is_triggered() {
            return Err(self.answer_all(out));
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
            if self.conn.flush().map_err(End::Io)? > MAX_PENDING {
                // Backed up: read nothing more until the client reads.
                self.conn.activity.set_paused(true);
                return Ok(Turn::Park);
            }
            self.conn.activity.set_paused(false);
            if !self.first_bytes_seen && !self.conn.is_tls() {
                self.look_for_tls()?;
            }
            let more = self.answer(out, &mut budget);
            self.conn.send(out).map_err(End::Io)?;
            self.report();
            if more? {
                if budget == 0 {
                    return Ok(Turn::Yield);
                }
                continue;
            }
            // Messages already read have their replies; a stop ends the rest.
            if self.shutdown.is_triggered() {
                return Err(End::Stopping);
            }
            if drained {
                return Ok(Turn::Park);
            }
            if reads == 0 {
                return Ok(Turn::Yield);
            }
            reads -= 1;
            match self.reader.fill(&mut &*self.conn) {
                Ok(0) => {
                    // The client's end of stream, unless the watchdog shut
                    // the reading side down to wake an idle connection.
                    self.input_ended = self.conn.activity.timed_out().is_none();
                    return Err(self.at_end_of_input(out));
                }
                Ok(n) => {
                    self.unreported_bytes += n as u64;
                    // Service times cost two clock reads a batch: only when asked.
                    if self.limits.timing {
                        self.read_at = Some(Instant::now());
                    }
                    drained = !self.reader.filled() && !self.conn.read_closed();
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
    fn answer(&mut self, out: &mut Vec<u8>, budget: &mut usize) -> Result<bool, End> {
        // Field by field, so that the session can be borrowed meanwhile.
        let rules = Rules::new(
            &self.shutdown,
            &self.stats,
            self.admin,
            self.reader.framing(),
            self.client,
            self.cert.as_deref(),
        );
        let Some(session) = self.session.as_mut() else {
            return Err(End::Closed);
        };
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
            let step = rules::handle(
                &mut **session,
                message,
                &rules,
                self.limits.max_line,
                &mut self.unreported,
                out,
            );
            if let Err(end) = step {
                break Err(end);
            }
        };
        if progressed {
            self.conn.activity.read_progress();
        }
        result
    }

    /// When the server stops: answers every complete message already read,
    /// whatever the budget and backlog, then the connection ends.
    fn answer_all(&mut self, out: &mut Vec<u8>) -> End {
        loop {
            let mut budget = usize::MAX;
            match self.answer(out, &mut budget) {
                Ok(true) => {
                    if self.conn.send(out).is_err() {
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
    fn at_end_of_input(&mut self, out: &mut Vec<u8>) -> End {
        if self.shutdown.is_triggered() {
            return End::Stopping;
        }
        if let Some(idle) = self.conn.activity.timed_out() {
            return End::Idle(idle);
        }
        // Field by field, so that the session can be borrowed meanwhile.
        let rules = Rules::new(
            &self.shutdown,
            &self.stats,
            self.admin,
            self.reader.framing(),
            self.client,
            self.cert.as_deref(),
        );
        let (Some(session), Some(rest)) = (self.session.as_mut(), self.reader.take_rest()) else {
            return End::ClientLeft;
        };
        let step = rules::handle(
            &mut **session,
            rest,
            &rules,
            self.limits.max_line,
            &mut self.unreported,
            out,
        );
        step.err().unwrap_or(End::ClientLeft)
    }
}
