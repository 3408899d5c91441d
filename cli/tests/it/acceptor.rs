//! The acceptor thread: one named thread owns the listeners; in `block`
//! mode it waits on a full gate, leaving clients in the kernel's backlog,
//! and a stop wakes it at once; after the stop began it accepts nobody;
//! an accept back-off ends and every listener is served again.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::listeners::also_listening;
use crate::overload::one_served_one_waiting;
use crate::support::{BinServer, Client, DEADLINE};

/// How long a test watches for bytes that must not come.
const QUIET: Duration = Duration::from_millis(300);

/// The names of a process's threads (`/proc/PID/task/*/comm`; the system
/// keeps 15 bytes of each).
pub fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the server's threads")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect()
}

/// The scheduling policy of a process's thread named `name`, field 41 of
/// its `stat` (`SCHED_BATCH` is 3).
fn policy_of(pid: u32, name: &str) -> u32 {
    let task = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the server's threads")
        .filter_map(Result::ok)
        .find(|task| {
            std::fs::read_to_string(task.path().join("comm")).is_ok_and(|n| n.trim() == name)
        })
        .unwrap_or_else(|| panic!("no thread {name}"));
    let stat = std::fs::read_to_string(task.path().join("stat")).expect("stat");
    // The name in field 2 is in parentheses and may hold spaces: count
    // from the closing one, which is followed by field 3.
    let after = stat.rsplit_once(')').expect("the name's end").1;
    let policy = after.split_whitespace().nth(41 - 3).expect("field 41");
    policy.parse().expect("a number")
}

/// One thread, `linepool-acceptor`, accepts for every listener, beside the
/// pool's workers. It is a batch thread, which defers to the workers: its
/// wake-up never preempts one.
#[test]
fn one_named_thread_accepts() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_linepool"));
    command.args([
        "serve",
        "--workers",
        "2",
        "--listen",
        "127.0.0.1:0,127.0.0.1:0",
    ]);
    let server = BinServer::spawn(command);
    let mut client = server.connect();
    client.send_line("hello");
    client.expect("ACK: hello\n");
    // Each thread names itself as it starts: a worker may not have yet.
    let until = Instant::now() + DEADLINE;
    loop {
        let names = thread_names(server.pid);
        let count = |name: &str| names.iter().filter(|n| *n == name).count();
        assert!(count("linepool-accept") <= 1, "{names:?}");
        if count("linepool-accept") == 1 && count("linepool-worker") == 2 {
            break;
        }
        assert!(Instant::now() < until, "threads {names:?}");
        thread::yield_now();
    }
    assert_eq!(
        policy_of(server.pid, "linepool-accept"),
        3,
        "not SCHED_BATCH"
    );
    assert_eq!(
        policy_of(server.pid, "linepool-worker"),
        0,
        "not SCHED_OTHER"
    );
}

/// With `--max-connections 2` in `block` mode, a third client is connected
/// by the kernel but not accepted: it gets no byte until a slot frees,
/// then every line it sent meanwhile is answered.
#[test]
fn a_client_over_the_limit_waits_in_the_backlog_then_is_served_in_full() {
    let mut server = BinServer::start(&["--max-connections", "2", "--overload", "block"]);
    let mut first = server.connect();
    first.send_line("one");
    first.expect("ACK: one\n");
    let mut second = server.connect();
    second.send_line("two");
    second.expect("ACK: two\n");

    let mut third = server.connect();
    let third_peer = third.stream.local_addr().expect("local address");
    third.send(b"a\nb\nc\n");
    third.expect_silence(QUIET);
    let accepted = format!("client connected peer={third_peer}");
    assert_eq!(server.count_log(&accepted), 0, "accepted over the limit");

    first.send_line("shutdown");
    first.expect_closed();
    third.expect("ACK: a\nACK: b\nACK: c\n");
    server.wait_log(&accepted);
}

/// The address of a listener after the first, from its startup line.
fn second_listener(server: &mut BinServer) -> SocketAddr {
    also_listening(server, "127.0.0.1")
        .parse()
        .expect("an address")
}

/// A flood on one listener does not starve another: with a long backlog
/// on the first (the acceptor waiting on a full gate meanwhile), a client
/// of the second is accepted after one batch of the first's, not after
/// all of them.
#[test]
fn a_flooded_listener_does_not_starve_another() {
    const HELD: usize = 100;
    const FLOOD: usize = 250;
    let mut command = Command::new(env!("CARGO_BIN_EXE_linepool"));
    command.args([
        "serve",
        "--log-level",
        "debug",
        "--listen",
        "127.0.0.1:0,127.0.0.1:0",
    ]);
    command.args([
        "--max-connections",
        &HELD.to_string(),
        "--overload",
        "block",
    ]);
    let mut server = BinServer::spawn(command);
    let other = second_listener(&mut server);
    // Every slot taken: from here on the acceptor waits on the gate.
    let mut held: Vec<Client> = (0..HELD).map(|_| server.connect()).collect();
    for client in &mut held {
        client.send_line("x");
        client.expect("ACK: x\n");
    }
    // A backlog on the first listener of clients that leave at once, then
    // one client on the second.
    let flood: Vec<String> = (0..FLOOD)
        .map(|_| {
            let client = TcpStream::connect(server.addr).expect("connect");
            client.local_addr().expect("local address").to_string()
        })
        .collect();
    let mut lone = Client::connect(other);
    let lone_peer = lone.stream.local_addr().expect("local address");
    lone.send_line("b");
    held.clear();
    lone.expect("ACK: b\n");
    let connected = |peer: &str| format!("client connected peer={peer} ");
    let last = connected(flood.last().expect("a flood"));
    server.wait_until(|seen| seen.iter().any(|l| l.contains(&last)));
    let at = |needle: &str| server.seen.iter().position(|l| l.contains(needle));
    let lone_at = at(&connected(&lone_peer.to_string())).expect("the lone client");
    let before = flood
        .iter()
        .filter(|peer| at(&connected(peer)).is_some_and(|i| i < lone_at))
        .count();
    // One batch of 64 in the round the gate frees, one more in the next at
    // most, whichever listener that round starts with.
    assert!(
        before <= 2 * 64,
        "{before} of the flood were accepted first"
    );
}

/// A stop ends the acceptor's wait for a slot at once: the server stops,
/// and the client it was waiting to accept is refused, never served.
#[test]
fn a_stop_wakes_the_acceptor_waiting_for_a_slot() {
    // The acceptor saw the waiting client and waits on the full gate.
    let (server, mut first, mut waiting) = one_served_one_waiting();
    server.stop();
    first.expect_closed();
    waiting.expect_closed();
}

/// Once a stop began, nobody is accepted: the acceptor is joined (its
/// listener closed) before the connections are closed, so a client
/// connecting while the stop waits for a slow one is refused by the
/// kernel, or at most gets nothing; it is never served.
#[test]
fn nobody_is_accepted_once_the_stop_began() {
    let mut server = BinServer::start(&["--stop-grace", "5s"]);
    // A client that sends and never reads holds the stop up for its
    // grace: its replies, far more than the socket buffers hold, cannot
    // all be written.
    let mut slow = server.connect();
    let mut writer = slow.stream.try_clone().expect("clone");
    let sender = thread::spawn(move || {
        let line = "x".repeat(1023) + "\n";
        let lines = line.repeat(32 * 1024);
        let _ = writer.write_all(lines.as_bytes());
    });
    slow.expect("ACK: xxx");
    let mut admin = server.connect();
    admin.send_line("quit_server");
    let stopping = server.wait_log("stopping, closing");
    let closed = server.wait_log("stopped accepting, closed 1 listener");
    let order = |needle: &str| server.seen.iter().position(|l| l.contains(needle));
    assert!(
        order(&closed) < order(&stopping),
        "the connections were closed before the acceptor stopped"
    );

    match TcpStream::connect(server.addr) {
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}"),
        Ok(mut late) => {
            late.set_read_timeout(Some(DEADLINE)).expect("timeout");
            let _ = late.write_all(b"late\n");
            let mut got = Vec::new();
            let _ = late.read_to_end(&mut got);
            assert!(got.is_empty(), "served after the stop: {got:?}");
        }
    }
    // The slow client goes; the stop ends.
    let _ = slow.stream.shutdown(Shutdown::Both);
    let status = server.wait_exit(DEADLINE);
    assert!(status.success(), "exit status {status:?}");
    sender.join().expect("sender");
}

/// Out of file descriptors with two listeners, the acceptor backs off;
/// once descriptors free up and the pause passes, the other listener's
/// client is served too, though the first still has a backlog.
#[test]
fn after_a_back_off_every_listener_is_served() {
    let mut command = Command::new("bash");
    command.args([
        "-c",
        r#"ulimit -n 24 && exec "$0" serve --listen 127.0.0.1:0,127.0.0.1:0 --log-level debug"#,
        env!("CARGO_BIN_EXE_linepool"),
    ]);
    let mut server = BinServer::spawn(command);
    let other = second_listener(&mut server);
    let flood: Vec<Client> = (0..40).map(|_| server.connect()).collect();
    server.wait_log("accept failed, backing off");
    let mut client = Client::connect(other);
    client.send_line("other");
    drop(flood);
    client.expect("ACK: other\n");
}
