//! Idle clients, trickling clients and clients that stop reading are closed
//! after the idle timeout; none of them holds up the others meanwhile.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{DEADLINE, TestServer};

const IDLE: Duration = Duration::from_millis(400);

fn one_worker_with_idle_timeout() -> TestServer {
    TestServer::start(|c| {
        c.workers = 1;
        c.idle_timeout = Some(IDLE);
    })
}

/// A client that sends nothing gets `ERR idle timeout` and a close.
#[test]
fn silent_client_is_closed_after_the_idle_timeout() {
    let server = one_worker_with_idle_timeout();
    let mut client = server.connect();
    client.send_line("hi");
    client.expect("ACK: hi\n");
    let start = Instant::now();
    client.expect("ERR idle timeout\n");
    let waited = start.elapsed();
    client.expect_closed();
    assert!(
        waited >= IDLE - Duration::from_millis(50),
        "closed early: {waited:?}"
    );

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

/// A client that stops reading replies is dropped after the idle timeout and
/// frees its worker.
#[test]
fn client_that_stops_reading_is_dropped() {
    let server = one_worker_with_idle_timeout();
    let client = server.connect();
    let mut writer = client.stream.try_clone().expect("clone");
    writer.set_write_timeout(Some(DEADLINE)).expect("timeout");
    // Send far more than the socket buffers hold and never read a reply.
    let flooder = thread::spawn(move || {
        let chunk = "flood flood flood flood flood\n".repeat(2000);
        for _ in 0..2000 {
            if writer.write_all(chunk.as_bytes()).is_err() {
                return true;
            }
        }
        false
    });
    assert!(
        flooder.join().expect("flooder panicked"),
        "server never gave up on the flood"
    );
    let mut next = server.connect();
    next.send_line("next");
    next.expect("ACK: next\n");
    drop(client);
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
