//! `linepool load`: reply checking, error counting by kind, and the JSON
//! report, against the real server and against small misbehaving ones.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::thread;

use linepool::Overload;
use serde_json::Value;

use crate::support::TestServer;

/// Runs `linepool load --json` against `addr` with `args`.
fn load(addr: SocketAddr, args: &[&str]) -> (Output, Value) {
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

fn count(report: &Value, path: &str) -> u64 {
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

/// Every reply from the real server is checked and counted; the JSON report
/// has every documented field.
#[test]
fn counts_every_reply_from_the_real_server() {
    let server = TestServer::default();
    let (output, report) = load(
        server.addr,
        &["-c", "4", "-n", "250", "--pipeline", "8", "--payload", "40"],
    );
    assert!(output.status.success(), "{report}");
    assert_eq!(count(&report, "/replies"), 1000);
    assert_eq!(count(&report, "/connections/established"), 4);
    assert_eq!(count(&report, "/errors/total"), 0);
    assert_eq!(report["closed_loop"], Value::Bool(true));
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

/// A fresh connection per request: connect, line, ACK, `shutdown`, close.
#[test]
fn connect_per_request_opens_one_connection_per_request() {
    let server = TestServer::default();
    let (output, report) = load(
        server.addr,
        &["-c", "3", "-n", "20", "--connect-per-request"],
    );
    assert!(output.status.success(), "{report}");
    assert_eq!(count(&report, "/replies"), 60);
    assert_eq!(count(&report, "/connections/established"), 60);
    assert_eq!(count(&report, "/errors/total"), 0);
    let summary = server.stop();
    assert_eq!(summary.connections, 60);
    assert_eq!(summary.lines, 60);
}

/// Idle connections are held for the run; a timed run ends on time.
#[test]
fn idle_connections_and_timed_runs() {
    let server = TestServer::default();
    let (output, report) = load(server.addr, &["-c", "2", "-d", "0.5", "--idle", "10"]);
    assert!(output.status.success(), "{report}");
    assert_eq!(count(&report, "/connections/idle_held"), 10);
    assert!(count(&report, "/replies") > 0);
    let elapsed = report["elapsed_secs"].as_f64().expect("elapsed");
    assert!((0.5..3.0).contains(&elapsed), "elapsed {elapsed}");
    assert_eq!(server.stop().connections, 12);
}

/// Connections turned away with `ERR server busy` are counted as rejected.
#[test]
fn rejected_connections_are_counted() {
    let server = TestServer::start(|c| {
        c.max_connections = 1;
        c.overload = Overload::Reject;
    });
    let mut holder = server.connect();
    holder.send_line("hold the only slot");
    holder.expect("ACK: hold the only slot\n");
    let (output, report) = load(server.addr, &["-c", "3", "-n", "5"]);
    assert!(output.status.success(), "{report}");
    assert_eq!(count(&report, "/connections/rejected"), 3);
    assert_eq!(count(&report, "/errors/rejected"), 3);
    assert_eq!(count(&report, "/replies"), 0);
    drop(holder);
}

/// Nothing listening: every connection is counted as refused.
#[test]
fn refused_connections_are_counted() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let (output, report) = load(addr, &["-c", "3", "-n", "5"]);
    assert!(output.status.success(), "{report}");
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
    assert!(!output.status.success(), "{report}");
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
    let (output, report) = load(addr, &["-c", "1", "-n", "3", "--timeout", "0.3"]);
    assert!(output.status.success(), "{report}");
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
    assert!(output.status.success(), "{report}");
    assert_eq!(count(&report, "/connections/reset"), 1);
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
            "10",
        ])
        .output()
        .expect("run linepool load");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for needle in [
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
