//! A member of the room as this instance holds it: its name, its link to
//! the connection, and the lines queued for it until the room's writer
//! hands them over.

use log::warn;
use parking_lot::Mutex;

use super::MAX_BACKLOG;
use crate::logfmt::Quoted;
use crate::protocol::{Delivery, Link};

pub(super) struct Member {
    pub(super) name: String,
    pub(super) link: Link,
    /// Lines for this member not yet handed to its connection: the room's
    /// writer hands them over, all at once. Locked only to add or take.
    queued: Mutex<Vec<u8>>,
    /// Held while what was queued is handed over, so that two hand-offs
    /// never overtake each other.
    handing: Mutex<()>,
}

impl Member {
    /// `name`, reached through `link`, with nothing queued.
    pub(super) fn new(name: String, link: Link) -> Member {
        Member {
            name,
            link,
            queued: Mutex::default(),
            handing: Mutex::default(),
        }
    }

    /// Queues `bytes` for this member without writing them. `true` if the
    /// member has to be handed to the room's writer: nothing waited yet.
    /// Past [`MAX_BACKLOG`] queued, they are handed over now instead (the
    /// connection decides whether the member is behind).
    pub(super) fn queue(&self, bytes: &[u8]) -> bool {
        let mut queued = self.queued.lock();
        let fresh = queued.is_empty();
        queued.extend_from_slice(bytes);
        if queued.len() <= MAX_BACKLOG {
            return fresh;
        }
        drop(queued);
        self.flush();
        false
    }

    /// Hands what is queued to the connection, which writes what its
    /// socket takes now.
    pub(super) fn flush(&self) {
        let _handing = self.handing.lock();
        let bytes = std::mem::take(&mut *self.queued.lock());
        if !bytes.is_empty() {
            self.deliver(&bytes);
        }
    }

    /// Queues `bytes` for this member; drops a member too far behind.
    pub(super) fn deliver(&self, bytes: &[u8]) {
        if let Delivery::Dropped(waiting) = self.link.deliver(bytes, MAX_BACKLOG) {
            self.dropped(waiting);
        }
    }

    pub(super) fn dropped(&self, waiting: usize) {
        warn!(
            "chat member cannot keep up, dropping peer={} name={} waiting_bytes={waiting}",
            self.link.peer(),
            Quoted(&self.name),
        );
    }
}
