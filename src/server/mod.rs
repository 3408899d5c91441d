//! The server, in stages: [`Server::bind`] does everything that can fail
//! before any thread starts (the listener, the side ports, the poller, the
//! protocol); [`Server::start`] starts the threads and returns a
//! [`Running`] server that owns them all; [`Running::stop`] (or
//! [`Running::wait`]) runs the stop sequence and returns the [`Summary`].
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
mod console;
mod listen;
mod running;
mod threads;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use log::info;
use threadpool::ThreadPool;

use self::acceptor::{Acceptor, Listening};
use self::admission::Admission;
use self::console::{Console, ConsoleSocket};
pub use self::listen::Listener;
use self::listen::context;
pub use self::running::Running;
use self::threads::Threads;
use crate::access::{self, PerAddress};
use crate::agent;
use crate::config::Config;
use crate::engine::{Connections, Engine};
use crate::gate::Gate;
use crate::handler::Limits;
use crate::metrics;
use crate::protocol::{self, ChatBus, ChatFanout, Protocol};
use crate::registry::Registry;
use crate::shutdown::Shutdown;
use crate::stats::{ListenerCount, Stats, Summary};
use crate::tls::Certs;
use crate::watchdog;

/// Operators waiting for the admin console's one session at a time.
const CONSOLE_BACKLOG: u32 = 16;

/// Stack size of each worker thread. A worker's deepest path is a turn of
/// protocol code plus logging, far below this.
const WORKER_STACK: usize = 256 * 1024;

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
    config: Config,
    protocol: Arc<dyn Protocol>,
    /// The chat room's bus, with `--chat-bus`.
    chat_bus: Option<Arc<ChatBus>>,
    /// The chat room's writer, with `--protocol chat`.
    chat_fanout: Option<Arc<ChatFanout>>,
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
    /// with [`io::ErrorKind::AlreadyExists`] (a stale socket file is
    /// replaced).
    pub fn bind(config: Config) -> io::Result<Server> {
        let addrs = if config.listen.is_empty() {
            let addr = (config.host.as_str(), config.port)
                .to_socket_addrs()
                .map_err(|e| context(e, &format!("cannot resolve {}", config.host)))?
                .next()
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("no address found for {}", config.host),
                    )
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
            listeners.push(listen::listen_unix(path, config.unix_mode, config.backlog)?);
        }
        Server::from_listeners(listeners, config)
    }

    /// A server on a socket that is already listening, such as one systemd
    /// passes on socket activation (`config.host`, `port`, `listen`, `unix`
    /// and `backlog` do not apply). Clients that connected before the
    /// server started wait in its backlog and are served: a restart refuses
    /// no connection.
    pub fn from_listener(listener: TcpListener, config: Config) -> io::Result<Server> {
        Server::from_listeners(vec![Listener::tcp(listener)?], config)
    }

    /// A server on sockets that are already listening (socket activation
    /// with several sockets), all sharing one connection limit, registry,
    /// pool and stop. As with [`Server::from_listener`], the configuration's
    /// addresses and backlog do not apply.
    pub fn from_listeners(listeners: Vec<Listener>, config: Config) -> io::Result<Server> {
        if listeners.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no listener to serve on",
            ));
        }
        if config.workers == 0 || config.max_connections == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "workers and max_connections must be at least 1",
            ));
        }
        // The shared commands must fit in a message, or `quit_server`
        // itself would be refused as too long.
        if config.max_line < b"quit_server".len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "max_line must be at least 11, the length of quit_server",
            ));
        }
        if config.admin_cert.is_some() && config.tls.as_ref().is_none_or(|t| t.client_ca.is_none())
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "--admin-cert needs --tls-client-ca: names come from verified client certificates",
            ));
        }
        // A Unix socket is for local tools, which speak plaintext and are
        // told apart by user id: TLS is for TCP listeners, and a server that
        // would speak it on some listeners only is refused.
        if config.tls.is_some() && listeners.iter().any(Listener::is_unix) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "--tls-cert cannot serve a Unix socket: TLS is for TCP listeners only",
            ));
        }
        let tls = match &config.tls {
            Some(settings) => Some(
                Certs::load(settings)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
            ),
            None => None,
        };
        let protocol::Built {
            protocol,
            chat_bus,
            chat_fanout,
        } = protocol::build(config.protocol, &config)?;
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
                let socket = listen::listen_unix(path, config.admin_socket_mode, CONSOLE_BACKLOG)?;
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
            config,
            protocol,
            chat_bus,
            chat_fanout,
            shutdown,
            last_step,
            conns,
            engine,
            tls,
        })
    }

    /// The certificates, with TLS: [`Certs::reload`] re-reads them.
    pub fn tls(&self) -> Option<Arc<Certs>> {
        self.tls.clone()
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
        self.shutdown.clone()
    }

    /// Starts serving: the pool's workers and the helper threads, then
    /// the acceptor thread. A thread that cannot be created is an error, and
    /// whatever had started by then is stopped and joined before it is
    /// returned.
    pub fn start(self) -> io::Result<Running> {
        let Server {
            listening,
            local_addr,
            agent,
            console,
            metrics,
            config,
            protocol,
            chat_bus,
            chat_fanout,
            shutdown,
            last_step,
            conns,
            engine,
            tls,
        } = self;
        // A stop wakes the acceptor if it waits for a slot; from then on
        // it gets none.
        let gate = Gate::new(config.max_connections);
        {
            let gate = gate.clone();
            shutdown.on_trigger(move || gate.close());
        }
        let stats = Arc::new(Stats::default());
        // How the log names each listener, taken before the acceptor owns
        // them.
        let shown: Vec<String> = listening.listeners().iter().map(shown).collect();
        let names: Vec<&str> = listening.listeners().iter().map(Listener::name).collect();
        let names = names.join(",");
        let counts: Vec<Arc<ListenerCount>> = listening
            .listeners()
            .iter()
            .map(|l| ListenerCount::new(l.shared_name()))
            .collect();
        let admin_uids: Arc<[u32]> = match &config.admin_uids {
            Some(uids) => uids.as_slice().into(),
            None => access::default_admin_uids().into(),
        };
        let control = listening.control();
        let acceptor = Acceptor::new(
            listening,
            Admission {
                overload: config.overload,
                proxy_protocol: config.proxy_protocol,
                protocol,
                limits: Limits::from_config(&config),
                shutdown: shutdown.clone(),
                gate: gate.clone(),
                engine: engine.clone(),
                stats: stats.clone(),
                admin_from: Arc::new(config.admin_from.clone()),
                admin_uids: admin_uids.clone(),
                per_address: (config.max_per_ip > 0).then(|| PerAddress::new(config.max_per_ip)),
                tls: tls.clone(),
                admin_certs: config.admin_cert.clone().map(Arc::new),
                counts: counts.clone(),
            },
        );
        let pool = start_pool(config.workers)?;
        engine.start(&pool, config.workers);
        // From here on, dropping `running` stops and joins what started.
        let mut running = Running {
            local_addr,
            shutdown: shutdown.clone(),
            last_step: last_step.clone(),
            gate: gate.clone(),
            conns: conns.clone(),
            engine: engine.clone(),
            stats: stats.clone(),
            stop_grace: config.stop_grace,
            acceptor: Threads::default(),
            chat_bus: chat_bus.clone(),
            pool: Some(pool),
            threads: Threads::default(),
        };
        info!(
            "listening on {} version={} protocol={} workers={} max_connections={} overload={}{}",
            shown[0],
            env!("CARGO_PKG_VERSION"),
            config.protocol,
            config.workers,
            config.max_connections,
            config.overload,
            crate::tls::ListeningFields(config.tls.as_ref())
        );
        for also in &shown[1..] {
            info!("also listening on {also}");
        }
        let threads = &mut running.threads;
        {
            let (conns, stats, until) = (conns.clone(), stats.clone(), last_step.clone());
            let idle = config.idle_timeout;
            let handshake = config
                .tls
                .as_ref()
                .map_or(crate::tls::DEFAULT_HANDSHAKE_TIMEOUT, |t| {
                    t.handshake_timeout
                });
            threads.spawn("linepool-watchdog", move || {
                watchdog::run(&conns, &stats, &until, idle, handshake)
            })?;
        }
        if let Some(listener) = agent {
            info!("agent listening on {}", listener.local_addr()?);
            let (shutdown, until) = (shutdown.clone(), last_step.clone());
            threads.spawn("linepool-agent", move || {
                agent::serve(&listener, &shutdown, &until)
            })?;
        }
        if let Some(listener) = metrics {
            info!(
                "metrics on http://{}/metrics and /healthz",
                listener.local_addr()?
            );
            let registry = metrics::registry(metrics::Sources {
                stats: stats.clone(),
                engine: engine.clone(),
                gate: gate.clone(),
                protocol: config.protocol,
                shutdown: shutdown.clone(),
                listeners: counts.clone(),
                chat_bus: chat_bus.clone(),
                tls: tls.clone(),
            });
            let (shutdown, until) = (shutdown.clone(), last_step.clone());
            threads.spawn("linepool-metrics", move || {
                metrics::serve(&listener, &registry, &shutdown, &until)
            })?;
        }
        if let Some(socket) = console {
            info!("admin console on {}", socket.addr());
            let console = Console {
                shutdown: shutdown.clone(),
                stats: stats.clone(),
                conns: conns.clone(),
                engine: engine.clone(),
                acceptor: control,
                gate: gate.clone(),
                tls: tls.clone(),
                admin_uids,
                about: vec![
                    ("version", env!("CARGO_PKG_VERSION").to_string()),
                    ("protocol", config.protocol.to_string()),
                    ("listeners", names),
                    ("overload", config.overload.to_string()),
                ],
                started: Instant::now(),
            };
            let until = last_step.clone();
            threads.spawn("linepool-console", move || console.run(socket, &until))?;
        }
        if let Some(every) = config.stats_interval {
            let (stats, engine, shutdown) = (stats.clone(), engine.clone(), shutdown.clone());
            let bus = chat_bus.clone();
            threads.spawn("linepool-stats", move || {
                threads::report_stats(&stats, &engine, bus.as_deref(), &shutdown, every)
            })?;
        }
        if let Some(fanout) = chat_fanout {
            // Like the bus, the writer ends at the last step, after every
            // session has ended.
            let until = last_step.clone();
            threads.spawn("linepool-chat-out", move || fanout.run(&until))?;
        }
        if let Some(bus) = &chat_bus {
            info!("chat room {} shared on the bus", bus.room_name());
            // The bus ends at the last step, after every session has ended
            // and queued its `left`, which it then publishes.
            for (name, run) in bus.threads(&last_step) {
                threads.spawn(name, run)?;
            }
        }
        // Last, once everything it hands connections to runs. Clients
        // already in a backlog make their listener ready at once.
        running
            .acceptor
            .spawn("linepool-acceptor", move || acceptor.run())?;
        Ok(running)
    }

    /// Starts, serves until the shutdown signal fires, then stops cleanly
    /// and returns what the server did.
    pub fn run(self) -> io::Result<Summary> {
        Ok(self.start()?.wait())
    }
}

/// A listener as the startup log shows it: its address, and its name
/// where that is another.
fn shown(listener: &Listener) -> String {
    if listener.name() == listener.addr() {
        listener.addr().to_string()
    } else {
        format!("{} listener={}", listener.addr(), listener.name())
    }
}

/// The pool of workers. `threadpool` panics when the OS refuses a thread;
/// that becomes an error here, and the threads it did start end as the
/// half-built pool is dropped.
fn start_pool(workers: usize) -> io::Result<ThreadPool> {
    panic::catch_unwind(AssertUnwindSafe(|| {
        threadpool::Builder::new()
            .num_threads(workers)
            .thread_name("linepool-worker".to_string())
            .thread_stack_size(WORKER_STACK)
            .build()
    }))
    .map_err(|_| io::Error::other(format!("cannot start {workers} worker threads")))
}
