//! The command line: flags, help, refusals and logs.

use std::net::TcpListener;
use std::process::Command;

use crate::support::{BinServer, Client, connect_from, run_bin, scrape_until};

/// Turning a client away at the door is a warning naming it, and every
/// close, whatever ended it, has its debug line with a `reason=`.
#[test]
fn every_rejection_warns_and_every_close_says_why() {
    let closed = |client: &Client, reason: &str| {
        let peer = client.stream.local_addr().expect("local address");
        format!("client closed peer={peer} messages=0 reason={reason}")
    };
    let mut server = BinServer::start(&[
        "--overload",
        "reject",
        "--max-connections",
        "2",
        "--max-per-ip",
        "1",
    ]);
    // Two clients hold both slots for the whole test.
    let mut first = connect_from("127.0.0.2", server.addr);
    first.send_line("here");
    first.expect("ACK: here\n");
    let mut same_address = connect_from("127.0.0.2", server.addr);
    same_address.expect("ERR too many connections from your address\n");
    let peer = same_address.stream.local_addr().expect("local address");
    let line = server.wait_log(&format!(
        "too many connections from one address, rejecting peer={peer}"
    ));
    assert!(line.contains("WARN"), "{line}");
    server.wait_log(&closed(&same_address, "too_many_from_address"));
    let mut second = connect_from("127.0.0.3", server.addr);
    second.send_line("here too");
    second.expect("ACK: here too\n");
    let mut busy = connect_from("127.0.0.4", server.addr);
    busy.expect("ERR server busy\n");
    let peer = busy.stream.local_addr().expect("local address");
    let line = server.wait_log(&format!("server busy, rejecting peer={peer}"));
    assert!(line.contains("WARN"), "{line}");
    server.wait_log(&closed(&busy, "server_busy"));
    drop((first, second));

    let mut server = BinServer::start(&["--max-line", "16", "--idle-timeout", "300ms"]);
    let mut long = server.connect();
    long.send(b"far more than sixteen bytes\n");
    long.expect("ERR line too long (max 16 bytes)\n");
    server.wait_log(&closed(&long, "too_long"));
    let mut bad = server.connect();
    bad.send(b"\xff\n");
    bad.expect_closed();
    server.wait_log(&closed(&bad, "invalid_utf8"));
    let mut silent = server.connect();
    silent.expect("ERR idle timeout\n");
    server.wait_log(&closed(&silent, "idle_read"));
}

/// Bad flag values are refused with a message and a non-zero status.
#[test]
fn bad_flags_are_refused() {
    for args in [
        &["serve", "--workers", "0"][..],
        &["serve", "--workers", "many"],
        &["serve", "--port", "70000"],
        &["serve", "--overload", "drop"],
        &["serve", "--max-line", "0"],
        &["serve", "--max-line", "10"],
    ] {
        let (status, text) = run_bin(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {text}");
        assert!(text.contains("error: invalid value"), "{args:?}: {text}");
        assert!(!text.contains("panicked"), "{args:?}: {text}");
    }
}

/// `serve --help` says every flag but `--check` has a variable, and why
/// `--check` has none; `LINEPOOL_CHECK` is indeed not read.
#[test]
fn help_says_check_has_no_variable() {
    let (status, text) = run_bin(&["serve", "--help"]);
    assert!(status.success());
    let footer = text.lines().last().expect("a footer");
    assert!(
        footer.starts_with("Every flag but --check can also be given by its environment variable"),
        "{footer}"
    );
    assert!(
        footer.ends_with(
            "--check has no variable on purpose: set in such a file it would keep the server from ever starting."
        ),
        "{footer}"
    );
    assert!(!text.contains("LINEPOOL_CHECK"), "{text}");
    let mut server = BinServer::spawn({
        let mut command = Command::new(env!("CARGO_BIN_EXE_linepool"));
        command
            .args(["serve", "--port", "0"])
            .env("LINEPOOL_CHECK", "true");
        command
    });
    server.wait_log("listening on ");
}

/// A port in use is refused with a message naming the address.
#[test]
fn port_in_use_is_refused_by_name() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let (status, text) = run_bin(&["serve", "--port", &port]);
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
}

/// Help describes every flag with its default, and lists the values of
/// every flag that takes one of a few.
#[test]
fn help_lists_every_flag_and_default() {
    let (status, text) = run_bin(&["serve", "--help"]);
    assert!(status.success());
    for needle in [
        "--host",
        "[default: 127.0.0.1]",
        "--port",
        "[default: 8000]",
        "--workers",
        "[default: the number of CPUs]",
        "--max-connections",
        "[default: 10000]",
        "--overload",
        "[default: block]",
        "--idle-timeout",
        "[default: 300]",
        "--max-line",
        "[default: 65536]",
        "--backlog",
        "[default: 1024]",
        "--log-level",
        "[default: info]",
        "- block:",
        "- reject:",
        "- ack:",
        "- chat:",
        "- framed:",
        "- sum:",
        "[possible values: off, error, warn, info, debug, trace]",
    ] {
        assert!(text.contains(needle), "serve --help lacks {needle}: {text}");
    }
    let (status, text) = run_bin(&["--help"]);
    assert!(status.success());
    assert!(text.contains("serve"), "{text}");
}

/// The listening line names the real port, and client errors are logged
/// with the peer's address.
#[test]
fn logs_name_the_port_and_the_peer() {
    let mut server = BinServer::start(&[]);
    assert_ne!(server.addr.port(), 0);
    let mut client = server.connect();
    let peer = client.stream.local_addr().expect("addr");
    client.send(b"\xff\n");
    client.expect_closed();
    let line = server.wait_log("invalid utf-8");
    assert!(line.contains(&format!("peer={peer}")), "{line}");
    assert!(line.contains("WARN"), "{line}");
}

/// The pause each `accept failed` warning announces, in milliseconds.
fn retry_in_ms(line: &str) -> u64 {
    line.split("retry_in_ms=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no retry_in_ms in {line}"))
}

/// Running out of file descriptors does not kill the server: it backs off,
/// 5 ms first, doubling up to 1 s, with a warning each time; serves again
/// once descriptors free up; and starts again from 5 ms the next time,
/// after a successful accept.
#[test]
fn running_out_of_descriptors_is_survived() {
    let mut command = Command::new("bash");
    command.args([
        "-c",
        r#"ulimit -n 24 && exec "$0" serve --port 0 --log-level debug"#,
        env!("CARGO_BIN_EXE_linepool"),
    ]);
    let mut server = BinServer::spawn(command);
    let failures = |seen: &[String]| -> Vec<u64> {
        seen.iter()
            .filter(|l| l.contains("accept failed, backing off"))
            .map(|l| retry_in_ms(l))
            .collect()
    };
    let mut clients: Vec<Client> = (0..40).map(|_| server.connect()).collect();
    // The descriptors stay taken, so nothing succeeds in between: the
    // whole schedule, up to the cap and once more at it (about 2.3 s).
    server.wait_until(|seen| failures(seen).len() >= 10);
    assert_eq!(
        failures(&server.seen)[..10],
        [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]
    );
    for line in server.seen.iter().filter(|l| l.contains("accept failed")) {
        assert!(line.contains("WARN"), "{line}");
        assert!(line.contains("error="), "{line}");
    }
    clients.clear();
    // Once the held descriptors are closed, a new client is served again
    // (within the client's read deadline, far above the longest back-off).
    let mut back = server.connect();
    let back_peer = back.stream.local_addr().expect("local address");
    back.send_line("back");
    back.expect("ACK: back\n");
    // Running out again backs off from the start: the accept that served
    // `back` reset the schedule.
    let marker = format!("client connected peer={back_peer}");
    clients.extend((0..40).map(|_| server.connect()));
    server.wait_until(|seen| {
        seen.iter()
            .position(|l| l.contains(&marker))
            .is_some_and(|at| !failures(&seen[at..]).is_empty())
    });
    let at = server.seen.iter().position(|l| l.contains(&marker));
    let after = failures(&server.seen[at.expect("marker")..]);
    assert_eq!(after[0], 5, "{after:?}");
    // Throughout, each pause doubles the one before (up to the cap), or
    // starts again after a success.
    let all = failures(&server.seen);
    for pair in all.windows(2) {
        assert!(
            pair[1] == (pair[0] * 2).min(1000) || pair[1] == 5,
            "{} after {}: {all:?}",
            pair[1],
            pair[0]
        );
    }
    drop(back);
}

/// `--stats-interval` logs the server-side figures periodically.
#[test]
fn stats_interval_logs_the_server_figures() {
    let mut server = BinServer::start(&["--stats-interval", "0.1"]);
    let mut client = server.connect();
    for i in 0..10 {
        client.send_line(&i.to_string());
        client.expect(&format!("ACK: {i}\n"));
    }
    let line = server.wait_log("stats lines=10 ");
    for field in [
        "lines_per_sec=",
        "service_mean_us=",
        "service_p99_us=",
        "queue_mean_us=",
        "queue_p99_us=",
        "open=1",
        "ready=0",
        "rejected=0",
        "connections=1",
    ] {
        assert!(line.contains(field), "no {field} in {line}");
    }
}

/// Client text in a log line is quoted and its control characters escaped:
/// a client cannot forge a log line or send terminal escapes.
#[test]
fn client_text_in_logs_is_escaped() {
    let mut server = BinServer::start(&["--protocol", "sum"]);
    let mut client = server.connect();
    client.send("evil\x1b[31m name;5\n");
    client.expect("Server of linepool;50\n");
    let line = server.wait_log("sum client=");
    assert!(
        line.contains(r#"client="evil\u{1b}[31m name" n=5 m=50 total=55"#),
        "{line}"
    );
    assert!(!line.contains('\x1b'), "raw escape in {line:?}");
}

/// Logs name end reasons in snake_case, count with the right plural, and
/// carry RFC 3339 timestamps and the version.
#[test]
fn log_lines_read_cleanly() {
    let mut server = BinServer::start(&["--metrics", "127.0.0.1:0"]);
    let listening = server.wait_log("listening on ");
    assert!(
        listening.contains(&format!("version={}", env!("CARGO_PKG_VERSION"))),
        "{listening}"
    );
    // 2026-11-23T00:33:29.866148195Z or with an offset such as +01:00.
    let stamp = listening.split_whitespace().next().expect("timestamp");
    assert!(
        stamp.len() >= 20
            && stamp.as_bytes()[10] == b'T'
            && (stamp.ends_with('Z') || stamp.contains('+') || stamp[19..].contains('-')),
        "not RFC 3339: {stamp}"
    );
    let mut client = server.connect();
    client.send_line("hi");
    client.expect("ACK: hi\n");
    let mut leaving = server.connect();
    leaving.send_line("shutdown");
    leaving.expect_closed();
    server.wait_log("reason=closed");
    // Its close line comes before it leaves the registry: the stop must
    // find only the idle client there.
    let metrics = server.metrics();
    scrape_until(metrics, |m| {
        m.get("linepool_connections_open") == Some(&1.0)
    });
    server.signal("TERM");
    // The idle client is counted, in the singular, unless a stray wake-up
    // let it see the stop and close first, on a busy machine.
    let stopping = server.wait_log("stopping, closing ");
    assert!(
        stopping.ends_with("stopping, closing 1 connection")
            || stopping.ends_with("stopping, closing 0 connections"),
        "{stopping}"
    );
    assert!(server.wait_exit(crate::support::DEADLINE).success());
}

/// Durations on the server's flags take units: `--idle-timeout 500ms`.
#[test]
fn server_durations_take_units() {
    let mut server = BinServer::start(&["--idle-timeout", "500ms", "--stats-interval", "10s"]);
    let mut client = server.connect();
    let start = std::time::Instant::now();
    client.expect("ERR idle timeout\n");
    let waited = start.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(450)
            && waited < std::time::Duration::from_secs(5),
        "closed after {waited:?}"
    );
    server.wait_log("idle timeout, closing peer=");
    let (status, text) = run_bin(&["serve", "--idle-timeout", "10 parsecs"]);
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(text.contains("is not a duration"), "{text}");
    // Past a year, a deadline would be past the clock's range: refused at
    // the start, not a crash at the stop.
    let (status, text) = run_bin(&["serve", "--stop-grace", "1e19"]);
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(text.contains("'1e19' is longer than a year"), "{text}");
}

/// A flood of bad clients cannot flood the log: at most ten warnings about
/// clients a second, and a line saying how many were held back.
#[test]
fn client_warnings_are_rate_limited() {
    let mut server = BinServer::start(&[]);
    let flood = 60;
    for _ in 0..flood {
        let mut client = server.connect();
        client.send(b"\xff\n");
        client.expect_closed();
    }
    let accounted = |seen: &[String]| {
        let logged = seen.iter().filter(|l| l.contains("invalid utf-8")).count() as u64;
        let held: u64 = seen
            .iter()
            .filter(|l| l.contains("about clients held back"))
            .filter_map(|l| {
                l.split(" warning")
                    .next()?
                    .rsplit(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        (logged, held)
    };
    server.wait_until(|seen| {
        let (logged, held) = accounted(seen);
        logged + held == flood
    });
    let (logged, held) = accounted(&server.seen);
    assert!(held > 0, "nothing was held back");
    // The flood spans a second or two at most: ten lines a second.
    assert!(logged <= 30, "{logged} warnings logged");
    let line = server.wait_log("about clients held back in the last second");
    assert!(line.contains("WARN"), "{line}");
}

/// The log names what stopped the server, once: `quit_server`, `sum`'s
/// out-of-range rule, or a signal.
#[test]
fn the_log_names_what_stopped_the_server_once() {
    let causes = |seen: &[String]| {
        [
            "quit_server received",
            "sum number outside",
            "signal received",
        ]
        .map(|cause| seen.iter().filter(|l| l.contains(cause)).count())
    };
    let mut server = BinServer::start(&["--protocol", "sum"]);
    let mut client = server.connect();
    client.send_line("x;0");
    client.expect_closed();
    assert!(server.wait_exit(crate::support::DEADLINE).success());
    server.wait_log("stopped connections=");
    assert_eq!(causes(&server.seen), [0, 1, 0]);

    let mut server = BinServer::start(&[]);
    let mut client = server.connect();
    client.send_line("quit_server");
    client.expect_closed();
    assert!(server.wait_exit(crate::support::DEADLINE).success());
    server.wait_log("stopped connections=");
    assert_eq!(causes(&server.seen), [1, 0, 0]);

    let mut server = BinServer::start(&[]);
    server.signal("TERM");
    assert!(server.wait_exit(crate::support::DEADLINE).success());
    server.wait_log("stopped connections=");
    assert_eq!(causes(&server.seen), [0, 0, 1]);
}

/// `linepool completions SHELL` prints the very script the package ships,
/// and bash accepts it: after sourcing it, `linepool` completes.
#[test]
fn completions_are_printed_and_load() {
    let dist = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../dist/completions"));
    for (shell, file) in [
        ("bash", "linepool.bash"),
        ("zsh", "_linepool"),
        ("fish", "linepool.fish"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_linepool"))
            .args(["completions", shell])
            .output()
            .expect("run linepool completions");
        assert!(output.status.success(), "{shell}: {output:?}");
        let shipped = std::fs::read(dist.join(file)).expect("shipped completions");
        assert!(
            output.stdout == shipped,
            "{shell}: not dist/completions/{file}"
        );
    }
    let script = dist.join("linepool.bash");
    let loaded = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source '{}' && complete -p linepool",
            script.display()
        ))
        .output()
        .expect("run bash");
    let said = String::from_utf8_lossy(&loaded.stdout);
    assert!(loaded.status.success(), "{loaded:?}");
    assert!(
        said.contains("_linepool") && said.ends_with(" linepool\n"),
        "{said}"
    );
}

/// The close line counts every message answered on the connection, the
/// last batch before the close included.
#[test]
fn the_close_line_counts_every_message() {
    let mut server = BinServer::start(&["--max-line", "16"]);
    let mut client = server.connect();
    for line in ["one", "two"] {
        client.send_line(line);
        client.expect(&format!("ACK: {line}\n"));
    }
    // Answered in the same batch as the error that ends it.
    client.send("three\nfar more than sixteen bytes\n");
    client.expect("ACK: three\nERR line too long (max 16 bytes)\n");
    client.expect_closed();
    let peer = client.stream.local_addr().expect("local address");
    server.wait_log(&format!(
        "client closed peer={peer} messages=3 reason=too_long"
    ));
}
