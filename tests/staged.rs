//! The staged server's promises about threads: `bind` starts none, even
//! when it fails; `start` names every thread it starts; a `Running` server
//! dropped, or stopped, leaves none behind.
//!
//! This is a test binary of its own, with one test, because it counts the
//! threads of its own process: servers started by other tests at the same
//! time would be counted too.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use linepool::{Config, Server};

/// The names of this process's threads that belong to a server.
fn server_threads() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir("/proc/self/task")
        .expect("the process's threads")
        .filter_map(|task| fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .filter(|name| name.starts_with("linepool-"))
        .collect();
    names.sort();
    names
}

/// Waits until no server thread is left: the pool's workers end once the
/// last handle on the pool is gone, a moment after they are joined.
fn no_server_threads_within(deadline: Duration) {
    let start = Instant::now();
    while !server_threads().is_empty() {
        assert!(
            start.elapsed() < deadline,
            "threads left behind: {:?}",
            server_threads()
        );
        thread::yield_now();
    }
}

#[test]
fn threads_are_named_owned_and_never_left_behind() {
    assert_eq!(server_threads(), Vec::<String>::new());

    // A side port that cannot be had fails the bind, before any thread.
    let taken = TcpListener::bind("127.0.0.1:0").expect("a port");
    let mut config = Config::new("127.0.0.1", 0);
    config.metrics = Some(taken.local_addr().expect("its address"));
    let refused = Server::bind(config, linepool::protocol::ack())
        .err()
        .expect("the metrics port is taken");
    assert!(
        refused.to_string().contains("cannot serve metrics on"),
        "{refused}"
    );
    assert_eq!(server_threads(), Vec::<String>::new());

    // A bound server has no thread yet; a started one names each of its own.
    let mut config = Config::new("127.0.0.1", 0);
    config.workers = 2;
    config.metrics = Some("127.0.0.1:0".parse().expect("address"));
    let server = Server::bind(config, linepool::protocol::ack()).expect("bind");
    assert_eq!(server_threads(), Vec::<String>::new());
    let running = server.start().expect("start");
    // Each thread names itself as it starts; the system keeps 15 bytes.
    // One acceptor thread owns the listeners.
    let mut expected: Vec<String> = [
        "linepool-acceptor",
        "linepool-metrics",
        "linepool-stats",
        "linepool-watchdog",
        "linepool-worker",
        "linepool-worker",
    ]
    .iter()
    .map(|name| name[..name.len().min(15)].to_string())
    .collect();
    expected.sort();
    let start = Instant::now();
    while server_threads() != expected {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "threads {:?}, expected {expected:?}",
            server_threads()
        );
        thread::yield_now();
    }

    // Dropped while a client is connected: the client is closed and every
    // thread ends.
    let mut client = TcpStream::connect(running.local_addr()).expect("connect");
    client.write_all(b"hello\n").expect("send");
    let mut reader = BufReader::new(client.try_clone().expect("clone"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("reply");
    assert_eq!(line, "ACK: hello\n");
    drop(running);
    line.clear();
    assert_eq!(reader.read_line(&mut line).expect("the close"), 0);
    no_server_threads_within(Duration::from_secs(10));

    // Stopped: the summary counts what it served, and nothing is left.
    let running = Server::bind(Config::new("127.0.0.1", 0), linepool::protocol::ack())
        .expect("bind")
        .start()
        .expect("start");
    let mut client = TcpStream::connect(running.local_addr()).expect("connect");
    client.write_all(b"one\ntwo\n").expect("send");
    let mut reader = BufReader::new(client);
    for expected in ["ACK: one\n", "ACK: two\n"] {
        line.clear();
        reader.read_line(&mut line).expect("reply");
        assert_eq!(line, expected);
    }
    let summary = running.stop();
    assert_eq!((summary.connections, summary.lines), (1, 2));
    no_server_threads_within(Duration::from_secs(10));
}
