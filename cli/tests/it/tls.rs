//! TLS as a transport: every protocol unchanged inside it, orderly ends
//! with close_notify or a bare FIN, handshakes that fail or stall end only
//! their connection (counted by reason), the PROXY header before the
//! ClientHello, and bounded memory for a client that does not read.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use linepool::tls::TlsVersion;
use rustls::{ClientConnection, pki_types::ServerName};

use crate::pki::{Pki, TlsClient, client_config, failures_counted, tls_server};
use crate::support::{Client, DEADLINE, scrape_until};

/// The same line protocol, over TLS, for ack, sum and chat; framed echo
/// gets its frames back byte for byte; `shutdown` ends with close_notify.
#[test]
fn every_protocol_speaks_over_tls() {
    let pki = Pki::new("protocols");
    let server = tls_server(&pki, |_| {});
    let mut client = pki.connect(server.addr);
    client.send_line("hello");
    client.expect("ACK: hello\n");
    client.send_line("shutdown");
    client.expect_closed();

    let sum = tls_server(&pki, |c| {
        c.protocol = linepool::protocol::sum("Server of linepool", 50)
    });
    let mut client = pki.connect(sum.addr);
    client.send_line("Alice;7");
    client.expect("Server of linepool;50\n");
    client.send_line("x;five");
    client.expect("ERR expected <name>;<integer>\n");

    let framed = tls_server(&pki, |c| c.protocol = linepool::protocol::framed());
    let mut client = pki.connect(framed.addr);
    let binary: Vec<u8> = (0..=255).collect();
    let mut frames = Vec::new();
    for message in [&b"hello"[..], b"", &binary] {
        frames.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frames.extend_from_slice(message);
    }
    client.send(&frames);
    assert_eq!(client.read_bytes(frames.len()), frames);

    let chat = tls_server(&pki, |c| c.protocol = crate::support::chat());
    let mut alice = pki.connect(chat.addr);
    alice.expect("Enter your name:\n");
    alice.send_line("alice");
    alice.expect("Welcome alice! 1 online.\n");
    let mut bob = pki.connect(chat.addr);
    bob.expect("Enter your name:\n");
    bob.send_line("bob");
    bob.expect("Welcome bob! 2 online.\n");
    alice.expect("* bob joined\n");
    bob.send_line("hi over tls");
    alice.expect("bob: hi over tls\n");
}

/// A client that ends with a bare FIN (no close_notify) is an ordinary
/// end: its last line is answered, and nothing counts it as an error.
#[test]
fn a_bare_fin_is_a_normal_end() {
    let pki = Pki::new("fin");
    let server = tls_server(&pki, |_| {});
    let mut client = pki.connect(server.addr);
    client.send_line("last");
    client.expect("ACK: last\n");
    client
        .socket()
        .shutdown(std::net::Shutdown::Write)
        .expect("fin");
    // The server closes in order, with close_notify.
    client.expect_closed();
    let key = "linepool_client_errors_total{kind=\"io\"}";
    let samples = scrape_until(server.metrics(), |s| {
        s.get("linepool_connections_open") == Some(&0.0)
    });
    assert_eq!(samples.get(key), Some(&0.0));
    assert!(
        samples
            .iter()
            .filter(|(k, _)| k.starts_with("linepool_tls_handshake_failures_total"))
            .all(|(_, &v)| v == 0.0)
    );
}

/// A last line that comes with the client's close_notify, the socket left
/// open, is answered, and the server ends in order: the end of the TLS
/// stream is seen even though the read that brought it was short.
#[test]
fn a_close_notify_behind_the_last_line_ends_the_connection() {
    let pki = Pki::new("notify");
    let server = tls_server(&pki, |_| {});
    let mut client = pki.connect(server.addr);
    client.send_line("first");
    client.expect("ACK: first\n");
    client.send_and_close_notify(b"last\n");
    let rest = client.rest().expect("an orderly close with close_notify");
    assert_eq!(String::from_utf8_lossy(&rest), "ACK: last\n");
}

/// A plaintext client on a TLS port is closed without a word (no alert
/// it could not read), and counted; the port goes on serving TLS.
#[test]
fn a_plaintext_client_on_a_tls_port_is_closed_and_counted() {
    let pki = Pki::new("plaintext");
    let server = tls_server(&pki, |_| {});
    let mut plain = server.connect();
    plain.send_line("hello");
    plain.expect_closed();
    failures_counted(&server, "plaintext_on_tls_port", 1.0);
    let mut client = pki.connect(server.addr);
    client.send_line("still here");
    client.expect("ACK: still here\n");
}

/// A client that stops half-way through its ClientHello holds no worker
/// (one worker serves a fresh client meanwhile) and is closed at the
/// handshake deadline, counted as handshake_timeout.
#[test]
fn a_stalled_handshake_holds_no_worker_and_ends_at_the_deadline() {
    let pki = Pki::new("stall");
    let server = tls_server(&pki, |c| {
        c.workers = 1;
        if let Some(tls) = c.tls.as_mut() {
            tls.handshake_timeout = Duration::from_millis(300);
        }
    });
    let mut stalled: Vec<Client> = (0..3).map(|_| server.connect()).collect();
    // A TLS record header announcing more than is sent, and the first
    // bytes of a ClientHello.
    for client in &mut stalled {
        client.send([0x16, 0x03, 0x01, 0x00, 0x80, 0x01, 0x00]);
    }
    let mut fresh = pki.connect(server.addr);
    fresh.send_line("served");
    fresh.expect("ACK: served\n");
    let start = Instant::now();
    for client in &mut stalled {
        client.expect_closed();
    }
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    failures_counted(&server, "handshake_timeout", 3.0);
}

/// Under --tls-min-version 1.3 a TLS 1.2 client fails its handshake
/// (peer_incompatible) and is told so in an alert; a TLS 1.3 client is
/// served.
#[test]
fn tls_1_2_is_refused_under_min_version_1_3() {
    let pki = Pki::new("version");
    let server = tls_server(&pki, |c| {
        if let Some(tls) = c.tls.as_mut() {
            tls.min_version = TlsVersion::V1_3;
        }
    });
    let old = client_config(&pki.ca_pem, None, &[&rustls::version::TLS12]);
    let refused = TlsClient::connect(server.addr, old).err().expect("refused");
    // The client hears why, in TLS's own alert.
    assert!(
        refused
            .to_string()
            .contains("received fatal alert: ProtocolVersion"),
        "{refused}"
    );
    failures_counted(&server, "peer_incompatible", 1.0);
    let mut client = pki.connect(server.addr);
    assert_eq!(client.version(), Some(rustls::ProtocolVersion::TLSv1_3));
    client.send_line("new");
    client.expect("ACK: new\n");
    // Without the floor, TLS 1.2 is served.
    let open = tls_server(&pki, |_| {});
    let old = client_config(&pki.ca_pem, None, &[&rustls::version::TLS12]);
    let mut client = TlsClient::connect(open.addr, old).expect("tls 1.2");
    client.send_line("old");
    client.expect("ACK: old\n");
}

/// With --proxy-protocol the PROXY v2 header comes first, then the
/// ClientHello; the address the header names is the client's.
#[test]
fn a_proxy_v2_header_then_tls() {
    let pki = Pki::new("proxy");
    let server = tls_server(&pki, |c| c.proxy_protocol = true);
    let mut socket = TcpStream::connect(server.addr).expect("connect");
    socket.write_all(&proxy_v2_header()).expect("header");
    let mut client = TlsClient::over(socket, pki.client_config(None)).expect("tls");
    client.send_line("behind a proxy");
    client.expect("ACK: behind a proxy\n");
    // 192.0.2.7 is not loopback: the header's address is the one judged.
    client.send_line("quit_server");
    client.expect("ERR quit_server not allowed\n");
}

/// A PROXY protocol v2 header naming the client 192.0.2.7:4242.
fn proxy_v2_header() -> Vec<u8> {
    let mut header = b"\r\n\r\n\x00\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0x00, 12, 192, 0, 2, 7, 127, 0, 0, 1]);
    header.extend_from_slice(&4242u16.to_be_bytes());
    header.extend_from_slice(&8000u16.to_be_bytes());
    header
}

/// Behind a proxy, a TLS client that `--max-per-ip` turns away (its
/// header names an address at its limit) is closed at once without the
/// plaintext refusal, as the acceptor closes one it has no room for; even
/// with no idle rule to end it.
#[test]
fn a_tls_client_over_max_per_ip_behind_a_proxy_is_closed() {
    let pki = Pki::new("proxy-per-ip");
    let server = tls_server(&pki, |c| {
        c.proxy_protocol = true;
        c.max_per_ip = 1;
        c.idle_timeout = None;
    });
    let mut socket = TcpStream::connect(server.addr).expect("connect");
    socket.write_all(&proxy_v2_header()).expect("header");
    let mut first = TlsClient::over(socket, pki.client_config(None)).expect("tls");
    first.send_line("in");
    first.expect("ACK: in\n");
    let mut second = TcpStream::connect(server.addr).expect("connect");
    second.write_all(&proxy_v2_header()).expect("header");
    second.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut got = Vec::new();
    second
        .read_to_end(&mut got)
        .expect("closed, not left waiting");
    // Nothing, or a TLS alert record: no plaintext line.
    assert!(got.is_empty() || got[0] == 0x15, "{got:?}");
}

/// A client that sends without reading over TLS: the server stops reading
/// it once replies back up, so what it takes is bounded; when the client
/// reads at last, every reply is there, in order, none dropped.
#[test]
fn a_client_sending_without_reading_costs_bounded_memory() {
    let pki = Pki::new("backlog");
    let server = tls_server(&pki, |_| {});
    let socket = TcpStream::connect(server.addr).expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = ClientConnection::new(Arc::new(pki.client_config(None)), name).expect("tls");
    let mut sock = socket;
    while tls.is_handshaking() {
        tls.complete_io(&mut sock).expect("handshake");
    }
    sock.set_nonblocking(true).expect("nonblocking");
    // A full read buffer of these makes a batch of replies a little over
    // what rustls takes at once (64 KiB): the rest must wait, not vanish.
    let line = format!("{}\n", "z".repeat(600));
    let reply_len = line.len() + "ACK: ".len();
    // Send, never read, until nothing more goes for a while.
    let mut sent = 0usize;
    let mut stuck_since = Instant::now();
    while stuck_since.elapsed() < Duration::from_millis(500) {
        if !tls.wants_write() {
            tls.writer().write_all(line.as_bytes()).expect("buffer");
            sent += 1;
        }
        match tls.write_tls(&mut sock) {
            Ok(_) => stuck_since = Instant::now(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => panic!("send: {e}"),
        }
    }
    // The kernel's buffers both ways, and the server's bounded share.
    assert!(sent * line.len() < 32 * 1024 * 1024, "sent {sent} lines");
    // Now read everything while sending the rest.
    let mut replies = Vec::new();
    let until = Instant::now() + DEADLINE;
    while replies.len() < sent * reply_len {
        assert!(
            Instant::now() < until,
            "{} of {} bytes",
            replies.len(),
            sent * reply_len
        );
        if tls.wants_write() {
            match tls.write_tls(&mut sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("send: {e}"),
            }
        }
        match tls.read_tls(&mut sock) {
            Ok(0) => panic!("closed after {} bytes", replies.len()),
            Ok(_) => {
                tls.process_new_packets().expect("tls");
                let _ = tls.reader().read_to_end(&mut replies);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => panic!("read: {e}"),
        }
    }
    let expected = format!("ACK: {line}").repeat(sent);
    assert!(replies == expected.as_bytes(), "replies differ");
}
