//! Draining for a rolling restart: on SIGTERM with `--drain`, the server
//! keeps serving and accepting while its HAProxy agent says `drain`, then
//! stops; SIGINT, a second signal and `quit_server` stop at once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::{BinServer, DEADLINE, agent_says};

/// Starts the binary with an agent port and a drain time; returns it with
/// the agent's address.
fn draining_server(drain: &str) -> (BinServer, SocketAddr) {
    let mut server = BinServer::start(&["--agent", "127.0.0.1:0", "--drain", drain]);
    let agent = server.agent();
    (server, agent)
}

/// SIGTERM starts the drain: the agent says `drain`, clients old and new
/// are still served, and the server stops by itself when the drain is over.
#[test]
fn sigterm_drains_then_stops() {
    let (mut server, agent) = draining_server("1500ms");
    assert_eq!(agent_says(agent), "ready\n");
    let mut old = server.connect();
    old.send_line("before");
    old.expect("ACK: before\n");
    let start = Instant::now();
    server.signal("TERM");
    server.wait_log("signal received, draining signal=SIGTERM");
    assert_eq!(agent_says(agent), "drain\n");
    let mut new = server.connect();
    new.send_line("during the drain");
    new.expect("ACK: during the drain\n");
    old.send_line("still");
    old.expect("ACK: still\n");
    let status = server.wait_exit(DEADLINE);
    let took = start.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took >= Duration::from_millis(1400),
        "stopped after {took:?}"
    );
    old.expect_closed();
    new.expect_closed();
    server.wait_log("drain over, stopping");
}

/// During a drain, a second signal or `quit_server` stops at once.
#[test]
fn a_second_signal_or_quit_server_ends_a_drain() {
    let (mut server, _) = draining_server("60s");
    server.signal("TERM");
    server.wait_log("draining");
    let start = Instant::now();
    server.signal("TERM");
    assert!(server.wait_exit(DEADLINE).success());
    assert!(start.elapsed() < Duration::from_secs(5));

    let (mut server, _) = draining_server("60s");
    server.signal("TERM");
    server.wait_log("draining");
    let mut client = server.connect();
    client.send_line("quit_server");
    client.expect_closed();
    assert!(server.wait_exit(DEADLINE).success());
}

/// SIGINT does not drain, whatever `--drain` says.
#[test]
fn sigint_stops_at_once_even_with_a_drain_time() {
    let (mut server, agent) = draining_server("60s");
    assert_eq!(agent_says(agent), "ready\n");
    let start = Instant::now();
    server.signal("INT");
    assert!(server.wait_exit(DEADLINE).success());
    assert!(start.elapsed() < Duration::from_secs(5));
    server.wait_log("signal received, stopping signal=SIGINT");
}
