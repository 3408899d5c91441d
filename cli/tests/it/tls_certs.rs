//! TLS identities: client certificates required, optional, untrusted or
//! expired; `--admin-cert` with `--admin-from`; SIGHUP swapping the
//! server's certificate for new connections only; `serve --check`; and the
//! project's own TLS clients.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use linepool::tls::ClientAuth;

use crate::pki::{Pki, TlsClient, failures_counted, tls_server};
use crate::support::{BinServer, DEADLINE, run_bin, scrape_until};

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

/// `sum`'s stop rule follows --admin-cert too: a number out of range from
/// a certificate not on the list is an error line, from one on the list it
/// stops the server.
#[test]
fn sums_stop_rule_needs_the_admin_certificate() {
    let pki = Pki::new("sum-admin");
    let admin = pki.client_cert("admin", "admin.example", false);
    let user = pki.client_cert("user", "user.example", false);
    let ca = pki.ca_pem.clone();
    let server = tls_server(&pki, |c| {
        if let Some(tls) = c.tls.as_mut() {
            tls.client_ca = Some(ca);
        }
        c.protocol = linepool::protocol::sum("Server of linepool", 50);
        c.admin_cert = Some(vec!["admin.example".into()]);
    });
    let mut client = TlsClient::connect(server.addr, pki.client_config(Some(&user))).expect("tls");
    client.send_line("x;0");
    client.expect("ERR number out of range (1..=100)\n");
    client.send_line("x;5");
    client.expect("Server of linepool;50\n");
    let mut client = TlsClient::connect(server.addr, pki.client_config(Some(&admin))).expect("tls");
    client.send_line("x;0");
    client.expect_closed();
    server.wait_stopped(DEADLINE);
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

/// TLS is for TCP listeners: `--unix` with `--tls-cert` is refused at the
/// start with one line and exit status 2 (with `--check` and without), and
/// the library refuses a Unix listener beside TLS too.
#[test]
fn tls_is_refused_on_a_unix_socket() {
    let pki = Pki::new("unix");
    let (cert, key) = (
        pki.cert.display().to_string(),
        pki.key.display().to_string(),
    );
    let path = pki.dir.join("tls.sock");
    let unix = path.display().to_string();
    let refusal = "linepool: --unix cannot be used with --tls-cert: TLS is for TCP listeners, a Unix socket stays plaintext\n";
    for check in [&["--check"][..], &["--port", "0"]] {
        let mut args = vec!["serve"];
        args.extend_from_slice(check);
        args.extend_from_slice(&["--unix", &unix, "--tls-cert", &cert, "--tls-key", &key]);
        let (status, out) = run_bin(&args);
        assert_eq!(status.code(), Some(2), "{out}");
        assert_eq!(out, refusal);
        assert!(!path.exists(), "the socket file was made");
    }

    let unix = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let listeners = vec![
        linepool::Listener::tcp(tcp).expect("listener"),
        linepool::Listener::unix(unix).expect("listener"),
    ];
    let mut config = linepool::Config::default();
    config.tls = Some(pki.settings());
    match linepool::Server::from_listeners(listeners, config, linepool::protocol::ack()) {
        Ok(_) => panic!("a Unix listener was served beside TLS"),
        Err(e) => assert_eq!(
            e.to_string(),
            "tls: cannot serve a Unix socket: TLS is for TCP listeners only"
        ),
    }
}

/// A TLS client's close line names both its certificate and its listener,
/// as its connect line does.
#[test]
fn the_close_line_names_the_certificate_and_the_listener() {
    let pki = Pki::new("close-line");
    let user = pki.client_cert("user", "user.example", false);
    let args = pki.server_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = BinServer::start(&args);
    let listener = server.addr;
    let mut client = TlsClient::connect(server.addr, pki.client_config(Some(&user))).expect("tls");
    client.send_line("hello");
    client.expect("ACK: hello\n");
    let peer = client.socket().local_addr().expect("addr");
    let line = server.wait_log(&format!("client connected peer={peer}"));
    assert!(
        line.ends_with(&format!(
            "client connected peer={peer} cert=user.example listener={listener}"
        )),
        "{line}"
    );
    client.send_line("shutdown");
    client.expect_closed();
    let line = server.wait_log(&format!("client closed peer={peer}"));
    assert!(
        line.ends_with(&format!(
            "client closed peer={peer} cert=user.example messages=1 reason=closed listener={listener}"
        )),
        "{line}"
    );
    server.signal("TERM");
    assert!(server.wait_exit(DEADLINE).success());
}
