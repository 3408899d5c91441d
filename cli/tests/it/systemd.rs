//! systemd integration: readiness through NOTIFY_SOCKET, and a listening
//! socket handed over through LISTEN_FDS (socket activation), whose
//! backlog is served, so a restart refuses no connection.

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::support::{BinServer, Client, DEADLINE};

/// The next notification the server sent.
fn next(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("a notification");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A server started with a notify socket of its own (in a directory named
/// after `name`): the server, the socket it reports to, and the directory
/// to remove afterwards.
fn notifying_server(name: &str) -> (BinServer, UnixDatagram, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("linepool-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut command = Command::new(env!("CARGO_BIN_EXE_linepool"));
    command
        .args(["serve", "--port", "0", "--log-level", "debug"])
        .env("NOTIFY_SOCKET", &path);
    (BinServer::spawn(command), socket, dir)
}

/// READY=1 once listening, STOPPING=1 when the stop begins.
#[test]
fn readiness_and_stopping_are_notified() {
    let (mut server, socket, dir) = notifying_server("notify");
    assert_eq!(next(&socket), "READY=1\n");
    let mut client = server.connect();
    client.send_line("up");
    client.expect("ACK: up\n");
    server.signal("TERM");
    assert_eq!(next(&socket), "STOPPING=1\n");
    assert!(server.wait_exit(DEADLINE).success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGHUP is a reload, never a stop: RELOADING=1 with MONOTONIC_USEC (as
/// Type=notify-reload wants it), then READY=1 once done; the server goes on
/// serving.
#[test]
fn a_reload_is_notified_and_the_server_serves_on() {
    let (mut server, socket, dir) = notifying_server("reload");
    assert_eq!(next(&socket), "READY=1\n");
    server.signal("HUP");
    let reloading = next(&socket);
    let mut lines = reloading.lines();
    assert_eq!(lines.next(), Some("RELOADING=1"), "{reloading:?}");
    let usec = lines
        .next()
        .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(usec.is_some_and(|n| n > 0), "{reloading:?}");
    assert_eq!(next(&socket), "READY=1\n");
    server.wait_log("signal received, nothing to reload signal=SIGHUP");
    let mut client = server.connect();
    client.send_line("still serving");
    client.expect("ACK: still serving\n");
    server.signal("TERM");
    assert_eq!(next(&socket), "STOPPING=1\n");
    assert!(server.wait_exit(DEADLINE).success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A socket passed as fd 3 with LISTEN_FDS=1 is served; a client that
/// connected before the server started is answered from the backlog.
#[test]
fn a_passed_socket_is_served_with_its_backlog() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Connected before any server runs: it waits in the kernel's backlog.
    let mut early = Client::connect(addr);
    early.send_line("early");

    let fd = listener.as_raw_fd();
    let mut command = Command::new("sh");
    // The shell's pid is the server's after exec: LISTEN_PID=$$.
    command.args([
        "-c",
        r#"LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" serve --log-level debug"#,
        env!("CARGO_BIN_EXE_linepool"),
    ]);
    // SAFETY: dup2 and fcntl are async-signal-safe, as required between
    // fork and exec. They put the listening socket at fd 3, where
    // LISTEN_FDS says it is, without close-on-exec (dup2 onto itself, when
    // it is fd 3 already, would keep the flag).
    unsafe {
        command.pre_exec(move || {
            if fd != 3 && libc::dup2(fd, 3) != 3 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::fcntl(3, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let server = BinServer::spawn(command);
    assert_eq!(server.addr, addr, "the server listens on the passed socket");
    early.expect("ACK: early\n");
    let mut later = server.connect();
    later.send_line("later");
    later.expect("ACK: later\n");
    drop(listener);
}
