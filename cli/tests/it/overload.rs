//! The connection limit (`max_connections`, served or idle) and what
//! happens beyond it.

use std::time::{Duration, Instant};

use linepool::Overload;

use crate::support::{Client, DEADLINE, TestServer};

/// How long a test watches for a reply that must not come.
const QUIET: Duration = Duration::from_millis(300);

/// Connects until the server serves us (not `ERR server busy`), for tests
/// where a slot frees a moment after a client leaves.
fn connect_when_served(server: &TestServer) -> Client {
    let until = Instant::now() + DEADLINE;
    loop {
        let mut client = server.connect();
        client.send_line("probe");
        let reply = client.line();
        if reply == "ACK: probe\n" {
            return client;
        }
        assert_eq!(reply, "ERR server busy\n");
        assert!(Instant::now() < until, "no slot freed within {DEADLINE:?}");
        std::thread::yield_now();
    }
}

/// A `block` server with one slot, taken by a served client, and a second
/// client that sent `two` and waits in the backlog, unanswered.
pub fn one_served_one_waiting() -> (TestServer, Client, Client) {
    let server = TestServer::start(|c| {
        c.max_connections = 1;
        c.overload = Overload::Block;
    });
    let mut first = server.connect();
    first.send_line("one");
    first.expect("ACK: one\n");

    let mut waiting = server.connect();
    waiting.send_line("two");
    waiting.expect_silence(QUIET);
    (server, first, waiting)
}

/// With `block`, a client over the limit waits in the backlog and is served
/// as soon as a slot frees.
#[test]
fn block_mode_holds_extra_clients_in_the_backlog() {
    let (_server, mut first, mut waiting) = one_served_one_waiting();
    first.send_line("shutdown");
    first.expect_closed();
    waiting.expect("ACK: two\n");
}

/// With `block`, every connection under the limit is served at once, even
/// on one worker, and clients beyond it are served in turn as slots free.
#[test]
fn block_mode_serves_up_to_the_limit_then_in_turn() {
    let server = TestServer::start(|c| {
        c.workers = 1;
        c.max_connections = 2;
    });
    let mut clients: Vec<Client> = (0..4).map(|_| server.connect()).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.send_line(&format!("c{i}"));
    }
    clients[0].expect("ACK: c0\n");
    clients[1].expect("ACK: c1\n");
    clients[2].expect_silence(QUIET);
    for (i, mut client) in clients.into_iter().enumerate() {
        if i > 1 {
            client.expect(&format!("ACK: c{i}\n"));
        }
        client.send_line("shutdown");
        client.expect_closed();
    }
    assert_eq!(server.stop().rejected, 0);
}

/// With `reject`, a client over the limit gets `ERR server busy` and a
/// close, and the rejection is counted.
#[test]
fn reject_mode_turns_extra_clients_away() {
    let server = TestServer::start(|c| {
        c.workers = 1;
        c.max_connections = 2;
        c.overload = Overload::Reject;
    });
    let mut served = server.connect();
    served.send_line("one");
    served.expect("ACK: one\n");
    // An idle connection holds a slot but no worker...
    let mut idle = server.connect();
    // ...and the next client is turned away at once.
    let mut rejected = server.connect();
    rejected.expect("ERR server busy\n");
    rejected.expect_closed();
    idle.send_line("two");
    idle.expect("ACK: two\n");

    served.send_line("shutdown");
    served.expect_closed();
    let mut later = connect_when_served(&server);
    later.send_line("three");
    later.expect("ACK: three\n");
    drop((later, idle));
    assert!(server.stop().rejected >= 1);
}

/// A rejected client that already sent a line still reads the whole error.
#[test]
fn rejected_client_that_sent_data_still_gets_the_error() {
    let server = TestServer::start(|c| {
        c.max_connections = 1;
        c.overload = Overload::Reject;
    });
    let mut served = server.connect();
    served.send_line("hold");
    served.expect("ACK: hold\n");
    for _ in 0..20 {
        let mut client = server.connect();
        client.send("eager line\n".repeat(100));
        client.expect("ERR server busy\n");
    }
    assert_eq!(server.stop().rejected, 20);
}
