//! The example protocol (`examples/kv`), written against the public API
//! alone, served by the full pool: the core's limits, its idle rule,
//! `quit_server` and the stop apply to it as to linepool's own protocols.

#[path = "../examples/kv/store.rs"]
mod store;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use linepool::{Config, Overload, Running, Server, Summary};

/// The longest any expected event may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// A kv server on a free port, two workers, with `configure`'s settings.
fn kv(configure: impl FnOnce(&mut Config)) -> Running {
    let mut config = Config::new("127.0.0.1", 0);
    config.workers = 2;
    configure(&mut config);
    Server::bind(config, Arc::new(store::Kv::default()))
        .expect("bind")
        .start()
        .expect("start")
}

/// A line client with a deadline on every read.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        Client {
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, text: &str) {
        self.reader
            .get_mut()
            .write_all(text.as_bytes())
            .expect("send");
    }

    /// Reads exactly `expected`'s length and compares the bytes.
    fn expect(&mut self, expected: &str) {
        let mut got = vec![0; expected.len()];
        self.reader.read_exact(&mut got).expect("reply");
        assert_eq!(String::from_utf8_lossy(&got), expected);
    }

    /// Everything until the server closes the connection.
    fn rest(&mut self) -> String {
        let mut rest = String::new();
        while self.reader.read_line(&mut rest).expect("read") > 0 {}
        rest
    }
}

/// Set, get, delete and count, pipelined on one connection and seen from
/// another: one store for every connection, served by the pool.
#[test]
fn the_store_is_shared_by_every_connection() {
    let server = kv(|_| {});
    let mut writer = Client::connect(server.local_addr());
    writer.send("set a 1\nset b two words\nget a\nkeys\nfly\n");
    writer.expect("STORED\nSTORED\nVALUE 1\nKEYS 2\nERR unknown command\n");
    let mut reader = Client::connect(server.local_addr());
    reader.send("get b\ndel a\nget a\ndel a\n");
    reader.expect("VALUE two words\nDELETED\nNOT_FOUND\nNOT_FOUND\n");
    reader.send("shutdown\n");
    assert_eq!(reader.rest(), "");
    let summary = server.stop();
    assert_eq!(summary.connections, 2);
}

/// The connection limit and the longest line are the core's, for any
/// protocol: a client past `max_connections` is refused in the protocol's
/// framing, a line past `max_line` is refused and the client closed.
#[test]
fn the_core_limits_apply() {
    let server = kv(|c| {
        c.max_connections = 1;
        c.overload = Overload::Reject;
        c.max_line = 16;
    });
    let mut holder = Client::connect(server.local_addr());
    holder.send("set k v\n");
    holder.expect("STORED\n");
    let mut refused = Client::connect(server.local_addr());
    assert_eq!(refused.rest(), "ERR server busy\n");
    holder.send("set k 0123456789abcdef\n");
    assert_eq!(holder.rest(), "ERR line too long (max 16 bytes)\n");
    server.stop();
}

/// A client silent for the idle timeout is told and closed.
#[test]
fn an_idle_client_is_closed() {
    let server = kv(|c| c.idle_timeout = Some(Duration::from_millis(200)));
    let mut silent = Client::connect(server.local_addr());
    assert_eq!(silent.rest(), "ERR idle timeout\n");
    server.stop();
}

/// `quit_server` from an admin address stops the server: the other
/// clients are closed, and the summary counts everyone.
#[test]
fn quit_server_from_an_admin_stops_the_server() {
    let server = kv(|_| {});
    let addr = server.local_addr();
    let mut other = Client::connect(addr);
    other.send("set x 1\n");
    other.expect("STORED\n");
    let (done, stopped) = mpsc::channel::<Summary>();
    thread::spawn(move || {
        let _ = done.send(server.wait());
    });
    let mut admin = Client::connect(addr);
    admin.send("quit_server\n");
    assert_eq!(admin.rest(), "");
    assert_eq!(other.rest(), "");
    let summary = stopped.recv_timeout(DEADLINE).expect("the server stopped");
    assert_eq!(summary.connections, 2);
}

/// Outside `admin_from`, `quit_server` is refused in the core's words and
/// the store goes on serving.
#[test]
fn quit_server_from_elsewhere_is_refused() {
    let server = kv(|c| c.admin_from = "10.0.0.0/8".parse().expect("list"));
    let mut client = Client::connect(server.local_addr());
    client.send("quit_server\nset still 1\nget still\n");
    client.expect("ERR quit_server not allowed\nSTORED\nVALUE 1\n");
    server.stop();
}
