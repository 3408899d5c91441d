//! linepool-chat: the chat room protocol (`--protocol chat`) for the
//! linepool server. A client names itself, then every line it sends
//! reaches every other member as `<name>: <line>`.
//!
//! It is a protocol like any an embedder could write: it reaches the
//! server through the library's public seam alone
//! ([`linepool::protocol::Protocol`]), with threads, figures and metric
//! families of its own that the server runs, reports and scrapes. Redis and
//! the JSON envelope are this crate's dependencies, not the server's.
//!
//! ```no_run
//! let config = linepool::Config::new("0.0.0.0", 8000);
//! let chat = linepool_chat::chat(config.max_line, None)?;
//! let summary = linepool::Server::bind(config, chat)?.run()?;
//! # Ok::<(), linepool::Error>(())
//! ```
//!
//! Delivery to other members never waits on them: each line goes into the
//! member's outbox in the core, and the room's writer (`fanout`) writes
//! each member once for all the lines queued since its last write; what
//! the socket does not take goes out when it has room again (the poller
//! wakes the member for it). A member that falls more than `MAX_BACKLOG`
//! (or one whole line, if longer) behind is disconnected and announced as
//! left; one that reads nothing at all is closed by the core's idle rule.
//!
//! With a chat bus (`--chat-bus`, `bus`) the room spans every instance on
//! the same Redis and room name: local members still hear a local line
//! straight away, and the bus carries it to the others. Names are then
//! given out by the bus's publisher thread, which claims them in Redis, so
//! a newcomer's session waits in `Joining` (keeping what it says) until
//! the claim is decided; no worker ever waits on Redis.
//!
//! # Layout
//! [`ChatBus`] (`settings`) is the room's settings; `lib.rs` the room, its
//! members' sessions and [`chat`]; `member` one member's outbox, `fanout`
//! the room's writer, `roster` the other instances' members, `envelope`
//! what the instances say to each other, `bus` the threads that talk to
//! Redis, and `metrics` the bus's metric families.

#![warn(missing_docs)]

mod bus;
mod envelope;
mod fanout;
mod member;
mod metrics;
mod roster;
mod settings;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use log::info;
use parking_lot::Mutex;
use prometheus_client::collector::Collector;

use self::bus::{Bus, Outgoing};
use self::envelope::Body;
use self::fanout::Fanout;
use self::member::Member;
use self::metrics::BusMetrics;
use self::roster::Roster;
use linepool::Error;
use linepool::protocol::{Action, Link, Protocol, Session, Task, text};
use linepool::shutdown::Shutdown;
pub use settings::ChatBus;

/// The longest name a client may choose, in bytes.
const MAX_NAME: usize = 32;

/// How far a member may fall behind (bytes waiting beyond what its socket
/// buffers hold) before it is dropped, unless one line takes more (see
/// [`max_backlog`]).
const MAX_BACKLOG: usize = 64 * 1024;

/// How far a member may fall behind: [`MAX_BACKLOG`], or one whole line
/// of `max_line` bytes as members hear it, if that is more. A longer
/// `--max-line` is the operator's word that such lines are to be
/// delivered: a member reading as fast as it can must not be dropped for
/// one of them.
fn max_backlog(max_line: usize) -> usize {
    MAX_BACKLOG.max(max_line.saturating_add(MAX_NAME + ": \n".len()))
}

/// What a newcomer may say while its name is being claimed, in bytes;
/// more is dropped.
const MAX_JOINING: usize = 64 * 1024;

/// The chat room (`chat`), for a server whose longest message is
/// `max_line` bytes; with a `bus`, one room across every instance on the
/// same Redis and room name. Bus settings that cannot be used are an
/// error, naming [`Setting::Protocol`](linepool::Setting::Protocol).
pub fn chat(max_line: usize, bus: Option<ChatBus>) -> Result<Arc<dyn Protocol>, Error> {
    let Some(settings) = bus else {
        let room = Room::new(None, max_backlog(max_line));
        return Ok(Arc::new(Chat { room, bus: None }));
    };
    let out = Outgoing::new(settings.queue);
    let room = Room::new(Some(out.clone()), max_backlog(max_line));
    let bus = Bus::new(&settings, room.clone(), out)?;
    Ok(Arc::new(Chat {
        room,
        bus: Some(bus),
    }))
}

struct Chat {
    room: Arc<Room>,
    /// With a bus.
    bus: Option<Arc<Bus>>,
}

/// Everyone who has chosen a name, here and (with a bus) elsewhere.
pub(crate) struct Room {
    members: Mutex<Members>,
    /// Where envelopes for the other instances go, with a bus.
    out: Option<Arc<Outgoing>>,
    /// Writes what lines the members hear.
    fanout: Arc<Fanout>,
    /// How far a member may fall behind before it is dropped.
    max_backlog: usize,
}

#[derive(Default)]
struct Members {
    by_id: HashMap<u64, Arc<Member>>,
    next_id: u64,
    next_guest: u64,
    /// The other instances' members, with a bus.
    remote: Roster,
}

impl Members {
    /// Whether `name` is held here or, as far as this instance knows,
    /// anywhere in the room.
    fn holds(&self, name: &str) -> bool {
        self.by_id.values().any(|m| m.name == name) || self.remote.holds(name)
    }

    /// Everyone in the room, as far as this instance knows.
    fn online(&self) -> usize {
        self.by_id.len() + self.remote.len()
    }

    /// Queues `bytes` for every local member but `except`. Deliveries never
    /// wait, so this may run under the room's lock.
    fn announce(&self, except: Option<u64>, bytes: &[u8]) {
        for other in others(self, except) {
            // After the lines queued before it.
            other.queue(bytes);
            other.flush();
        }
    }
}

/// Why a wanted name cannot be had, as the newcomer is told, or `None`.
fn refusal(wanted: &str, taken: bool) -> Option<String> {
    if wanted.is_empty() {
        Some("Empty name".to_string())
    } else if wanted.len() > MAX_NAME {
        Some(format!("Name longer than {MAX_NAME} bytes"))
    } else if wanted.chars().any(char::is_control) {
        // Not echoed: the name would carry its control characters along.
        // (The bus refuses a name with a line ending, and with it the
        // heartbeat of every member of its instance.)
        Some("Name with control characters".to_string())
    } else if taken {
        Some(format!("Name {wanted} is taken"))
    } else {
        None
    }
}

/// Now, in microseconds since the Unix epoch, as envelopes carry it.
fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl Room {
    fn new(out: Option<Arc<Outgoing>>, max_backlog: usize) -> Arc<Room> {
        Arc::new(Room {
            members: Mutex::new(Members::default()),
            out,
            fanout: Arc::default(),
            max_backlog,
        })
    }

    /// Delivers `bytes` to every member but `except`, through the room's
    /// writer. The member list is copied out first, so that no delivery
    /// holds the room's lock.
    fn broadcast(&self, except: Option<u64>, bytes: &[u8]) {
        let members: Vec<Arc<Member>> = {
            let members = self.members.lock();
            others(&members, except).cloned().collect()
        };
        let mut fresh = members;
        fresh.retain(|member| member.queue(bytes));
        if !fresh.is_empty() {
            self.fanout.write(fresh);
        }
    }

    /// Queues the message `body` makes for the other instances, with a
    /// bus; without one it is never made, so a room of one instance pays
    /// nothing for it. Called under the room's lock for changes of
    /// membership, so that the bus publishes them in the order they
    /// happened, heartbeats included.
    fn publish(&self, body: impl FnOnce() -> Body) {
        if let Some(out) = &self.out {
            out.send(body(), unix_micros());
        }
    }

    /// Picks the name a newcomer who wants `wanted` gets from this
    /// instance's knowledge alone: `wanted`, or the next guest name.
    fn choose_locally(members: &mut Members, wanted: &str) -> (String, Option<String>) {
        match refusal(wanted, members.holds(wanted)) {
            None => (wanted.to_string(), None),
            Some(why) => Room::local_guest(members, &why),
        }
    }

    /// The next guest name from this instance's own counter, and the
    /// notice that says `why` the newcomer gets it.
    fn local_guest(members: &mut Members, why: &str) -> (String, Option<String>) {
        members.next_guest += 1;
        let guest = format!("guest-{}", members.next_guest);
        let notice = format!("{why}; you are {guest}\n");
        (guest, Some(notice))
    }

    /// Admits a member called `name` (told `notice` first, if any). Its
    /// welcome and the others' `joined` are queued while the room is
    /// locked (deliveries never wait), so the newcomer hears its welcome
    /// first, and nobody can speak after seeing the newcomer's welcome yet
    /// reach a member before its `joined` does.
    fn admit(
        &self,
        members: &mut Members,
        name: String,
        notice: Option<String>,
        link: Link,
    ) -> (u64, Arc<Member>) {
        let id = members.next_id;
        members.next_id += 1;
        let member = Arc::new(Member::new(name.clone(), link, self.max_backlog));
        members.by_id.insert(id, member.clone());
        let mut first = notice.unwrap_or_default();
        first.push_str(&format!("Welcome {name}! {} online.\n", members.online()));
        member.deliver(first.as_bytes());
        members.announce(Some(id), format!("* {name} joined\n").as_bytes());
        self.publish(|| Body::Joined { name });
        (id, member)
    }

    /// `member` (`id`) says `line`: local members hear it at once, the
    /// other instances through the bus.
    fn say(&self, id: u64, member: &Member, line: &str) {
        let said = format!("{}: {line}\n", member.name);
        self.broadcast(Some(id), said.as_bytes());
        self.publish(|| Body::Said {
            name: member.name.clone(),
            line: line.to_string(),
        });
    }

    /// `member` (`id`) is gone: everyone hears it once.
    fn leave(&self, id: u64, member: &Member) {
        let mut members = self.members.lock();
        if members.by_id.remove(&id).is_some() {
            members.announce(None, format!("* {} left\n", member.name).as_bytes());
            self.publish(|| Body::Left {
                name: member.name.clone(),
            });
        }
    }

    /// The names of this instance's members.
    fn local_names(members: &Members) -> Vec<String> {
        members.by_id.values().map(|m| m.name.clone()).collect()
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

/// A newcomer whose name the bus is deciding, shared between its session
/// and the bus's publisher thread.
pub(crate) struct Admission {
    wanted: String,
    link: Link,
    state: Mutex<Admitting>,
}

enum Admitting {
    /// Not decided yet; what the newcomer said meanwhile, and its size.
    Waiting(Vec<String>, usize),
    /// Admitted.
    Done(u64, Arc<Member>),
    /// The newcomer went away first.
    Abandoned,
}

impl Admission {
    /// Admits the newcomer as `name` (told `notice` first, if any) and says
    /// what it said while waiting, unless it went away: then returns
    /// `false`, and the name is not used.
    fn complete(&self, room: &Room, name: String, notice: Option<String>) -> bool {
        let mut state = self.state.lock();
        let Admitting::Waiting(said, _) = &mut *state else {
            return false;
        };
        let said = std::mem::take(said);
        let (id, member) = {
            let mut members = room.members.lock();
            room.admit(&mut members, name, notice, self.link.clone())
        };
        for line in said {
            room.say(id, &member, &line);
        }
        *state = Admitting::Done(id, member);
        true
    }
}

enum State {
    /// Waiting for the first line, the name.
    Naming,
    /// Named; the bus decides whether the name can be had.
    Joining(Arc<Admission>),
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
    fn name(&self) -> &str {
        "chat"
    }

    fn open(&self, link: Link) -> Box<dyn Session> {
        Box::new(ChatSession {
            room: self.room.clone(),
            link,
            state: State::Naming,
        })
    }

    /// The room's writer and, with a bus, the bus's two threads. All end
    /// at the stop's last step, after every session has ended and queued
    /// its `left`, which the bus then publishes.
    fn threads(&self, until: &Shutdown) -> Vec<Task> {
        let (fanout, until_out) = (self.room.fanout.clone(), until.clone());
        let mut threads = vec![Task::new("linepool-chat-out", move || {
            fanout.run(&until_out)
        })];
        if let Some(bus) = &self.bus {
            info!("chat room {} shared on the bus", bus.room_name());
            threads.extend(bus.threads(until));
        }
        threads
    }

    fn figures(&self) -> String {
        self.bus
            .as_ref()
            .map(|bus| bus.figures().to_string())
            .unwrap_or_default()
    }

    fn metrics(&self) -> Option<Box<dyn Collector>> {
        let bus = self.bus.clone()?;
        Some(Box::new(BusMetrics(bus)))
    }
}

impl ChatSession {
    /// Admits the client under `wanted` or, if that name cannot be had,
    /// under a guest name: at once without a bus, by the bus's publisher
    /// with one.
    fn join(&mut self, wanted: &str) {
        if let Some(out) = &self.room.out {
            let admission = Arc::new(Admission {
                wanted: wanted.to_string(),
                link: self.link.clone(),
                state: Mutex::new(Admitting::Waiting(Vec::new(), 0)),
            });
            out.admit(admission.clone());
            self.state = State::Joining(admission);
            return;
        }
        let room = self.room.clone();
        let mut members = room.members.lock();
        let (name, notice) = Room::choose_locally(&mut members, wanted);
        let (id, member) = room.admit(&mut members, name, notice, self.link.clone());
        drop(members);
        self.state = State::Joined { id, member };
    }

    /// Says `line`, or keeps it until the name is decided.
    fn say(&mut self, line: &str) {
        if let State::Joining(admission) = &self.state {
            let mut state = admission.state.lock();
            match &mut *state {
                Admitting::Waiting(said, bytes) => {
                    if *bytes + line.len() <= MAX_JOINING {
                        *bytes += line.len();
                        said.push(line.to_string());
                    }
                    return;
                }
                Admitting::Done(id, member) => {
                    let (id, member) = (*id, member.clone());
                    drop(state);
                    self.state = State::Joined { id, member };
                }
                Admitting::Abandoned => return,
            }
        }
        if let State::Joined { id, member } = &self.state {
            self.room.say(*id, member, line);
        }
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
            State::Joining(_) | State::Joined { .. } => self.say(line),
        }
        Action::Continue
    }

    fn end(&mut self) {
        match std::mem::replace(&mut self.state, State::Naming) {
            State::Naming => {}
            State::Joining(admission) => {
                let mut state = admission.state.lock();
                match std::mem::replace(&mut *state, Admitting::Abandoned) {
                    Admitting::Done(id, member) => self.room.leave(id, &member),
                    Admitting::Waiting(..) | Admitting::Abandoned => {}
                }
            }
            State::Joined { id, member } => self.room.leave(id, &member),
        }
    }
}

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
