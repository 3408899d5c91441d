//! The seam between the core and the per-connection protocols.
//!
//! The core (server, handler, connection) owns sockets, limits, timeouts and
//! the stop sequence. A [`Protocol`] owns only its messages: it says how the
//! byte stream is framed, and for each connection it opens a [`Session`] that
//! turns messages into replies and says when the client should be closed or
//! the server stopped. Sessions reach other connections (a chat room's
//! members) only through a [`Link`], over the small [`Port`] trait.
//!
//! Adding a protocol: one file in this folder and one variant of [`ProtocolName`].

mod ack;
mod chat;
mod framed;
mod sum;

use std::io;
use std::sync::{Arc, Weak};

use crate::config::{Config, ProtocolName};
use crate::conn::Conn;
pub use crate::conn::Delivery;
use crate::framing::Framing;
pub use crate::socket::Peer;
pub(crate) use chat::Fanout as ChatFanout;
pub(crate) use chat::bus::{Bus as ChatBus, Figures as ChatBusFigures};

/// The protocol `name`, set up for `config`, and the chat bus it needs,
/// if any. A chat bus for another protocol, or one that cannot be set up,
/// is an error.
pub(crate) fn build(name: ProtocolName, config: &Config) -> io::Result<Built> {
    if config.chat_bus.is_some() && name != ProtocolName::Chat {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a chat bus needs the chat protocol",
        ));
    }
    let alone = |protocol| Built {
        protocol,
        chat_bus: None,
        chat_fanout: None,
    };
    Ok(match name {
        ProtocolName::Ack => alone(ack::build(config)),
        ProtocolName::Chat => chat::build(config)?,
        ProtocolName::Framed => alone(framed::build(config)),
        ProtocolName::Sum => alone(sum::build(config)),
    })
}

/// A protocol set up for a server, with the chat bus it needs, if any.
pub(crate) struct Built {
    /// The protocol.
    pub protocol: Arc<dyn Protocol>,
    /// The chat room's bus, whose threads the server runs.
    pub chat_bus: Option<Arc<ChatBus>>,
    /// The chat room's writer, whose thread the server runs.
    pub chat_fanout: Option<Arc<ChatFanout>>,
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
/// The core answers them itself; they never reach a session.
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
    /// frame's payload), except the shared commands ([`command`]), which
    /// the core answers itself.
    fn message(&mut self, msg: &[u8], out: &mut Vec<u8>) -> Action;

    /// Called once when the connection ends, for whatever reason.
    fn end(&mut self) {}
}

/// What a protocol may do to a client connection other than its own: the
/// narrow port through which sessions reach connections. The core's
/// connections implement it; a test gives a session a fake.
pub trait Port: Send + Sync {
    /// Queues `bytes` for the client after whatever waits for it already,
    /// and writes what its socket takes now, never waiting. A client more
    /// than `max_behind` bytes behind is disconnected.
    fn deliver(&self, bytes: &[u8], max_behind: usize) -> Delivery;
}

impl Port for Conn {
    fn deliver(&self, bytes: &[u8], max_behind: usize) -> Delivery {
        Conn::deliver(self, bytes, max_behind)
    }
}

/// A handle on a client connection that other connections' sessions may
/// use: a chat room writes to its members through their links. It does not
/// keep the connection alive: once closed, deliveries go nowhere.
#[derive(Clone)]
pub struct Link {
    port: Weak<dyn Port>,
    peer: Peer,
    admin: bool,
}

impl Link {
    /// A link to the connection behind `port`, whose client is at `peer`
    /// and may (`admin`) or may not stop the server.
    pub fn new(port: Weak<dyn Port>, peer: Peer, admin: bool) -> Self {
        Link { port, peer, admin }
    }

    /// The client's address (the one a PROXY protocol header named, if the
    /// server expects one).
    pub fn peer(&self) -> Peer {
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
        match self.port.upgrade() {
            Some(port) => port.deliver(bytes, max_behind),
            None => Delivery::Gone,
        }
    }
}

/// A fake connection for protocol tests: it keeps what is delivered.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use parking_lot::Mutex;

    /// Collects deliveries; refuses them once `kicked`.
    #[derive(Default)]
    pub(crate) struct Inbox {
        pub(crate) got: Mutex<Vec<u8>>,
    }

    impl Inbox {
        /// What was delivered so far, as text, emptied.
        pub(crate) fn take(&self) -> String {
            String::from_utf8(std::mem::take(&mut *self.got.lock())).expect("utf-8")
        }
    }

    impl Port for Inbox {
        fn deliver(&self, bytes: &[u8], _max_behind: usize) -> Delivery {
            self.got.lock().extend_from_slice(bytes);
            Delivery::Queued
        }
    }

    /// A link to a fresh inbox, from `peer`.
    pub(crate) fn link(peer: &str, admin: bool) -> (Arc<Inbox>, Link) {
        let inbox = Arc::new(Inbox::default());
        let port: Arc<dyn Port> = inbox.clone();
        let link = Link::new(
            Arc::downgrade(&port),
            Peer::ip(peer.parse().expect("address")),
            admin,
        );
        (inbox, link)
    }
}
