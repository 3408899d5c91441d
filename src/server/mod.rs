//! The server, in stages: [`Server::bind`] does everything that can fail
//! before any thread starts (the listener, the side ports, the poller, the
//! protocol); [`Server::start`] starts the threads and returns a
//! [`Running`] server that owns them all; [`Running::stop`] (or
//! [`Running::wait`]) runs the stop sequence and returns the [`Summary`](crate::Summary).
//! A `Running` dropped without either stops and joins everything, so a
//! start that fails half-way leaks no thread.
//!
//! The stop sequence, as docs/architecture.md numbers it, in the order the
//! design implies: the acceptor first, then the connections, then the pool.
//!
//! 1. the stop signal is set and its wake-ups run, whoever triggered it:
//!    the gate is closed and the acceptor's poller woken, so the acceptor
//!    accepts nothing more, even if it was waiting for a slot; the side
//!    ports go on answering health checks (503, `drain`);
//! 2. the acceptor thread is joined: it has closed its listeners (clients
//!    still in the backlogs are refused) and removed the Unix socket file;
//! 3. every registered connection is given a turn, as if an event had
//!    come, so each answers what it has read and closes;
//! 4. up to `--stop-grace` for every slot to come back, then the registry
//!    shuts the stragglers' sockets down (and gives them one more grace);
//! 5. the workers' loops end, the pool is joined, the side ports end, every
//!    helper thread is joined, and the summary is logged and returned.

mod acceptor;
mod admission;
mod command;
mod console;
mod listen;
mod live;
mod running;
mod start;
mod threads;
mod tuning;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;

use self::acceptor::Listening;
use self::console::ConsoleSocket;
pub use self::listen::Listener;
use self::listen::context;
pub use self::running::Running;
use crate::config::Config;
use crate::engine::{Connections, Engine};
use crate::error::{Error, Setting};
use crate::protocol::Protocol;
use crate::registry::Registry;
use crate::shutdown::Shutdown;
use crate::tls::Certs;

/// Operators waiting for the admin console's one session at a time.
const CONSOLE_BACKLOG: u32 = 16;

/// A bound server: everything that can fail before the threads start has
/// been done.
pub struct Server {
    /// The listeners, in the acceptor's poller.
    listening: Listening,
    local_addr: SocketAddr,
    /// The HAProxy agent port, with `--agent`.
    agent: Option<TcpListener>,
    /// The admin console's socket, with `--admin-socket`.
    console: Option<ConsoleSocket>,
    /// The metrics endpoint, with `--metrics`.
    metrics: Option<TcpListener>,
    core: Core,
}

/// What the server serves with, beside its listeners: handed on, whole,
/// to the helper threads when it starts.
struct Core {
    config: Config,
    protocol: Arc<dyn Protocol>,
    shutdown: Shutdown,
    /// Fires at the stop's last step: the side ports and the watchdog end.
    last_step: Shutdown,
    conns: Arc<Connections>,
    engine: Arc<Engine>,
    /// The certificates, with TLS.
    tls: Option<Arc<Certs>>,
}

impl Server {
    /// Binds every listener the configuration names, with the configured
    /// backlog: each of `config.listen` (or `config.host:config.port` when
    /// that is empty), then `config.unix`.
    ///
    /// The error names the address when it cannot be had; a Unix socket
    /// path that a live server holds, or that is not a socket, is refused
    /// with [`Error::InUse`] (a stale socket file is replaced).
    pub fn bind(config: Config, protocol: Arc<dyn Protocol>) -> Result<Server, Error> {
        let addrs = if config.listen.is_empty() {
            let host = &config.host;
            let addr = (host.as_str(), config.port)
                .to_socket_addrs()
                .map_err(|e| Error::setting(Setting::Host, format!("cannot resolve {host}: {e}")))?
                .next()
                .ok_or_else(|| {
                    Error::setting(Setting::Host, format!("no address found for {host}"))
                })?;
            vec![addr]
        } else {
            config.listen.clone()
        };
        let mut listeners = Vec::with_capacity(addrs.len() + 1);
        for addr in addrs {
            let listener = listen::listen(addr, &config)
                .map_err(|e| context(e, &format!("cannot listen on {addr}")))?;
            listeners.push(Listener::tcp(listener)?);
        }
        if let Some(path) = &config.unix {
            listeners
                .push(listen::listen_unix(path, config.unix_mode, config.backlog).map_err(in_use)?);
        }
        Server::from_listeners(listeners, config, protocol)
    }

    /// A server on a socket that is already listening, such as one systemd
    /// passes on socket activation (`config.host`, `port`, `listen`, `unix`
    /// and `backlog` do not apply). Clients that connected before the
    /// server started wait in its backlog and are served: a restart refuses
    /// no connection.
    pub fn from_listener(
        listener: TcpListener,
        config: Config,
        protocol: Arc<dyn Protocol>,
    ) -> Result<Server, Error> {
        Server::from_listeners(vec![Listener::tcp(listener)?], config, protocol)
    }

    /// A server on sockets that are already listening (socket activation
    /// with several sockets), all sharing one connection limit, registry,
    /// pool and stop. As with [`Server::from_listener`], the configuration's
    /// addresses and backlog do not apply.
    pub fn from_listeners(
        listeners: Vec<Listener>,
        config: Config,
        protocol: Arc<dyn Protocol>,
    ) -> Result<Server, Error> {
        if listeners.is_empty() {
            return Err(Error::setting(
                Setting::Listeners,
                "no listener to serve on",
            ));
        }
        if config.workers == 0 {
            return Err(Error::setting(Setting::Workers, "at least 1 is needed"));
        }
        if config.max_connections == 0 {
            return Err(Error::setting(
                Setting::MaxConnections,
                "at least 1 is needed",
            ));
        }
        // The shared commands must fit in a message, or `quit_server`
        // itself would be refused as too long.
        if config.max_line < b"quit_server".len() {
            return Err(Error::setting(
                Setting::MaxLine,
                "at least 11 is needed, the length of quit_server",
            ));
        }
        if config.admin_cert.is_some() && config.tls.as_ref().is_none_or(|t| t.client_ca.is_none())
        {
            return Err(Error::setting(
                Setting::AdminCert,
                "needs a TLS client CA: names come from verified client certificates",
            ));
        }
        // A Unix socket is for local tools, which speak plaintext and are
        // told apart by user id: TLS is for TCP listeners, and a server that
        // would speak it on some listeners only is refused.
        if config.tls.is_some() && listeners.iter().any(Listener::is_unix) {
            return Err(Error::setting(
                Setting::Tls,
                "cannot serve a Unix socket: TLS is for TCP listeners only",
            ));
        }
        let tls = match &config.tls {
            Some(settings) => {
                Some(Certs::load(settings).map_err(|e| Error::setting(Setting::Tls, e))?)
            }
            None => None,
        };
        // The acceptor accepts until `EAGAIN` and must never block in
        // accept(); a passed socket may be either.
        for listener in &listeners {
            listener.prepare()?;
        }
        // Where embedders and tests connect: the first TCP listener.
        let local_addr = listeners
            .iter()
            .find_map(Listener::local_addr)
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        let agent = listen::bind_side(config.agent, "cannot listen for agent checks on")?;
        let metrics = listen::bind_side(config.metrics, "cannot serve metrics on")?;
        let shutdown = Shutdown::new();
        // A stop must wake the side ports' threads blocked in accept(). The
        // wake-ups are set now, while setting them can still fail cleanly.
        // The side ports answer through the stop (health says 503, the
        // agent `drain`), and the watchdog goes on ending lingers: they end
        // only at its last step.
        let last_step = Shutdown::new();
        for side in agent.iter().chain(&metrics) {
            listen::stopped_with(side, &last_step)?;
        }
        let console = match &config.admin_socket {
            Some(path) => {
                let socket = listen::listen_unix(path, config.admin_socket_mode, CONSOLE_BACKLOG)
                    .map_err(in_use)?;
                socket.prepare()?;
                Some(ConsoleSocket::new(socket, &last_step)?)
            }
            None => None,
        };
        let listening = Listening::new(listeners)?;
        listening.woken_by(&shutdown);
        let conns = Registry::new();
        let engine = Engine::new(conns.clone())?;
        Ok(Server {
            listening,
            local_addr,
            agent,
            console,
            metrics,
            core: Core {
                config,
                protocol,
                shutdown,
                last_step,
                conns,
                engine,
                tls,
            },
        })
    }

    /// The certificates, with TLS: [`Certs::reload`] re-reads them.
    pub fn tls(&self) -> Option<Arc<Certs>> {
        self.core.tls.clone()
    }

    /// The address the server listens on, with the real port: the first
    /// TCP listener's (`0.0.0.0:0` when every listener is a Unix socket).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Every listener, in the order the server accepts on them.
    pub fn listeners(&self) -> &[Listener] {
        self.listening.listeners()
    }

    /// The address agent checks are answered on, with `--agent`.
    pub fn agent_addr(&self) -> Option<SocketAddr> {
        self.agent.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The address `/metrics` and `/healthz` are served on, with `--metrics`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// A handle that stops this server from any thread.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.core.shutdown.clone()
    }
}

/// A Unix socket path refused because it is in use, as such.
fn in_use(e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::AlreadyExists {
        Error::InUse(e.to_string())
    } else {
        Error::Io(e)
    }
}
