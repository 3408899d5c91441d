//! A member of the room as this instance holds it: its name, its link to
//! the connection, and the lines queued for it until the room's writer
//! hands them over.

use log::warn;
use parking_lot::Mutex;

use linepool::logfmt::Quoted;
use linepool::protocol::{Delivery, Link};

pub(super) struct Member {
    pub(super) name: String,
    pub(super) link: Link,
    /// Lines for this member not yet handed to its connection: the room's
    /// writer hands them over, all at once. Locked only to add or take.
    queued: Mutex<Vec<u8>>,
    /// Held while what was queued is handed over, so that two hand-offs
    /// never overtake each other.
    handing: Mutex<()>,
    /// How far it may fall behind before it is dropped.
    max_backlog: usize,
}

impl Member {
    /// `name`, reached through `link`, with nothing queued, dropped once
    /// more than `max_backlog` bytes wait for it.
    pub(super) fn new(name: String, link: Link, max_backlog: usize) -> Member {
        Member {
            name,
            link,
            queued: Mutex::default(),
            handing: Mutex::default(),
            max_backlog,
        }
    }

    /// Queues `bytes` for this member without writing them. `true` if the
    /// member has to be handed to the room's writer: nothing waited yet.
    /// Past its backlog limit queued, they are handed over now instead (the
    /// connection decides whether the member is behind).
    pub(super) fn queue(&self, bytes: &[u8]) -> bool {
        let mut queued = self.queued.lock();
        let fresh = queued.is_empty();
        queued.extend_from_slice(bytes);
        if queued.len() <= self.max_backlog {
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
        if let Delivery::Dropped(waiting) = self.link.deliver(bytes, self.max_backlog) {
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

#[cfg(test)]
mod tests {
    use linepool::protocol::Port;

    use super::*;
    use crate::fake;
    use crate::{MAX_BACKLOG, max_backlog};

    /// Under a `--max-line` past the usual backlog, one whole line of that
    /// length, which a client that reads nothing leaves waiting, drops
    /// nobody.
    #[test]
    fn one_line_within_the_limit_drops_no_member() {
        let line = vec![b'x'; 8 << 20];
        let (inbox, link) = fake::link("127.0.0.1:1", false);
        let bob = Member::new("bob".to_string(), link, max_backlog(16 << 20));
        bob.deliver(&line);
        assert_eq!(inbox.deliver(b"next\n", usize::MAX), Delivery::Queued);
        // The same line against the usual backlog: dropped.
        let (inbox, link) = fake::link("127.0.0.1:1", false);
        let bob = Member::new("bob".to_string(), link, MAX_BACKLOG);
        bob.deliver(&line);
        assert_eq!(inbox.deliver(b"next\n", usize::MAX), Delivery::Gone);
    }
}
