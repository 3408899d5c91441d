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
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default longest accepted line, in bytes, not counting the line ending.
pub(crate) const DEFAULT_MAX_LINE: usize = 64 * 1024;
/// Default listen backlog handed to the kernel (which caps it at `somaxconn`).
pub(crate) const DEFAULT_BACKLOG: u32 = 1024;
/// Default idle timeout, in seconds.
pub(crate) const DEFAULT_IDLE_SECS: u64 = 300;
/// Default file mode of the `--unix` socket: the owner and its group may
/// connect.
pub(crate) const DEFAULT_UNIX_MODE: u32 = 0o660;
/// The admin console socket's default file mode: the server's user alone.
pub(crate) const DEFAULT_ADMIN_SOCKET_MODE: u32 = 0o600;
/// Default time a stop waits for clients that do not read their last
/// replies, in seconds.
pub(crate) const DEFAULT_STOP_GRACE_SECS: u64 = 1;

/// Default number of worker threads: one per CPU this process may run on.
pub(crate) fn default_workers() -> usize {
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

/// Everything needed to start a [`Server`](crate::Server), besides its
/// protocol. Start from [`Config::new`] or [`Config::default`] and set the
/// fields that differ: new settings come with defaults, so that adding one
/// breaks no embedder.
///
/// ```
/// let mut config = linepool::Config::new("127.0.0.1", 0);
/// config.workers = 2;
/// config.idle_timeout = Some(std::time::Duration::from_secs(30));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
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
    /// User ids that may use the admin console to look only (`show …`,
    /// `help`); a user id `admin_uids` allows too has full rights.
    pub admin_read_uids: Vec<u32>,
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
    /// The admin console's `drain`: how long to go on serving and
    /// accepting, saying `drain` to health checks, before the stop. `None`:
    /// `drain` needs a duration.
    pub drain: Option<Duration>,
    /// Where settings came from, by the name the admin console gives them
    /// (`max-connections`), for its `show config`: `flag`, `env:VAR`, or
    /// anything an embedder wants to say. Those not named show `default`.
    pub origins: Vec<(String, String)>,
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
            admin_read_uids: Vec::new(),
            admin_socket: None,
            admin_socket_mode: DEFAULT_ADMIN_SOCKET_MODE,
            workers: default_workers(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            overload: Overload::Block,
            idle_timeout: Some(Duration::from_secs(DEFAULT_IDLE_SECS)),
            max_line: DEFAULT_MAX_LINE,
            backlog: DEFAULT_BACKLOG,
            stats_interval: None,
            admin_from: AddrList::loopback(),
            max_per_ip: 0,
            stop_grace: Duration::from_secs(DEFAULT_STOP_GRACE_SECS),
            agent: None,
            metrics: None,
            proxy_protocol: false,
            tls: None,
            admin_cert: None,
            drain: None,
            origins: Vec::new(),
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
