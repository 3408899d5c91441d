//! `linepool load`: reply checking, error counting by kind, exit statuses,
//! the open loop, Ctrl-C and the JSON report, against the real server and
//! against small misbehaving ones.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use linepool::Overload;
use serde_json::Value;

use crate::support::{Client, DEADLINE, TestServer};

/// Runs `linepool load --json` against `addr` with `args`.
pub fn load(addr: SocketAddr, args: &[&str]) -> (Output, Value) {
    let port = addr.port().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_linepool"))
        .args(["load", "--json", "--port", &port])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run linepool load");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, report)
}

/// The number at `path` in `report`.
pub fn count(report: &Value, path: &str) -> u64 {
    report
        .pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number at {path} in {report}"))
}

/// A one-connection server run by the test: `serve` gets the accepted socket.
fn fake_server(serve: impl FnOnce(TcpStream) + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            serve(stream);
        }
    });
    addr
}

/// A server with room for `slots` connections that turns the rest away
/// (`--overload reject`), and a client holding one of the slots.
pub fn server_with_a_slot_held(slots: usize) -> (TestServer, Client) {
    let server = TestServer::start(|c| {
        c.max_connections = slots;
        c.overload = Overload::Reject;
    });
    let mut holder = server.connect();
    holder.send_line("hold a slot");
    holder.expect("ACK: hold a slot\n");
    (server, holder)
}

/// The exit status and the one line on stderr that explains a failure.
pub fn status_and_why(output: &Output) -> (Option<i32>, String) {
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    (output.status.code(), stderr)
}

/// Every reply from the real server is checked and counted; the JSON report
/// has every documented field.
#[test]
fn counts_every_reply_from_the_real_server() {
    let server = TestServer::default();
    let (output, report) = load(
        server.addr,
        &[
            "-c",
            "4",
            "-n",
            "1000",
            "--pipeline",
            "8",
            "--payload",
            "40",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert_eq!(count(&report, "/replies"), 1000);
    assert_eq!(count(&report, "/scenario/requests"), 1000);
    assert_eq!(count(&report, "/scenario/requests_per_connection"), 250);
    assert_eq!(count(&report, "/connections/established"), 4);
    assert_eq!(count(&report, "/errors/total"), 0);
    assert_eq!(report["closed_loop"], Value::Bool(true));
    assert_eq!(report["interrupted"], Value::Bool(false));
    assert_eq!(report["scenario"]["target_rate_per_sec"], Value::Null);
    for field in ["p50", "p90", "p99", "p999", "max", "mean"] {
        let value = report["latency_us"][field].as_f64().expect(field);
        assert!(value > 0.0, "{field} = {value}");
    }
    assert!(report["replies_per_sec"].as_f64().expect("rate") > 0.0);
    for field in [
        "mismatch", "refused", "rejected", "reset", "timeout", "closed", "other",
    ] {
        assert!(
            report["errors"][field].is_u64(),
            "errors.{field} missing: {report}"
        );
    }
    assert_eq!(server.stop().lines, 1000);
}

/// `-n` is the total, even when it does not divide: 10 over 3 connections
/// is 10 requests (the split itself is a unit test of `share`).
#[test]
fn requests_are_a_total_split_over_the_connections() {
    let server = TestServer::default();
    let (output, report) = load(server.addr, &["-c", "3", "-n", "10"]);
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert_eq!(count(&report, "/replies"), 10);
    assert_eq!(server.stop().lines, 10);
}

/// A fresh connection per request: connect, line, ACK, `shutdown`, close.
#[test]
fn connect_per_request_opens_one_connection_per_request() {
    let server = TestServer::default();
    let (output, report) = load(
        server.addr,
        &["-c", "3", "-n", "60", "--connect-per-request"],
    );
    assert!(output.status.success(), "{report}");
    assert_eq!(count(&report, "/replies"), 60);
    assert_eq!(count(&report, "/connections/established"), 60);
    assert_eq!(count(&report, "/errors/total"), 0);
    let summary = server.stop();
    assert_eq!(summary.connections, 60);
    assert_eq!(summary.lines, 60);
}

/// `--max-in-flight` bounds open-loop arrivals, so without
/// `--connect-per-request` it is refused with the usage status 2 and an
/// error naming what it needs, before anything is sent.
#[test]
fn max_in_flight_needs_arrivals() {
    let server = TestServer::default();
    let output = Command::new(env!("CARGO_BIN_EXE_linepool"))
        .args(["load", "--port", &server.addr.port().to_string()])
        .args(["-R", "100", "-n", "10", "--max-in-flight", "5"])
        .stdin(Stdio::null())
        .output()
        .expect("run linepool load");
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.lines().take(2).collect::<Vec<_>>(),
        [
            "error: the following required arguments were not provided:",
            "  --connect-per-request"
        ],
        "{stderr}"
    );
    assert_eq!(server.stop().connections, 0);
}

/// Idle connections are held for the run; a timed run ends on time, with
/// its duration in seconds or with units.
#[test]
fn idle_connections_and_timed_runs() {
    let server = TestServer::default();
    for duration in ["0.5", "500ms"] {
        let (output, report) = load(server.addr, &["-c", "2", "-d", duration, "--idle", "10"]);
        assert!(output.status.success(), "{report}");
        assert_eq!(count(&report, "/connections/idle_held"), 10);
        assert!(count(&report, "/replies") > 0);
        let elapsed = report["elapsed_secs"].as_f64().expect("elapsed");
        assert!((0.5..3.0).contains(&elapsed), "elapsed {elapsed}");
    }
    assert_eq!(server.stop().connections, 24);
}

/// A server that rejects every connection: each is counted once, as
/// rejected, at once (no timeout), and the run fails with status 2.
#[test]
fn a_server_that_rejects_everything() {
    let (server, holder) = server_with_a_slot_held(1);
    let start = Instant::now();
    let (output, report) = load(server.addr, &["-c", "3", "-n", "15", "--timeout", "5s"]);
    let took = start.elapsed();
    let (code, why) = status_and_why(&output);
    assert_eq!(code, Some(2), "{report}");
    assert_eq!(
        why,
        "linepool: no request was answered: 3 rejected with ERR server busy"
    );
    assert_eq!(count(&report, "/connections/rejected"), 3);
    assert_eq!(count(&report, "/errors/rejected"), 3);
    assert_eq!(count(&report, "/errors/timeout"), 0);
    assert_eq!(count(&report, "/errors/total"), 3);
    assert_eq!(count(&report, "/replies"), 0);
    assert!(took < Duration::from_secs(2), "took {took:?}");
    drop(holder);
}

/// Some connections served, the rest rejected: rejections are reported but
/// are not a failure, and the counts are exact.
#[test]
fn served_and_rejected_connections_together() {
    let (server, holder) = server_with_a_slot_held(2);
    // The served connection's share keeps its slot long after the other
    // two were accepted and turned away.
    let (output, report) = load(server.addr, &["-c", "3", "-n", "6000"]);
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert_eq!(count(&report, "/connections/established"), 3);
    assert_eq!(count(&report, "/connections/rejected"), 2);
    assert_eq!(count(&report, "/replies"), 2000);
    assert_eq!(count(&report, "/errors/total"), 2);
    drop(holder);
    let summary = server.stop();
    assert_eq!((summary.lines, summary.rejected), (2001, 2));
}

/// Nothing listening: every connection is counted as refused, and the run
/// fails with status 2 and one line saying so.
#[test]
fn refused_connections_are_counted() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let (output, report) = load(addr, &["-c", "3", "-n", "5"]);
    let (code, why) = status_and_why(&output);
    assert_eq!(code, Some(2), "{report}");
    assert_eq!(why, "linepool: no request was answered: 3 refused");
    assert_eq!(count(&report, "/connections/refused"), 3);
    assert_eq!(count(&report, "/connections/established"), 0);
}

/// A wrong reply is a mismatch, and any mismatch fails the run.
#[test]
fn a_wrong_reply_fails_the_run() {
    let addr = fake_server(|stream| {
        let mut writer = stream.try_clone().expect("clone");
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            // Answers, but drops the last byte of every line.
            let _ = writeln!(writer, "ACK: {}", &line[..line.len() - 1]);
        }
    });
    let (output, report) = load(addr, &["-c", "1", "-n", "3"]);
    let (code, why) = status_and_why(&output);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(why, "linepool: 3 replies did not match their requests");
    assert_eq!(count(&report, "/errors/mismatch"), 3);
    assert_eq!(count(&report, "/replies"), 0);
}

/// A server that never answers: the request times out.
#[test]
fn a_missing_reply_times_out() {
    let (hold, held) = std::sync::mpsc::channel::<TcpStream>();
    let addr = fake_server(move |stream| {
        let _ = hold.send(stream);
    });
    let (output, report) = load(addr, &["-c", "1", "-n", "3", "--timeout", "300ms"]);
    let (code, why) = status_and_why(&output);
    assert_eq!(code, Some(2), "{report}");
    assert_eq!(why, "linepool: no request was answered: 1 timed out");
    assert_eq!(count(&report, "/errors/timeout"), 1);
    drop(held);
}

/// A server that resets the connection: counted as reset.
#[test]
fn a_reset_is_counted() {
    let addr = fake_server(|stream| {
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        // Linger zero makes the close a reset.
        let socket = socket2::Socket::from(stream);
        let _ = socket.set_linger(Some(std::time::Duration::ZERO));
    });
    let (output, report) = load(addr, &["-c", "1", "-n", "3"]);
    assert_eq!(output.status.code(), Some(2), "{report}");
    assert_eq!(count(&report, "/connections/reset"), 1);
}

/// A framed server turning connections away says so in a frame, and the
/// load tool counts each as rejected, once.
#[test]
fn framed_rejections_are_counted() {
    let server = TestServer::start(|c| {
        c.protocol = linepool::protocol::framed();
        c.max_connections = 1;
        c.overload = Overload::Reject;
    });
    let _holder = server.connect();
    let (output, report) = load(
        server.addr,
        &[
            "--protocol",
            "framed",
            "-c",
            "3",
            "-n",
            "3",
            "--timeout",
            "5s",
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(count(&report, "/errors/rejected"), 3);
    assert_eq!(count(&report, "/errors/total"), 3);
}

/// One request is one request, not "1 requests".
#[test]
fn one_request_is_said_in_the_singular() {
    let server = TestServer::default();
    let port = server.addr.port().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_linepool"))
        .args(["load", "--port", &port, "-c", "1", "-n", "1"])
        .output()
        .expect("run linepool load");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains(", 1 request in all,"), "{text}");
}

/// The text report names every figure.
#[test]
fn text_report_names_every_figure() {
    let server = TestServer::default();
    let output = Command::new(env!("CARGO_BIN_EXE_linepool"))
        .args([
            "load",
            "--port",
            &server.addr.port().to_string(),
            "-c",
            "2",
            "-n",
            "20",
        ])
        .output()
        .expect("run linepool load");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "20 requests in all",
        "established 2",
        "replies      20",
        "replies/s",
        "p50",
        "p99.9",
        "max",
        "mismatch 0",
        "closed loop",
    ] {
        assert!(text.contains(needle), "no {needle:?} in {text}");
    }
}

/// Without `-n` or `-d` each connection sends 1,000 requests: the report
/// gives that per connection and no total it was not asked for, and says
/// "1 connection", not "1 connections".
#[test]
fn the_default_run_is_a_thousand_requests_per_connection() {
    let server = TestServer::default();
    let (output, report) = load(server.addr, &["-c", "1"]);
    assert!(output.status.success());
    assert_eq!(report["scenario"]["requests"], Value::Null);
    assert_eq!(count(&report, "/scenario/requests_per_connection"), 1000);
    assert_eq!(count(&report, "/replies"), 1000);
    let output = Command::new(env!("CARGO_BIN_EXE_linepool"))
        .args(["load", "--port", &server.addr.port().to_string(), "-c", "1"])
        .output()
        .expect("run linepool load");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(": 1 connection, 1000 requests each, pipeline 1,"),
        "{text}"
    );
}

/// An ACK server that answers every line, except that once, after its
/// 50th line, it stalls for `stall` before going on.
fn stalling_server(stall: Duration) -> SocketAddr {
    fake_server(move |stream| {
        let mut writer = stream.try_clone().expect("clone");
        for (i, line) in BufReader::new(stream).lines().enumerate() {
            let Ok(line) = line else { break };
            if i == 50 {
                thread::sleep(stall);
            }
            if writeln!(writer, "ACK: {line}").is_err() {
                break;
            }
        }
    })
}

/// The open loop: requests go out on schedule while the server stalls, and
/// their latency counts from when each was due, so the stall shows in the
/// p99; the closed loop hides it behind a single slow request.
#[test]
fn open_loop_shows_a_stall_in_the_tail() {
    let stall = Duration::from_millis(500);
    // Half the stall tells the two apart with room on both sides for a
    // busy machine's scheduling delays (which reached 108 ms in the
    // closed loop's p99).
    let half = stall.as_micros() as f64 / 2.0;
    let (output, report) = load(stalling_server(stall), &["-R", "200", "-n", "300"]);
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert_eq!(report["closed_loop"], Value::Bool(false));
    assert_eq!(
        report["scenario"]["target_rate_per_sec"].as_f64(),
        Some(200.0)
    );
    assert_eq!(count(&report, "/replies"), 300);
    let p99 = report["latency_us"]["p99"].as_f64().expect("p99");
    assert!(
        p99 >= half,
        "open-loop p99 {p99} µs hides a {stall:?} stall"
    );
    // 300 requests at 200 a second take about 1.5 s, stall included.
    let rate = report["replies_per_sec"].as_f64().expect("rate");
    assert!((100.0..=260.0).contains(&rate), "achieved {rate}/s");

    let (output, report) = load(stalling_server(stall), &["-n", "300"]);
    assert_eq!(output.status.code(), Some(0), "{report}");
    let p99 = report["latency_us"]["p99"].as_f64().expect("p99");
    assert!(p99 < half, "closed-loop p99 {p99} µs");
}

/// Ctrl-C (SIGINT) ends a run early: the report covers what was done, and
/// the exit status is 130.
#[test]
fn interrupt_prints_the_report_so_far() {
    let (first, got_first) = std::sync::mpsc::channel();
    let addr = fake_server(move |stream| {
        let mut writer = stream.try_clone().expect("clone");
        for (n, line) in BufReader::new(stream).lines().enumerate() {
            let Ok(line) = line else { break };
            // A connection's second request comes after the driver has
            // read (and counted) the reply to its first.
            if n == 1 {
                let _ = first.send(());
            }
            if writeln!(writer, "ACK: {line}").is_err() {
                break;
            }
        }
    });
    let child = Command::new(env!("CARGO_BIN_EXE_linepool"))
        .args([
            "load",
            "--json",
            "-d",
            "60s",
            "--port",
            &addr.port().to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run linepool load");
    got_first
        .recv_timeout(DEADLINE)
        .expect("no second request arrived");
    let status = Command::new("kill")
        .args(["-s", "INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let start = Instant::now();
    let output = child.wait_with_output().expect("wait");
    assert!(start.elapsed() < DEADLINE);
    assert_eq!(output.status.code(), Some(130));
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    assert_eq!(report["interrupted"], Value::Bool(true));
    assert!(count(&report, "/replies") >= 1, "{report}");
}
