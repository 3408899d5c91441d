//! The seam between the core and the per-connection protocols.
//!
//! The core (server, handler, connection) owns sockets, limits, timeouts and
//! the stop sequence. A [`Protocol`] owns only its messages: it says how the
//! byte stream is framed, and for each connection it opens a [`Session`] that
//! turns messages into replies and says when the client should be closed or
//! the server stopped.
//!
//! Adding a protocol: one file in this folder and one line in [`PROTOCOLS`].

mod ack;
mod chat;
mod framed;
mod sum;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use crate::config::Config;
use crate::conn::Conn;
pub use crate::conn::Delivery;
use crate::framing::Framing;

/// Sets a protocol up for a server's configuration.
pub type Build = fn(&Config) -> Arc<dyn Protocol>;

/// Every protocol, by the name `--protocol` takes.
pub const PROTOCOLS: &[(&str, Build)] = &[
    ("ack", ack::build),
    ("chat", chat::build),
    ("framed", framed::build),
    ("sum", sum::build),
];

/// The protocol named `name`, set up for `config`.
pub fn build(name: &str, config: &Config) -> io::Result<Arc<dyn Protocol>> {
    PROTOCOLS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, build)| build(config))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, unknown(name)))
}

/// Checks a protocol name, for the command line.
pub fn check_name(name: &str) -> Result<String, String> {
    if PROTOCOLS.iter().any(|(known, _)| *known == name) {
        Ok(name.to_string())
    } else {
        Err(unknown(name))
    }
}

fn unknown(name: &str) -> String {
    let names: Vec<&str> = PROTOCOLS.iter().map(|(known, _)| *known).collect();
    format!(
        "unknown protocol '{name}' (expected one of: {})",
        names.join(", ")
    )
}

/// The ACK line protocol, the default.
pub fn ack() -> Arc<dyn Protocol> {
    Arc::new(ack::Ack)
}

/// What a session asks of the core after a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Keep serving this client.
    Continue,
    /// Close this client (after writing the replies so far).
    Close,
    /// Stop the whole server, as `quit_server` does. From a client outside
    /// `--admin-from` the core refuses it (`ERR quit_server not allowed`)
    /// and the connection goes on.
    StopServer,
}

/// The commands every protocol shares: a message that is exactly
/// `shutdown` closes the client, exactly `quit_server` stops the server.
pub fn command(msg: &[u8]) -> Option<Action> {
    match msg {
        b"shutdown" => Some(Action::Close),
        b"quit_server" => Some(Action::StopServer),
        _ => None,
    }
}

/// A line message as text. The core hands line protocols valid UTF-8 only,
/// so the empty fallback is never taken.
pub fn text(line: &[u8]) -> &str {
    std::str::from_utf8(line).unwrap_or_default()
}

/// A protocol: a framing and a way to serve one connection.
pub trait Protocol: Send + Sync {
    /// How this protocol's byte stream is cut into messages.
    fn framing(&self) -> Framing {
        Framing::Lines
    }

    /// The state of one new connection.
    fn open(&self, link: Link) -> Box<dyn Session>;
}

/// One connection's protocol state. Replies go into `out`, which the core
/// writes out in order, batched.
pub trait Session: Send {
    /// Called once before the first message.
    fn start(&mut self, _out: &mut Vec<u8>) -> Action {
        Action::Continue
    }

    /// Called for each complete message (a line without its ending, or a
    /// frame's payload).
    fn message(&mut self, msg: &[u8], out: &mut Vec<u8>) -> Action;

    /// Called once when the connection ends, for whatever reason.
    fn end(&mut self) {}
}

/// A handle on a client connection that other connections' sessions may
/// use: a chat room writes to its members through their links. It does not
/// keep the connection alive: once closed, deliveries go nowhere.
#[derive(Clone)]
pub struct Link {
    conn: Weak<Conn>,
    peer: SocketAddr,
    admin: bool,
}

impl Link {
    pub(crate) fn new(conn: &Arc<Conn>, peer: SocketAddr, admin: bool) -> Self {
        Link {
            conn: Arc::downgrade(conn),
            peer,
            admin,
        }
    }

    /// The client's address (the one a PROXY protocol header named, if the
    /// server expects one).
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether this client's address may stop the server (`--admin-from`).
    /// The core refuses [`Action::StopServer`] from anyone else; a protocol
    /// with its own stop rule asks first, to refuse in its own words.
    pub fn may_stop_server(&self) -> bool {
        self.admin
    }

    /// Queues `bytes` for the client after whatever waits for it already,
    /// and writes what its socket takes now, never waiting: the rest goes
    /// out when the socket has room. A client more than `max_behind` bytes
    /// behind is disconnected.
    pub fn deliver(&self, bytes: &[u8], max_behind: usize) -> Delivery {
        match self.conn.upgrade() {
            Some(conn) => conn.deliver(bytes, max_behind),
            None => Delivery::Gone,
        }
    }
}
