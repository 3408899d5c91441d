//! Stopping the server: `quit_server`, signals, the handle, and how fast and
//! how cleanly each one ends every connection.

use std::io::Write;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{self, BinServer, Client, DEADLINE, TestServer};

/// How fast a stop must finish with no request in flight.
const EXIT_WITHIN: Duration = Duration::from_millis(100);

/// `quit_server` answers the lines before it, closes every client and
/// returns from `run`.
#[test]
fn quit_server_stops_everything() {
    let server = TestServer::default();
    let mut bystander = server.connect();
    bystander.send_line("waiting");
    bystander.expect("ACK: waiting\n");
    let mut client = server.connect();
    client.send("a\nb\nquit_server\nnever\n");
    client.expect("ACK: a\nACK: b\n");
    client.expect_closed();
    bystander.expect_closed();
    let summary = server.wait_stopped(DEADLINE);
    assert_eq!(summary.connections, 2);
    assert_eq!(summary.lines, 3);
}

/// A stop closes parked connections, and clients still waiting in the
/// backlog are refused.
#[test]
fn quit_server_closes_parked_and_waiting_connections() {
    let server = TestServer::start(|c| {
        c.workers = 1;
        c.max_connections = 4;
    });
    let mut client = server.connect();
    client.send_line("first");
    client.expect("ACK: first\n");
    let mut parked: Vec<Client> = (0..3).map(|_| server.connect()).collect();
    for p in &mut parked {
        p.send_line("parked");
        p.expect("ACK: parked\n");
    }
    let mut waiting: Vec<Client> = (0..2).map(|_| server.connect()).collect();
    for w in &mut waiting {
        w.send_line("waiting");
    }
    client.send_line("quit_server");
    client.expect_closed();
    for mut p in parked {
        p.expect_closed();
    }
    server.wait_stopped(DEADLINE);
    for mut w in waiting {
        w.expect_closed();
    }
}

/// Many `quit_server` lines at once: the first wins, the rest are ignored,
/// and the server stops once.
#[test]
fn concurrent_quit_server_stops_once() {
    let server = TestServer::default();
    let mut clients: Vec<Client> = (0..16).map(|_| server.connect()).collect();
    for c in &mut clients {
        c.send_line("ready");
        c.expect("ACK: ready\n");
    }
    let barrier = Arc::new(Barrier::new(clients.len()));
    let threads: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                c.send_line("quit_server");
                c.expect_closed();
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client panicked");
    }
    server.wait_stopped(DEADLINE);
    assert!(!server.shutdown.trigger(), "the stop was already triggered");
}

/// With thousands of idle clients connected, `run` returns within 100 ms
/// of the trigger.
#[test]
fn stop_with_thousands_of_idle_clients_is_fast() {
    let count = support::allow_descriptors(2 * 2000 + 100).min(4000) / 2 - 50;
    let server = TestServer::start(|c| c.workers = 2);
    let mut clients: Vec<Client> = (0..count).map(|_| server.connect()).collect();
    for c in clients.iter_mut() {
        c.send_line("idle");
    }
    for c in clients.iter_mut() {
        c.expect("ACK: idle\n");
    }
    let start = Instant::now();
    server.shutdown.trigger();
    server.wait_stopped(DEADLINE);
    let took = start.elapsed();
    assert!(
        took < EXIT_WITHIN,
        "stop with {count} clients took {took:?}"
    );
    for mut c in clients {
        c.expect_closed();
    }
}

/// A reply is never cut in half by a stop: a client that pipelined a lot
/// receives only whole reply lines, in order.
#[test]
fn stop_never_cuts_a_reply() {
    let server = TestServer::default();
    let mut client = server.connect();
    let lines = 200_000;
    let input: String = (0..lines).map(|i| format!("{i}\n")).collect();
    let mut writer = client.stream.try_clone().expect("clone");
    let sender = thread::spawn(move || {
        let _ = writer.write_all(input.as_bytes());
    });
    // Stop once replies are flowing, in the middle of the stream.
    client.expect("ACK: 0\n");
    server.shutdown.trigger();
    let rest = client.rest();
    let text = String::from_utf8(rest).expect("utf-8");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "cut reply: {:?}",
        &text[text.len().saturating_sub(20)..]
    );
    for (i, line) in text.lines().enumerate() {
        assert_eq!(line, format!("ACK: {}", i + 1));
    }
    server.wait_stopped(DEADLINE);
    let _ = sender.join();
}

/// Sends one line so long that its reply cannot fit in the socket buffers,
/// and reads only the first bytes of the reply: from then on the worker is
/// blocked writing until the client reads or the socket is shut down.
fn wedge_a_worker(client: &mut Client) {
    let mut writer = client.stream.try_clone().expect("clone");
    let line = "x".repeat(HUGE_LINE) + "\n";
    // The server reads the whole line while we send it; our write finishes.
    let sender = thread::spawn(move || writer.write_all(line.as_bytes()));
    client.expect("ACK: xxx");
    sender.join().expect("sender panicked").expect("send");
}

/// Far more than loopback socket buffers hold (a few MiB).
const HUGE_LINE: usize = 24 * 1024 * 1024;

/// How long a stop takes with one client that does not read its reply,
/// on a server with this stop grace (`None`: the default).
fn stop_with_a_client_not_reading(grace: Option<Duration>) -> Duration {
    let server = TestServer::start(|c| {
        c.max_line = HUGE_LINE;
        if let Some(grace) = grace {
            c.stop_grace = grace;
        }
    });
    let mut client = server.connect();
    wedge_a_worker(&mut client);
    let start = Instant::now();
    server.shutdown.trigger();
    server.wait_stopped(DEADLINE);
    start.elapsed()
}

/// A client that never reads cannot hold a stop up for longer than the
/// grace period: its socket is then shut down in both directions.
#[test]
fn stop_cuts_off_a_client_that_does_not_read() {
    let took = stop_with_a_client_not_reading(None);
    assert!(
        took >= Duration::from_millis(900),
        "the wedged worker was not waited for: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "stop took {took:?}");
}

/// `stop_grace` sets how long a stop waits for a client that does not read.
#[test]
fn stop_grace_is_configurable() {
    let took = stop_with_a_client_not_reading(Some(Duration::from_millis(200)));
    assert!(
        took >= Duration::from_millis(180),
        "not waited for: {took:?}"
    );
    assert!(took < Duration::from_millis(900), "stop took {took:?}");
}

/// SIGTERM stops the binary cleanly: exit status 0 and a summary line.
#[test]
fn sigterm_stops_the_binary_fast() {
    let mut server = BinServer::start(&[]);
    let mut clients: Vec<Client> = (0..200).map(|_| server.connect()).collect();
    for c in clients.iter_mut().take(100) {
        c.send_line("idle");
        c.expect("ACK: idle\n");
    }
    let start = Instant::now();
    server.signal("TERM");
    let status = server.wait_exit(DEADLINE);
    let took = start.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(took < EXIT_WITHIN, "exit took {took:?}");
    server.wait_log("stopped connections=");
}

/// Ctrl-C (SIGINT) and SIGHUP run the same stop, with exit status 0.
#[test]
fn sigint_and_sighup_stop_the_binary() {
    for signal in ["INT", "HUP"] {
        let mut server = BinServer::start(&[]);
        let mut client = server.connect();
        client.send_line("hello");
        client.expect("ACK: hello\n");
        server.signal(signal);
        client.expect_closed();
        assert!(server.wait_exit(DEADLINE).success());
        server.wait_log("stopped connections=1 lines=1 rejected=0");
    }
}

/// `quit_server` stops the binary with exit status 0.
#[test]
fn quit_server_exits_the_binary_with_zero() {
    let mut server = BinServer::start(&[]);
    let mut client = server.connect();
    client.send_line("quit_server");
    client.expect_closed();
    assert!(server.wait_exit(DEADLINE).success());
    server.wait_log("quit_server received peer=127.0.0.1:");
}

/// A second Ctrl-C during a stop exits at once with a non-zero status.
#[test]
fn second_sigint_exits_at_once() {
    let max_line = HUGE_LINE.to_string();
    let mut server = BinServer::start(&["--max-line", &max_line]);
    // A worker stuck writing to a client that does not read holds the stop
    // in its one-second grace period.
    let mut client = server.connect();
    wedge_a_worker(&mut client);
    server.signal("INT");
    server.wait_log("signal received, stopping");
    server.signal("INT");
    let status = server.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(130), "{:#?}", server.seen);
}
