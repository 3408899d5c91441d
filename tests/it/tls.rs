//! TLS as a transport: every protocol unchanged inside it, handshakes that
//! fail or stall end only their connection (counted by reason), client
//! certificates decide who may stop the server, SIGHUP swaps the
//! certificates for new connections only, and the PROXY header comes
//! before the ClientHello.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use linepool::tls::{ClientAuth, TlsVersion};
use linepool::{Config, ProtocolName};
use rustls::{ClientConnection, pki_types::ServerName};

use crate::pki::{Pki, TlsClient, client_config};
use crate::support::{BinServer, Client, DEADLINE, TestServer, run_bin, scrape_until};

/// A server speaking TLS with `pki`'s certificate, with metrics, and the
/// defaults changed by `configure`.
fn tls_server(pki: &Pki, configure: impl FnOnce(&mut Config)) -> TestServer {
    let settings = pki.settings();
    TestServer::with_metrics(|c| {
        c.tls = Some(settings);
        configure(c);
    })
}

/// Waits until the server has counted `n` handshake failures for `reason`.
fn failures_counted(server: &TestServer, reason: &str, n: f64) {
    let key = format!("linepool_tls_handshake_failures_total{{reason=\"{reason}\"}}");
    let samples = scrape_until(server.metrics(), |s| s.get(&key) == Some(&n));
    assert_eq!(samples.get(&key), Some(&n), "{key}");
}

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

    let sum = tls_server(&pki, |c| c.protocol = ProtocolName::Sum);
    let mut client = pki.connect(sum.addr);
    client.send_line("Alice;7");
    client.expect("Server of linepool;50\n");
    client.send_line("x;five");
    client.expect("ERR expected <name>;<integer>\n");

    let framed = tls_server(&pki, |c| c.protocol = ProtocolName::Framed);
    let mut client = pki.connect(framed.addr);
    let binary: Vec<u8> = (0..=255).collect();
    let mut frames = Vec::new();
    for message in [&b"hello"[..], b"", &binary] {
        frames.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frames.extend_from_slice(message);
    }
    client.send(&frames);
    assert_eq!(client.read_bytes(frames.len()), frames);

    let chat = tls_server(&pki, |c| c.protocol = ProtocolName::Chat);
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
/// (peer_incompatible); a TLS 1.3 client is served.
#[test]
fn tls_1_2_is_refused_under_min_version_1_3() {
    let pki = Pki::new("version");
    let server = tls_server(&pki, |c| {
        if let Some(tls) = c.tls.as_mut() {
            tls.min_version = TlsVersion::V1_3;
        }
    });
    let old = client_config(&pki.ca_pem, None, &[&rustls::version::TLS12]);
    assert!(TlsClient::connect(server.addr, old).is_err());
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

/// Whether a client with `identity` is refused: its handshake fails, or
/// (TLS 1.3, where the server judges the client's certificate after the
/// client is done) its first read does.
fn refused(pki: &Pki, addr: SocketAddr, identity: Option<&(PathBuf, PathBuf)>) -> bool {
    let Ok(mut client) = TlsClient::connect(addr, pki.client_config(identity)) else {
        return true;
    };
    if client.try_send(b"anyone?\n").is_err() {
        return true;
    }
    match client.try_read(b"ACK: anyone?\n".len()) {
        Ok(reply) => {
            assert_eq!(reply, b"ACK: anyone?\n");
            false
        }
        Err(e) => {
            assert_ne!(e.kind(), io::ErrorKind::WouldBlock, "no answer at all");
            true
        }
    }
}

/// With --tls-client-ca, required: no certificate, one from another CA and
/// an expired one are each refused and counted by reason; a good one is
/// served. Optional: a client without one is served too.
#[test]
fn client_certificates_required_and_optional() {
    let pki = Pki::new("clients");
    let other = Pki::new("stranger");
    let ca = pki.ca_pem.clone();
    let server = tls_server(&pki, |c| {
        if let Some(tls) = c.tls.as_mut() {
            tls.client_ca = Some(ca);
        }
    });
    let good = pki.client_cert("good", "app.example", false);
    let expired = pki.client_cert("expired", "old.example", true);
    let foreign = other.client_cert("foreign", "app.example", false);
    assert!(refused(&pki, server.addr, None));
    failures_counted(&server, "no_client_certificate", 1.0);
    assert!(refused(&pki, server.addr, Some(&foreign)));
    failures_counted(&server, "unknown_ca", 1.0);
    assert!(refused(&pki, server.addr, Some(&expired)));
    failures_counted(&server, "certificate_expired", 1.0);
    let mut client = TlsClient::connect(server.addr, pki.client_config(Some(&good))).expect("tls");
    client.send_line("with a cert");
    client.expect("ACK: with a cert\n");

    let ca = pki.ca_pem.clone();
    let optional = tls_server(&pki, |c| {
        if let Some(tls) = c.tls.as_mut() {
            tls.client_ca = Some(ca);
            tls.client_auth = ClientAuth::Optional;
        }
    });
    let mut anonymous = pki.connect(optional.addr);
    anonymous.send_line("no cert");
    anonymous.expect("ACK: no cert\n");
    assert!(refused(&pki, optional.addr, Some(&foreign)));
}

/// --admin-cert: `quit_server` from a certificate not on the list is
/// refused as today and the connection stays open; from one on the list it
/// stops the server, but only if --admin-from allows the address too.
#[test]
fn admin_cert_and_admin_from_must_both_allow() {
    let pki = Pki::new("admin");
    let admin = pki.client_cert("admin", "admin.example", false);
    let user = pki.client_cert("user", "user.example", false);
    let start = |admin_from: &str| {
        let ca = pki.ca_pem.clone();
        let admin_from = admin_from.parse().expect("list");
        tls_server(&pki, move |c| {
            if let Some(tls) = c.tls.as_mut() {
                tls.client_ca = Some(ca);
            }
            c.admin_cert = Some(vec!["ops.example".into(), "admin.example".into()]);
            c.admin_from = admin_from;
        })
    };
    let server = start("127.0.0.1");
    let mut client = TlsClient::connect(server.addr, pki.client_config(Some(&user))).expect("tls");
    client.send_line("quit_server");
    client.expect("ERR quit_server not allowed\n");
    client.send_line("still open");
    client.expect("ACK: still open\n");

    let elsewhere = start("10.0.0.0/8");
    let mut client =
        TlsClient::connect(elsewhere.addr, pki.client_config(Some(&admin))).expect("tls");
    client.send_line("quit_server");
    client.expect("ERR quit_server not allowed\n");

    let mut client = TlsClient::connect(server.addr, pki.client_config(Some(&admin))).expect("tls");
    client.send_line("quit_server");
    client.expect_closed();
    server.wait_stopped(DEADLINE);
}

/// With --proxy-protocol the PROXY v2 header comes first, then the
/// ClientHello; the address the header names is the client's.
#[test]
fn a_proxy_v2_header_then_tls() {
    let pki = Pki::new("proxy");
    let server = tls_server(&pki, |c| c.proxy_protocol = true);
    let mut socket = TcpStream::connect(server.addr).expect("connect");
    let mut header = b"\r\n\r\n\x00\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0x00, 12, 192, 0, 2, 7, 127, 0, 0, 1]);
    header.extend_from_slice(&4242u16.to_be_bytes());
    header.extend_from_slice(&8000u16.to_be_bytes());
    socket.write_all(&header).expect("header");
    let mut client = TlsClient::over(socket, pki.client_config(None)).expect("tls");
    client.send_line("behind a proxy");
    client.expect("ACK: behind a proxy\n");
    // 192.0.2.7 is not loopback: the header's address is the one judged.
    client.send_line("quit_server");
    client.expect("ERR quit_server not allowed\n");
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

/// SIGHUP re-reads the certificate: a new connection sees the new one, an
/// open connection goes on with the old and is answered; a broken file
/// keeps the old one, logs one error, and the server serves on. SIGHUP
/// never stops the server.
#[test]
fn sighup_swaps_the_certificate_for_new_connections_only() {
    let mut pki = Pki::new("reload");
    let (cert, key) = (
        pki.cert.display().to_string(),
        pki.key.display().to_string(),
    );
    let mut server = BinServer::start(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--metrics",
        "127.0.0.1:0",
    ]);
    let metrics = server.metrics();
    let mut old = pki.connect(server.addr);
    assert_eq!(old.server_cn(), "server");
    pki.server_cert("renewed");
    server.signal("HUP");
    server.wait_log("tls certificates reloaded");
    let mut new = pki.connect(server.addr);
    assert_eq!(new.server_cn(), "renewed");
    old.send_line("old one");
    old.expect("ACK: old one\n");
    new.send_line("new one");
    new.expect("ACK: new one\n");

    std::fs::write(&pki.key, "not a key").expect("break the key");
    server.signal("HUP");
    server.wait_log("tls reload failed, keeping the old certificates");
    let mut after = pki.connect(server.addr);
    assert_eq!(after.server_cn(), "renewed");
    after.send_line("after");
    after.expect("ACK: after\n");
    let samples = scrape_until(metrics, |s| {
        s.get("linepool_tls_reloads_total{result=\"failure\"}") == Some(&1.0)
    });
    assert_eq!(
        samples.get("linepool_tls_reloads_total{result=\"success\"}"),
        Some(&1.0)
    );
    let expiry = samples["linepool_tls_certificate_expiry_timestamp_seconds"];
    assert!(expiry > 1.9e9, "expiry {expiry}");
    // Logged after the error: every line before it has been seen.
    let after_port = after.socket().local_addr().expect("addr").port();
    server.wait_log(&format!("tls handshake done peer=127.0.0.1:{after_port}"));
    assert_eq!(server.count_log("tls reload failed"), 1);
    old.send_line("still");
    old.expect("ACK: still\n");
}

/// `serve --check` exits 0 on good files and 2, with one line naming the
/// flag and file, on a missing file or a key that is not the
/// certificate's.
#[test]
fn check_validates_the_certificate_files() {
    let pki = Pki::new("check");
    let other = Pki::new("other");
    let (cert, key) = (
        pki.cert.display().to_string(),
        pki.key.display().to_string(),
    );
    let (status, out) = run_bin(&["serve", "--check", "--tls-cert", &cert, "--tls-key", &key]);
    assert!(status.success(), "{out}");
    assert_eq!(out, "configuration ok\n");

    let missing = pki.dir.join("missing.pem").display().to_string();
    let (status, out) = run_bin(&[
        "serve",
        "--check",
        "--tls-cert",
        &missing,
        "--tls-key",
        &key,
    ]);
    assert_eq!(status.code(), Some(2));
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with(&format!("linepool: cannot read --tls-cert {missing}: ")),
        "{out}"
    );

    let wrong = other.key.display().to_string();
    let (status, out) = run_bin(&["serve", "--check", "--tls-cert", &cert, "--tls-key", &wrong]);
    assert_eq!(status.code(), Some(2));
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("does not go with --tls-cert"), "{out}");

    // Without --check, bad files are refused the same way at the start.
    let (status, out) = run_bin(&[
        "serve",
        "--port",
        "0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &wrong,
    ]);
    assert_eq!(status.code(), Some(2));
    assert!(out.contains("does not go with --tls-cert"), "{out}");
}

/// Runs the binary with `args` and `input` on stdin; returns its exit code
/// and its stdout.
fn run_with_input(args: &[&str], input: &str) -> (Option<i32>, String) {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_linepool"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("write stdin");
    drop(stdin);
    let output = child.wait_with_output().expect("wait");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// `linepool client --tls` and `linepool load --tls` verify the server
/// against --tls-ca (a server the system's roots do not know is refused)
/// and present a client certificate with --tls-cert and --tls-key.
#[test]
fn the_client_and_the_load_tool_speak_tls() {
    let pki = Pki::new("tools");
    let ca = pki.ca_pem.clone();
    let server = tls_server(&pki, |c| {
        if let Some(tls) = c.tls.as_mut() {
            tls.client_ca = Some(ca);
            tls.client_auth = ClientAuth::Optional;
        }
        c.admin_cert = Some(vec!["admin.example".into()]);
    });
    let port = server.addr.port().to_string();
    let ca = pki.ca_pem.display().to_string();
    let base = [
        "--port",
        &port,
        "--tls",
        "--tls-ca",
        &ca,
        "--tls-server-name",
        "localhost",
    ];
    let client: Vec<&str> = ["client"].iter().chain(&base).copied().collect();
    assert_eq!(
        run_with_input(&client, "one\ntwo\n"),
        (Some(0), "ACK: one\nACK: two\n".to_string())
    );
    let untrusted = ["client", "--port", &port, "--tls"];
    assert_eq!(run_with_input(&untrusted, "one\n").0, Some(1));

    let load: Vec<&str> = ["load", "-c", "3", "-n", "300"]
        .iter()
        .chain(&base)
        .copied()
        .collect();
    let (status, out) = run_with_input(&load, "");
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("replies      300 in"), "{out}");
    let per_request: Vec<&str> = load
        .iter()
        .chain(&["--connect-per-request"])
        .copied()
        .collect();
    let (status, out) = run_with_input(&per_request, "");
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("replies      300 in"), "{out}");
    let pipelined: Vec<&str> = load.iter().chain(&["--pipeline", "32"]).copied().collect();
    assert_eq!(run_with_input(&pipelined, "").0, Some(0));

    // With the admin's certificate, quit_server stops the server.
    let (cert, key) = pki.client_cert("admin", "admin.example", false);
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let admin: Vec<&str> = client
        .iter()
        .chain(&["--tls-cert", &cert, "--tls-key", &key])
        .copied()
        .collect();
    assert_eq!(
        run_with_input(&admin, "quit_server\n"),
        (Some(0), String::new())
    );
    server.wait_stopped(DEADLINE);
}
