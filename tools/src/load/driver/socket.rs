//! A connection's socket: connecting it (plain or TLS), writing what is
//! queued and reading what the server sends, each step ending in a
//! failure count when the socket does.

use std::io::{self, Read, Write};
use std::time::Instant;

use mio::{Interest, Token};

use super::{Driver, Phase};
use crate::tls::Stream;

impl Driver<'_> {
    /// Connects slot `i` afresh, its buffers and requests in flight emptied.
    pub(super) fn open(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        conn.phase = Phase::Connecting;
        conn.since = Instant::now();
        conn.out.clear();
        conn.written = 0;
        conn.input.clear();
        conn.in_flight.clear();
        match Stream::connect(self.config.addr, self.config.tls.as_ref()) {
            Ok(mut stream) => {
                let interest = Interest::READABLE | Interest::WRITABLE;
                if let Err(e) = self
                    .poll
                    .registry()
                    .register(&mut stream, Token(i), interest)
                {
                    self.fail(i, &e);
                    return;
                }
                let _ = stream.set_nodelay(true);
                self.conns[i].stream = Some(stream);
            }
            Err(e) => self.fail(i, &e),
        }
    }

    /// A readiness event on slot `i`'s socket.
    pub(super) fn on_event(&mut self, i: usize, readable: bool, writable: bool) {
        if self.conns[i].phase == Phase::Connecting {
            if !self.check_connected(i) {
                return;
            }
            self.counts.established += 1;
            self.conns[i].phase = Phase::Running;
            self.top_up(i);
        }
        if writable && self.conns[i].phase != Phase::Done {
            self.flush(i);
        }
        if readable && self.conns[i].phase != Phase::Done {
            self.read(i);
        }
    }

    /// After a readiness event on a connecting socket: whether it is now
    /// connected. Failures are counted and end the socket.
    pub(super) fn check_connected(&mut self, i: usize) -> bool {
        let Some(stream) = &self.conns[i].stream else {
            return false;
        };
        let result = match stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => stream.peer_addr().map(|_| ()),
        };
        match result {
            Ok(()) => true,
            // Not connected yet: a spurious wake-up.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => false,
            Err(e) => {
                self.fail(i, &e);
                false
            }
        }
    }

    /// Writes what slot `i` has queued, as far as the socket takes it.
    pub(super) fn flush(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        let Some(stream) = &mut conn.stream else {
            return;
        };
        while conn.written < conn.out.len() {
            match stream.write(&conn.out[conn.written..]) {
                Ok(n) => conn.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(i, &e);
                    return;
                }
            }
        }
        conn.out.clear();
        conn.written = 0;
        // What TLS still holds goes out now or at the next writable event.
        match stream.flush() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => self.fail(i, &e),
        }
    }

    /// Reads what the server sent on slot `i` and checks the replies in it;
    /// then sends more, if the slot still runs.
    pub(super) fn read(&mut self, i: usize) {
        loop {
            let Some(stream) = &mut self.conns[i].stream else {
                return;
            };
            match stream.read(&mut self.buf) {
                Ok(0) => {
                    self.eof(i);
                    return;
                }
                Ok(n) => {
                    let conn = &mut self.conns[i];
                    conn.input.extend_from_slice(&self.buf[..n]);
                    self.replies(i);
                    if self.conns[i].phase == Phase::Done {
                        return;
                    }
                    // A short read emptied the socket; whatever arrives next
                    // raises a new readiness event, so reading again now would
                    // only cost a system call to learn `WouldBlock`. Not while
                    // closing: the end of stream may have come with the same
                    // event (the server's `ERR server busy` and its close), and
                    // no new event would report it.
                    if n < self.buf.len() && self.conns[i].phase == Phase::Running {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(i, &e);
                    return;
                }
            }
        }
        if self.conns[i].phase == Phase::Running {
            self.top_up(i);
        }
    }
}
