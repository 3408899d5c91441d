//! The room's writer: a line for many members is queued in each one's
//! outbox and written by a thread of the room's own (`linepool-chat-out`),
//! which writes each member once for everything queued since its last
//! write.
//!
//! Writing each line to each member at once costs one write per member
//! per line: a room of N members hearing L lines a second asks for N × L
//! writes a second, each a system call and, on loopback, the reader's
//! wake-up too. Instead a line is queued with each member (a short lock
//! of the member's own, never held across a write, so that senders do not
//! wait on the writer), and the writer goes over the members with
//! something new, handing each member's lines to its connection in one
//! delivery; while it does, more lines come, and the next pass takes them
//! together. Under light load a line goes out as soon as the writer wakes;
//! under heavy load the writes grow instead of multiplying, and a line
//! waits about one pass. The connection's outbox and back-pressure are the
//! core's, as for every delivery: the writer never waits on a socket, the
//! rest of a write the socket did not take goes out when it has room, from
//! the member's own worker, and a member too far behind is dropped.
//!
//! Without the writer running (a room served outside a server, or after
//! the stop's last step) each delivery is written at once.

use std::mem;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::Member;
use linepool::shutdown::Shutdown;

/// The members waiting for a write, and the writer that takes them.
#[derive(Default)]
pub(crate) struct Fanout {
    state: Mutex<State>,
    ready: Condvar,
}

#[derive(Default)]
struct State {
    /// Members with something queued since the writer took them last.
    dirty: Vec<Arc<Member>>,
    /// The writer thread takes what comes.
    running: bool,
}

impl Fanout {
    /// Has `fresh`, members that have something newly queued, written:
    /// soon by the writer, or now when it does not run.
    pub(super) fn write(&self, fresh: Vec<Arc<Member>>) {
        let mut state = self.state.lock();
        if !state.running {
            drop(state);
            for member in fresh {
                member.flush();
            }
            return;
        }
        let idle = state.dirty.is_empty();
        state.dirty.extend(fresh);
        drop(state);
        if idle {
            self.ready.notify_one();
        }
    }

    /// The writer: writes the members that have something queued, pass
    /// after pass, until `until` fires and nothing is left.
    pub(crate) fn run(self: &Arc<Self>, until: &Shutdown) {
        {
            let fanout = self.clone();
            // Under the lock, so that the writer cannot miss it between
            // looking at `until` and waiting.
            until.on_trigger(move || {
                let _state = fanout.state.lock();
                fanout.ready.notify_all();
            });
        }
        self.state.lock().running = true;
        let mut batch = Vec::new();
        loop {
            {
                let mut state = self.state.lock();
                while state.dirty.is_empty() {
                    if until.is_triggered() {
                        state.running = false;
                        return;
                    }
                    self.ready.wait(&mut state);
                }
                mem::swap(&mut batch, &mut state.dirty);
            }
            for member in batch.drain(..) {
                member.flush();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::thread;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::fake;

    fn member(name: &str) -> (Arc<fake::Inbox>, Arc<Member>) {
        let (inbox, link) = fake::link("127.0.0.1:1", false);
        (
            inbox,
            Arc::new(Member::new(name.to_string(), link, crate::MAX_BACKLOG)),
        )
    }

    /// Waits until `inbox` has received `expected`, failing after 10 s.
    fn arrives(inbox: &fake::Inbox, expected: &str) {
        let until = Instant::now() + Duration::from_secs(10);
        let mut got = String::new();
        while got.len() < expected.len() && Instant::now() < until {
            got.push_str(&inbox.take());
            thread::yield_now();
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn a_member_is_handed_to_the_writer_once_until_written() {
        let (inbox, ann) = member("ann");
        assert!(ann.queue(b"a\n"));
        assert!(!ann.queue(b"b\n"));
        assert_eq!(inbox.take(), "");
        ann.flush();
        assert_eq!(inbox.take(), "a\nb\n");
        assert!(ann.queue(b"c\n"));
    }

    #[test]
    fn without_the_writer_a_delivery_is_written_at_once() {
        let fanout = Fanout::default();
        let (inbox, ann) = member("ann");
        assert!(ann.queue(b"now\n"));
        fanout.write(vec![ann.clone()]);
        assert_eq!(inbox.take(), "now\n");
        assert!(ann.queue(b"again\n"), "written, so handed over again");
    }

    #[test]
    fn the_writer_writes_until_the_stop_then_leaves_it_to_the_callers() {
        let fanout = Arc::new(Fanout::default());
        let until = Shutdown::new();
        let writer = {
            let (fanout, until) = (fanout.clone(), until.clone());
            thread::spawn(move || fanout.run(&until))
        };
        let (inbox, ann) = member("ann");
        // Until the writer runs, a write happens at once; after, soon.
        for line in ["one\n", "two\n", "three\n"] {
            if ann.queue(line.as_bytes()) {
                fanout.write(vec![ann.clone()]);
            }
            arrives(&inbox, line);
        }
        until.trigger();
        writer.join().expect("the writer ends at the stop");
        assert!(ann.queue(b"after\n"));
        fanout.write(vec![ann.clone()]);
        assert_eq!(inbox.take(), "after\n");
    }
}
