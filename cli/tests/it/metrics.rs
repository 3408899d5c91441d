//! The metrics endpoint: counts before and after traffic, the text
//! format's shape, `/healthz` while serving and while draining.

use std::io::Write;
use std::net::SocketAddr;
use std::thread;

use crate::support::{
    BinServer, DEADLINE, agent_says, connect_from, get, http_get, scrape, scrape_until,
};

/// Starts the binary with a metrics endpoint; returns it and the
/// endpoint's address.
fn server_with_metrics(extra: &[&str]) -> (BinServer, SocketAddr) {
    let mut args = vec!["--metrics", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut server = BinServer::start(&args);
    let addr = server.metrics();
    (server, addr)
}

/// Replies that wait in a backed-up connection's outbox count as sent when
/// the socket takes them, byte for byte.
#[test]
fn replies_sent_from_a_backlog_are_counted() {
    let (server, metrics) = server_with_metrics(&[]);
    let mut client = server.connect();
    let line = format!("{}\n", "x".repeat(999));
    let reply = "ACK: ".len() + line.len();
    let count = 8_000;
    let mut writer = client.stream.try_clone().expect("clone");
    let input = line.repeat(count);
    let sender = thread::spawn(move || {
        writer.write_all(input.as_bytes())?;
        writer.shutdown(std::net::Shutdown::Write)
    });
    // Nothing is read until the server's figures show replies waiting
    // beyond what the socket took: they are in the outbox.
    let backed_up = scrape_until(metrics, |m| {
        let answered = m[r#"linepool_messages_total{protocol="ack"}"#] as usize;
        answered * reply > m["linepool_sent_bytes_total"] as usize + 64 * 1024
    });
    let answered = backed_up[r#"linepool_messages_total{protocol="ack"}"#] as usize;
    assert!(answered * reply > backed_up["linepool_sent_bytes_total"] as usize + 64 * 1024);
    let replies = client.rest();
    sender.join().expect("sender panicked").expect("send");
    assert_eq!(replies.len(), count * reply);
    let after = scrape_until(metrics, |m| {
        m["linepool_sent_bytes_total"] == (count * reply) as f64
    });
    assert_eq!(after["linepool_sent_bytes_total"], (count * reply) as f64);
}

/// Counts move with traffic, in the units and labels documented, and the
/// worker gauge is the configured `--workers`.
#[test]
fn metrics_count_what_happened() {
    let (server, metrics) = server_with_metrics(&["--workers", "3"]);
    let before = scrape(metrics);
    assert_eq!(before[r#"linepool_messages_total{protocol="ack"}"#], 0.0);
    assert_eq!(before["linepool_connections_accepted_total"], 0.0);
    assert_eq!(
        before[&format!(
            r#"linepool_build_info{{version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        )],
        1.0
    );
    assert_eq!(before["linepool_workers"], 3.0);
    // Idle, every worker waits for work (once each has started).
    let idle = scrape_until(metrics, |m| m["linepool_workers_busy"] == 0.0);
    assert_eq!(idle["linepool_workers_busy"], 0.0);

    let mut client = server.connect();
    for line in ["one", "two", "three"] {
        client.send_line(line);
        client.expect(&format!("ACK: {line}\n"));
    }
    let mut bad = server.connect();
    bad.send(b"\xff\n");
    bad.expect_closed();

    // The bad connection's end of stream reaches the client a moment before
    // the server lets the connection go, which is when it stops being open;
    // and a reply reaches the client a moment before its worker adds it to
    // the counters. So the scrapes go on until both are in, within the
    // deadline, and the figures are then asserted exactly.
    let after = scrape_until(metrics, |after| {
        after["linepool_connections_open"] == 1.0
            && after[r#"linepool_messages_total{protocol="ack"}"#] == 3.0
    });
    assert_eq!(after[r#"linepool_messages_total{protocol="ack"}"#], 3.0);
    assert_eq!(after["linepool_connections_accepted_total"], 2.0);
    assert_eq!(after["linepool_connections_open"], 1.0);
    assert_eq!(
        after[r#"linepool_client_errors_total{kind="invalid_utf8"}"#],
        1.0
    );
    assert_eq!(
        after[r#"linepool_connections_rejected_total{reason="busy"}"#],
        0.0
    );
    assert_eq!(
        after["linepool_received_bytes_total"],
        ("one\ntwo\nthree\n".len() + 2) as f64
    );
    assert_eq!(
        after["linepool_sent_bytes_total"],
        "ACK: one\nACK: two\nACK: three\n".len() as f64
    );
    assert_eq!(after["linepool_service_seconds_count"], 3.0);
    assert_eq!(after[r#"linepool_service_seconds_bucket{le="+Inf"}"#], 3.0);
    assert_eq!(after["linepool_draining"], 0.0);
    drop(client);
}

/// Every turn a worker starts counts its wait for the worker in
/// `linepool_queue_delay_seconds`, whose buckets run from 1 µs to 5 s, and
/// `linepool_max_connections` is the connection limit.
#[test]
fn turns_count_their_queue_delay_and_the_limit_is_exported() {
    let (server, metrics) = server_with_metrics(&["--workers", "1", "--max-connections", "7"]);
    let before = scrape(metrics);
    assert_eq!(before["linepool_max_connections"], 7.0);
    assert_eq!(before["linepool_queue_delay_seconds_count"], 0.0);
    let mut client = server.connect();
    for line in ["one", "two", "three"] {
        client.send_line(line);
        client.expect(&format!("ACK: {line}\n"));
    }
    // Each line waited for its reply, so each came in an event of its own
    // and had a turn of its own; the connection's first turn (it is
    // writable at once) may be one more.
    let after = scrape_until(metrics, |m| m["linepool_queue_delay_seconds_count"] >= 3.0);
    let count = after["linepool_queue_delay_seconds_count"];
    assert!(count >= 3.0, "{count} turns counted");
    assert_eq!(
        after[r#"linepool_queue_delay_seconds_bucket{le="+Inf"}"#],
        count
    );
    assert!(
        after.contains_key(r#"linepool_queue_delay_seconds_bucket{le="0.000001"}"#),
        "{after:?}"
    );
    assert!(
        after.contains_key(r#"linepool_queue_delay_seconds_bucket{le="5.0"}"#),
        "{after:?}"
    );
    assert!(after["linepool_queue_delay_seconds_sum"] >= 0.0);
    drop(client);
}

/// `/healthz` says `ok` while serving and `draining` (503) while draining;
/// other paths are 404.
#[test]
fn healthz_follows_the_drain() {
    let (mut server, metrics) = server_with_metrics(&["--drain", "60s"]);
    assert_eq!(
        get(metrics, "/healthz"),
        ("HTTP/1.1 200 OK".into(), "ok\n".into())
    );
    assert_eq!(get(metrics, "/nope").0, "HTTP/1.1 404 Not Found");
    server.signal("TERM");
    server.wait_log("draining");
    assert_eq!(
        get(metrics, "/healthz"),
        (
            "HTTP/1.1 503 Service Unavailable".into(),
            "draining\n".into()
        )
    );
    assert_eq!(scrape(metrics)["linepool_draining"], 1.0);
    server.signal("TERM");
    assert!(server.wait_exit(DEADLINE).success());
}

/// While the server stops, `/healthz` and the agent port go on answering,
/// 503 and `drain`, which is exactly when a balancer asks: here the stop
/// waits in its grace for a client that does not read.
#[test]
fn health_and_agent_answer_through_the_stop() {
    let (mut server, metrics) =
        server_with_metrics(&["--agent", "127.0.0.1:0", "--stop-grace", "30s"]);
    let agent = server.agent();
    // A client that sends without reading: its replies back up, so the
    // stop must wait for it.
    let mut flooder = server.connect();
    flooder
        .stream
        .set_write_timeout(Some(std::time::Duration::from_millis(200)))
        .expect("timeout");
    let chunk = "x".repeat(1000) + "\n";
    while flooder.stream.write_all(chunk.as_bytes()).is_ok() {}
    server.signal("INT");
    server.wait_log("stopping, closing");
    assert_eq!(
        get(metrics, "/healthz"),
        (
            "HTTP/1.1 503 Service Unavailable".into(),
            "draining\n".into()
        )
    );
    assert_eq!(agent_says(agent), "drain\n");
    // The client goes; the stop ends at once.
    drop(flooder);
    assert!(server.wait_exit(DEADLINE).success());
}

/// What Prometheus sends: OpenMetrics first, the classic text as a fallback.
const PROMETHEUS_ACCEPT: &str = "Accept: application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n";

/// A scraper that asks for OpenMetrics gets it: its content type, counter
/// families named without `_total` and the `# EOF` ending. Anyone else gets
/// the classic text format: its content type, `_total` on the family too,
/// and no `# EOF`.
#[test]
fn openmetrics_when_asked_for_and_classic_text_otherwise() {
    let (_server, metrics) = server_with_metrics(&[]);
    let header = |head: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix("Content-Type: "))
            .unwrap_or_default()
            .to_string()
    };
    let (status, head, body) = http_get(metrics, "/metrics", PROMETHEUS_ACCEPT);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        header(&head),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(body.ends_with("\n# EOF\n"), "no # EOF at the end: {body}");
    assert_eq!(body.matches("# EOF").count(), 1, "{body}");
    let lines: Vec<&str> = body.lines().collect();
    assert!(
        lines.contains(&"# TYPE linepool_messages counter"),
        "{body}"
    );
    assert!(
        lines.contains(&r#"linepool_messages_total{protocol="ack"} 0"#),
        "{body}"
    );

    let (status, head, body) = http_get(metrics, "/metrics", "");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(header(&head), "text/plain; version=0.0.4; charset=utf-8");
    assert!(!body.contains("# EOF"), "{body}");
    let lines: Vec<&str> = body.lines().collect();
    assert!(
        lines.contains(&"# TYPE linepool_messages_total counter"),
        "{body}"
    );
    assert!(
        lines.contains(&r#"linepool_messages_total{protocol="ack"} 0"#),
        "{body}"
    );
}

/// A per-address rejection and each kind of client error move their own
/// labelled counter by one, and no other: `per_ip`, then `too_long`,
/// `invalid_utf8`, `io` (a reset) on a line server and `truncated` on a
/// framed one.
#[test]
fn rejections_and_client_errors_are_counted_by_kind() {
    let (server, metrics) = server_with_metrics(&["--max-per-ip", "1", "--max-line", "16"]);
    let mut first = connect_from("127.0.0.2", server.addr);
    first.send_line("here");
    first.expect("ACK: here\n");
    let mut second = connect_from("127.0.0.2", server.addr);
    second.expect("ERR too many connections from your address\n");
    second.expect_closed();
    let mut long = connect_from("127.0.0.3", server.addr);
    long.send(b"far more than sixteen bytes\n");
    long.expect("ERR line too long (max 16 bytes)\n");
    long.expect_closed();
    let mut bad = connect_from("127.0.0.4", server.addr);
    bad.send(b"\xff\n");
    bad.expect_closed();
    // A client that resets its connection: a zero linger turns the close
    // into a reset, which the server's next read reports as an error.
    let mut reset = connect_from("127.0.0.5", server.addr);
    reset.send_line("bye");
    reset.expect("ACK: bye\n");
    socket2::SockRef::from(&reset.stream)
        .set_linger(Some(std::time::Duration::ZERO))
        .expect("linger");
    drop(reset);
    let errors = |kind: &str| format!(r#"linepool_client_errors_total{{kind="{kind}"}}"#);
    let rejected =
        |reason: &str| format!(r#"linepool_connections_rejected_total{{reason="{reason}"}}"#);
    let after = scrape_until(metrics, |m| {
        m[&errors("io")] == 1.0 && m["linepool_connections_open"] == 1.0
    });
    assert_eq!(after[&rejected("per_ip")], 1.0);
    assert_eq!(after[&rejected("busy")], 0.0);
    assert_eq!(after[&errors("too_long")], 1.0);
    assert_eq!(after[&errors("invalid_utf8")], 1.0);
    assert_eq!(after[&errors("io")], 1.0);
    assert_eq!(after[&errors("truncated")], 0.0);
    assert_eq!(after["linepool_connections_open"], 1.0);
    drop(first);

    let (server, metrics) = server_with_metrics(&["--protocol", "framed"]);
    let mut cut = server.connect();
    // A prefix that promises ten bytes, three of them, and the end.
    cut.send(b"\x00\x00\x00\x0aabc");
    cut.half_close();
    cut.expect_closed();
    let after = scrape_until(metrics, |m| m[&errors("truncated")] == 1.0);
    assert_eq!(after[&errors("truncated")], 1.0);
    for kind in ["too_long", "invalid_utf8", "io"] {
        assert_eq!(after[&errors(kind)], 0.0, "{kind}");
    }
    assert_eq!(after[&rejected("per_ip")], 0.0);
}

/// A client closed by the idle rule for sending nothing is counted under
/// `direction="read"`.
#[test]
fn an_idle_close_is_counted_by_its_direction() {
    let (server, metrics) = server_with_metrics(&["--idle-timeout", "300ms"]);
    let mut silent = server.connect();
    silent.expect("ERR idle timeout\n");
    let read = r#"linepool_idle_closes_total{direction="read"}"#;
    let after = scrape_until(metrics, |m| m[read] == 1.0);
    assert_eq!(after[read], 1.0);
    assert_eq!(
        after[r#"linepool_idle_closes_total{direction="write"}"#],
        0.0
    );
}
