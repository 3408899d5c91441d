//! `chat`: a chat room. A client names itself, then every line it sends
//! reaches every other member as `<name>: <line>`.
//!
//! Delivery to other members never waits on them: each member has an
//! outbox, written to its socket without blocking under that member's lock
//! (so two senders never interleave bytes inside a line). What the socket
//! cannot take at once waits in the outbox and goes out with the next
//! delivery; a member whose outbox falls more than [`MAX_BACKLOG`] behind,
//! or that accepts nothing for the idle timeout, is dropped and announced as
//! left.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::warn;
use parking_lot::Mutex;

use super::{Action, Link, Protocol, Session, command, text};
use crate::config::Config;

/// The longest name a client may choose, in bytes.
const MAX_NAME: usize = 32;

/// How far a member may fall behind (bytes waiting beyond what its socket
/// buffers hold) before it is dropped.
const MAX_BACKLOG: usize = 64 * 1024;

pub fn build(config: &Config) -> Arc<dyn Protocol> {
    Arc::new(Chat {
        room: Arc::new(Room {
            members: Mutex::new(Members::default()),
            idle: config.idle_timeout,
        }),
    })
}

struct Chat {
    room: Arc<Room>,
}

/// Everyone who has chosen a name.
struct Room {
    members: Mutex<Members>,
    idle: Option<Duration>,
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
    outbox: Mutex<Outbox>,
}

#[derive(Default)]
struct Outbox {
    pending: Vec<u8>,
    /// Since when the socket has refused to take more.
    stalled_since: Option<Instant>,
    dropped: bool,
}

impl Member {
    /// Queues `bytes` for this member and writes what its socket takes now.
    fn deliver(&self, bytes: &[u8], idle: Option<Duration>) {
        let mut outbox = self.outbox.lock();
        if outbox.dropped {
            return;
        }
        outbox.pending.extend_from_slice(bytes);
        while !outbox.pending.is_empty() {
            match self.link.try_send(&outbox.pending) {
                Ok(n) => {
                    outbox.pending.drain(..n);
                    outbox.stalled_since = None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    outbox.stalled_since.get_or_insert_with(Instant::now);
                    break;
                }
                // The member's own worker sees the broken socket and leaves.
                Err(_) => return,
            }
        }
        let stalled_too_long = match (outbox.stalled_since, idle) {
            (Some(since), Some(idle)) => since.elapsed() >= idle,
            _ => false,
        };
        if outbox.pending.len() > MAX_BACKLOG || stalled_too_long {
            warn!(
                "chat member cannot keep up, dropping peer={} name={} waiting_bytes={}",
                self.link.peer(),
                self.name,
                outbox.pending.len()
            );
            outbox.dropped = true;
            outbox.pending = Vec::new();
            // Its worker wakes to a closed connection and announces it left.
            self.link.kick();
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
            member.deliver(bytes, self.idle);
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
            outbox: Mutex::new(Outbox::default()),
        });
        members.by_id.insert(id, member.clone());
        let online = members.by_id.len();
        let mut first = notice.unwrap_or_default();
        first.push_str(&format!("Welcome {name}! {online} online.\n"));
        member.deliver(first.as_bytes(), room.idle);
        let joined = format!("* {name} joined\n");
        for other in others(&members, Some(id)) {
            other.deliver(joined.as_bytes(), room.idle);
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
        if let Some(action) = command(line) {
            return action;
        }
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
                other.deliver(left.as_bytes(), self.room.idle);
            }
        }
        self.state = State::Naming;
    }
}
