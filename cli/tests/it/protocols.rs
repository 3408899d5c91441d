//! The companion protocols on the same engine: chat, framed echo and the
//! number exchange, checked byte for byte over real sockets.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use crate::support::{Client, DEADLINE, TestServer};

fn chat_server() -> TestServer {
    TestServer::start(|c| c.protocol = crate::support::chat())
}

/// Connects to a chat server and joins under `name`, checking the prompt.
fn join(server: &TestServer, name: &str) -> Client {
    let mut client = server.connect();
    client.expect("Enter your name:\n");
    client.send_line(name);
    client
}

/// Join, broadcast to the others only, leave by `shutdown` and by hanging up.
#[test]
fn chat_join_broadcast_and_leave() {
    let server = chat_server();
    let mut alice = join(&server, "alice");
    alice.expect("Welcome alice! 1 online.\n");
    let mut bob = join(&server, " bob ");
    bob.expect("Welcome bob! 2 online.\n");
    alice.expect("* bob joined\n");
    let mut carol = join(&server, "carol");
    carol.expect("Welcome carol! 3 online.\n");
    alice.expect("* carol joined\n");
    bob.expect("* carol joined\n");

    alice.send_line("hi all");
    bob.expect("alice: hi all\n");
    carol.expect("alice: hi all\n");
    // The sender gets nothing back: its next line is the next thing said.
    bob.send_line("hey");
    alice.expect("bob: hey\n");
    carol.expect("bob: hey\n");

    bob.send_line("shutdown");
    bob.expect_closed();
    alice.expect("* bob left\n");
    carol.expect("* bob left\n");
    drop(carol);
    alice.expect("* carol left\n");
    // Three names and two chat lines; `shutdown` is a command, not a message.
    assert_eq!(server.stop().lines, 5);
}

/// What the chat interleaving test's `name` says in its line `i`: its
/// number, then a long run of its own letter.
fn long_line(name: &str, i: usize) -> String {
    let letter = &name[..1];
    format!("{i:05} {}", letter.repeat(CHAT_LINE))
}

/// The interleaving test: rounds of a burst of lines of this length from
/// each speaker. A round (48 KB to the ear) stays under how far a member
/// may fall behind; many rounds of many lines give the two speakers'
/// deliveries many chances to meet.
const CHAT_ROUNDS: usize = 1000;
const CHAT_BURST: usize = 24;
const CHAT_LINE: usize = 1000;

/// Two members speaking at once never interleave within a line: many long
/// lines said by each of two members at the same moment reach a third as
/// whole lines, each from exactly one of them, in each one's order.
#[test]
fn chat_lines_said_at_once_never_interleave() {
    // Two workers, so that both speakers are served at the same time.
    let server = TestServer::start(|c| {
        c.protocol = crate::support::chat();
        c.workers = 2;
    });
    let mut ear = join(&server, "ear");
    ear.expect("Welcome ear! 1 online.\n");
    let mut ann = join(&server, "ann");
    ann.expect("Welcome ann! 2 online.\n");
    ear.expect("* ann joined\n");
    let mut bob = join(&server, "bob");
    bob.expect("Welcome bob! 3 online.\n");
    ear.expect("* bob joined\n");
    ann.expect("* bob joined\n");
    // Rounds of a burst from each, both let go by one barrier; the ear
    // reads each round whole before the next, so that it never falls far
    // enough behind to be dropped. The speakers hear each other too, and
    // read it off for the same reason.
    let (rounds, burst) = (CHAT_ROUNDS, CHAT_BURST);
    let barrier = Arc::new(Barrier::new(3));
    let speakers: Vec<_> = [("ann", ann), ("bob", bob)]
        .into_iter()
        .map(|(name, mut member)| {
            let barrier = barrier.clone();
            let mut hearing = member.stream.try_clone().expect("clone");
            let listener = thread::spawn(move || std::io::copy(&mut hearing, &mut std::io::sink()));
            let speaker = thread::spawn(move || {
                for round in 0..rounds {
                    let said: String = (round * burst..(round + 1) * burst)
                        .map(|i| long_line(name, i) + "\n")
                        .collect();
                    barrier.wait();
                    member.send(said);
                }
                member
            });
            (speaker, listener)
        })
        .collect();
    let mut next = [0usize; 2];
    for _ in 0..rounds {
        barrier.wait();
        for _ in 0..2 * burst {
            let line = ear.line();
            let (speaker, text) = line
                .split_once(": ")
                .unwrap_or_else(|| panic!("not a chat line: {line:.60}"));
            let who = ["ann", "bob"]
                .iter()
                .position(|n| *n == speaker)
                .unwrap_or_else(|| panic!("a line from nobody: {line:.60}"));
            let want = long_line(speaker, next[who]) + "\n";
            assert!(
                text == want,
                "line {} from {speaker}: got {} bytes, {:.40}...",
                next[who],
                text.len(),
                text
            );
            next[who] += 1;
        }
    }
    assert_eq!(next, [rounds * burst; 2]);
    for (speaker, listener) in speakers {
        let member = speaker.join().expect("speaker panicked");
        member
            .stream
            .shutdown(std::net::Shutdown::Both)
            .expect("shutdown");
        let _ = listener.join().expect("listener panicked");
    }
    // Both leave; two workers close them, in either order.
    let mut left = [ear.line(), ear.line()];
    left.sort();
    assert_eq!(left, ["* ann left\n", "* bob left\n"]);
}

/// A name that is taken, empty or too long is replaced by a guest name, and
/// the client is told.
#[test]
fn chat_name_clashes_get_guest_names() {
    let server = chat_server();
    let mut alice = join(&server, "alice");
    alice.expect("Welcome alice! 1 online.\n");
    let mut twin = join(&server, "alice");
    twin.expect("Name alice is taken; you are guest-1\n");
    twin.expect("Welcome guest-1! 2 online.\n");
    alice.expect("* guest-1 joined\n");
    let mut blank = join(&server, "   ");
    blank.expect("Empty name; you are guest-2\n");
    blank.expect("Welcome guest-2! 3 online.\n");
    let mut long = join(&server, &"x".repeat(33));
    long.expect("Name longer than 32 bytes; you are guest-3\n");
    long.expect("Welcome guest-3! 4 online.\n");
    let mut exact = join(&server, &"y".repeat(32));
    exact.expect(&format!("Welcome {}! 5 online.\n", "y".repeat(32)));
    twin.send_line("which alice?");
    alice.expect("* guest-2 joined\n");
    alice.expect("* guest-3 joined\n");
    alice.expect(&format!("* {} joined\n", "y".repeat(32)));
    alice.expect("guest-1: which alice?\n");
}

// The stuck member is in the chat contract (tests/it/chat_contract.rs),
// run against the room of one instance and the bus room alike.

/// `quit_server` from a chat client stops the server.
#[test]
fn chat_quit_server_stops_the_server() {
    let server = chat_server();
    let mut alice = join(&server, "alice");
    alice.expect("Welcome alice! 1 online.\n");
    alice.send_line("quit_server");
    alice.expect_closed();
    server.wait_stopped(DEADLINE);
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn framed_server(max: usize) -> TestServer {
    TestServer::start(|c| {
        c.protocol = linepool::protocol::framed();
        c.max_line = max;
    })
}

/// Framed echo: any bytes, empty messages, many messages in one write and
/// one message over many writes all come back intact and in order.
#[test]
fn framed_echo_is_exact() {
    let server = framed_server(1024);
    let mut client = server.connect();
    let binary: Vec<u8> = (0..=255).collect();
    let messages: [&[u8]; 4] = [b"hello", b"", &binary, b"shutdown now"];
    let all: Vec<u8> = messages.iter().flat_map(|m| frame(m)).collect();
    client.send(&all);
    let mut expected = all.clone();
    // One message dribbled a byte at a time.
    let dribbled = frame(b"slowly");
    client.stream.set_nodelay(true).expect("nodelay");
    for byte in &dribbled {
        client.send([*byte]);
    }
    expected.extend_from_slice(&dribbled);
    client.send(frame(b"shutdown"));
    assert_eq!(client.rest(), expected);
}

/// A framed client hears every refusal and timeout as a frame, as the
/// `quit_server` refusal already is: a bare line's first bytes would read
/// as a length of about 1.16 GB.
#[test]
fn framed_refusals_and_timeouts_are_frames() {
    // Every slot taken, with --overload reject.
    let server = TestServer::start(|c| {
        c.protocol = linepool::protocol::framed();
        c.max_connections = 1;
        c.overload = linepool::Overload::Reject;
    });
    let mut holder = server.connect();
    holder.send(frame(b"in"));
    assert_eq!(holder.read_bytes(6), frame(b"in"));
    let mut refused = server.connect();
    assert_eq!(refused.rest(), frame(b"ERR server busy"));
    drop(server);

    // One connection per address, with --max-per-ip 1.
    let server = TestServer::start(|c| {
        c.protocol = linepool::protocol::framed();
        c.max_per_ip = 1;
    });
    let mut holder = server.connect();
    holder.send(frame(b"in"));
    assert_eq!(holder.read_bytes(6), frame(b"in"));
    let mut refused = server.connect();
    assert_eq!(
        refused.rest(),
        frame(b"ERR too many connections from your address")
    );
    drop(server);

    // Silence for the idle timeout.
    let server = TestServer::start(|c| {
        c.protocol = linepool::protocol::framed();
        c.idle_timeout = Some(Duration::from_millis(200));
    });
    let mut silent = server.connect();
    assert_eq!(silent.rest(), frame(b"ERR idle timeout"));
}

/// A message over the limit closes the connection without its payload
/// being read or answered.
#[test]
fn framed_over_long_message_closes() {
    let server = framed_server(16);
    let mut client = server.connect();
    client.send(frame(b"sixteen bytes ok"));
    client.send(17u32.to_be_bytes());
    assert_eq!(client.rest(), frame(b"sixteen bytes ok"));
}

/// A connection that ends inside a message is closed quietly.
#[test]
fn framed_truncated_message_closes_quietly() {
    let server = framed_server(1024);
    let mut client = server.connect();
    client.send(&frame(b"whole")[..]);
    client.send(&frame(b"cut short")[..6]);
    client.half_close();
    assert_eq!(client.rest(), frame(b"whole"));
}

/// A `quit_server` payload stops the server.
#[test]
fn framed_quit_server_stops_the_server() {
    let server = framed_server(1024);
    let mut client = server.connect();
    client.send(frame(b"quit_server"));
    client.expect_closed();
    server.wait_stopped(DEADLINE);
}

fn sum_server() -> TestServer {
    TestServer::start(|c| c.protocol = linepool::protocol::sum("Server of linepool", 50))
}

/// Valid exchanges get the server's name and number; several may share a
/// connection.
#[test]
fn sum_exchanges() {
    let server = sum_server();
    let mut client = server.connect();
    client.send_line("Alice;7");
    client.expect("Server of linepool;50\n");
    client.send_line("  Bob the 2nd ;  100 ");
    client.expect("Server of linepool;50\n");

    let custom = TestServer::start(|c| {
        c.protocol = linepool::protocol::sum("Numbers", 3);
    });
    let mut client = custom.connect();
    client.send_line("x;1");
    client.expect("Numbers;3\n");
}

/// A malformed request gets an error and the connection stays open.
#[test]
fn sum_malformed_request_may_be_retried() {
    let server = sum_server();
    let mut client = server.connect();
    for bad in ["hello", "x;", ";5", "x;five", "x;5.5"] {
        client.send_line(bad);
        client.expect("ERR expected <name>;<integer>\n");
    }
    client.send_line("x;5");
    client.expect("Server of linepool;50\n");
}

/// A number outside 1..=100 stops the server, as the original service did.
#[test]
fn sum_out_of_range_stops_the_server() {
    for n in ["0", "101", "-3", "123456789012345678901234567890"] {
        let server = sum_server();
        let mut bystander = server.connect();
        bystander.send_line("b;2");
        bystander.expect("Server of linepool;50\n");
        let mut client = server.connect();
        client.send_line(&format!("x;{n}"));
        client.expect_closed();
        bystander.expect_closed();
        server.wait_stopped(DEADLINE);
    }
}

/// The core's rules hold for every protocol: a client over the connection
/// limit waits, an over-long line is refused.
#[test]
fn core_limits_apply_to_companion_protocols() {
    let server = TestServer::start(|c| {
        c.protocol = linepool::protocol::sum("Server of linepool", 50);
        c.max_connections = 1;
        c.max_line = 12;
    });
    let mut first = server.connect();
    first.send_line("a;1");
    first.expect("Server of linepool;50\n");
    let mut second = server.connect();
    second.send_line("b;2");
    second.expect_silence(Duration::from_millis(200));
    first.send_line("a;1 and far too long");
    first.expect("ERR line too long (max 12 bytes)\n");
    first.expect_closed();
    second.expect("Server of linepool;50\n");
}
