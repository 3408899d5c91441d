//! Idle clients, trickling clients and clients that stop reading are closed
//! after the idle timeout; none of them holds up the others meanwhile.

use std::io::{ErrorKind, Write};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{BinServer, DEADLINE, TestServer, scrape, scrape_until};

const IDLE: Duration = Duration::from_millis(400);

/// The idle timeout of the tests that hold the close to its window, long
/// enough that the slack below is small beside it.
const TIMED_IDLE: Duration = Duration::from_secs(1);

/// The latest a close may come, counted from when the client went quiet:
/// the rule closes within 1.25 idle timeouts, and the watchdog and the
/// worker may wait for a CPU on a busy machine. A close at twice the
/// timeout is over it.
const LATEST_CLOSE: Duration = Duration::from_millis(TIMED_IDLE.as_millis() as u64 * 5 / 4 + 500);

/// The earliest: the timeout itself, less the clocks' granularity.
const EARLIEST_CLOSE: Duration = Duration::from_millis(TIMED_IDLE.as_millis() as u64 - 50);

fn one_worker_with_idle_timeout() -> TestServer {
    TestServer::start(|c| {
        c.workers = 1;
        c.idle_timeout = Some(IDLE);
    })
}

/// A client that sends nothing after its last line gets `ERR idle timeout`
/// and a close, between 1 and 1.25 idle timeouts (plus scheduling slack)
/// after that line.
#[test]
fn silent_client_is_closed_after_the_idle_timeout() {
    let server = TestServer::start(|c| {
        c.workers = 1;
        c.idle_timeout = Some(TIMED_IDLE);
    });
    let mut client = server.connect();
    client.send_line("hi");
    client.expect("ACK: hi\n");
    // The line counted as progress before its reply was written.
    let start = Instant::now();
    client.expect("ERR idle timeout\n");
    let waited = start.elapsed();
    client.expect_closed();
    assert!(waited >= EARLIEST_CLOSE, "closed early: {waited:?}");
    assert!(waited <= LATEST_CLOSE, "closed late: {waited:?}");

    let mut next = server.connect();
    next.send_line("next");
    next.expect("ACK: next\n");
}

/// Activity resets the idle clock: a client that keeps sending lines stays.
#[test]
fn lines_keep_a_client_alive() {
    let server = one_worker_with_idle_timeout();
    let mut client = server.connect();
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < IDLE * 3 {
        client.send_line(&i.to_string());
        client.expect(&format!("ACK: {i}\n"));
        i += 1;
        // Pace the client well inside the idle timeout.
        thread::sleep(IDLE / 8);
    }
}

/// Bytes that trickle in without a newline do not keep a client alive.
#[test]
fn trickling_line_counts_as_idle() {
    let server = one_worker_with_idle_timeout();
    let mut client = server.connect();
    let mut writer = client.stream.try_clone().expect("clone");
    let start = Instant::now();
    let trickler = thread::spawn(move || {
        // One byte every 50 ms, never a newline, until the server hangs up.
        while start.elapsed() < DEADLINE {
            if writer.write_all(b"x").is_err() {
                return;
            }
            thread::sleep(IDLE / 8);
        }
    });
    client.expect("ERR idle timeout\n");
    let waited = start.elapsed();
    assert!(waited < IDLE * 3, "trickle kept the client for {waited:?}");
    let _ = client.rest();
    trickler.join().expect("trickler panicked");
}

/// A client that stops reading replies is closed by the write side of the
/// idle rule, between 1 and 1.25 idle timeouts (plus slack) after it last
/// took reply bytes; the close is counted as `direction="write"`, the
/// client's writes end in the server's close (a reset or a broken pipe,
/// not its own write timeout), and its worker serves the next client.
#[test]
fn client_that_stops_reading_is_dropped() {
    let server = TestServer::with_metrics(|c| {
        c.workers = 1;
        c.idle_timeout = Some(TIMED_IDLE);
    });
    let metrics = server.metrics();
    let write_closes = r#"linepool_idle_closes_total{direction="write"}"#;
    let read_closes = r#"linepool_idle_closes_total{direction="read"}"#;
    let sent = "linepool_sent_bytes_total";
    let client = server.connect();
    let mut writer = client.stream.try_clone().expect("clone");
    writer.set_write_timeout(Some(DEADLINE)).expect("timeout");
    // Send far more than the socket buffers hold and never read a reply.
    let (done, flood_ended) = mpsc::channel();
    let flooder = thread::spawn(move || {
        let chunk = "flood flood flood flood flood\n".repeat(2000);
        loop {
            match writer.write(chunk.as_bytes()) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = done.send(());
                    return e.kind();
                }
            }
        }
    });
    // The client's own writes learn of the close late: the server's end of
    // stream waits behind replies the client never takes, and a writer
    // blocked on a full window hears only at its next window probe, which
    // TCP backs off to seconds. So the times come from the server's
    // counters: the sent bytes move exactly when the client takes reply
    // bytes (the progress the rule watches), and the write closes move as
    // the connection is closed. Each was seen to move between two scrapes.
    let start = Instant::now();
    let mut figure = scrape(metrics)[sent];
    let (mut moved_after, mut moved_by) = (start, start);
    let mut previous = start;
    let mut ended = false;
    let closed = loop {
        let asked = Instant::now();
        let now = scrape(metrics);
        if now[sent] != figure {
            figure = now[sent];
            (moved_after, moved_by) = (previous, Instant::now());
        }
        if now[write_closes] > 0.0 {
            break Some((previous, Instant::now()));
        }
        // The close is counted before the socket closes: once the flood
        // has ended, one more scrape is enough.
        if ended {
            break None;
        }
        previous = asked;
        // Paced by the flood's end, which comes after the close or, if the
        // server never closes, with the client's write timeout.
        ended = flood_ended.recv_timeout(Duration::from_millis(5)).is_ok();
    };
    let kind = flooder.join().expect("flooder panicked");
    assert!(
        matches!(
            kind,
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
        ),
        "the flood ended with {kind:?} after {:?}, not with the server's close",
        start.elapsed()
    );
    let (closed_after, closed_by) = closed.expect("the client was not closed as idle");
    assert!(
        closed_by - moved_after >= EARLIEST_CLOSE,
        "closed early: {:?} after the client last took replies",
        closed_by - moved_after
    );
    assert!(
        closed_after - moved_by <= LATEST_CLOSE,
        "closed late: {:?} after the client last took replies",
        closed_after - moved_by
    );
    let after = scrape_until(metrics, |m| m["linepool_connections_open"] == 0.0);
    assert_eq!(after[write_closes], 1.0);
    assert_eq!(after[read_closes], 0.0);
    let mut next = server.connect();
    next.send_line("next");
    next.expect("ACK: next\n");
    drop(client);
}

/// `--idle-timeout 0` means never: a client silent for longer than the
/// timed tests' whole window (which a timeout of a second or less would
/// have closed) is neither told nor closed, and is answered when it speaks
/// again.
#[test]
fn idle_timeout_zero_never_closes_a_silent_client() {
    let server = BinServer::start(&["--idle-timeout", "0"]);
    let mut client = server.connect();
    client.send_line("hi");
    client.expect("ACK: hi\n");
    client.expect_silence(LATEST_CLOSE);
    client.send_line("still here");
    client.expect("ACK: still here\n");
}

/// A client that pipelines without pause stays connected however long it
/// goes on, even though its reads rarely end on a line boundary.
#[test]
fn busy_pipelining_client_is_not_idle() {
    let server = one_worker_with_idle_timeout();
    let mut client = server.connect();
    let mut writer = client.stream.try_clone().expect("clone");
    let start = Instant::now();
    let sender = thread::spawn(move || {
        let mut sent = 0u64;
        // Lines cut across writes on purpose, for three idle timeouts.
        while start.elapsed() < IDLE * 3 {
            let batch: String = (sent..sent + 1000).map(|i| format!("{i}\n")).collect();
            let (a, b) = batch.split_at(batch.len() / 2 + 1);
            writer.write_all(a.as_bytes()).expect("send");
            writer.write_all(b.as_bytes()).expect("send");
            sent += 1000;
        }
        writer.write_all(b"shutdown\n").expect("send");
        sent
    });
    let text = String::from_utf8(client.rest()).expect("utf-8");
    let sent = sender.join().expect("sender panicked");
    assert!(
        !text.contains("ERR"),
        "closed as idle after {:?}",
        start.elapsed()
    );
    assert_eq!(text.lines().count() as u64, sent);
}
