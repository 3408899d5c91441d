//! Server settings: everything an operator can choose, with the defaults the
//! command line documents. Plain data; nothing here touches a socket.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::access::AddrList;
use crate::tls::Settings as TlsSettings;

/// Default bound on connections open at once, served or idle.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default longest accepted line, in bytes, not counting the line ending.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;
/// Default listen backlog handed to the kernel (which caps it at `somaxconn`).
pub const DEFAULT_BACKLOG: u32 = 1024;
/// Default idle timeout, in seconds.
pub const DEFAULT_IDLE_SECS: u64 = 300;
/// Default file mode of the `--unix` socket: the owner and its group may
/// connect.
pub const DEFAULT_UNIX_MODE: u32 = 0o660;
/// The admin console socket's default file mode: the server's user alone.
pub const DEFAULT_ADMIN_SOCKET_MODE: u32 = 0o600;
/// Default time a stop waits for clients that do not read their last
/// replies, in seconds.
pub const DEFAULT_STOP_GRACE_SECS: u64 = 1;

/// Default server name in `sum` replies.
pub const DEFAULT_SERVER_NAME: &str = "Server of linepool";
/// Default number in `sum` replies.
pub const DEFAULT_SERVER_NUMBER: i64 = 50;

/// Default number of worker threads: one per CPU this process may run on.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What the acceptor does when `max_connections` are open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overload {
    /// Stop accepting until a slot frees; new clients wait in the kernel backlog.
    Block,
    /// Accept, answer `ERR server busy`, close.
    Reject,
}

impl FromStr for Overload {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "block" => Ok(Overload::Block),
            "reject" => Ok(Overload::Reject),
            other => Err(format!(
                "unknown overload mode '{other}' (expected block or reject)"
            )),
        }
    }
}

impl fmt::Display for Overload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Overload::Block => "block",
            Overload::Reject => "reject",
        })
    }
}

/// Everything needed to start a [`Server`](crate::Server).
#[derive(Clone, Debug)]
pub struct Config {
    /// Host name or address to listen on, when `listen` is empty.
    pub host: String,
    /// Port to listen on, when `listen` is empty; 0 takes any free port.
    pub port: u16,
    /// TCP addresses to listen on, IPv4 or IPv6 (`[::]:P` takes IPv6
    /// clients only, so that `0.0.0.0:P` can be bound beside it). Empty:
    /// `host:port` alone.
    pub listen: Vec<SocketAddr>,
    /// A Unix domain socket to listen on as well, if any.
    pub unix: Option<PathBuf>,
    /// The file mode of the `unix` socket.
    pub unix_mode: u32,
    /// User ids that may stop the server from the Unix socket, and use the
    /// admin console; `None`: the server's own (effective) user id and root.
    pub admin_uids: Option<Vec<u32>>,
    /// The admin console's Unix socket (docs/console.md), if any.
    pub admin_socket: Option<PathBuf>,
    /// The file mode of the `admin_socket`.
    pub admin_socket_mode: u32,
    /// Threads that run protocol code (at least 1).
    pub workers: usize,
    /// Connections open at once, served or idle (at least 1).
    pub max_connections: usize,
    /// What happens when `max_connections` are open.
    pub overload: Overload,
    /// Close a client that sends no complete line, or reads none of our
    /// replies, for this long. `None` never closes an idle client.
    pub idle_timeout: Option<Duration>,
    /// Longest accepted line in bytes, not counting `\n` or `\r\n`.
    pub max_line: usize,
    /// Listen backlog: how many connections the kernel holds for us before
    /// `accept`.
    pub backlog: u32,
    /// Log a stats line this often; `None` never does.
    pub stats_interval: Option<Duration>,
    /// The protocol spoken.
    pub protocol: ProtocolName,
    /// `sum`: the name the server gives in its replies.
    pub server_name: String,
    /// `sum`: the number the server answers with.
    pub server_number: i64,
    /// Client addresses that may stop the server (`quit_server`, `sum`'s
    /// out-of-range rule).
    pub admin_from: AddrList,
    /// Connections open at once from one client address; 0: no limit.
    pub max_per_ip: usize,
    /// How long a stop waits for clients that do not read their last
    /// replies before it cuts them off.
    pub stop_grace: Duration,
    /// Where to answer HAProxy agent checks, if anywhere.
    pub agent: Option<SocketAddr>,
    /// Where to serve `/metrics` and `/healthz`, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// Every connection starts with a PROXY protocol header (v1 or v2).
    pub proxy_protocol: bool,
    /// Speak TLS on every connection, with these certificates.
    pub tls: Option<TlsSettings>,
    /// Certificate names that may stop the server besides `admin_from`
    /// (needs `tls` with a client CA); both must allow.
    pub admin_cert: Option<Vec<String>>,
    /// `chat`: share the room with every instance on this Redis bus.
    /// `None` keeps the room to this instance.
    pub chat_bus: Option<ChatBus>,
}

/// Default chat room name on a bus.
pub const DEFAULT_CHAT_ROOM: &str = "lobby";
/// Default time between two heartbeats of an instance on the chat bus.
pub const DEFAULT_CHAT_HEARTBEAT: Duration = Duration::from_secs(1);
/// Default longest wait between two attempts to reach Redis: short, so
/// that an instance is back on Redis a moment after Redis is (an attempt
/// at a stopped Redis is refused at once and costs next to nothing).
pub const DEFAULT_CHAT_BACKOFF_MAX: Duration = Duration::from_millis(250);
/// Default bound on envelopes waiting to be published.
pub const DEFAULT_CHAT_QUEUE: usize = 10_000;

/// Where and how a chat room is shared between instances.
#[derive(Clone)]
pub struct ChatBus {
    /// `redis://HOST:PORT[/DB]`, a password as `redis://:PASS@HOST:PORT`.
    pub url: String,
    /// The room: instances on the same Redis share a room only if they
    /// give the same name.
    pub room: String,
    /// How often an instance says it is alive. Its peers forget its
    /// members after 5 heartbeats of silence (1 s at least), its name
    /// claims expire after 10, and it reconnects a subscription that has
    /// not brought back its own heartbeat 3 heartbeats (1 s at least)
    /// after it went out.
    pub heartbeat: Duration,
    /// The longest wait between two attempts to reach Redis (jittered).
    pub backoff_max: Duration,
    /// Envelopes waiting to be published at most; more are dropped and
    /// counted.
    pub queue: usize,
}

impl ChatBus {
    /// The bus at `url`, room `lobby`, with the default timings.
    pub fn new(url: impl Into<String>) -> Self {
        ChatBus {
            url: url.into(),
            room: DEFAULT_CHAT_ROOM.to_string(),
            heartbeat: DEFAULT_CHAT_HEARTBEAT,
            backoff_max: DEFAULT_CHAT_BACKOFF_MAX,
            queue: DEFAULT_CHAT_QUEUE,
        }
    }
}

impl fmt::Debug for ChatBus {
    /// The URL without its password, which has no place in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatBus")
            .field("url", &redacted(&self.url))
            .field("room", &self.room)
            .field("heartbeat", &self.heartbeat)
            .field("backoff_max", &self.backoff_max)
            .field("queue", &self.queue)
            .finish()
    }
}

/// `url` with any password between `:` and `@` replaced by `***`.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{scheme}://{name}:***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".to_string(),
            port: 8000,
            listen: Vec::new(),
            unix: None,
            unix_mode: DEFAULT_UNIX_MODE,
            admin_uids: None,
            admin_socket: None,
            admin_socket_mode: DEFAULT_ADMIN_SOCKET_MODE,
            workers: default_workers(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            overload: Overload::Block,
            idle_timeout: Some(Duration::from_secs(DEFAULT_IDLE_SECS)),
            max_line: DEFAULT_MAX_LINE,
            backlog: DEFAULT_BACKLOG,
            stats_interval: None,
            protocol: ProtocolName::default(),
            server_name: DEFAULT_SERVER_NAME.to_string(),
            server_number: DEFAULT_SERVER_NUMBER,
            admin_from: AddrList::loopback(),
            max_per_ip: 0,
            stop_grace: Duration::from_secs(DEFAULT_STOP_GRACE_SECS),
            agent: None,
            metrics: None,
            proxy_protocol: false,
            chat_bus: None,
            tls: None,
            admin_cert: None,
        }
    }
}

impl Config {
    /// The default settings, listening on `host:port`.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Config {
            host: host.into(),
            port,
            ..Config::default()
        }
    }
}

/// The protocols a server speaks, by the name `--protocol` takes. The
/// command line and [`Config`] share this one list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProtocolName {
    /// Every line gets `ACK: <line>` back.
    #[default]
    Ack,
    /// A chat room.
    Chat,
    /// Length-prefixed echo.
    Framed,
    /// The number exchange.
    Sum,
}

impl ProtocolName {
    /// The name as `--protocol`, logs and metrics give it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolName::Ack => "ack",
            ProtocolName::Chat => "chat",
            ProtocolName::Framed => "framed",
            ProtocolName::Sum => "sum",
        }
    }
}

impl std::fmt::Display for ProtocolName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
