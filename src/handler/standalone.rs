//! [`ClientHandler::run`]: the same turns as the engine's, on one socket
//! accepted by hand, on the caller's thread, with a poller of its own and
//! the idle rule checked at each tick.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Instant;

use log::warn;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::{ClientHandler, Turn};
use crate::activity;
use crate::logfmt;

impl ClientHandler {
    /// Serves the connection on this thread until the client leaves, breaks
    /// a rule, idles out, or the server stops; then closes it. Between
    /// turns it waits for the socket in a poller of its own, and enforces
    /// the idle rule itself.
    pub fn run(mut self) {
        let peer = self.peer();
        let mut poll = match self.own_poll() {
            Ok(poll) => poll,
            Err(e) => {
                warn!(
                    "cannot serve connection peer={peer} error={}",
                    logfmt::error(&e)
                );
                self.driver.abandon();
                return;
            }
        };
        let limits = self.driver.policy.limits;
        let tick = activity::tick(limits.idle_timeout);
        let mut events = Events::with_capacity(4);
        let mut out = Vec::new();
        loop {
            match self.turn(&mut out) {
                Turn::Done => return,
                Turn::Yield => continue,
                Turn::Park => {}
            }
            // Wait for the socket; look at the idle rule and the stop
            // signal every tick.
            loop {
                if let Err(e) = poll.poll(&mut events, Some(tick))
                    && e.kind() != io::ErrorKind::Interrupted
                {
                    warn!(
                        "cannot wait for connection peer={peer} error={}",
                        logfmt::error(&e)
                    );
                    self.driver.abandon();
                    return;
                }
                if events.iter().any(|e| e.is_read_closed() || e.is_error()) {
                    self.conn.set_read_closed();
                }
                let idle = self
                    .conn
                    .activity
                    .check(Instant::now(), limits.idle_timeout);
                let stopping = self.driver.policy.shutdown.is_triggered();
                if !events.is_empty() || idle.is_some() || stopping {
                    break;
                }
            }
        }
    }

    fn own_poll(&self) -> io::Result<Poll> {
        let stream = self.conn.stream();
        stream.set_nonblocking(true)?;
        let poll = Poll::new()?;
        poll.registry().register(
            &mut SourceFd(&stream.as_raw_fd()),
            Token(0),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        Ok(poll)
    }
}
