//! The door: what the engine knows of the listening socket. The listener
//! sits in the engine's poller beside the connections, and whichever
//! worker leads and sees it ready lets the door accept, so a new
//! connection costs no wake-up of a thread of its own (the shape of
//! Netty's and tokio's accept loops). What accepting means (the gate, the
//! admission rules, the handler) is the server's business: it implements
//! [`Door`], and the engine only calls it and remembers when to call it
//! again.

use std::time::Instant;

use super::Engine;

/// Connections accepted in one call at most, so that a flood of new
/// clients cannot keep the leader from handing on the events of those
/// already connected.
pub(crate) const ACCEPT_BATCH: usize = 64;

/// The listening side, as the engine sees it.
pub(crate) trait Door: Send + Sync {
    /// Accepts what waits (at most [`ACCEPT_BATCH`] connections), handing
    /// each to `engine` with [`Engine::add`]. Called by the leader when the
    /// poller reports the listener ready, or when the last call asked to
    /// be called again; never blocks.
    fn accept_ready(&self, engine: &Engine) -> Again;
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
