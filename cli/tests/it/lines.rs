//! The line protocol: replies, commands, framing and bad input.

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{Client, TestServer};

/// Each line is answered with `ACK: <line>`, in order.
#[test]
fn every_line_gets_its_ack() {
    let server = TestServer::default();
    let mut client = server.connect();
    client.send_line("hello");
    client.expect("ACK: hello\n");
    client.send_line("world, with spaces ");
    client.expect("ACK: world, with spaces \n");
}

/// `\r\n` endings are stripped; an empty line is answered with `ACK: `.
#[test]
fn crlf_and_empty_lines() {
    let server = TestServer::default();
    let mut client = server.connect();
    client.send("telnet\r\n\n\r\n");
    client.expect("ACK: telnet\nACK: \nACK: \n");
}

/// UTF-8 text comes back byte for byte.
#[test]
fn utf8_text_is_echoed_exactly() {
    let server = TestServer::default();
    let mut client = server.connect();
    client.send_line("héllo wörld € 😀");
    client.expect("ACK: héllo wörld € 😀\n");
}

/// Many lines in one write are all answered, in order.
#[test]
fn pipelined_lines_are_answered_in_order() {
    let server = TestServer::default();
    let mut client = server.connect();
    let count = 20_000;
    let input: String = (0..count).map(|i| format!("line {i}\n")).collect();
    let expected: String = (0..count).map(|i| format!("ACK: line {i}\n")).collect();
    // Write from another thread: the replies must be read while we send.
    let mut writer = client.stream.try_clone().expect("clone");
    let sender = thread::spawn(move || writer.write_all(input.as_bytes()));
    client.expect(&expected);
    sender.join().expect("sender panicked").expect("send");
}

/// `shutdown` closes that client with no reply; other clients go on.
#[test]
fn shutdown_closes_only_that_client() {
    let server = TestServer::default();
    let mut other = server.connect();
    other.send_line("before");
    other.expect("ACK: before\n");
    let mut client = server.connect();
    client.send("first\nshutdown\nnever answered\n");
    client.expect("ACK: first\n");
    client.expect_closed();
    other.send_line("after");
    other.expect("ACK: after\n");
}

/// A client whose `shutdown` comes with more bytes behind it, well over a
/// socket buffer's worth but under the linger's bound, gets every reply
/// before the close: the server reads those bytes off instead of closing
/// on them, which would reset the connection and destroy the replies
/// still in its send buffer.
#[test]
fn shutdown_with_bytes_behind_it_loses_no_reply() {
    let server = TestServer::default();
    // A small window keeps replies waiting in the server's send buffer.
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    socket.connect(&server.addr.into()).expect("connect");
    let mut client = Client::from_stream(socket.into());
    let count = 20_000;
    let lines: String = (0..count).map(|i| format!("{i}\n")).collect();
    // More than the server's read buffer takes in with `shutdown`.
    let behind = "x".repeat(200 * 1024);
    let input = format!("{lines}shutdown\n{behind}");
    let mut writer = client.stream.try_clone().expect("clone");
    let sender = thread::spawn(move || {
        writer.write_all(input.as_bytes())?;
        writer.shutdown(std::net::Shutdown::Write)
    });
    let expected: String = (0..count).map(|i| format!("ACK: {i}\n")).collect();
    let text = String::from_utf8_lossy(&client.rest()).into_owned();
    assert!(
        text == expected,
        "{} of {} bytes of replies",
        text.len(),
        expected.len()
    );
    sender.join().expect("sender panicked").expect("send");
}

/// A client that goes on sending after its `shutdown` is read off for a
/// bounded number of bytes (256 KiB), then cut off at once: it cannot keep
/// its connection open for the linger's whole time (half a second, and up
/// to one watchdog scan more).
#[test]
fn sending_on_after_shutdown_is_cut_off() {
    let server = TestServer::default();
    let mut client = server.connect();
    let mut writer = client.stream.try_clone().expect("clone");
    // The bytes come right behind the `shutdown`, so the server sees the
    // client still sending when it starts closing.
    let sender = thread::spawn(move || {
        let chunk = [b'x'; 64 * 1024];
        let mut written = 0usize;
        let start = Instant::now();
        if writer.write_all(b"last\nshutdown\n").is_err() {
            return (written, start.elapsed());
        }
        // 64 MiB at most: far beyond the bound and the socket buffers.
        while written < 64 << 20 {
            match writer.write(&chunk) {
                Ok(n) => written += n,
                Err(_) => break,
            }
        }
        (written, start.elapsed())
    });
    client.expect("ACK: last\n");
    let (written, took) = sender.join().expect("sender panicked");
    // The bound, plus what the socket buffers on both sides held when the
    // server closed.
    assert!(
        written < 16 << 20,
        "the server read {written} bytes after shutdown"
    );
    assert!(took < Duration::from_millis(250), "cut off after {took:?}");
}

/// A command must be the whole line: anything else is echoed.
#[test]
fn commands_match_whole_lines_only() {
    let server = TestServer::default();
    let mut client = server.connect();
    client.send("shutdown now\n quit_server\nSHUTDOWN\nshutdown\r\n");
    client.expect("ACK: shutdown now\nACK:  quit_server\nACK: SHUTDOWN\n");
    client.expect_closed();
}

/// A client that sends its lines and half-closes gets every reply, the last
/// line without a newline included, then the server closes.
#[test]
fn half_closed_client_gets_every_reply() {
    let server = TestServer::default();
    let mut client = server.connect();
    let input: String = (0..1000).map(|i| format!("{i}\n")).collect::<String>() + "last";
    client.send(&input);
    client.half_close();
    let expected: String =
        (0..1000).map(|i| format!("ACK: {i}\n")).collect::<String>() + "ACK: last\n";
    assert_eq!(String::from_utf8_lossy(&client.rest()), expected);
}

/// Invalid UTF-8: lines before it are answered, then only that client is
/// closed, with no reply to the bad line.
#[test]
fn invalid_utf8_closes_only_that_client() {
    let server = TestServer::default();
    let mut other = server.connect();
    let mut client = server.connect();
    client.send(b"good\nbad \xff\xfe line\nnever\n");
    client.expect("ACK: good\n");
    client.expect_closed();
    other.send_line("still here");
    other.expect("ACK: still here\n");
}

/// A line over `max_line` gets one error line, then the client is closed.
#[test]
fn over_long_line_gets_an_error_and_a_close() {
    let server = TestServer::start(|c| c.max_line = 16);
    let mut client = server.connect();
    client.send("exactly sixteen!\n0123456789abcdefX\nnever\n");
    client.expect("ACK: exactly sixteen!\n");
    client.expect("ERR line too long (max 16 bytes)\n");
    client.expect_closed();
}

/// A client streaming bytes with no newline is cut off at the limit rather
/// than growing the server's memory.
#[test]
fn endless_line_is_cut_off_at_the_limit() {
    let server = TestServer::start(|c| c.max_line = 1024);
    let mut client = server.connect();
    let mut writer = client.stream.try_clone().expect("clone");
    // Writes fail once the server closes; that is the expected outcome.
    let sender = thread::spawn(move || {
        let chunk = [b'x'; 16 * 1024];
        for _ in 0..1024 {
            if writer.write_all(&chunk).is_err() {
                return true;
            }
        }
        false
    });
    client.expect("ERR line too long (max 1024 bytes)\n");
    assert!(client.rest().is_empty());
    assert!(
        sender.join().expect("sender panicked"),
        "server kept reading 16 MiB"
    );
}

/// A client that resets mid-line loses only its own connection, and its
/// worker is free for the next client.
#[test]
fn reset_mid_stream_frees_the_worker() {
    let server = TestServer::start(|c| {
        c.workers = 1;
        c.max_connections = 1;
    });
    let mut client = server.connect();
    client.send("half a li");
    let socket = socket2::Socket::from(client.stream.try_clone().expect("clone"));
    // Linger zero turns close into a reset.
    socket
        .set_linger(Some(std::time::Duration::ZERO))
        .expect("linger");
    drop(socket);
    drop(client);
    let mut next = server.connect();
    next.send_line("next");
    next.expect("ACK: next\n");
}

/// A hundred and more clients are served at the same time by the defaults.
#[test]
fn hundreds_of_concurrent_clients() {
    let server = TestServer::default();
    let mut clients: Vec<Client> = (0..120).map(|_| server.connect()).collect();
    // Every client is connected before any is answered, and all stay open.
    for (i, client) in clients.iter_mut().enumerate() {
        client.send_line(&format!("client {i}"));
    }
    for (i, client) in clients.iter_mut().enumerate() {
        client.expect(&format!("ACK: client {i}\n"));
    }
    drop(clients);

    let big = TestServer::start(|c| c.workers = 2);
    let threads: Vec<_> = (0..400)
        .map(|i| {
            let addr = big.addr;
            thread::spawn(move || {
                let mut client = Client::connect(addr);
                for j in 0..10 {
                    client.send_line(&format!("{i}.{j}"));
                    client.expect(&format!("ACK: {i}.{j}\n"));
                }
                client
            })
        })
        .collect();
    // Keep every connection open until all are done, so all 400 overlap.
    let clients: Vec<Client> = threads
        .into_iter()
        .map(|t| t.join().expect("client panicked"))
        .collect();
    assert_eq!(clients.len(), 400);
    drop(clients);
    assert_eq!(big.stop().lines, 4000);
}

/// A raw socket with no helper: exact bytes both ways.
#[test]
fn raw_socket_round_trip() {
    let server = TestServer::default();
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream.write_all(b"ping\n").expect("write");
    let mut buf = [0u8; 10];
    std::io::Read::read_exact(&mut stream, &mut buf).expect("read");
    assert_eq!(&buf, b"ACK: ping\n");
}

/// The library's plain entry points: `start_server` serves until
/// `quit_server`, and a `ClientHandler` serves a socket accepted by hand.
#[test]
fn library_entry_points() {
    // Find a free port, then let start_server bind it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let (tx, done) = std::sync::mpsc::channel();
    thread::spawn(move || tx.send(linepool::start_server("127.0.0.1", port).is_ok()));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let until = std::time::Instant::now() + crate::support::DEADLINE;
    let stream = loop {
        match TcpStream::connect(addr) {
            Ok(stream) => break stream,
            Err(e) if std::time::Instant::now() < until => {
                // Not listening yet: the server thread is still binding.
                let _ = e;
                thread::yield_now();
            }
            Err(e) => panic!("start_server never listened: {e}"),
        }
    };
    drop(stream);
    let mut client = Client::connect(addr);
    client.send("hi\nquit_server\n");
    client.expect("ACK: hi\n");
    client.expect_closed();
    assert!(
        done.recv_timeout(crate::support::DEADLINE)
            .expect("start_server returned")
    );

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut client = Client::connect(listener.local_addr().expect("addr"));
    let (conn, peer) = listener.accept().expect("accept");
    let shutdown = linepool::Shutdown::new();
    let handler = linepool::ClientHandler::new(std::sync::Arc::new(conn), peer, shutdown.clone());
    let worker = thread::spawn(move || handler.run());
    client.send("direct\nquit_server\n");
    client.expect("ACK: direct\n");
    client.expect_closed();
    worker.join().expect("handler panicked");
    assert!(shutdown.is_triggered());
}

/// A `ClientHandler` run on its own answers what its client sends while it
/// waits, and ends at a stop while its client is silent, closing the
/// connection: its poller wakes at each tick to look, not only when the
/// client speaks.
#[test]
fn a_handler_run_on_its_own_answers_and_ends_at_a_stop() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut client = Client::connect(listener.local_addr().expect("addr"));
    let (conn, peer) = listener.accept().expect("accept");
    let shutdown = linepool::Shutdown::new();
    let handler = linepool::ClientHandler::new(std::sync::Arc::new(conn), peer, shutdown.clone());
    let (done, ended) = std::sync::mpsc::channel();
    thread::spawn(move || {
        handler.run();
        let _ = done.send(());
    });
    // The second line comes once the handler waits in its poller.
    for line in ["before", "while waiting"] {
        client.send_line(line);
        client.expect(&format!("ACK: {line}\n"));
    }
    shutdown.trigger();
    ended
        .recv_timeout(crate::support::DEADLINE)
        .expect("the handler went on after the stop");
    client.expect_closed();
}
