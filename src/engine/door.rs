//! The door: what the engine knows of the listening socket. The listener
//! sits in the engine's poller beside the connections, and whichever
//! worker leads and sees it ready lets the door accept, so a new
//! connection costs no wake-up of a thread of its own (the shape of
//! Netty's and tokio's accept loops). What accepting means (the gate, the
//! admission rules, the handler) is the server's business: it implements
//! [`Door`], and the engine only calls it and remembers when to call it
//! again: the poller registration, the due time that a spent batch, a
//! back-off or a returned permit sets, and the leader's call.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::error;
use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::{DOOR, Engine};
use crate::logfmt;

/// Connections accepted in one call at most, so that a flood of new
/// clients cannot keep the leader from handing on the events of those
/// already connected.
pub(crate) const ACCEPT_BATCH: usize = 64;

/// The listening side, as the engine sees it.
pub(crate) trait Door: Send + Sync {
    /// Accepts what waits (at most [`ACCEPT_BATCH`] connections), handing
    /// each to `engine` with [`Engine::add`]. Called by the leader when the
    /// poller reports listeners ready (`ready`: their indices, in the order
    /// [`Engine::open_door`] was given them), or, with none, when the last
    /// call asked to be called again; never blocks.
    fn accept_ready(&self, engine: &Engine, ready: &[usize]) -> Again;
}

/// When the door wants to be tried again without a new event from the
/// poller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Again {
    /// Only on the next event: the listener had nothing more, or the door
    /// waits for something that will call [`Engine::door_ready`].
    OnEvent,
    /// At the next look into the poller: the batch was spent and clients
    /// may still wait.
    Soon,
    /// Not before this time (a back-off after an accept error).
    At(Instant),
}

impl Engine {
    /// Puts the listening sockets `fds` into the poller, edge-triggered,
    /// with `door` to accept from them. Clients already waiting in a
    /// backlog make it ready at once. Done once, before or after the
    /// workers start.
    pub(crate) fn open_door(&self, door: Arc<dyn Door>, fds: &[RawFd]) -> io::Result<()> {
        if self.door.set(door).is_err() {
            return Err(io::Error::other("the door is open already"));
        }
        for (i, fd) in fds.iter().enumerate() {
            self.registry
                .register(&mut SourceFd(fd), listener_token(i), Interest::READABLE)?;
        }
        Ok(())
    }

    /// Has the door tried again at the next look into the poller, and
    /// wakes the leader for it: what the door waited for (a permit) has
    /// come. Any thread may call it.
    pub(crate) fn door_ready(&self) {
        self.door_again(Instant::now());
        if let Err(e) = self.waker.wake() {
            error!("cannot wake the poller error={}", logfmt::error(&e));
        }
    }

    /// Has the door tried again at `at`, or earlier if it already is.
    pub(super) fn door_again(&self, at: Instant) {
        let mut due = self.door_due.lock();
        *due = Some(due.map_or(at, |d| d.min(at)));
    }

    /// How long the leader may wait in the poller: at most `timeout`, and
    /// no later than the door is due.
    pub(super) fn wait_for(&self, timeout: Option<Duration>) -> Option<Duration> {
        let Some(at) = *self.door_due.lock() else {
            return timeout;
        };
        let until_due = at.saturating_duration_since(Instant::now());
        Some(timeout.map_or(until_due, |t| t.min(until_due)))
    }

    /// Lets the door accept if the poller reported listeners ready (`ready`)
    /// or it is due, and remembers when it wants to be tried again.
    pub(super) fn try_door(&self, ready: &[usize]) {
        let Some(door) = self.door.get() else {
            return;
        };
        {
            let mut due = self.door_due.lock();
            let is_due = due.is_some_and(|at| at <= Instant::now());
            if ready.is_empty() && !is_due {
                return;
            }
            // Taken before the call: what comes meanwhile (a permit back)
            // sets it again and is not lost.
            if is_due {
                *due = None;
            }
        }
        match door.accept_ready(self, ready) {
            Again::OnEvent => {}
            Again::Soon => self.door_again(Instant::now()),
            Again::At(at) => self.door_again(at),
        }
    }
}

/// The poller token of listener `i`: counted down from just below the
/// waker's, where connection ids (counting up from 0) never come.
fn listener_token(i: usize) -> Token {
    Token(DOOR.0 - i)
}

/// The listener a poller token stands for, if it is one.
pub(super) fn listener_of(token: Token) -> Option<usize> {
    // More listeners than this is no server anyone runs; the bound keeps
    // the token ranges apart.
    const MOST: usize = 1 << 16;
    (token.0 <= DOOR.0 && DOOR.0 - token.0 < MOST).then(|| DOOR.0 - token.0)
}
