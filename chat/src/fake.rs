//! A fake connection for the room's tests, through the library's public
//! port: it keeps what is delivered until the test reads it, and drops a
//! client too far behind as the server's connections do.

use std::sync::Arc;

use linepool::protocol::{Delivery, Link, Peer, Port};
use parking_lot::Mutex;

/// What waits for a client that reads only when the test says so.
#[derive(Default)]
pub(crate) struct Inbox {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Delivered and not read yet.
    waiting: Vec<u8>,
    /// Disconnected for falling too far behind: nothing more is queued.
    kicked: bool,
}

impl Inbox {
    /// What was delivered so far, as text: the client reads it all.
    pub(crate) fn take(&self) -> String {
        String::from_utf8(std::mem::take(&mut self.state.lock().waiting)).expect("utf-8")
    }
}

impl Port for Inbox {
    /// As the server's connections do, with a socket that takes nothing:
    /// a client more than `max_behind` bytes behind is disconnected, and
    /// a disconnected one is gone.
    fn deliver(&self, bytes: &[u8], max_behind: usize) -> Delivery {
        let mut state = self.state.lock();
        if state.kicked {
            return Delivery::Gone;
        }
        state.waiting.extend_from_slice(bytes);
        let waiting = state.waiting.len();
        if waiting <= max_behind {
            return Delivery::Queued;
        }
        state.kicked = true;
        state.waiting = Vec::new();
        Delivery::Dropped(waiting)
    }
}

/// A link to a fresh inbox, from `peer`.
pub(crate) fn link(peer: &str, admin: bool) -> (Arc<Inbox>, Link) {
    let inbox = Arc::new(Inbox::default());
    let port: Arc<dyn Port> = inbox.clone();
    let link = Link::new(
        Arc::downgrade(&port),
        Peer::ip(peer.parse().expect("address")),
        admin,
    );
    (inbox, link)
}
