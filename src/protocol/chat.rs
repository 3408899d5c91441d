//! `chat`: a chat room. A client names itself, then every line it sends
//! reaches every other member as `<name>: <line>`.
//!
//! Delivery to other members never waits on them: each line goes into the
//! member's outbox in the core, which writes what the member's socket takes
//! at once and the rest when the socket has room again (the poller wakes
//! the member for it). A member that falls more than [`MAX_BACKLOG`]
//! behind is disconnected and announced as left; one that reads nothing at
//! all is closed by the core's idle rule.

use std::collections::HashMap;
use std::sync::Arc;

use log::warn;
use parking_lot::Mutex;

use super::{Action, Delivery, Link, Protocol, Session, text};
use crate::config::Config;
use crate::logfmt::Quoted;

/// The longest name a client may choose, in bytes.
const MAX_NAME: usize = 32;

/// How far a member may fall behind (bytes waiting beyond what its socket
/// buffers hold) before it is dropped.
const MAX_BACKLOG: usize = 64 * 1024;

pub fn build(_config: &Config) -> Arc<dyn Protocol> {
    Arc::new(Chat {
        room: Arc::new(Room {
            members: Mutex::new(Members::default()),
        }),
    })
}

struct Chat {
    room: Arc<Room>,
}

/// Everyone who has chosen a name.
struct Room {
    members: Mutex<Members>,
}

#[derive(Default)]
struct Members {
    by_id: HashMap<u64, Arc<Member>>,
    next_id: u64,
    next_guest: u64,
}

struct Member {
    name: String,
    link: Link,
}

impl Member {
    /// Queues `bytes` for this member; drops a member too far behind.
    fn deliver(&self, bytes: &[u8]) {
        if let Delivery::Dropped(waiting) = self.link.deliver(bytes, MAX_BACKLOG) {
            warn!(
                "chat member cannot keep up, dropping peer={} name={} waiting_bytes={waiting}",
                self.link.peer(),
                Quoted(&self.name),
            );
        }
    }
}

impl Room {
    /// Delivers `bytes` to every member but `except`. The member list is
    /// copied out first, so that no delivery holds the room's lock.
    fn broadcast(&self, except: Option<u64>, bytes: &[u8]) {
        let members: Vec<Arc<Member>> = {
            let members = self.members.lock();
            others(&members, except).cloned().collect()
        };
        for member in members {
            member.deliver(bytes);
        }
    }
}

/// Every member but `except`.
fn others(members: &Members, except: Option<u64>) -> impl Iterator<Item = &Arc<Member>> {
    members
        .by_id
        .iter()
        .filter(move |(id, _)| Some(**id) != except)
        .map(|(_, member)| member)
}

enum State {
    /// Waiting for the first line, the name.
    Naming,
    Joined {
        id: u64,
        member: Arc<Member>,
    },
}

struct ChatSession {
    room: Arc<Room>,
    link: Link,
    state: State,
}

impl Protocol for Chat {
    fn open(&self, link: Link) -> Box<dyn Session> {
        Box::new(ChatSession {
            room: self.room.clone(),
            link,
            state: State::Naming,
        })
    }
}

impl ChatSession {
    /// Admits the client under `wanted` or, if that name cannot be had,
    /// under a guest name. Its welcome and the others' `joined` are queued
    /// while the room is locked (deliveries never wait), so the newcomer
    /// hears its welcome first, and nobody can speak after seeing the
    /// newcomer's welcome yet reach a member before its `joined` does.
    fn join(&mut self, wanted: &str) {
        let room = self.room.clone();
        let mut members = room.members.lock();
        let taken = members.by_id.values().any(|m| m.name == wanted);
        let (name, notice) = if wanted.is_empty() || wanted.len() > MAX_NAME || taken {
            members.next_guest += 1;
            let guest = format!("guest-{}", members.next_guest);
            let why = if wanted.is_empty() {
                "Empty name".to_string()
            } else if taken {
                format!("Name {wanted} is taken")
            } else {
                format!("Name longer than {MAX_NAME} bytes")
            };
            let notice = format!("{why}; you are {guest}\n");
            (guest, Some(notice))
        } else {
            (wanted.to_string(), None)
        };
        let id = members.next_id;
        members.next_id += 1;
        let member = Arc::new(Member {
            name: name.clone(),
            link: self.link.clone(),
        });
        members.by_id.insert(id, member.clone());
        let online = members.by_id.len();
        let mut first = notice.unwrap_or_default();
        first.push_str(&format!("Welcome {name}! {online} online.\n"));
        member.deliver(first.as_bytes());
        let joined = format!("* {name} joined\n");
        for other in others(&members, Some(id)) {
            other.deliver(joined.as_bytes());
        }
        drop(members);
        self.state = State::Joined { id, member };
    }
}

impl Session for ChatSession {
    fn start(&mut self, out: &mut Vec<u8>) -> Action {
        // Not yet a member, so nobody else writes to this client: the
        // core's reply buffer is safe to use.
        out.extend_from_slice(b"Enter your name:\n");
        Action::Continue
    }

    fn message(&mut self, line: &[u8], _out: &mut Vec<u8>) -> Action {
        let line = text(line);
        match &self.state {
            State::Naming => self.join(line.trim()),
            State::Joined { id, member } => {
                let said = format!("{}: {line}\n", member.name);
                self.room.broadcast(Some(*id), said.as_bytes());
            }
        }
        Action::Continue
    }

    fn end(&mut self) {
        if let State::Joined { id, member } = &self.state {
            let mut members = self.room.members.lock();
            members.by_id.remove(id);
            let left = format!("* {} left\n", member.name);
            for other in others(&members, None) {
                other.deliver(left.as_bytes());
            }
        }
        self.state = State::Naming;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::fake::{self, Inbox};

    /// A member who has joined under `name`, with what it was sent so far
    /// taken.
    fn member(chat: &Chat, name: &str) -> (Arc<Inbox>, Box<dyn Session>) {
        let (inbox, link) = fake::link("127.0.0.1:5000", false);
        let mut session = chat.open(link);
        let mut out = Vec::new();
        assert_eq!(session.start(&mut out), Action::Continue);
        assert_eq!(out, b"Enter your name:\n");
        assert_eq!(session.message(name.as_bytes(), &mut out), Action::Continue);
        (inbox, session)
    }

    fn room() -> Chat {
        Chat {
            room: Arc::new(Room {
                members: Mutex::new(Members::default()),
            }),
        }
    }

    #[test]
    fn a_line_reaches_every_other_member_and_not_the_sender() {
        let chat = room();
        let (ann, mut ann_session) = member(&chat, "ann");
        assert_eq!(ann.take(), "Welcome ann! 1 online.\n");
        let (bob, _bob_session) = member(&chat, "bob");
        assert_eq!(bob.take(), "Welcome bob! 2 online.\n");
        assert_eq!(ann.take(), "* bob joined\n");
        let mut out = Vec::new();
        ann_session.message(b"hello all", &mut out);
        assert!(out.is_empty());
        assert_eq!(bob.take(), "ann: hello all\n");
        assert_eq!(ann.take(), "");
    }

    #[test]
    fn a_taken_empty_or_long_name_gets_a_guest_name() {
        let chat = room();
        let (_ann, _a) = member(&chat, "ann");
        let (second, _b) = member(&chat, "ann");
        assert_eq!(
            second.take(),
            "Name ann is taken; you are guest-1\nWelcome guest-1! 2 online.\n"
        );
        let (empty, _c) = member(&chat, "  ");
        assert_eq!(
            empty.take(),
            "Empty name; you are guest-2\nWelcome guest-2! 3 online.\n"
        );
        let (long, _d) = member(&chat, &"x".repeat(MAX_NAME + 1));
        assert!(
            long.take()
                .starts_with("Name longer than 32 bytes; you are guest-3\n")
        );
    }

    #[test]
    fn a_member_that_ends_is_announced_as_left_once() {
        let chat = room();
        let (ann, _a) = member(&chat, "ann");
        let (_bob, mut bob_session) = member(&chat, "bob");
        ann.take();
        bob_session.end();
        bob_session.end();
        assert_eq!(ann.take(), "* bob left\n");
        let (cid, _c) = member(&chat, "cid");
        assert_eq!(cid.take(), "Welcome cid! 2 online.\n");
    }
}
