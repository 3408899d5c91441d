//! The metrics endpoint: counts before and after traffic, the text
//! format's shape, `/healthz` while serving and while draining.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::support::{BinServer, DEADLINE};

/// Starts the binary with a metrics endpoint; returns it and the
/// endpoint's address.
fn server_with_metrics(extra: &[&str]) -> (BinServer, SocketAddr) {
    let mut args = vec!["--metrics", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut server = BinServer::start(&args);
    let line = server.wait_log("metrics on http://");
    let addr = line
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("metrics address")
        .parse()
        .expect("socket address");
    (server, addr)
}

/// One GET: the status line and the body.
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, body.to_string())
}

/// Every sample (`name{labels}` → value), checking the shape on the way:
/// each family has its HELP and TYPE before its samples, names carry the
/// `linepool_` prefix, counters end in `_total`.
fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let mut samples = HashMap::new();
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut helped = Vec::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.push(rest.split(' ').next().expect("name").to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("name and type");
            assert!(helped.iter().any(|h| h == name), "no HELP for {name}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter {name} without _total");
            }
            typed.insert(name.to_string(), kind.to_string());
        } else {
            assert!(!line.starts_with('#'), "stray comment {line:?}");
            let (key, value) = line.rsplit_once(' ').expect("sample");
            let name = key.split('{').next().expect("name");
            assert!(name.starts_with("linepool_"), "{name}");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains_key(*f)))
                .unwrap_or(name);
            assert!(typed.contains_key(family), "no TYPE for {name}");
            samples.insert(key.to_string(), value.parse::<f64>().expect("value"));
        }
    }
    samples
}

/// Counts move with traffic, in the units and labels documented.
#[test]
fn metrics_count_what_happened() {
    let (server, metrics) = server_with_metrics(&[]);
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
    assert_eq!(
        before["linepool_workers"],
        before["linepool_workers"].max(1.0)
    );

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
    let until = std::time::Instant::now() + DEADLINE;
    let after = loop {
        let after = scrape(metrics);
        let settled = after["linepool_connections_open"] == 1.0
            && after[r#"linepool_messages_total{protocol="ack"}"#] == 3.0;
        if settled || std::time::Instant::now() >= until {
            break after;
        }
        std::thread::yield_now();
    };
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
    let agent: SocketAddr = server
        .wait_log("agent listening on ")
        .split("agent listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("agent address")
        .parse()
        .expect("socket address");
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
    let mut said = String::new();
    let mut stream = TcpStream::connect(agent).expect("connect to the agent");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    stream.read_to_string(&mut said).expect("agent line");
    assert_eq!(said, "drain\n");
    // The client goes; the stop ends at once.
    drop(flooder);
    assert!(server.wait_exit(DEADLINE).success());
}
