//! `linepool client` driven through pipes, as a script would use it, and
//! `linepool load --protocol framed`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;

use crate::support::{DEADLINE, TestServer};

/// Runs `linepool client` against `server` with `input` on stdin (closed
/// after it) and returns its status and stdout.
fn client(server: &TestServer, args: &[&str], input: &str) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_linepool"))
        .args(["client", "--port", &server.addr.port().to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn client");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("write stdin");
    drop(stdin);
    let output = child.wait_with_output().expect("client output");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// `--name` belongs to `sum`: with another protocol it is refused with the
/// usage status, 2, before anything is sent.
#[test]
fn name_is_refused_outside_sum() {
    let server = TestServer::default();
    let output = Command::new(env!("CARGO_BIN_EXE_linepool"))
        .args(["client", "--port", &server.addr.port().to_string()])
        .args(["--protocol", "chat", "--name", "ann"])
        .stdin(Stdio::null())
        .output()
        .expect("run client");
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "linepool: --name is used only with --protocol sum\n"
    );
    assert_eq!(server.stop().connections, 0);
}

/// A framed client that the server times out hears why, as a frame, and
/// exits 0, as it does whenever the server closes first.
#[test]
fn framed_client_hears_the_idle_timeout_and_exits_0() {
    let server = TestServer::start(|c| {
        c.protocol = linepool::protocol::framed();
        c.idle_timeout = Some(std::time::Duration::from_millis(200));
    });
    // Standard input stays open: the server closes first.
    let mut child = Command::new(env!("CARGO_BIN_EXE_linepool"))
        .args(["client", "--port", &server.addr.port().to_string()])
        .args(["--protocol", "framed"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    let stdin = child.stdin.take();
    let output = child.wait_with_output().expect("client output");
    drop(stdin);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "ERR idle timeout\n"
    );
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
    assert!(output.status.success());
}

/// `printf 'a\nb\n' | linepool client` prints both ACKs and exits 0.
#[test]
fn client_pipes_lines_and_prints_replies() {
    let server = TestServer::default();
    let (ok, out) = client(&server, &[], "a\nb\n");
    assert!(ok);
    assert_eq!(out, "ACK: a\nACK: b\n");
}

/// The client exits 0 when the server closes, even with its input still open.
#[test]
fn client_exits_when_the_server_closes() {
    let server = TestServer::default();
    let mut child = Command::new(env!("CARGO_BIN_EXE_linepool"))
        .args(["client", "--port", &server.addr.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn client");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"x\nshutdown\n").expect("write stdin");
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    assert!(child.wait().expect("wait").success());
    assert_eq!(out, "ACK: x\n");
    drop(stdin);
}

/// Framed: each input line is one message; each echo is printed as a line.
#[test]
fn client_speaks_framed() {
    let server = TestServer::start(|c| c.protocol = linepool::protocol::framed());
    let (ok, out) = client(&server, &["--protocol", "framed"], "hello\n\nworld\n");
    assert!(ok);
    assert_eq!(out, "hello\n\nworld\n");
}

/// Sum: refuses bad input locally and asks again, then prints the sum.
#[test]
fn client_speaks_sum() {
    let server =
        TestServer::start(|c| c.protocol = linepool::protocol::sum("Server of linepool", 50));
    let (ok, out) = client(
        &server,
        &["--protocol", "sum", "--name", "Ann"],
        "abc\n0\n7\n",
    );
    assert!(ok);
    let prompt = "Enter an integer between 1 and 100: ";
    assert_eq!(
        out,
        format!(
            "{prompt}'abc' is not an integer between 1 and 100, try again\n\
             {prompt}'0' is not an integer between 1 and 100, try again\n\
             {prompt}Ann: 7, Server of linepool: 50\n7 + 50 = 57\n{prompt}\n"
        )
    );
    // Nothing out of range ever reached the server: it is still running.
    let mut probe = server.connect();
    probe.send_line("p;1");
    probe.expect("Server of linepool;50\n");
}

/// Asserts that the next line the client prints is `want`, with its `\n`.
#[track_caller]
fn expect_printed(printed: &mpsc::Receiver<String>, want: &str) {
    match printed.recv_timeout(DEADLINE) {
        Ok(line) => assert_eq!(line, want),
        Err(e) => panic!("expected {want:?} printed: {e:?}"),
    }
}

/// Chat: a piped client joins, prints exactly what another member says
/// while it is in the room, talks, and leaves at the end of its input.
#[test]
fn client_speaks_chat() {
    let server = TestServer::start(|c| c.protocol = crate::support::chat());
    let mut watcher = server.connect();
    watcher.expect("Enter your name:\n");
    watcher.send_line("watcher");
    watcher.expect("Welcome watcher! 1 online.\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_linepool"))
        .args(["client", "--port", &server.addr.port().to_string()])
        .args(["--protocol", "chat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn client");
    let mut stdin = child.stdin.take().expect("stdin");
    // What the client prints, line by line with its ending, as it prints
    // it.
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let (tx, printed) = mpsc::channel();
    let printer = thread::spawn(move || {
        loop {
            let mut line = Vec::new();
            match stdout.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if tx
                        .send(String::from_utf8_lossy(&line).into_owned())
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    expect_printed(&printed, "Enter your name:\n");
    stdin.write_all(b"piper\n").expect("write stdin");
    expect_printed(&printed, "Welcome piper! 2 online.\n");
    watcher.expect("* piper joined\n");
    watcher.send_line("hello piper, from a socket");
    expect_printed(&printed, "watcher: hello piper, from a socket\n");
    stdin
        .write_all(b"hello from a pipe\n")
        .expect("write stdin");
    drop(stdin);
    watcher.expect("piper: hello from a pipe\n");
    watcher.expect("* piper left\n");
    // Nothing more is printed, and the client exits 0.
    assert_eq!(
        printed.recv_timeout(DEADLINE),
        Err(RecvTimeoutError::Disconnected)
    );
    printer.join().expect("printer panicked");
    assert!(child.wait().expect("wait").success());
}

/// The load tool drives the framed echo and checks every byte.
#[test]
fn load_drives_framed_echo() {
    let server = TestServer::start(|c| c.protocol = linepool::protocol::framed());
    let output = Command::new(env!("CARGO_BIN_EXE_linepool"))
        .args([
            "load",
            "--json",
            "--protocol",
            "framed",
            "-c",
            "3",
            "-n",
            "300",
            "--pipeline",
            "4",
        ])
        .args(["--port", &server.addr.port().to_string()])
        .output()
        .expect("run load");
    assert!(output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(report["replies"], 300);
    assert_eq!(report["errors"]["total"], 0);
    assert_eq!(server.stop().lines, 300);
}
