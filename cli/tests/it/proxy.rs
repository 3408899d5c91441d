//! The PROXY protocol (`--proxy-protocol`): the header's client address is
//! the one `--admin-from`, `--max-per-ip` and the logs see; a connection
//! without a valid header within 5 s is closed.

use std::time::{Duration, Instant};

use crate::support::{BinServer, DEADLINE, TestServer, connect_from};

fn v1(client: &str, port: u16) -> Vec<u8> {
    format!("PROXY TCP4 {client} 127.0.0.1 {port} 8000\r\n").into_bytes()
}

/// A version 2 header, PROXY over TCP/IPv4, naming `client`.
fn v2(client: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\x00\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0x00, 12]);
    h.extend_from_slice(&client);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&8000u16.to_be_bytes());
    h
}

/// A version 1 header that names no client.
const V1_UNKNOWN: &[u8] = b"PROXY UNKNOWN\r\n";

/// A version 2 `LOCAL` header (the proxy's own health check), carrying no
/// addresses.
fn v2_local() -> Vec<u8> {
    let mut h = b"\r\n\r\n\x00\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x20, 0x00, 0x00, 0]);
    h
}

/// A version 2 `LOCAL` header that carries addresses anyway, naming
/// `client`: a `LOCAL` connection is the proxy's own, whatever it carries.
fn v2_local_naming(client: [u8; 4]) -> Vec<u8> {
    let mut h = v2(client, 4000);
    h[12] = 0x20;
    h
}

fn behind_a_proxy(configure: impl FnOnce(&mut linepool::Config)) -> TestServer {
    TestServer::start(|c| {
        c.proxy_protocol = true;
        c.admin_from = "127.0.0.1/32".parse().expect("list");
        configure(c);
    })
}

/// The address a v1 or v2 header names decides who may stop the server,
/// not the proxy's own address.
#[test]
fn the_header_names_the_client_for_admin_from() {
    let server = behind_a_proxy(|_| {});
    let mut remote = server.connect();
    remote.send([v1("192.0.2.7", 4242), b"hi\nquit_server\n".to_vec()].concat());
    remote.expect("ACK: hi\nERR quit_server not allowed\n");
    let mut remote2 = server.connect();
    remote2.send([v2([198, 51, 100, 1], 5555), b"quit_server\n".to_vec()].concat());
    remote2.expect("ERR quit_server not allowed\n");
    let mut local = server.connect();
    local.send([v2([127, 0, 0, 1], 4000), b"quit_server\n".to_vec()].concat());
    local.expect_closed();
    server.wait_stopped(DEADLINE);
}

/// A header that names no client (`PROXY UNKNOWN`, a v2 `LOCAL`, even one
/// carrying addresses) leaves the proxy's own address, the socket's peer,
/// for `--admin-from`: the proxy on 127.0.0.1 may stop the server, one on
/// 127.0.0.2 may not.
#[test]
fn a_header_naming_no_client_keeps_the_proxys_address_for_admin_from() {
    for header in [
        V1_UNKNOWN.to_vec(),
        v2_local(),
        v2_local_naming([192, 0, 2, 9]),
    ] {
        let server = behind_a_proxy(|_| {});
        let mut outside = connect_from("127.0.0.2", server.addr);
        outside.send([header.clone(), b"hi\nquit_server\n".to_vec()].concat());
        outside.expect("ACK: hi\nERR quit_server not allowed\n");
        let mut inside = connect_from("127.0.0.1", server.addr);
        inside.send([header.clone(), b"quit_server\n".to_vec()].concat());
        inside.expect_closed();
        outside.expect_closed();
        server.wait_stopped(DEADLINE);
    }
}

/// `--max-per-ip` counts a connection whose header names no client under
/// the proxy's own address, the same slot as a header naming that address.
#[test]
fn max_per_ip_counts_the_proxys_address_when_the_header_names_none() {
    let server = behind_a_proxy(|c| c.max_per_ip = 1);
    let mut first = connect_from("127.0.0.2", server.addr);
    first.send([V1_UNKNOWN.to_vec(), b"in\n".to_vec()].concat());
    first.expect("ACK: in\n");
    // The same proxy with no client named, twice; another proxy naming the
    // first one's address.
    let turned_away = [
        ("127.0.0.2", V1_UNKNOWN.to_vec()),
        ("127.0.0.2", v2_local()),
        ("127.0.0.3", v1("127.0.0.2", 9)),
    ];
    for (proxy, header) in turned_away {
        let mut again = connect_from(proxy, server.addr);
        again.send([header, b"in\n".to_vec()].concat());
        again.expect("ERR too many connections from your address\n");
        again.expect_closed();
    }
    let mut other = connect_from("127.0.0.3", server.addr);
    other.send([v2_local(), b"in\n".to_vec()].concat());
    other.expect("ACK: in\n");
    assert_eq!(server.stop().rejected_per_ip, 3);
}

/// A header that arrives a byte at a time is still a header.
#[test]
fn a_header_split_across_reads() {
    let server = behind_a_proxy(|_| {});
    let mut client = server.connect();
    client.stream.set_nodelay(true).expect("nodelay");
    for byte in v2([192, 0, 2, 1], 1000) {
        client.send([byte]);
    }
    client.send_line("after the header");
    client.expect("ACK: after the header\n");
}

/// A connection that starts with anything else is closed unanswered.
#[test]
fn no_valid_header_closes_the_connection() {
    let server = behind_a_proxy(|_| {});
    let mut client = server.connect();
    client.send_line("hello");
    client.expect_closed();
}

/// Silence: closed once the 5 s for the header are over.
#[test]
fn a_missing_header_times_out() {
    let server = behind_a_proxy(|_| {});
    let mut client = server.connect();
    let start = Instant::now();
    client.expect_closed();
    let waited = start.elapsed();
    assert!(
        (Duration::from_millis(4900)..Duration::from_secs(8)).contains(&waited),
        "closed after {waited:?}"
    );
}

/// `--max-per-ip` counts the header's address.
#[test]
fn max_per_ip_counts_the_headers_address() {
    let server = behind_a_proxy(|c| c.max_per_ip = 1);
    let mut first = server.connect();
    first.send([v1("192.0.2.7", 1), b"in\n".to_vec()].concat());
    first.expect("ACK: in\n");
    let mut second = server.connect();
    second.send([v1("192.0.2.7", 2), b"in\n".to_vec()].concat());
    second.expect("ERR too many connections from your address\n");
    second.expect_closed();
    let mut other = server.connect();
    other.send([v1("192.0.2.8", 3), b"in\n".to_vec()].concat());
    other.expect("ACK: in\n");
    assert_eq!(server.stop().rejected_per_ip, 1);
}

/// Without the flag, a line starting with `PROXY ` is an ordinary line.
#[test]
fn without_the_flag_a_header_is_a_line() {
    let server = TestServer::default();
    let mut client = server.connect();
    client.send(v1("192.0.2.7", 4242));
    client.expect("ACK: PROXY TCP4 192.0.2.7 127.0.0.1 4242 8000\n");
}

/// Logs name the header's address, and a bad header is a warning.
#[test]
fn logs_name_the_proxied_client() {
    let mut server = BinServer::start(&["--proxy-protocol"]);
    let mut client = server.connect();
    client.send([v1("192.0.2.9", 5555), b"\xff\n".to_vec()].concat());
    client.expect_closed();
    let line = server.wait_log("invalid utf-8");
    assert!(line.contains("peer=192.0.2.9:5555"), "{line}");
    let mut bad = server.connect();
    bad.send_line("not a header");
    bad.expect_closed();
    let line = server.wait_log("invalid PROXY protocol header");
    assert!(line.contains("WARN"), "{line}");
}

/// A stop ends a connection still waiting for its header at once, not at
/// the end of the stop's grace: there is nothing to answer on it.
#[test]
fn a_stop_ends_a_connection_waiting_for_its_header() {
    let server = behind_a_proxy(|c| c.stop_grace = Duration::from_secs(5));
    let mut waiting = server.connect();
    // A client that sent its header and a line: once it is answered, the
    // server has taken the other connection in too.
    let mut other = server.connect();
    other.send(v1("127.0.0.1", 4000));
    other.send_line("hello");
    other.expect("ACK: hello\n");
    let start = Instant::now();
    server.shutdown.trigger();
    server.wait_stopped(DEADLINE);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "the stop took {took:?}");
    waiting.expect_closed();
}
