//! `linepool load -R N --connect-per-request`: open-loop arrivals, a new
//! connection at the rate asked whatever the server does, against a
//! server that answers, one that turns every connection away, a port
//! that refuses, and a listener that accepts and never answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::load::{count, load, server_with_a_slot_held, status_and_why};
use crate::support::{DEADLINE, TestServer};

/// The sum over the per-second series of the number at `path` in each
/// second (`/replies`, `/errors/dropped`).
fn per_second_sum(report: &Value, path: &str) -> u64 {
    report["series"]["seconds"]
        .as_array()
        .expect("seconds")
        .iter()
        .map(|second| count(second, path))
        .sum()
}

/// Whether a socket of this host is connecting to `addr` (state
/// SYN_SENT, `02`, in `/proc/net/tcp`).
fn syn_sent_to(addr: SocketAddr) -> bool {
    let remote = format!("0100007F:{:04X}", addr.port());
    std::fs::read_to_string("/proc/net/tcp")
        .expect("/proc/net/tcp")
        .lines()
        .skip(1)
        .any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(2) == Some(&remote.as_str()) && fields.get(3) == Some(&"02")
        })
}

/// Without `-n` or `-d` a run is 1,000 arrivals, whatever `-c` says:
/// arrivals have no connections to multiply a count by.
#[test]
fn arrivals_without_a_limit_are_a_thousand() {
    let server = TestServer::default();
    for connections in ["1", "3"] {
        let (output, report) = load(
            server.addr,
            &["-R", "5000", "--connect-per-request", "-c", connections],
        );
        assert_eq!(output.status.code(), Some(0), "{report}");
        assert_eq!(
            count(&report, "/replies"),
            1000,
            "-c {connections}: {report}"
        );
    }
}

/// Against a server that keeps up, `-R 200 -d 2s` makes 400 arrivals,
/// each a connection of its own answered once, about 200 in each second.
#[test]
fn arrivals_come_at_the_rate_asked() {
    let server = TestServer::default();
    let (output, report) = load(
        server.addr,
        &["-R", "200", "-d", "2s", "--connect-per-request"],
    );
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert_eq!(report["closed_loop"], Value::Bool(false));
    assert_eq!(count(&report, "/scenario/max_in_flight"), 1000);
    assert_eq!(count(&report, "/replies"), 400, "{report}");
    assert_eq!(count(&report, "/connections/established"), 400);
    assert_eq!(count(&report, "/errors/total"), 0, "{report}");
    let elapsed = report["elapsed_secs"].as_f64().expect("elapsed");
    assert!((1.9..3.0).contains(&elapsed), "elapsed {elapsed}");
    let seconds = report["series"]["seconds"].as_array().expect("seconds");
    let first = count(&seconds[0], "/replies");
    assert!((100..=250).contains(&first), "{first} in the first second");
    assert_eq!(per_second_sum(&report, "/replies"), 400);
    let summary = server.stop();
    assert_eq!((summary.connections, summary.lines), (400, 400));
}

/// A listener whose accept queue is full drops a new connection's SYN,
/// so the connect succeeds only when the kernel sends it again, a second
/// later: an arrival's latency counts from when it was due, so that
/// second is in it (a latency counted from the request's write would
/// hide it).
#[test]
fn latency_counts_from_when_an_arrival_was_due() {
    // A backlog of one: once it holds what the kernel allows, further
    // SYNs are dropped until something is accepted.
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    socket.listen(1).expect("listen");
    let listener: TcpListener = socket.into();
    let addr = listener.local_addr().expect("addr");
    let mut fillers = Vec::new();
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => fillers.push(stream),
            Err(_) => break,
        }
        assert!(fillers.len() < 100, "the accept queue never filled");
    }
    let run = thread::spawn(move || {
        load(
            addr,
            &[
                "-R",
                "10",
                "-n",
                "1",
                "--connect-per-request",
                "--timeout",
                "5s",
            ],
        )
    });
    // Once the arrival's SYN is out (and dropped), the listener serves
    // everything: one line, its ACK.
    let deadline = Instant::now() + DEADLINE;
    while !syn_sent_to(addr) {
        assert!(Instant::now() < deadline, "the arrival never connected");
        thread::sleep(Duration::from_millis(5));
    }
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            thread::spawn(move || {
                let mut writer = stream.try_clone().expect("clone");
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if writeln!(writer, "ACK: {line}").is_err() {
                        break;
                    }
                }
            });
        }
    });
    let (output, report) = run.join().expect("the load ran");
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert_eq!(count(&report, "/replies"), 1);
    let p50 = report["latency_us"]["p50"].as_f64().expect("p50");
    assert!(
        (500_000.0..4_000_000.0).contains(&p50),
        "latency {p50} µs does not hold the connect's wait"
    );
    drop(fillers);
}

/// A server at its `--max-connections` with `--overload reject` answers
/// every arrival `ERR server busy`: each is counted as rejected, in the
/// totals and second by second; a port with nothing behind it refuses
/// every arrival, counted as refused. Nothing answered: status 2.
#[test]
fn arrivals_rejected_or_refused_are_counted() {
    let (server, holder) = server_with_a_slot_held(1);
    let (output, report) = load(
        server.addr,
        &["-R", "100", "-d", "1s", "--connect-per-request"],
    );
    let (code, why) = status_and_why(&output);
    assert_eq!(code, Some(2), "{report}");
    assert_eq!(
        why,
        "linepool: no request was answered: 100 rejected with ERR server busy"
    );
    assert_eq!(count(&report, "/errors/rejected"), 100);
    assert_eq!(count(&report, "/connections/rejected"), 100);
    assert_eq!(count(&report, "/errors/total"), 100);
    assert_eq!(per_second_sum(&report, "/errors/rejected"), 100);
    drop(holder);
    assert_eq!(server.stop().rejected, 100);

    let nothing = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let (output, report) = load(
        nothing,
        &["-R", "100", "-d", "0.5s", "--connect-per-request"],
    );
    let (code, why) = status_and_why(&output);
    assert_eq!(code, Some(2), "{report}");
    assert_eq!(why, "linepool: no request was answered: 50 refused");
    assert_eq!(count(&report, "/errors/refused"), 50);
    assert_eq!(per_second_sum(&report, "/errors/refused"), 50);
}

/// A listener that accepts and never answers: each arrival that got a
/// slot times out (`--timeout` from when it was due), the bound of 10 in
/// flight is reached, and arrivals past it are dropped at once, never
/// connecting, not delayed: the run ends on time.
#[test]
fn a_stalled_server_fills_the_bound_and_arrivals_are_dropped() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&accepted);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            seen.fetch_add(1, Ordering::SeqCst);
            // Reads the request and says nothing, until the client goes.
            thread::spawn(move || {
                let _ = stream.read_to_end(&mut Vec::new());
            });
        }
    });
    let (output, report) = load(
        addr,
        &[
            "-R",
            "100",
            "-d",
            "1s",
            "--connect-per-request",
            "--max-in-flight",
            "10",
            "--timeout",
            "300ms",
        ],
    );
    let (code, why) = status_and_why(&output);
    assert_eq!(code, Some(2), "{report}");
    assert!(
        why.starts_with("linepool: no request was answered: ")
            && why.contains(" timed out, ")
            && why.ends_with(" dropped at the bound of connections in flight"),
        "{why}"
    );
    let timeout = count(&report, "/errors/timeout");
    let dropped = count(&report, "/errors/dropped");
    assert_eq!(timeout + dropped, 100, "{report}");
    assert_eq!(count(&report, "/errors/total"), 100);
    // 10 start at once and hold their slots 300 ms, while the next 20 or
    // so arrive and are dropped; and so on, three or four times a second.
    assert!((20..=50).contains(&timeout), "{timeout} timed out");
    assert!(dropped >= 50, "{dropped} dropped");
    assert_eq!(count(&report, "/connections/dropped"), dropped);
    assert_eq!(per_second_sum(&report, "/errors/dropped"), dropped);
    assert_eq!(per_second_sum(&report, "/errors/timeout"), timeout);
    // The last arrival is due at 0.99 s and given up 0.3 s later.
    let elapsed = report["elapsed_secs"].as_f64().expect("elapsed");
    assert!(elapsed < 2.0, "elapsed {elapsed}");
    // Only the arrivals that had a slot ever connected.
    let deadline = Instant::now() + DEADLINE;
    while accepted.load(Ordering::SeqCst) < timeout && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), timeout);
}
