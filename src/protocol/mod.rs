//! The seam between the core and the per-connection protocols.
//!
//! The core (server, handler, connection) owns sockets, limits, timeouts and
//! the stop sequence. A [`Protocol`] owns only its messages: it says how the
//! byte stream is framed, and for each connection it opens a [`Session`] that
//! turns messages into replies and says when the client should be closed or
//! the server stopped. Sessions reach other connections (a chat room's
//! members) only through a [`Link`], over the small [`Port`] trait.
//!
//! The server takes a protocol value ([`Server::bind`](crate::Server::bind)):
//! the three here ([`ack`], [`framed`], [`sum`]) and any written outside
//! the crate plug in the same way, through [`Protocol`] alone. The chat
//! room is one of those: the `linepool-chat` crate (`chat/`), with its
//! Redis bus, written against this seam and nothing else of the library.

mod ack;
mod framed;
mod sum;

use std::sync::{Arc, Weak};

use prometheus_client::collector::Collector;

use crate::conn::Conn;
pub use crate::conn::Delivery;
use crate::framing::Framing;
use crate::shutdown::Shutdown;
pub use crate::socket::Peer;
pub use ack::Ack;

/// The ACK line protocol (`ack`), the default: every line gets
/// `ACK: <line>` back.
pub fn ack() -> Arc<dyn Protocol> {
    Arc::new(Ack)
}

/// The length-prefixed echo (`framed`).
pub fn framed() -> Arc<dyn Protocol> {
    framed::build()
}

/// The number exchange (`sum`): the server answers with `name` and
/// `number`.
pub fn sum(name: impl Into<String>, number: i64) -> Arc<dyn Protocol> {
    sum::build(name.into(), number)
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

/// A protocol: a framing, a way to serve one connection, and what it
/// runs and reports beside its connections. The server takes one value of
/// it ([`Server::bind`](crate::Server::bind)) and shares it between every
/// connection and worker.
///
/// Only [`name`](Protocol::name) and [`open`](Protocol::open) must be
/// written; the rest have defaults that do nothing.
///
/// ```
/// use std::sync::Arc;
/// use linepool::protocol::{Action, Link, Protocol, Session};
///
/// /// Answers every line in upper case.
/// struct Upper;
///
/// impl Protocol for Upper {
///     fn name(&self) -> &str {
///         "upper"
///     }
///
///     fn open(&self, _link: Link) -> Box<dyn Session> {
///         Box::new(Upper)
///     }
/// }
///
/// impl Session for Upper {
///     fn message(&mut self, line: &[u8], out: &mut Vec<u8>) -> Action {
///         out.extend(line.to_ascii_uppercase());
///         out.push(b'\n');
///         Action::Continue
///     }
/// }
///
/// let config = linepool::Config::new("127.0.0.1", 0);
/// let server = linepool::Server::bind(config, Arc::new(Upper))?;
/// let running = server.start()?;
/// // ... clients connect to running.local_addr() ...
/// let summary = running.stop();
/// assert_eq!(summary.connections, 0);
/// # Ok::<(), linepool::Error>(())
/// ```
pub trait Protocol: Send + Sync + 'static {
    /// The protocol's name, as the startup line, `/metrics` (the
    /// `protocol` label) and the admin console show it.
    fn name(&self) -> &str;

    /// How this protocol's byte stream is cut into messages.
    fn framing(&self) -> Framing {
        Framing::Lines
    }

    /// The state of one new connection.
    fn open(&self, link: Link) -> Box<dyn Session>;

    /// Threads the protocol runs beside the pool (a chat room's writer,
    /// its Redis bus). The server starts them after its workers and before
    /// its acceptor, and joins them at the last step of the stop: `until`
    /// fires once every connection has ended (so that a session's
    /// [`Session::end`] may still hand them work), and each must return
    /// soon after.
    fn threads(&self, _until: &Shutdown) -> Vec<Task> {
        Vec::new()
    }

    /// Figures of the protocol's own, appended to the stats line
    /// (`--stats-interval`) and to the stop's summary line: `key=value`
    /// pairs separated by spaces, or nothing.
    fn figures(&self) -> String {
        String::new()
    }

    /// Metric families of the protocol's own, encoded on every `/metrics`
    /// scrape after the server's (`--metrics`).
    fn metrics(&self) -> Option<Box<dyn Collector>> {
        None
    }
}

/// A thread a protocol runs beside the pool: a name and what it runs.
pub struct Task {
    name: String,
    run: Box<dyn FnOnce() + Send>,
}

impl Task {
    /// A thread called `name` (the name `ps` and the logs show) that runs
    /// `run`.
    pub fn new(name: impl Into<String>, run: impl FnOnce() + Send + 'static) -> Self {
        Task {
            name: name.into(),
            run: Box::new(run),
        }
    }

    /// The thread's name and what it runs.
    pub(crate) fn into_parts(self) -> (String, Box<dyn FnOnce() + Send>) {
        (self.name, self.run)
    }
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
