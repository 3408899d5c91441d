//! The chat room's contract, run against the room of one instance and the
//! room shared by several instances on a chat bus alike: the same test
//! bodies, with members spread over the instances, see the same bytes.

use std::io::Write;
use std::thread;
use std::time::Duration;

use linepool_chat::ChatBus;

use crate::redis_server::Redis;
use crate::support::{self, Client, TestServer, scrape_until};

/// Bus timings short enough for tests: peers silent for 0.5 s are gone,
/// Redis is tried again within 0.2 s.
pub fn test_bus(url: &str, room: &str) -> ChatBus {
    ChatBus {
        room: room.to_string(),
        heartbeat: Duration::from_millis(100),
        backoff_max: Duration::from_millis(200),
        ..ChatBus::new(url)
    }
}

/// A chat instance on the bus at `url`, in `room`, with metrics.
pub fn instance(url: &str, room: &str) -> TestServer {
    TestServer::with_metrics(|c| {
        c.protocol = support::chat_on(Some(test_bus(url, room)));
    })
}

/// A chat room: one instance, or several on a bus.
pub struct Room {
    pub servers: Vec<TestServer>,
    pub redis: Option<Redis>,
}

impl Room {
    /// The room of one instance, without a bus.
    pub fn single() -> Room {
        Room {
            servers: vec![TestServer::start(|c| c.protocol = support::chat())],
            redis: None,
        }
    }

    /// `n` instances on a fresh Redis, each subscribed.
    pub fn bus(n: usize) -> Room {
        let redis = Redis::start();
        let servers: Vec<TestServer> = (0..n).map(|_| instance(&redis.url(), "lobby")).collect();
        let room = Room {
            servers,
            redis: Some(redis),
        };
        for i in 0..n {
            room.wait_metric(i, "linepool_chat_bus_up", 1.0);
        }
        room
    }

    /// Connects to instance `i` (of however many there are) and joins as
    /// `name`, checking the prompt.
    pub fn join(&self, i: usize, name: &str) -> Client {
        let mut client = self.servers[i % self.servers.len()].connect();
        client.expect("Enter your name:\n");
        client.send_line(name);
        client
    }

    /// Waits until every instance sees `members` members in the room. The
    /// room of one instance is always settled.
    pub fn settle(&self, members: usize) {
        if self.redis.is_some() {
            for i in 0..self.servers.len() {
                self.wait_metric(i, "linepool_chat_room_members", members as f64);
            }
        }
    }

    /// Waits until instance `i`'s metric `name` is `value`.
    pub fn wait_metric(&self, i: usize, name: &str, value: f64) {
        let samples = scrape_until(self.servers[i].metrics(), |m| m.get(name) == Some(&value));
        assert_eq!(samples.get(name), Some(&value), "{name} on instance {i}");
    }
}

/// ann on the first instance, then bob on the second, each told of the
/// other.
pub fn ann_and_bob(room: &Room) -> (Client, Client) {
    let mut ann = room.join(0, "ann");
    ann.expect("Welcome ann! 1 online.\n");
    room.settle(1);
    let mut bob = room.join(1, "bob");
    bob.expect("Welcome bob! 2 online.\n");
    ann.expect("* bob joined\n");
    (ann, bob)
}

/// Runs each body against the room of one instance and against a room
/// of two instances on a bus.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod single {
            $(
                #[test]
                fn $name() {
                    super::$name(&super::Room::single());
                }
            )*
        }
        mod bus {
            $(
                #[test]
                fn $name() {
                    super::$name(&super::Room::bus(2));
                }
            )*
        }
    };
}

contract!(
    join_say_and_leave,
    names_are_unique_in_the_room,
    every_line_arrives_once_in_order,
    a_stuck_member_delays_nobody,
);

/// Members hear each other's lines but never their own, hear who joins
/// and leaves, and the welcome counts the whole room.
fn join_say_and_leave(room: &Room) {
    let (mut ann, mut bob) = ann_and_bob(room);
    room.settle(2);
    let mut cid = room.join(2, "cid");
    cid.expect("Welcome cid! 3 online.\n");
    ann.expect("* cid joined\n");
    bob.expect("* cid joined\n");
    room.settle(3);

    ann.send_line("hi all");
    bob.expect("ann: hi all\n");
    cid.expect("ann: hi all\n");
    // The sender gets nothing back: its next line is the next thing said.
    bob.send_line("hey");
    ann.expect("bob: hey\n");
    cid.expect("bob: hey\n");

    bob.send_line("shutdown");
    bob.expect_closed();
    ann.expect("* bob left\n");
    cid.expect("* bob left\n");
    drop(cid);
    ann.expect("* cid left\n");
}

/// A name held anywhere in the room is taken; guest names are unique.
fn names_are_unique_in_the_room(room: &Room) {
    let mut ann = room.join(0, "ann");
    ann.expect("Welcome ann! 1 online.\n");
    room.settle(1);
    let mut twin = room.join(1, "ann");
    twin.expect("Name ann is taken; you are guest-1\n");
    twin.expect("Welcome guest-1! 2 online.\n");
    ann.expect("* guest-1 joined\n");
    room.settle(2);
    let mut blank = room.join(2, "   ");
    blank.expect("Empty name; you are guest-2\n");
    blank.expect("Welcome guest-2! 3 online.\n");
    ann.expect("* guest-2 joined\n");
    room.settle(3);
    let mut long = room.join(3, &"x".repeat(33));
    long.expect("Name longer than 32 bytes; you are guest-3\n");
    long.expect("Welcome guest-3! 4 online.\n");
    ann.expect("* guest-3 joined\n");
    twin.send_line("which ann?");
    ann.expect("guest-1: which ann?\n");
}

/// Lines said at once by members on every instance reach every other
/// member exactly once, each sender's in the order it sent them.
pub fn every_line_arrives_once_in_order(room: &Room) {
    const LINES: usize = 300;
    let names = ["ann", "bob", "cid", "dan"];
    let mut members = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let mut member = room.join(i, name);
        member.expect(&format!("Welcome {name}! {} online.\n", i + 1));
        room.settle(i + 1);
        members.push(member);
    }
    for (i, member) in members.iter_mut().enumerate() {
        for _ in i + 1..names.len() {
            let line = member.line();
            assert!(line.ends_with(" joined\n"), "{line:?}");
        }
    }
    let readers: Vec<_> = members
        .into_iter()
        .enumerate()
        .map(|(me, mut member)| {
            thread::spawn(move || {
                let mut writer = member.stream.try_clone().expect("clone");
                let sender = thread::spawn(move || {
                    for n in 0..LINES {
                        writer.write_all(format!("{n}\n").as_bytes()).expect("send");
                    }
                });
                let mut next = [0usize; 4];
                let wanted = LINES * (names.len() - 1);
                for _ in 0..wanted {
                    let line = member.line();
                    let (who, n) = line.trim_end().split_once(": ").expect("a said line");
                    let from = names.iter().position(|m| *m == who).expect("a member");
                    assert_ne!(from, me, "{} heard itself", names[me]);
                    assert_eq!(n, next[from].to_string(), "{} from {who}", names[me]);
                    next[from] += 1;
                }
                sender.join().expect("sender");
                member
            })
        })
        .collect();
    let mut members: Vec<Client> = readers
        .into_iter()
        .map(|r| r.join().expect("reader"))
        .collect();
    // Nothing more comes: a repeat would arrive before the next line.
    members[0].send_line("end");
    for member in &mut members[1..] {
        member.expect("ann: end\n");
    }
}

/// A member that reads nothing is dropped and announced as left; the
/// others hear every line meanwhile.
fn a_stuck_member_delays_nobody(room: &Room) {
    let mut stuck = room.join(0, "stuck");
    stuck.expect("Welcome stuck! 1 online.\n");
    room.settle(1);
    let mut listener = room.join(1, "listener");
    listener.expect("Welcome listener! 2 online.\n");
    room.settle(2);
    let mut sender = room.join(0, "sender");
    sender.expect("Welcome sender! 3 online.\n");
    listener.expect("* sender joined\n");
    // Far more than the stuck member's socket buffers and backlog hold,
    // in rounds, so that the bus's queue is never the bound.
    let line = "m".repeat(200);
    let mut left = false;
    for round in 0..60 {
        let batch: String = (0..1000)
            .map(|i| format!("{} {line}\n", round * 1000 + i))
            .collect();
        sender.send(batch);
        let mut next = 0;
        while next < 1000 {
            let got = listener.line();
            if got == "* stuck left\n" {
                left = true;
                continue;
            }
            assert_eq!(got, format!("sender: {} {line}\n", round * 1000 + next));
            next += 1;
        }
    }
    if !left {
        listener.expect("* stuck left\n");
    }
    drop(stuck);
}

/// Three instances: every line once, in order.
#[test]
fn three_instances_every_line_arrives_once_in_order() {
    every_line_arrives_once_in_order(&Room::bus(3));
}
