//! The event-driven engine: connections with nothing to do hold no worker,
//! a client that never reads costs bounded memory, a pipelining client
//! cannot starve the others, and a stop closes connections wherever they
//! are (parked, queued for a worker, or in the middle of a batch).

use std::collections::HashMap;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{self, Client, DEADLINE, TestServer, scrape_until};

/// Thousands of connections that sent nothing do not keep a one-worker
/// server from answering another client at once.
#[test]
fn thousands_of_idle_connections_hold_no_worker() {
    let count = support::allow_descriptors(2 * 3000 + 100).min(6000) / 2 - 50;
    let server = TestServer::start(|c| c.workers = 1);
    let idle: Vec<Client> = (0..count).map(|_| server.connect()).collect();
    let mut client = server.connect();
    client.send_line("through");
    client.expect("ACK: through\n");
    // And every idle one is still served when it speaks.
    for (i, mut c) in idle.into_iter().enumerate().step_by(97) {
        c.send_line(&i.to_string());
        c.expect(&format!("ACK: {i}\n"));
    }
}

/// A client that sends a blank line every few milliseconds and a socket
/// that sends nothing each hold a connection slot but no worker: with one
/// worker, a third client is served while both stay connected.
#[test]
fn a_blank_line_keeper_and_a_silent_socket_hold_no_worker() {
    let server = TestServer::start(|c| c.workers = 1);
    let _silent = server.connect();
    let mut keeper = server.connect();
    let mut keeper_writer = keeper.stream.try_clone().expect("clone");
    let stop = Arc::new(AtomicBool::new(false));
    let keeping = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) {
                keeper_writer.write_all(b"\n").expect("keeper send");
                sent += 1;
                thread::sleep(Duration::from_millis(5));
            }
            sent
        })
    };
    keeper.expect("ACK: \n");
    for i in 0..50 {
        let mut client = server.connect();
        client.send_line(&format!("third {i}"));
        client.expect(&format!("ACK: third {i}\n"));
    }
    stop.store(true, Ordering::Relaxed);
    let sent = keeping.join().expect("keeper panicked");
    keeper.half_close();
    // One reply was read above.
    let replies = keeper.rest();
    assert_eq!(replies.len(), (sent - 1) * "ACK: \n".len());
}

/// How much longer than alone 200 pings may take beside a hog: this many
/// times, plus [`STARVED_PLUS`]. Alone, a ping is one round trip (a few
/// microseconds); beside the hog it waits for the worker to look into the
/// poller again, which it does every 61 turns, each a budget of the hog's
/// messages. Measured on two cores, debug build: 200 pings alone take
/// 1.5 to 5.5 ms; beside the hog 0.34 to 1.04 s with the budget of 128
/// messages (the upper end with the suite run twice at once), and 23 to
/// 30 s with a budget 100 times larger.
const STARVED: u32 = 500;
const STARVED_PLUS: Duration = Duration::from_secs(2);

/// 200 ping-pong round trips on `pinger`, and how long they took.
fn ping_pong(pinger: &mut Client, from: usize) -> Duration {
    let start = Instant::now();
    for i in from..from + 200 {
        pinger.send_line(&format!("ping {i}"));
        pinger.expect(&format!("ACK: ping {i}\n"));
    }
    start.elapsed()
}

/// A client that pipelines without end does not starve a ping-pong client
/// on a one-worker server: the worker serves it a bounded batch per turn,
/// so the pings take at most [`STARVED`] times (plus [`STARVED_PLUS`]) as
/// long as with nobody else there, measured first in the same test.
#[test]
fn a_pipelining_client_does_not_starve_a_ping_pong_one() {
    let server = TestServer::start(|c| c.workers = 1);
    let mut pinger = server.connect();
    let alone = ping_pong(&mut pinger, 0);
    // The hog's socket buffers are large, so that input always waits for
    // the server and replies rarely back up: its turns end on their budget.
    // Its lines are short, so a budget's worth of them is soon read.
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_send_buffer_size(8 << 20).expect("sndbuf");
    socket.set_recv_buffer_size(8 << 20).expect("rcvbuf");
    socket.connect(&server.addr.into()).expect("connect");
    let mut hog = Client::from_stream(socket.into());
    let mut hog_writer = hog.stream.try_clone().expect("clone");
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        thread::spawn(move || {
            let batch = "x\n".repeat(64 * 1024);
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                hog_writer.write_all(batch.as_bytes()).expect("hog send");
                sent += 64 * 1024;
            }
            hog_writer.write_all(b"shutdown\n").expect("hog send");
            sent
        })
    };
    // Reading the hog's replies keeps it going as fast as the server allows;
    // its first reply says it is flowing, and the ping-pong starts then.
    let (flowing, is_flowing) = mpsc::channel();
    let reader = thread::spawn(move || {
        let first = hog.line();
        let _ = flowing.send(());
        first.len() + hog.rest().len()
    });
    is_flowing
        .recv_timeout(DEADLINE)
        .expect("the hog never got a reply");
    let beside_the_hog = ping_pong(&mut pinger, 200);
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().expect("sender panicked");
    let received = reader.join().expect("reader panicked");
    assert_eq!(received as u64, sent * "ACK: x\n".len() as u64);
    assert!(
        beside_the_hog <= alone * STARVED + STARVED_PLUS,
        "200 pings took {beside_the_hog:?} beside the hog, {alone:?} alone"
    );
}

/// How many reply bytes may wait for a client beyond what its socket takes
/// (`MAX_PENDING` in src/handler/mod.rs), how many one batch adds before
/// it is written (`FLUSH_AT`), and the largest the read buffer grows with
/// the default `--max-line` (64 KiB + the line ending).
const MAX_PENDING: i64 = 64 * 1024;
const FLUSH_AT: i64 = 64 * 1024;
const READ_BUFFER: i64 = 64 * 1024 + 2;

/// A client that sends without ever reading is read only until its replies
/// back up: the server then stops reading it, so what it holds for that
/// client is bounded by its buffer sizes (replies waiting: `MAX_PENDING`
/// plus one batch and one reply; input read but not answered: the read
/// buffer), whatever the client pushes; the rest waits in the kernel, and
/// the other clients are served meanwhile.
///
/// The figures are the server's own and exact: every reply is `ACK: `
/// and the line, so the reply bytes made are the messages answered times
/// the reply's length, and those not yet taken by the socket are that
/// less the bytes sent; the input held is the bytes received less the
/// answered lines' bytes.
#[test]
fn a_client_that_never_reads_costs_bounded_memory() {
    let server = TestServer::with_metrics(|c| c.workers = 1);
    let metrics = server.metrics();
    let flooder = server.connect();
    let mut writer = flooder.stream.try_clone().expect("clone");
    writer
        .set_write_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let line = "never read never read never read\n";
    let reply = ("ACK: ".len() + line.len()) as i64;
    let flood = thread::spawn(move || {
        let chunk = line.repeat(2048);
        let mut written = 0usize;
        // Up to 256 MiB: far more than any socket buffers hold.
        while written < 256 << 20 {
            match writer.write(chunk.as_bytes()) {
                Ok(n) => written += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => panic!("flood write failed: {e}"),
            }
        }
        written
    });
    let written = flood.join().expect("flooder panicked");
    let figures = |m: &HashMap<String, f64>| {
        let answered = m[r#"linepool_messages_total{protocol="ack"}"#] as i64;
        let received = m["linepool_received_bytes_total"] as i64;
        let sent = m["linepool_sent_bytes_total"] as i64;
        (answered, received, sent)
    };
    let replies_waiting = |(answered, _, sent): (i64, i64, i64)| answered * reply - sent;
    // The server stops reading once more than `MAX_PENDING` reply bytes
    // wait: its figures say when it has.
    let paused = scrape_until(metrics, |m| replies_waiting(figures(m)) > MAX_PENDING);
    let (answered, received, sent) = figures(&paused);
    let waiting = replies_waiting((answered, received, sent));
    let input_held = received - answered * line.len() as i64;
    assert!(
        (MAX_PENDING..=MAX_PENDING + FLUSH_AT + reply).contains(&waiting),
        "{waiting} reply bytes wait in the server ({answered} answered, {sent} bytes sent)"
    );
    assert!(
        (0..=READ_BUFFER).contains(&input_held),
        "{input_held} bytes read and not answered"
    );
    assert!(
        (received as usize) < written,
        "the server read all {written} bytes the client wrote"
    );
    // Another client is served at once, and the flooder is not read
    // meanwhile: the figures move by the other's line and reply only.
    let mut other = server.connect();
    other.send_line("still served");
    other.expect("ACK: still served\n");
    let after = scrape_until(metrics, |m| figures(m).0 == answered + 1);
    assert_eq!(
        figures(&after),
        (
            answered + 1,
            received + "still served\n".len() as i64,
            sent + "ACK: still served\n".len() as i64
        )
    );
    drop(flooder);
}

/// A stop with connections queued for the one worker and in the middle of
/// their batches: each client gets whole replies, in order, then a close,
/// and the replies are exactly the messages the server counts as answered,
/// some of the batches' among them.
#[test]
fn stop_with_connections_queued_and_mid_batch() {
    let server = TestServer::start(|c| c.workers = 1);
    let mut clients: Vec<Client> = (0..100).map(|_| server.connect()).collect();
    for c in clients.iter_mut() {
        c.send_line("ready");
        c.expect("ACK: ready\n");
    }
    let batch: String = (0..500).map(|i| format!("{i}\n")).collect();
    for c in clients.iter_mut() {
        c.send(&batch);
    }
    // Nothing is in flight when the server closes (see
    // `stop::pipeline_then_stop`).
    for c in &clients {
        c.wait_acknowledged();
    }
    // The stop comes once the batches are being answered.
    clients[0].expect("ACK: 0\n");
    server.shutdown.trigger();
    let mut replies = 1;
    for (n, mut c) in clients.into_iter().enumerate() {
        let read_already = usize::from(n == 0);
        let text = String::from_utf8(c.rest()).expect("utf-8");
        assert!(text.is_empty() || text.ends_with('\n'), "cut reply");
        for (i, line) in text.lines().enumerate() {
            assert_eq!(line, format!("ACK: {}", i + read_already));
        }
        replies += text.lines().count();
    }
    let summary = server.wait_stopped(DEADLINE);
    // Each client's `ready`, and every batch line answered.
    assert_eq!(summary.lines, (100 + replies) as u64);
}

/// A chat room of 500 members on two workers: every member hears a line
/// said by one of them.
#[test]
fn chat_with_five_hundred_members_on_two_workers() {
    support::allow_descriptors(2 * 500 + 100);
    let server = TestServer::start(|c| {
        c.protocol = crate::support::chat();
        c.workers = 2;
    });
    let mut members = Vec::new();
    for i in 0..500 {
        let mut member = server.connect();
        member.expect("Enter your name:\n");
        member.send_line(&format!("m{i}"));
        member.expect(&format!("Welcome m{i}! {} online.\n", i + 1));
        members.push(member);
    }
    members[0].send_line("hello all");
    for (i, member) in members.iter_mut().enumerate().skip(1) {
        // Joins of later members come first, in order.
        for j in i + 1..500 {
            member.expect(&format!("* m{j} joined\n"));
        }
        member.expect("m0: hello all\n");
    }
    drop(members);
    assert_eq!(server.stop().lines, 501);
}

/// A chat member that falls behind gets what it missed once its socket has
/// room again, without anyone else speaking.
#[test]
fn chat_delivery_resumes_when_the_member_reads() {
    let server = TestServer::start(|c| c.protocol = crate::support::chat());
    // A small receive window, so that the lines below back up in the
    // server (but stay under the room's limit for falling behind).
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    socket.connect(&server.addr.into()).expect("connect");
    let mut slow = Client::from_stream(socket.into());
    slow.expect("Enter your name:\n");
    slow.send_line("slow");
    slow.expect("Welcome slow! 1 online.\n");
    let mut talker = server.connect();
    talker.expect("Enter your name:\n");
    talker.send_line("talker");
    talker.expect("Welcome talker! 2 online.\n");
    slow.expect("* talker joined\n");
    let line = "x".repeat(1000);
    let count = 50;
    for i in 0..count {
        talker.send_line(&format!("{i} {line}"));
    }
    // Everything the talker said has been handled once it can quit.
    talker.send_line("shutdown");
    talker.expect_closed();
    // Now read: the tail must arrive although nobody speaks any more.
    for i in 0..count {
        slow.expect(&format!("talker: {i} {line}\n"));
    }
    slow.expect("* talker left\n");
}

/// An idle server sleeps in the poller: a second with nothing to do costs
/// it next to no CPU time.
#[test]
fn an_idle_server_sleeps() {
    let server = support::BinServer::start(&["--workers", "2"]);
    let mut client = Client::connect(server.addr);
    client.send_line("awake");
    client.expect("ACK: awake\n");
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.pid)).expect("stat");
        // The fields after the command's closing parenthesis; utime and
        // stime are the 12th and 13th of them.
        let fields: Vec<u64> = stat
            .rsplit_once(')')
            .expect("comm")
            .1
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|f| f.parse().expect("ticks"))
            .collect();
        // SAFETY: sysconf only reads a configuration value.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis((fields[0] + fields[1]) * 1000 / per_second)
    };
    let before = cpu();
    // The one fixed wait here: what is measured is an absence of work.
    thread::sleep(Duration::from_secs(1));
    let spent = cpu() - before;
    assert!(
        spent < Duration::from_millis(200),
        "{spent:?} of CPU in 1 s idle"
    );
}
