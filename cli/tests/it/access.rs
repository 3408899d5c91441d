//! Who may stop the server (`--admin-from`), and connections per address
//! (`--max-per-ip`), with clients bound to different loopback addresses
//! (all of 127.0.0.0/8 is this machine).

use std::sync::Arc;

use linepool::protocol::{self, Protocol};

use crate::support::{BinServer, DEADLINE, TestServer, connect_from};

fn only_127_0_0_1(protocol: Arc<dyn Protocol>) -> TestServer {
    TestServer::start(move |c| {
        c.admin_from = "127.0.0.1/32".parse().expect("list");
        c.protocol = protocol;
    })
}

/// `quit_server` from outside the list is refused and the connection goes
/// on; from inside it stops the server.
#[test]
fn quit_server_only_from_admin_addresses() {
    let server = only_127_0_0_1(protocol::ack());
    let mut outsider = connect_from("127.0.0.2", server.addr);
    outsider.send("before\nquit_server\nafter\n");
    outsider.expect("ACK: before\nERR quit_server not allowed\nACK: after\n");
    let mut other = server.connect();
    other.send_line("still serving");
    other.expect("ACK: still serving\n");
    let mut admin = connect_from("127.0.0.1", server.addr);
    admin.send_line("quit_server");
    admin.expect_closed();
    outsider.expect_closed();
    server.wait_stopped(DEADLINE);
}

/// `sum`'s stop on an out-of-range number obeys the same list.
#[test]
fn sum_out_of_range_only_stops_from_admin_addresses() {
    let server = only_127_0_0_1(protocol::sum("Server of linepool", 50));
    let mut outsider = connect_from("127.0.0.3", server.addr);
    outsider.send_line("x;0");
    outsider.expect("ERR number out of range (1..=100)\n");
    outsider.send_line("x;5");
    outsider.expect("Server of linepool;50\n");
    let mut admin = connect_from("127.0.0.1", server.addr);
    admin.send_line("x;101");
    admin.expect_closed();
    server.wait_stopped(DEADLINE);
}

/// A length-prefixed client gets its refusal as a frame.
#[test]
fn framed_refusal_is_a_frame() {
    let server = only_127_0_0_1(protocol::framed());
    let mut outsider = connect_from("127.0.0.2", server.addr);
    let frame = |payload: &[u8]| {
        let mut out = (payload.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(payload);
        out
    };
    outsider.send(frame(b"quit_server"));
    outsider.send(frame(b"echo"));
    let mut expected = frame(b"ERR quit_server not allowed");
    expected.extend(frame(b"echo"));
    outsider.send(frame(b"shutdown"));
    assert_eq!(outsider.rest(), expected);
}

/// `none` lets nobody stop the server with a line; `any` lets everyone.
#[test]
fn none_and_any() {
    let server = TestServer::start(|c| c.admin_from = "none".parse().expect("none"));
    let mut local = server.connect();
    local.send_line("quit_server");
    local.expect("ERR quit_server not allowed\n");
    drop(server);
    let server = TestServer::start(|c| c.admin_from = "any".parse().expect("any"));
    let mut anyone = connect_from("127.0.0.9", server.addr);
    anyone.send_line("quit_server");
    anyone.expect_closed();
    server.wait_stopped(DEADLINE);
}

/// The refusal is logged with the client's address.
#[test]
fn a_refused_stop_is_logged_with_the_peer() {
    let mut server = BinServer::start(&["--admin-from", "127.0.0.1/32"]);
    let mut outsider = connect_from("127.0.0.2", server.addr);
    outsider.send_line("quit_server");
    outsider.expect("ERR quit_server not allowed\n");
    let line = server.wait_log("quit_server refused");
    assert!(
        line.contains("WARN") && line.contains("peer=127.0.0.2:"),
        "{line}"
    );
}

/// At `--max-per-ip`, one more connection from that address is turned away
/// with its own error, counted apart from `server busy`; other addresses
/// are served, and a freed slot is used again.
#[test]
fn connections_per_address_are_bounded() {
    let server = TestServer::start(|c| c.max_per_ip = 2);
    let mut first = connect_from("127.0.0.2", server.addr);
    let mut second = connect_from("127.0.0.2", server.addr);
    for c in [&mut first, &mut second] {
        c.send_line("in");
        c.expect("ACK: in\n");
    }
    let mut third = connect_from("127.0.0.2", server.addr);
    third.expect("ERR too many connections from your address\n");
    third.expect_closed();
    let mut elsewhere = connect_from("127.0.0.3", server.addr);
    elsewhere.send_line("other address");
    elsewhere.expect("ACK: other address\n");
    first.send_line("shutdown");
    first.expect_closed();
    // The slot is back by the time the client sees the close.
    let mut again = connect_from("127.0.0.2", server.addr);
    again.send_line("again");
    again.expect("ACK: again\n");
    let summary = server.stop();
    assert_eq!(summary.rejected, 0);
    assert_eq!(summary.rejected_per_ip, 1);
}

/// With `--max-per-ip 1`, a client that is closed and connects again at
/// once is served every time: its slot is free before it sees the close.
#[test]
fn a_client_closed_may_connect_again_at_once() {
    let server = TestServer::start(|c| c.max_per_ip = 1);
    for i in 0..50 {
        let mut client = connect_from("127.0.0.2", server.addr);
        client.send_line(&i.to_string());
        client.expect(&format!("ACK: {i}\n"));
        client.send_line("shutdown");
        client.expect_closed();
    }
    assert_eq!(server.stop().rejected_per_ip, 0);
}
