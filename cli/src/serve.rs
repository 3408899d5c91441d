//! `linepool serve`: the server's flags, the checks clap cannot make, and
//! the start; the logger is in `logging`, the signal thread in `signals`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use clap::ValueEnum;
use log::{debug, warn};

use super::checks::{described, name_variables};
use super::logging::{LogLevel, init_logging};
use super::settings::{self, Given};
use super::signals::{stop_signals, watch_signals};
use super::values::{chat_bus_url, file_mode, positive_duration, room_for_commands, room_name};
use super::{EXIT_USAGE, Protocol, activation, at_least_one, duration, open_files};
use linepool::access::AddrList;
use linepool::logfmt;
use linepool::protocol;
use linepool::tls::{self, ClientAuth, Settings as TlsSettings, TlsVersion};
use linepool::{Config, Overload, Server};
use linepool_chat::ChatBus;

/// `sum`: the name the server gives in its replies, by default.
const DEFAULT_SERVER_NAME: &str = "Server of linepool";
/// `sum`: the number the server answers with, by default.
const DEFAULT_SERVER_NUMBER: i64 = 50;

/// What happens at `--max-connections`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OverloadArg {
    /// Stop accepting: new clients wait in the kernel backlog.
    Block,
    /// Accept, answer `ERR server busy`, close.
    Reject,
}

/// Whether TLS clients must present a certificate: the library's
/// [`ClientAuth`], by the names `--tls-client-auth` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ClientAuthArg {
    /// A client without a certificate the CA signed fails its handshake.
    Required,
    /// A client may present none; one it presents must verify.
    Optional,
}

#[derive(clap::Args)]
pub struct Args {
    /// Host name or address to listen on.
    #[arg(env = "LINEPOOL_HOST")]
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 takes any free port.
    #[arg(env = "LINEPOOL_PORT")]
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Threads that run protocol code [default: the number of CPUs].
    #[arg(env = "LINEPOOL_WORKERS")]
    #[arg(long, value_parser = at_least_one)]
    workers: Option<usize>,
    /// Connections open at once, served or idle.
    #[arg(env = "LINEPOOL_MAX_CONNECTIONS")]
    #[arg(long, value_name = "N", default_value_t = Config::default().max_connections,
          value_parser = at_least_one)]
    max_connections: usize,
    /// What happens at --max-connections.
    #[arg(env = "LINEPOOL_OVERLOAD")]
    #[arg(long, value_enum, default_value_t = OverloadArg::Block)]
    overload: OverloadArg,
    /// Close a client that sends no complete line, or reads no reply, for
    /// this long (`300`, `5m`, `500ms`); 0 never does.
    #[arg(env = "LINEPOOL_IDLE_TIMEOUT")]
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_IDLE_SECS_TEXT,
          value_parser = duration)]
    idle_timeout: Duration,
    /// Longest accepted line in bytes, not counting the line ending (at
    /// least 11, the length of `quit_server`).
    #[arg(env = "LINEPOOL_MAX_LINE")]
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().max_line,
          value_parser = room_for_commands)]
    max_line: usize,
    /// Listen backlog (the kernel caps it at net.core.somaxconn).
    #[arg(env = "LINEPOOL_BACKLOG")]
    #[arg(long, default_value_t = Config::default().backlog,
          value_parser = clap::value_parser!(u32).range(1..=i32::MAX as i64))]
    backlog: u32,
    /// Log a stats line this often (`10s`, `0.5`): lines answered, service
    /// time, open and ready connections, rejected and total connections;
    /// 0 never does.
    #[arg(env = "LINEPOOL_STATS_INTERVAL")]
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = duration)]
    stats_interval: Duration,
    /// The protocol spoken.
    #[arg(env = "LINEPOOL_PROTOCOL")]
    #[arg(long, value_enum, default_value_t = Protocol::Ack)]
    protocol: Protocol,
    /// `sum`: the server name given in replies.
    #[arg(env = "LINEPOOL_SERVER_NAME")]
    #[arg(long, default_value = DEFAULT_SERVER_NAME)]
    server_name: String,
    /// `sum`: the number the server answers with.
    #[arg(env = "LINEPOOL_SERVER_NUMBER")]
    #[arg(long, default_value_t = DEFAULT_SERVER_NUMBER, allow_negative_numbers = true)]
    server_number: i64,
    /// Client addresses that may stop the server with `quit_server` (and
    /// `sum`'s out-of-range rule): comma-separated networks, `any` or
    /// `none`.
    #[arg(env = "LINEPOOL_ADMIN_FROM")]
    #[arg(long, value_name = "LIST", default_value = "127.0.0.0/8,::1/128")]
    admin_from: AddrList,
    /// Connections open at once from one client address; 0: no limit.
    #[arg(env = "LINEPOOL_MAX_PER_IP")]
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_per_ip: usize,
    /// How long a stop waits for clients that do not read their last
    /// replies before cutting them off (`1`, `500ms`).
    #[arg(env = "LINEPOOL_STOP_GRACE")]
    #[arg(long, value_name = "DURATION", default_value = "1", value_parser = duration)]
    stop_grace: Duration,
    /// On SIGTERM, first drain for this long (`30s`): keep serving and
    /// accepting while the agent says `drain`, then stop. SIGINT, a second
    /// signal and `quit_server` stop at once; 0 stops at once on SIGTERM too.
    #[arg(env = "LINEPOOL_DRAIN")]
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = duration)]
    drain: Duration,
    /// Answer HAProxy agent checks here (`127.0.0.1:9001`): `ready`, or
    /// `drain` while draining or stopping.
    #[arg(env = "LINEPOOL_AGENT")]
    #[arg(long, value_name = "ADDR:PORT")]
    agent: Option<SocketAddr>,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics and health at
    /// /healthz (`127.0.0.1:9100`; keep it off the public network).
    #[arg(env = "LINEPOOL_METRICS")]
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,
    /// Expect a PROXY protocol header (v1 or v2, as HAProxy's send-proxy
    /// sends) first on every connection, within 5 s: the client address it
    /// names is the one logs, --admin-from and --max-per-ip see.
    #[arg(env = "LINEPOOL_PROXY_PROTOCOL")]
    #[arg(long)]
    proxy_protocol: bool,
    /// Speak TLS on every TCP connection with this certificate chain (PEM,
    /// the server's certificate first); needs --tls-key. SIGHUP re-reads it.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        env = "LINEPOOL_TLS_CERT"
    )]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_cert",
        env = "LINEPOOL_TLS_KEY"
    )]
    tls_key: Option<PathBuf>,
    /// Verify client certificates against these CA certificates (PEM).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_cert",
        env = "LINEPOOL_TLS_CLIENT_CA"
    )]
    tls_client_ca: Option<PathBuf>,
    /// Whether a client must present a certificate [default: required
    /// with --tls-client-ca].
    #[arg(
        long,
        value_enum,
        value_name = "MODE",
        requires = "tls_client_ca",
        env = "LINEPOOL_TLS_CLIENT_AUTH"
    )]
    tls_client_auth: Option<ClientAuthArg>,
    /// The lowest TLS version accepted: 1.2 or 1.3.
    #[arg(
        long,
        value_name = "VERSION",
        default_value = "1.2",
        requires = "tls_cert",
        env = "LINEPOOL_TLS_MIN_VERSION"
    )]
    tls_min_version: TlsVersion,
    /// How long a client has to finish its TLS handshake (`10s`).
    #[arg(long, value_name = "DURATION", default_value = "10", value_parser = positive_duration,
          env = "LINEPOOL_TLS_HANDSHAKE_TIMEOUT")]
    tls_handshake_timeout: Duration,
    /// Certificate names that may stop the server (`quit_server`, `sum`'s
    /// out-of-range rule), comma-separated: a verified client
    /// certificate's DNS or URI subject alternative name, or lacking
    /// those its common name. --admin-from must allow too.
    #[arg(
        long,
        value_name = "NAME[,NAME...]",
        value_delimiter = ',',
        requires = "tls_client_ca",
        env = "LINEPOOL_ADMIN_CERT"
    )]
    admin_cert: Option<Vec<String>>,
    /// Check the flags and the certificate files, then exit: 0 if good, 2
    /// if not (for ExecStartPre=). No variable: set in an environment file
    /// it would keep the server from ever starting.
    #[arg(long)]
    check: bool,
    /// How much to log.
    #[arg(env = "LINEPOOL_LOG_LEVEL")]
    #[arg(long, value_enum, value_name = "LEVEL", default_value_t = LogLevel::Info)]
    log_level: LogLevel,
    /// Listen on ADDR:PORT, IPv4 or IPv6 (`0.0.0.0:8000`, `[::]:8000`);
    /// may be given several times, or as a comma-separated list. Instead
    /// of --host and --port.
    #[arg(env = "LINEPOOL_LISTEN")]
    #[arg(long, value_name = "ADDR:PORT", value_delimiter = ',',
          conflicts_with_all = ["host", "port"])]
    listen: Vec<SocketAddr>,
    /// Also listen on a Unix domain socket at PATH (a stale socket file is
    /// replaced; one a running server holds is refused). Its clients may
    /// stop the server by user id (--admin-uid). Plaintext only: refused
    /// with --tls-cert.
    #[arg(env = "LINEPOOL_UNIX")]
    #[arg(long, value_name = "PATH")]
    unix: Option<PathBuf>,
    /// The file mode of the --unix socket, in octal.
    #[arg(env = "LINEPOOL_UNIX_MODE")]
    #[arg(long, value_name = "MODE", default_value = "0660", value_parser = file_mode)]
    unix_mode: u32,
    /// User ids that may stop the server from the --unix socket, and use
    /// the --admin-socket console (comma-separated) [default: the
    /// server's own and root].
    #[arg(env = "LINEPOOL_ADMIN_UID")]
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    admin_uid: Vec<u32>,
    /// User ids (comma-separated) that may only look at the --admin-socket
    /// console: `show …` and `help`. One in --admin-uid too may do all.
    #[arg(env = "LINEPOOL_ADMIN_READ_UID")]
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    admin_read_uid: Vec<u32>,
    /// Serve the admin console on a Unix socket at PATH (a stale socket
    /// file is replaced; one a running server holds is refused): `show
    /// info|conns|config`, `set SETTING VALUE`, `kill ID`, `pause`,
    /// `resume`, `drain`, `reload`, `stop`, one line a command (`linepool
    /// admin`). --admin-uid may use it, --admin-read-uid only look.
    #[arg(env = "LINEPOOL_ADMIN_SOCKET")]
    #[arg(long, value_name = "PATH")]
    admin_socket: Option<PathBuf>,
    /// The file mode of the --admin-socket, in octal.
    #[arg(env = "LINEPOOL_ADMIN_SOCKET_MODE")]
    #[arg(long, value_name = "MODE", default_value = "0600", value_parser = file_mode)]
    admin_socket_mode: u32,
    /// `chat`: share the room with every instance on this Redis
    /// (`redis://HOST:PORT[/DB]`, a password as `redis://:PASS@HOST:PORT`).
    /// Redis away costs only the wider room: the local one goes on.
    #[arg(long, value_name = "URL", env = "LINEPOOL_CHAT_BUS", value_parser = chat_bus_url)]
    chat_bus: Option<String>,
    /// `chat` with --chat-bus: the room's name; instances share a room only
    /// if they give the same name.
    #[arg(long, value_name = "NAME", env = "LINEPOOL_CHAT_ROOM",
          default_value = ChatBus::DEFAULT_ROOM, value_parser = room_name)]
    chat_room: String,
    /// Time between two heartbeats on the chat bus (tests shorten it).
    #[arg(long, value_name = "DURATION", env = "LINEPOOL_CHAT_HEARTBEAT", hide = true,
          default_value = "1", value_parser = positive_duration)]
    chat_heartbeat: Duration,
    /// Longest wait between two attempts to reach the chat bus.
    #[arg(long, value_name = "DURATION", env = "LINEPOOL_CHAT_BACKOFF_MAX", hide = true,
          default_value = "0.25", value_parser = positive_duration)]
    chat_backoff_max: Duration,
}

/// The idle timeout's default as clap shows it, kept in step with the
/// library's constant by a test.
const DEFAULT_IDLE_SECS_TEXT: &str = "300";

impl Args {
    /// The protocol `--protocol` names, with its own settings. Chat bus
    /// settings it cannot use are an error.
    fn protocol(&self) -> Result<Arc<dyn linepool::protocol::Protocol>, linepool::Error> {
        Ok(match self.protocol {
            Protocol::Ack => protocol::ack(),
            Protocol::Chat => {
                let bus = self.chat_bus.as_ref().map(|url| ChatBus {
                    room: self.chat_room.clone(),
                    heartbeat: self.chat_heartbeat,
                    backoff_max: self.chat_backoff_max,
                    ..ChatBus::new(url.clone())
                });
                linepool_chat::chat(self.max_line, bus)?
            }
            Protocol::Framed => protocol::framed(),
            Protocol::Sum => protocol::sum(self.server_name.clone(), self.server_number),
        })
    }

    fn config(&self) -> Config {
        let mut config = Config::default();
        config.host = self.host.clone();
        config.port = self.port;
        if let Some(workers) = self.workers {
            config.workers = workers;
        }
        config.max_connections = self.max_connections;
        config.overload = match self.overload {
            OverloadArg::Block => Overload::Block,
            OverloadArg::Reject => Overload::Reject,
        };
        config.idle_timeout = Some(self.idle_timeout).filter(|d| !d.is_zero());
        config.max_line = self.max_line;
        config.backlog = self.backlog;
        config.stats_interval = Some(self.stats_interval).filter(|d| !d.is_zero());
        config.admin_from = self.admin_from.clone();
        config.max_per_ip = self.max_per_ip;
        config.stop_grace = self.stop_grace;
        config.agent = self.agent;
        config.metrics = self.metrics;
        config.proxy_protocol = self.proxy_protocol;
        config.listen = self.listen.clone();
        config.unix = self.unix.clone();
        config.unix_mode = self.unix_mode;
        config.admin_uids = Some(self.admin_uid.clone()).filter(|uids| !uids.is_empty());
        config.admin_read_uids = self.admin_read_uid.clone();
        config.admin_socket = self.admin_socket.clone();
        config.admin_socket_mode = self.admin_socket_mode;
        config.tls = self.tls();
        config.admin_cert = self.admin_cert.clone();
        config
    }

    /// The configuration, saying which settings `given` came from a flag
    /// or a variable (for the admin console's `show config`).
    fn config_from(&self, given: &[Given]) -> Config {
        let mut config = self.config();
        config.drain = Some(self.drain).filter(|d| !d.is_zero());
        config.origins = given
            .iter()
            .map(|setting| {
                let origin = match &setting.origin {
                    settings::Origin::Flag => "flag".to_string(),
                    settings::Origin::Env(variable) => format!("env:{variable}"),
                };
                (setting.name.replace('_', "-"), origin)
            })
            .collect();
        config
    }

    fn tls(&self) -> Option<TlsSettings> {
        let (cert, key) = (self.tls_cert.as_ref()?, self.tls_key.as_ref()?);
        Some(TlsSettings {
            client_ca: self.tls_client_ca.clone(),
            client_auth: match self.tls_client_auth {
                None | Some(ClientAuthArg::Required) => ClientAuth::Required,
                Some(ClientAuthArg::Optional) => ClientAuth::Optional,
            },
            min_version: self.tls_min_version,
            handshake_timeout: self.tls_handshake_timeout,
            ..TlsSettings::new(cert, key)
        })
    }
}

/// Checks what clap cannot, for the start and for `--check` alike, so that
/// `--check` refuses exactly what the start refuses: that the chat flags go
/// together and that the protocol can be set up with them (a chat bus's
/// settings), that the certificate files are there, parse and go together,
/// and that TLS is not asked of a Unix socket; the protocol is returned. `given` says which settings
/// were given (a room name that is only the default asks nothing). One line
/// on error.
///
/// What the start meets only when it binds (a port or a socket path in
/// use) is not checked: it belongs to the machine at that moment, not to
/// the configuration.
fn check(args: &Args, given: &[Given]) -> Result<Arc<dyn linepool::protocol::Protocol>, String> {
    if args.chat_bus.is_some() && args.protocol != Protocol::Chat {
        return Err("--chat-bus is used only with --protocol chat".to_string());
    }
    if args.chat_bus.is_none() && given.iter().any(|setting| setting.name == "chat_room") {
        // Without a bus the room is this instance's alone, and has no name:
        // a name given there is a bus forgotten, not a setting.
        return Err("--chat-room is used only with --chat-bus".to_string());
    }
    if args.unix.is_some() && args.tls_cert.is_some() {
        // Its clients are local tools, told apart by user id (`--admin-uid`).
        return Err(
            "--unix cannot be used with --tls-cert: TLS is for TCP listeners, a Unix socket stays plaintext"
                .to_string(),
        );
    }
    if let Some(settings) = args.tls() {
        tls::check(&settings)?;
    }
    args.protocol().map_err(|e| described(&e))
}

/// Runs `linepool serve`; `given` says which settings came from a flag or
/// a variable, for the debug log.
pub fn run(args: &Args, given: &[Given]) -> ExitCode {
    // Bad files are refused before anything starts, as bad flags are.
    let protocol = match check(args, given) {
        Ok(protocol) => protocol,
        Err(e) => {
            eprintln!("linepool: {}", name_variables(&e, given));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if args.check {
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    // Every thread started from here on (the signal watcher, the workers,
    // and this one, which waits for the stop) inherits a mask that blocks the
    // stop signals: only the watcher takes them, with sigwait, so a signal
    // never interrupts a worker's system call, and the watcher knows which
    // signal came.
    let signals = stop_signals();
    if let Err(e) = signals.thread_block() {
        eprintln!("linepool: cannot mask signals: {e}");
        return ExitCode::FAILURE;
    }
    init_logging(args.log_level.filter());
    debug!("{}", settings::log_line(given));
    // Before anything is bound, and logged, so that a short limit is said
    // at the start rather than found under load.
    open_files::raise_for(args.max_connections);
    // Socket activation: systemd passes the listening sockets (LISTEN_FDS,
    // LISTEN_PID, LISTEN_FDNAMES), which then outlive restarts, so none
    // refuses a client. Read before any thread starts: it clears those
    // variables.
    let passed = match activation::passed_listeners() {
        Ok(passed) => passed,
        Err(e) => {
            eprintln!("linepool: cannot use the sockets systemd passed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bound = match passed {
        Some(listeners) => Server::from_listeners(listeners, args.config_from(given), protocol),
        None => Server::bind(args.config_from(given), protocol),
    };
    let server = match bound {
        Ok(server) => server,
        // A bad setting, or a socket path held by a live server or not a
        // socket (a bad file): refused like a bad flag.
        Err(e @ (linepool::Error::Setting { .. } | linepool::Error::InUse(_))) => {
            eprintln!("linepool: {}", described(&e));
            return ExitCode::from(EXIT_USAGE);
        }
        Err(e) => {
            eprintln!("linepool: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = server.shutdown_handle();
    let certs = server.tls();
    shutdown.on_trigger(|| {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    });
    let drain = args.drain;
    let watcher = {
        let shutdown = shutdown.clone();
        thread::Builder::new()
            .name("linepool-signals".to_string())
            .spawn(move || watch_signals(signals, &shutdown, drain, certs.as_deref()))
    };
    if let Err(e) = watcher {
        eprintln!("linepool: cannot watch for signals: {e}");
        return ExitCode::FAILURE;
    }
    let running = match server.start() {
        Ok(running) => running,
        Err(e) => {
            eprintln!("linepool: {e}");
            return ExitCode::FAILURE;
        }
    };
    // systemd (Type=notify, NOTIFY_SOCKET set): ready once serving,
    // stopping when the stop begins. Without NOTIFY_SOCKET these do nothing.
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        warn!("cannot notify systemd error={}", logfmt::error(&e));
    }
    running.wait();
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idle_default_is_the_librarys() {
        let idle = Config::default().idle_timeout.expect("an idle timeout");
        assert_eq!(DEFAULT_IDLE_SECS_TEXT, idle.as_secs().to_string());
    }
}
