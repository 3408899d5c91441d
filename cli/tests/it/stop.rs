//! Stopping the server: `quit_server`, signals, the handle, and how fast and
//! how cleanly each one ends every connection.

use std::io::Write;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{self, BinServer, Client, DEADLINE, TestServer, scrape_until};

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

/// Sixteen clients of the binary send `quit_server` at once; returns the
/// server once it has exited 0, with its whole log read.
fn sixteen_quit_servers_at_once() -> BinServer {
    let mut server = BinServer::start(&[]);
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
    assert!(server.wait_exit_and_log(DEADLINE).success());
    server
}

/// Many `quit_server` lines at once: the first wins, the rest are ignored,
/// and the server stops once: the stop's first and last log lines each
/// appear exactly once, and the binary exits 0.
#[test]
fn concurrent_quit_server_stops_once() {
    let server = sixteen_quit_servers_at_once();
    let once = |needle: &str| {
        assert_eq!(server.count_log(needle), 1, "{needle}: {:#?}", server.seen);
    };
    once("stopping, closing");
    once("stopped connections=16 lines=16 rejected=0 rejected_per_ip=0");
}

/// Many `quit_server` lines at once: the log names what stopped the server
/// once, before the stop's first line.
///
/// Guards the cause being logged inside the trigger's first-wins
/// decision: logged by every allowed `quit_server`, it came two or more
/// times, sometimes after `stopping, closing`.
#[test]
fn concurrent_quit_server_names_its_cause_once() {
    let server = sixteen_quit_servers_at_once();
    assert_eq!(
        server.count_log("quit_server received"),
        1,
        "{:#?}",
        server.seen
    );
    let cause = server
        .seen
        .iter()
        .position(|l| l.contains("quit_server received"));
    let stop = server
        .seen
        .iter()
        .position(|l| l.contains("stopping, closing"));
    assert!(cause < stop, "{:#?}", server.seen);
}

/// With thousands of idle clients connected, `run` returns within half a
/// second of the trigger: a stop that waited for each client in turn (its
/// linger, its idle time) would take seconds. The bound leaves room for a
/// busy 2-core machine, where 100 ms was missed about once in 30 runs.
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
        took < Duration::from_millis(500),
        "stop with {count} clients took {took:?}"
    );
    for mut c in clients {
        c.expect_closed();
    }
}

/// Line `i` of the pipelined input: mostly empty, so that many messages
/// fit in few bytes, with every hundredth numbered, so that the order of
/// the replies shows.
fn pipelined(i: usize) -> String {
    if i.is_multiple_of(100) {
        i.to_string()
    } else {
        String::new()
    }
}

/// Pipelines 50,000 lines (52 KB) that the server's kernel holds whole
/// when the stop comes: written at once and acknowledged, so that nothing
/// the client sends arrives after the server has closed, which would
/// reset the connection (see
/// `a_stop_delivers_every_reply_to_a_client_still_sending`). Stops once
/// replies flow, in the middle of the stream; returns the input.
fn pipeline_then_stop(server: &TestServer, client: &mut Client) -> String {
    let input: String = (0..50_000).map(|i| pipelined(i) + "\n").collect();
    client.send(&input);
    client.wait_acknowledged();
    client.expect("ACK: 0\n");
    server.shutdown.trigger();
    input
}

/// Asserts that `text` is whole replies to the pipelined lines from line
/// 1 on, in order; returns how many.
fn replies_in_order(text: &str) -> usize {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "cut reply: {:?}",
        &text[text.len().saturating_sub(20)..]
    );
    for (i, line) in text.lines().enumerate() {
        assert_eq!(
            line,
            format!("ACK: {}", pipelined(i + 1)),
            "reply {}",
            i + 1
        );
    }
    text.lines().count()
}

/// A reply is never cut in half by a stop: a client that pipelined a lot
/// receives only whole reply lines, in order, and exactly as many as the
/// server counts as answered.
#[test]
fn stop_never_cuts_a_reply() {
    let server = TestServer::default();
    let mut client = server.connect();
    pipeline_then_stop(&server, &mut client);
    let text = String::from_utf8(client.rest()).expect("utf-8");
    let replies = 1 + replies_in_order(&text);
    let summary = server.wait_stopped(DEADLINE);
    assert_eq!(summary.lines, replies as u64);
}

/// A stop answers every message the server has already read, whatever the
/// turn's budget: a pipelining client gets one whole reply, in order, for
/// each complete line in the bytes the server took from it, and no more.
#[test]
fn a_stop_answers_every_message_already_read() {
    let server = TestServer::with_metrics(|c| {
        c.workers = 1;
        c.max_line = HUGE_LINE;
        c.stop_grace = Duration::from_secs(30);
    });
    // A client that does not read its reply holds the stop in its grace
    // while the figures are read; it sent one line of known length.
    let mut wedged = server.connect();
    wedge_a_worker(&mut wedged);
    let mut client = server.connect();
    let input = pipeline_then_stop(&server, &mut client);
    let text = String::from_utf8(client.rest()).expect("utf-8");
    let replies = 1 + replies_in_order(&text);
    // The pipelining client is closed (its figures are in, and it no
    // longer counts as open); the wedged one holds the stop.
    let figures = scrape_until(server.metrics(), |m| m["linepool_connections_open"] == 1.0);
    let received = figures["linepool_received_bytes_total"] as usize - (HUGE_LINE + 1);
    let complete = input.as_bytes()[..received]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    assert_eq!(replies, complete, "replies for the {received} bytes read");
    assert_eq!(
        figures[r#"linepool_messages_total{protocol="ack"}"#] as usize,
        1 + complete
    );
    drop(wedged);
    assert_eq!(server.wait_stopped(DEADLINE).lines as usize, 1 + complete);
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

/// Ctrl-C (SIGINT) runs the stop, with exit status 0. SIGHUP reloads and
/// never stops (see the TLS tests).
#[test]
fn sigint_stops_the_binary() {
    let mut server = BinServer::start(&[]);
    let mut client = server.connect();
    client.send_line("hello");
    client.expect("ACK: hello\n");
    server.signal("INT");
    client.expect_closed();
    assert!(server.wait_exit(DEADLINE).success());
    server.wait_log("stopped connections=1 lines=1 rejected=0");
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

/// A second SIGTERM while the stop waits for a client that does not read
/// exits at once with status 130, saying so, rather than waiting out a
/// 30 s stop grace.
#[test]
fn second_sigterm_while_stopping_exits_130() {
    let mut server = BinServer::start(&["--stop-grace", "30s"]);
    let flooder = flood_without_reading(&server);
    server.signal("TERM");
    server.wait_log("stopping, closing");
    server.signal("TERM");
    let status = server.wait_exit_and_log(DEADLINE);
    assert_eq!(status.code(), Some(130), "{:#?}", server.seen);
    assert_eq!(
        server.count_log("linepool: interrupted again, exiting now"),
        1,
        "{:#?}",
        server.seen
    );
    assert_eq!(
        server.count_log("stopped connections="),
        0,
        "{:#?}",
        server.seen
    );
    drop(flooder);
}

/// A client still sending when the server stops, and reading its replies
/// (through a small receive window), gets every reply the server counts
/// as answered, whole; tried on 5 fresh servers.
///
/// Guards the stop waking connections by giving each a turn: it used to
/// shut every socket down for reading, after which a read that finds
/// nothing returns 0 as if the client had ended its stream; the close
/// skipped its linger, what the client sent next reset the connection,
/// and replies still in the send buffer were lost (8 servers in 20).
#[test]
fn a_stop_delivers_every_reply_to_a_client_still_sending() {
    // Each server lingers about a second for its client, which never
    // stops sending; five catch the old bug nine times in ten.
    for _ in 0..5 {
        let server = TestServer::default();
        // A small window keeps replies waiting in the server's send buffer.
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket.set_recv_buffer_size(4096).expect("rcvbuf");
        socket.connect(&server.addr.into()).expect("connect");
        let mut client = Client::from_stream(socket.into());
        let input: String = (0..1_000_000).map(|i| format!("{i}\n")).collect();
        let mut writer = client.stream.try_clone().expect("clone");
        let sender = thread::spawn(move || {
            let _ = writer.write_all(input.as_bytes());
        });
        client.expect("ACK: 0\n");
        server.shutdown.trigger();
        let text = String::from_utf8_lossy(&client.rest()).into_owned();
        let summary = server.wait_stopped(DEADLINE);
        let cut = !text.is_empty() && !text.ends_with('\n');
        assert_eq!(
            (1 + text.lines().count() as u64 - u64::from(cut), cut),
            (summary.lines, false),
            "(whole replies received, last one cut) against those answered"
        );
        let _ = sender.join();
    }
}

/// One client holding the stop past its grace is one connection, cut off
/// as "it": the warning's words agree with its count.
#[test]
fn one_straggler_is_cut_off_in_the_singular() {
    let mut server = BinServer::start(&["--stop-grace", "200ms"]);
    let flooder = flood_without_reading(&server);
    server.signal("TERM");
    let line = server.wait_log("still busy after the stop grace");
    assert!(
        line.ends_with("[WARN] 1 connection still busy after the stop grace, cutting it off"),
        "{line}"
    );
    assert!(server.wait_exit(DEADLINE).success());
    drop(flooder);
}

/// A client that sends without reading until its socket takes no more: its
/// replies back up, so a stop waits for it until the stop grace is over.
fn flood_without_reading(server: &BinServer) -> Client {
    let mut flooder = server.connect();
    flooder
        .stream
        .set_write_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let chunk = "x".repeat(1000) + "\n";
    while flooder.stream.write_all(chunk.as_bytes()).is_ok() {}
    flooder
}
