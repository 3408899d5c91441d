//! The admin console (`--admin-socket`): one line a command on a Unix
//! socket, each answered by its lines and `OK` or `ERR <reason>`; and
//! `linepool admin`, its client, with its exit statuses.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{BinServer, Client, DEADLINE, run_bin, scrape};

/// How long a test watches for bytes that must not come.
pub(crate) const QUIET: Duration = Duration::from_millis(300);

/// A fresh path for the console's socket, gone before the test starts.
fn socket_path(name: &str) -> PathBuf {
    crate::listeners::socket_path(&format!("console-{name}"))
}

/// `linepool serve --log-level debug --admin-socket PATH` plus `args`.
pub(crate) fn serve_with_console(name: &str, args: &[&str]) -> (BinServer, PathBuf) {
    serve_with_console_at(name, "debug", args)
}

/// `linepool serve --log-level LEVEL --admin-socket PATH` plus `args`.
fn serve_with_console_at(name: &str, level: &str, args: &[&str]) -> (BinServer, PathBuf) {
    serve_with_console_env(name, level, args, &[])
}

/// As [`serve_with_console_at`], with the variables `vars` set.
pub(crate) fn serve_with_console_env(
    name: &str,
    level: &str,
    args: &[&str],
    vars: &[(&str, &str)],
) -> (BinServer, PathBuf) {
    let path = socket_path(name);
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_linepool"));
    command
        .args([
            "serve",
            "--port",
            "0",
            "--log-level",
            level,
            "--admin-socket",
        ])
        .arg(&path)
        .args(args)
        .envs(vars.iter().copied());
    let mut server = BinServer::spawn(command);
    server.wait_log("admin console on unix:");
    (server, path)
}

/// A session on the console.
struct Session {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Session {
    fn open(path: &Path) -> Session {
        let stream = UnixStream::connect(path).expect("connect to the console");
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Session { stream, reader }
    }

    /// Sends `command`; returns the answer's lines, its last (`OK` or
    /// `ERR …`) included.
    fn ask(&mut self, command: &str) -> Vec<String> {
        self.stream
            .write_all(format!("{command}\n").as_bytes())
            .expect("send");
        let mut answer = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("an answer");
            assert!(n > 0, "the console closed; so far {answer:?}");
            let line = line.trim_end_matches('\n').to_string();
            let last = line == "OK" || line.starts_with("ERR ");
            answer.push(line);
            if last {
                return answer;
            }
        }
    }
}

/// One command in a session of its own.
pub(crate) fn ask(path: &Path, command: &str) -> Vec<String> {
    Session::open(path).ask(command)
}

/// Asks `command` until its answer holds `line`: figures a worker adds
/// just after its reply went out. Fails after [`DEADLINE`].
pub(crate) fn ask_until(path: &Path, command: &str, line: &str) -> Vec<String> {
    let until = std::time::Instant::now() + DEADLINE;
    loop {
        let answer = ask(path, command);
        if answer.iter().any(|l| l == line) {
            return answer;
        }
        assert!(std::time::Instant::now() < until, "no {line} in {answer:?}");
        std::thread::yield_now();
    }
}

/// The `id=` of the connection from `peer`, from `show conns`.
pub(crate) fn id_of(path: &Path, peer: &str) -> String {
    let answer = ask(path, "show conns");
    let line = answer
        .iter()
        .find(|l| l.contains(&format!(" peer={peer} ")))
        .unwrap_or_else(|| panic!("no connection from {peer} in {answer:?}"));
    line.split_whitespace()
        .next()
        .and_then(|id| id.strip_prefix("id="))
        .expect("an id")
        .to_string()
}

/// `show info` names the server and its figures, on a socket only the
/// server's user may open.
#[test]
fn show_info_names_the_server() {
    let (server, path) = serve_with_console("info", &[]);
    let mode = std::fs::metadata(&path)
        .expect("the socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let mut client = server.connect();
    client.send_line("one");
    client.expect("ACK: one\n");
    let answer = ask_until(&path, "show info", "lines=1");
    assert_eq!(answer.last().map(String::as_str), Some("OK"), "{answer:?}");
    let version = format!("version={}", env!("CARGO_PKG_VERSION"));
    for expected in [
        version.as_str(),
        "protocol=ack",
        "accepting=yes",
        "open=1",
        "lines=1",
    ] {
        assert!(
            answer.iter().any(|l| l == expected),
            "no {expected} in {answer:?}"
        );
    }
    let listeners = format!("listeners={}", server.addr);
    assert!(answer.contains(&listeners), "{answer:?}");
    // The stats line's figures, since the start: the one turn waited.
    for key in [
        "ready=",
        "workers_busy=",
        "service_mean_us=",
        "service_p99_le_us=",
    ] {
        assert!(
            answer.iter().any(|l| l.starts_with(key)),
            "no {key} in {answer:?}"
        );
    }
    let queued = answer.iter().find(|l| l.starts_with("queue_p99_le_us="));
    assert!(
        queued.is_some_and(|l| l != "queue_p99_le_us=0.0"),
        "{answer:?}"
    );
}

/// `show conns` lists each connection with its peer, listener and
/// messages.
#[test]
fn show_conns_lists_each_connection() {
    let (server, path) = serve_with_console("conns", &[]);
    let mut client = server.connect();
    client.send_line("one");
    client.expect("ACK: one\n");
    let peer = client.stream.local_addr().expect("local address");
    let answer = ask(&path, "show conns");
    let line = answer
        .iter()
        .find(|l| l.contains(&format!(" peer={peer} ")))
        .unwrap_or_else(|| panic!("{peer} not in {answer:?}"));
    assert!(line.starts_with("id="), "{line}");
    assert!(
        line.contains(&format!(" listener={} ", server.addr)),
        "{line}"
    );
    for field in [
        " proxy=- ",
        " protocol=ack ",
        " cert=- ",
        " bytes_in=4 ",
        " messages=1 ",
        " tls=- ",
        " bytes_out=9 ",
        " idle_secs=",
    ] {
        assert!(line.contains(field), "no{field}in {line}");
    }
    assert_eq!(answer.last().map(String::as_str), Some("OK"));
}

/// Behind a proxy, `show conns` gives the client's address from the
/// PROXY header and the proxy's as `proxy=`.
#[test]
fn show_conns_names_the_proxy() {
    let (server, path) = serve_with_console("conns-proxy", &["--proxy-protocol"]);
    let mut client = server.connect();
    let proxy = client.stream.local_addr().expect("local address");
    client.send("PROXY TCP4 192.0.2.7 127.0.0.1 4242 8000\r\nhi\n");
    client.expect("ACK: hi\n");
    let answer = ask(&path, "show conns");
    let line = answer
        .iter()
        .find(|l| l.contains(" peer=192.0.2.7:4242 "))
        .unwrap_or_else(|| panic!("no PROXY client in {answer:?}"));
    assert!(line.contains(&format!(" proxy={proxy} ")), "{line}");
}

/// On a TLS port, `show conns` gives the TLS version and the name of the
/// client's verified certificate.
#[test]
fn show_conns_names_the_tls_version_and_certificate() {
    let pki = crate::pki::Pki::new("conns");
    let identity = pki.client_cert("alice", "alice", false);
    let (cert, key, ca) = (
        pki.cert.display().to_string(),
        pki.key.display().to_string(),
        pki.ca_pem.display().to_string(),
    );
    let args = [
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &ca,
    ];
    let (server, path) = serve_with_console("conns-tls", &args);
    let mut client =
        crate::pki::TlsClient::connect(server.addr, pki.client_config(Some(&identity)))
            .expect("handshake");
    client.send_line("hi");
    client.expect("ACK: hi\n");
    let answer = ask(&path, "show conns");
    let line = answer
        .iter()
        .find(|l| l.starts_with("id="))
        .unwrap_or_else(|| panic!("no connection in {answer:?}"));
    assert!(line.contains(" cert=alice "), "{line}");
    assert!(line.contains(" tls=1.3 "), "{line}");
}

/// `kill ID` closes that connection alone, its close line saying
/// `reason=killed`; an id nobody has is an error.
#[test]
fn kill_closes_that_connection_alone() {
    let (mut server, path) = serve_with_console("kill", &[]);
    let mut doomed = server.connect();
    let mut other = server.connect();
    for client in [&mut doomed, &mut other] {
        client.send_line("hi");
        client.expect("ACK: hi\n");
    }
    let peer = doomed
        .stream
        .local_addr()
        .expect("local address")
        .to_string();
    let id = id_of(&path, &peer);
    assert_eq!(ask(&path, &format!("kill {id}")), ["OK"]);
    doomed.expect_closed();
    server.wait_log(&format!(
        "client closed peer={peer} messages=1 reason=killed"
    ));
    server.wait_log(&format!("connection killed id={id} peer={peer} by=uid:"));
    other.send_line("still here");
    other.expect("ACK: still here\n");
    assert_eq!(ask(&path, "kill 999999"), ["ERR no connection 999999"]);
    assert_eq!(ask(&path, "kill x"), ["ERR not a connection id: x"]);
}

/// `pause` stops accepting: a new client waits in the backlog, unanswered,
/// and `linepool_accepting` says 0; `resume` accepts it and it is served.
#[test]
fn pause_holds_new_clients_and_resume_serves_them() {
    let (mut server, path) = serve_with_console("pause", &["--metrics", "127.0.0.1:0"]);
    let metrics = server.metrics();
    let accepting =
        |m: &std::collections::HashMap<String, f64>| m.get("linepool_accepting").copied();
    assert_eq!(accepting(&scrape(metrics)), Some(1.0));
    assert_eq!(ask(&path, "pause"), ["OK"]);
    server.wait_log("acceptor paused by=uid:");
    assert!(ask(&path, "show info").contains(&"accepting=paused".to_string()));
    assert_eq!(accepting(&scrape(metrics)), Some(0.0));
    let mut waiting = server.connect();
    let peer = waiting.stream.local_addr().expect("local address");
    waiting.send_line("later");
    waiting.expect_silence(QUIET);
    assert_eq!(
        server.count_log(&format!("client connected peer={peer}")),
        0
    );
    assert_eq!(ask(&path, "resume"), ["OK"]);
    waiting.expect("ACK: later\n");
    assert_eq!(accepting(&scrape(metrics)), Some(1.0));
}

/// A pause holds new clients on a full server too: when a slot frees, the
/// acceptor waiting for it takes nobody until `resume`.
#[test]
fn pause_holds_new_clients_on_a_full_server() {
    let (server, path) = serve_with_console("pause-full", &["--max-connections", "1"]);
    let mut holder = server.connect();
    holder.send_line("in");
    holder.expect("ACK: in\n");
    assert_eq!(ask(&path, "pause"), ["OK"]);
    let mut waiting = server.connect();
    waiting.send_line("later");
    holder.send_line("shutdown");
    holder.expect_closed();
    waiting.expect_silence(QUIET);
    assert_eq!(ask(&path, "resume"), ["OK"]);
    waiting.expect("ACK: later\n");
}

/// `stop` stops the server as `quit_server` does: `OK`, then a clean exit.
#[test]
fn stop_stops_the_server() {
    let (mut server, path) = serve_with_console("stop", &[]);
    let (status, text) = run_bin(&["admin", "--socket", path.to_str().expect("path"), "stop"]);
    assert_eq!(status.code(), Some(0), "{text}");
    let exit = server.wait_exit(DEADLINE);
    assert!(exit.success(), "{exit:?}");
    server.wait_log("stop requested on the admin console by=uid:");
    assert!(!path.exists(), "the socket file was left behind");
}

/// A user id `--admin-uid` does not name gets `ERR not allowed` for every
/// command, and nothing changes.
#[test]
fn a_uid_not_allowed_changes_nothing() {
    let (mut server, path) = serve_with_console("refused", &["--admin-uid", "65534"]);
    let mut session = Session::open(&path);
    assert_eq!(session.ask("stop"), ["ERR not allowed"]);
    server.wait_log("admin console refused uid=");
    // Its session ends there: it holds the console from nobody.
    let mut rest = String::new();
    assert_eq!(session.reader.read_line(&mut rest).expect("the close"), 0);
    assert_eq!(ask(&path, "show info"), ["ERR not allowed"]);
    let mut client = server.connect();
    client.send_line("alive");
    client.expect("ACK: alive\n");
    let (status, _) = run_bin(&["admin", "--socket", path.to_str().expect("path"), "pause"]);
    assert_eq!(status.code(), Some(1));
    let mut late: Client = server.connect();
    late.send_line("served");
    late.expect("ACK: served\n");
}

/// Garbage, an unknown command and an endless line each get their `ERR`;
/// the endless line ends its session, and the next one is served.
#[test]
fn the_console_survives_garbage_and_endless_lines() {
    let (_server, path) = serve_with_console("garbage", &[]);
    let mut session = Session::open(&path);
    assert_eq!(
        session.ask("\u{7f}\u{1}bogus"),
        ["ERR unknown command: ??bogus"]
    );
    assert_eq!(session.ask(""), ["ERR no command"]);
    session.stream.write_all(b"\xff\xfe\n").expect("send");
    let mut line = String::new();
    session.reader.read_line(&mut line).expect("an answer");
    assert_eq!(line, "ERR not utf-8\n");
    let mut endless = Session::open(&path);
    drop(session);
    endless.stream.write_all(&[b'x'; 4096]).expect("send");
    let mut line = String::new();
    endless.reader.read_line(&mut line).expect("an answer");
    assert_eq!(line, "ERR line too long\n");
    line.clear();
    // The session ends with the rest unread: a close or a reset.
    match endless.reader.read_line(&mut line) {
        Ok(n) => assert_eq!(n, 0, "{line:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    assert_eq!(ask(&path, "help").last().map(String::as_str), Some("OK"));
    // A line over 1,024 bytes is refused even when its end has come.
    let mut long = Session::open(&path);
    let padded = format!("show info{}", " ".repeat(1100));
    assert_eq!(long.ask(&padded), ["ERR line too long"]);
}

/// `linepool admin` prints the answer and exits 0 on `OK`, 1 on `ERR`
/// (the reason on standard error), 2 when the console cannot be reached.
#[test]
fn the_admin_client_exits_by_the_answer() {
    let (_server, path) = serve_with_console("client", &[]);
    let socket = path.to_str().expect("path");
    let (status, text) = run_bin(&["admin", "--socket", socket, "show", "info"]);
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(text.contains("accepting=yes\n"), "{text}");
    assert!(!text.contains("OK"), "{text}");
    let (status, text) = run_bin(&["admin", "--socket", socket, "bogus"]);
    assert_eq!(status.code(), Some(1), "{text}");
    assert_eq!(text, "linepool: unknown command: bogus\n");
    let gone = socket_path("nobody");
    let (status, text) = run_bin(&["admin", "--socket", gone.to_str().expect("path"), "help"]);
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(
        text.starts_with("linepool: cannot reach the admin console at "),
        "{text}"
    );
}

/// `set max-connections` changes the limit while the server runs:
/// lowered under the clients open, it closes nobody and admits nobody
/// more; raised again, the client waiting in the backlog is served. Each
/// change writes one audit line, and `/metrics` follows.
#[test]
fn set_max_connections_changes_the_limit_live() {
    let (mut server, path) = serve_with_console("limit", &["--max-connections", "10"]);
    let mut first = server.connect();
    let mut second = server.connect();
    for client in [&mut first, &mut second] {
        client.send_line("hi");
        client.expect("ACK: hi\n");
    }
    assert_eq!(ask(&path, "set max-connections 1"), ["OK"]);
    server.wait_log("setting changed name=max-connections from=10 to=1 by=uid:");
    assert!(ask(&path, "show info").contains(&"max_connections=1".to_string()));
    for client in [&mut first, &mut second] {
        client.send_line("still");
        client.expect("ACK: still\n");
    }
    let mut third = server.connect();
    third.send_line("later");
    third.expect_silence(QUIET);
    assert_eq!(ask(&path, "set max-connections 3"), ["OK"]);
    third.expect("ACK: later\n");
    assert_eq!(
        ask(&path, "set max-connections 0"),
        ["ERR invalid value '0' for max-connections: must be at least 1"]
    );
    assert_eq!(
        ask(&path, "set color blue"),
        [
            "ERR no setting color: workers, max-connections, overload, idle-timeout, max-line, max-per-ip, stats-interval, admin-from, log-level"
        ]
    );
}

/// `set log-level` changes what the server logs while it runs.
#[test]
fn set_log_level_changes_the_log_live() {
    let (mut server, path) = serve_with_console_at("level", "info", &[]);
    let mut quiet = server.connect();
    quiet.send_line("a");
    quiet.expect("ACK: a\n");
    assert_eq!(ask(&path, "set log-level debug"), ["OK"]);
    server.wait_log("setting changed name=log-level from=info to=debug by=uid:");
    let mut loud = server.connect();
    let peer = loud.stream.local_addr().expect("local address");
    loud.send_line("b");
    loud.expect("ACK: b\n");
    server.wait_log(&format!("client connected peer={peer}"));
    let quiet_peer = quiet.stream.local_addr().expect("local address");
    assert_eq!(
        server.count_log(&format!("client connected peer={quiet_peer}")),
        0
    );
    assert_eq!(
        ask(&path, "set log-level loud"),
        ["ERR invalid value 'loud' for log-level: off, error, warn, info, debug or trace"]
    );
}
