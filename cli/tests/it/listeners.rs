//! Several listeners: TCP on IPv4 and IPv6 and a Unix domain socket served
//! at once under one connection limit, named in logs and metrics; admin
//! rights by user id over the Unix socket; the socket file's life; and
//! socket activation with two sockets.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{BinServer, Client, DEADLINE, run_bin_within, scrape_until};

/// A fresh path for a socket file, gone before the test starts.
pub fn socket_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("linepool-{name}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// The user id this test runs as.
pub(crate) fn my_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// `linepool serve --log-level debug` plus `args`.
fn serve(args: &[&str]) -> BinServer {
    let mut command = Command::new(env!("CARGO_BIN_EXE_linepool"));
    command.args(["serve", "--log-level", "debug"]).args(args);
    BinServer::spawn(command)
}

/// The address of a listener after the first, from its startup line.
pub fn also_listening(server: &mut BinServer, starts: &str) -> String {
    let line = server.wait_log(&format!("also listening on {starts}"));
    line.split("also listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("an address")
        .to_string()
}

/// Runs `linepool serve` with `args`, which must be refused: returns the
/// exit status and what it wrote. A server that starts instead is killed
/// after [`DEADLINE`] and the test fails.
fn refused(args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    let (status, text) = run_bin_within(&all, &[], b"");
    (status.code(), text)
}

/// A client of a Unix domain socket, reading line by line.
struct UnixClient {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl UnixClient {
    fn connect(path: &Path) -> UnixClient {
        let stream = UnixStream::connect(path).expect("connect to the unix socket");
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        UnixClient { stream, reader }
    }

    fn send_line(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .expect("send");
    }

    fn expect(&mut self, want: &str) {
        let mut got = String::new();
        self.reader.read_line(&mut got).expect("a reply");
        assert_eq!(got, want);
    }

    /// Reads until the server closes; asserts it said nothing more.
    fn expect_closed(&mut self) {
        let mut got = String::new();
        let n = self.reader.read_line(&mut got).expect("the close");
        assert_eq!(n, 0, "got {got:?}");
    }
}

/// Two TCP listeners (IPv4 and IPv6) and a Unix socket are served at once,
/// and `--max-connections` counts across all three: the fourth client is
/// turned away, whichever listener it comes to. Logs and metrics name the
/// listener each connection came in on.
#[test]
fn listeners_share_one_connection_limit() {
    let path = socket_path("shared");
    let path_arg = path.to_str().expect("utf-8 path");
    let mut server = serve(&[
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "[::1]:0",
        "--unix",
        path_arg,
        "--max-connections",
        "3",
        "--overload",
        "reject",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let v4 = server.addr;
    let v6: SocketAddr = also_listening(&mut server, "[::1]:").parse().expect("addr");
    let unix_name = also_listening(&mut server, "unix:");
    assert_eq!(unix_name, format!("unix:{path_arg}"));
    let metrics = server.metrics();

    let mut a = Client::connect(v4);
    a.send_line("over ipv4");
    a.expect("ACK: over ipv4\n");
    let mut b = Client::connect(v6);
    b.send_line("over ipv6");
    b.expect("ACK: over ipv6\n");
    let mut c = UnixClient::connect(&path);
    c.send_line("over unix");
    c.expect("ACK: over unix\n");

    // All three slots are taken: one more is refused on any listener.
    let mut over = Client::connect(v6);
    over.expect("ERR server busy\n");
    over.expect_closed();
    let mut over = UnixClient::connect(&path);
    over.expect("ERR server busy\n");
    over.expect_closed();

    let line = server.wait_log(&format!(
        "client connected peer={}",
        b.stream.local_addr().expect("addr")
    ));
    assert!(line.ends_with(&format!(" listener={v6}")), "{line}");
    let line = server.wait_log(&format!("client connected peer=uid:{}", my_uid()));
    assert!(line.ends_with(&format!(" listener={unix_name}")), "{line}");
    let line = server.wait_log("server busy, rejecting peer=uid:");
    assert!(line.ends_with(&format!(" listener={unix_name}")), "{line}");

    let key =
        |name: &str| format!("linepool_listener_connections_accepted_total{{listener=\"{name}\"}}");
    let samples = scrape_until(metrics, |s| {
        s.get("linepool_connections_accepted_total") == Some(&3.0)
    });
    for name in [v4.to_string(), v6.to_string(), unix_name.clone()] {
        assert_eq!(samples.get(&key(&name)), Some(&1.0), "{name}: {samples:?}");
    }
    let b_peer = b.stream.local_addr().expect("addr");
    drop((a, b, c));
    let line = server.wait_log(&format!("client closed peer={b_peer} "));
    assert!(line.ends_with(&format!(" listener={v6}")), "{line}");
    server.signal("TERM");
    assert!(server.wait_exit(DEADLINE).success());
}

/// `0.0.0.0:P` and `[::]:P` are bound side by side (the IPv6 one takes
/// IPv6 clients only), and each client is served by, and logged with, the
/// listener of its own family.
#[test]
fn ipv4_and_ipv6_wildcards_share_a_port() {
    // A port free a moment ago; nothing else here binds ports by number.
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let v4 = format!("0.0.0.0:{port}");
    let v6 = format!("[::]:{port}");
    let mut server = serve(&["--listen", &v4, "--listen", &v6]);
    assert_eq!(also_listening(&mut server, "[::]:"), v6);
    let mut a = Client::connect(SocketAddr::from(([127, 0, 0, 1], port)));
    a.send_line("four");
    a.expect("ACK: four\n");
    let mut b = Client::connect(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)));
    b.send_line("six");
    b.expect("ACK: six\n");
    let line = server.wait_log(&format!(
        "client connected peer={}",
        a.stream.local_addr().expect("addr")
    ));
    assert!(line.ends_with(&format!(" listener={v4}")), "{line}");
    let line = server.wait_log(&format!(
        "client connected peer={}",
        b.stream.local_addr().expect("addr")
    ));
    assert!(line.ends_with(&format!(" listener={v6}")), "{line}");
    drop((a, b));
    server.signal("TERM");
    assert!(server.wait_exit(DEADLINE).success());
}

/// A server with a Unix socket whose `--admin-uid` is `uids`, and a client
/// of that socket.
fn unix_server(name: &str, uids: &str) -> (BinServer, UnixClient) {
    let path = socket_path(name);
    let path_arg = path.to_str().expect("utf-8 path");
    let server = serve(&["--port", "0", "--unix", path_arg, "--admin-uid", uids]);
    (server, UnixClient::connect(&path))
}

/// Over the Unix socket the client's user id, not its address, decides
/// whether `quit_server` stops the server: refused for a user id not in
/// `--admin-uid` (the connection goes on), obeyed for one that is.
#[test]
fn quit_server_over_the_unix_socket_goes_by_user_id() {
    let me = my_uid();
    let other = (me + 1).to_string();
    let (mut server, mut client) = unix_server("refused", &other);
    client.send_line("quit_server");
    client.expect("ERR quit_server not allowed\n");
    client.send_line("still here");
    client.expect("ACK: still here\n");
    server.wait_log(&format!(
        "quit_server refused, uid may not stop the server peer=uid:{me}"
    ));
    server.signal("TERM");
    assert!(server.wait_exit(DEADLINE).success());

    let (mut server, mut client) = unix_server("allowed", &format!("{other},{me}"));
    client.send_line("quit_server");
    assert!(server.wait_exit_and_log(DEADLINE).success());
    assert_eq!(
        server.count_log(&format!("quit_server received peer=uid:{me}")),
        1
    );
    client.expect_closed();
}

/// A socket file left by a server that is gone is replaced; a path a live
/// server holds is refused with one line and status 2, as is a file that
/// is not a socket; the socket file goes when its server stops.
#[test]
fn a_stale_socket_is_replaced_and_a_live_one_refused() {
    let path = socket_path("stale");
    let path_arg = path.to_str().expect("utf-8").to_string();
    // A crashed run's socket: the file stays, nobody listens.
    drop(UnixListener::bind(&path).expect("bind"));
    assert!(path.exists());
    let mut server = serve(&["--port", "0", "--unix", &path_arg]);
    let mut client = UnixClient::connect(&path);
    client.send_line("replaced");
    client.expect("ACK: replaced\n");

    let (status, text) = refused(&["--port", "0", "--unix", &path_arg]);
    assert_eq!(status, Some(2), "{text}");
    assert_eq!(
        text,
        format!("linepool: cannot listen on unix:{path_arg}: a running server holds it\n")
    );
    // The live server was left alone.
    client.send_line("still served");
    client.expect("ACK: still served\n");

    let file = socket_path("not-a-socket");
    std::fs::write(&file, "data").expect("write");
    let file_arg = file.to_str().expect("utf-8");
    let (status, text) = refused(&["--port", "0", "--unix", file_arg]);
    assert_eq!(status, Some(2), "{text}");
    assert_eq!(
        text,
        format!(
            "linepool: cannot listen on unix:{file_arg}: the file exists and is not a socket\n"
        )
    );
    assert_eq!(std::fs::read(&file).expect("read"), b"data");
    let _ = std::fs::remove_file(&file);

    drop(client);
    server.signal("TERM");
    assert!(server.wait_exit(DEADLINE).success());
    assert!(!path.exists(), "the socket file outlived its server");

    // A start that fails after binding the socket leaves no file either.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = taken.local_addr().expect("addr").to_string();
    let (status, text) = refused(&["--port", "0", "--unix", &path_arg, "--metrics", &taken]);
    assert_eq!(status, Some(1), "{text}");
    assert!(!path.exists(), "a failed start left its socket file");
}

/// Socket activation with two sockets (`LISTEN_FDS=2`): a dual-stack TCP
/// socket and a Unix one, named by `LISTEN_FDNAMES`, are both served; an
/// IPv4 client of the dual-stack socket is logged as plain IPv4.
#[test]
fn two_passed_sockets_are_both_served() {
    let tcp =
        socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None).expect("socket");
    tcp.set_only_v6(false).expect("dual stack");
    let any: SocketAddr = "[::]:0".parse().expect("addr");
    tcp.bind(&any.into()).expect("bind");
    tcp.listen(16).expect("listen");
    let port = tcp
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("ip")
        .port();
    let path = socket_path("passed");
    let unix = UnixListener::bind(&path).expect("bind");

    let (tcp_fd, unix_fd) = (tcp.as_raw_fd(), unix.as_raw_fd());
    let mut command = Command::new("sh");
    // The shell's pid is the server's after exec: LISTEN_PID=$$.
    command.args([
        "-c",
        r#"LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=public:local exec "$0" serve --log-level debug"#,
        env!("CARGO_BIN_EXE_linepool"),
    ]);
    // SAFETY: dup2 and fcntl are async-signal-safe, as required between
    // fork and exec. The sockets go to fds 3 and 4, where LISTEN_FDS says
    // they are, by way of fds out of the way (either may be 3 or 4 now),
    // and without close-on-exec.
    unsafe {
        command.pre_exec(move || {
            for (from, via) in [(tcp_fd, 100), (unix_fd, 101)] {
                if libc::dup2(from, via) != via {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (via, to) in [(100, 3), (101, 4)] {
                if libc::dup2(via, to) != to || libc::fcntl(to, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut server = BinServer::spawn(command);
    let first = server.wait_log("listening on ");
    assert!(
        first.contains(&format!("listening on [::]:{port} listener=public ")),
        "{first}"
    );
    server.wait_log(&format!(
        "also listening on unix:{} listener=local",
        path.display()
    ));

    let mut client = Client::connect(SocketAddr::from(([127, 0, 0, 1], port)));
    client.send_line("passed tcp");
    client.expect("ACK: passed tcp\n");
    let peer = client.stream.local_addr().expect("addr");
    let line = server.wait_log(&format!("client connected peer={peer} "));
    assert!(line.ends_with(" listener=public"), "{line}");
    let mut local = UnixClient::connect(&path);
    local.send_line("passed unix");
    local.expect("ACK: passed unix\n");
    let line = server.wait_log("client connected peer=uid:");
    assert!(line.ends_with(" listener=local"), "{line}");

    drop((client, local));
    server.signal("TERM");
    assert!(server.wait_exit(DEADLINE).success());
    // The file is systemd's: the server leaves it.
    assert!(path.exists());
    let _ = std::fs::remove_file(&path);
}
