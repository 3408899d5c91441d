//! The server, in stages: [`Server::bind`] does everything that can fail
//! before any thread starts (the listener, the side ports, the poller, the
//! protocol); [`Server::start`] starts the threads and returns a
//! [`Running`] server that owns them all; [`Running::stop`] (or
//! [`Running::wait`]) runs the stop sequence and returns the [`Summary`].
//! A `Running` dropped without either stops and joins everything, so a
//! start that fails half-way leaks no thread.
//!
//! The stop sequence, as docs/architecture.md numbers it:
//!
//! 1. the stop signal is set and its wake-ups run (the listener is shut
//!    down, the gate closed), whoever triggered it; the side ports go on
//!    answering health checks (503, `drain`);
//! 2. the acceptor leaves its loop and is joined: nothing more is
//!    accepted;
//! 3. every registered connection is given a turn, as if an event had
//!    come, so each answers what it has read and closes;
//! 4. up to `--stop-grace` for every slot to come back, then the stragglers
//!    are cut off (and given one more grace);
//! 5. the workers' loops end, the pool is joined, the side ports end, every
//!    helper thread is joined, and the summary is logged and returned.

mod acceptor;
mod listen;
mod threads;

use std::io;
use std::net::{Shutdown as Direction, SocketAddr, TcpListener, ToSocketAddrs};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use log::{error, info, warn};
use threadpool::ThreadPool;

use self::acceptor::Acceptor;
use self::listen::{ACCEPTED_INHERIT_OPTIONS, context};
use self::threads::Threads;
use crate::access::PerAddress;
use crate::agent;
use crate::config::Config;
use crate::engine::{Connections, Engine};
use crate::gate::Gate;
use crate::handler::Limits;
use crate::logfmt;
use crate::metrics;
use crate::protocol::{self, Protocol};
use crate::registry::Registry;
use crate::shutdown::Shutdown;
use crate::stats::{Stats, Summary};
use crate::tls::Certs;
use crate::watchdog;

/// Stack size of each worker thread. A worker's deepest path is a turn of
/// protocol code plus logging, far below this.
const WORKER_STACK: usize = 256 * 1024;

/// The acceptor thread's name; the stop joins it first.
const ACCEPTOR: &str = "linepool-acceptor";

/// A bound server: everything that can fail before the threads start has
/// been done.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    /// The HAProxy agent port, with `--agent`.
    agent: Option<TcpListener>,
    /// The metrics endpoint, with `--metrics`.
    metrics: Option<TcpListener>,
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
    /// Binds `config.host:config.port` with the configured backlog.
    ///
    /// The error names the address when the port cannot be had.
    pub fn bind(config: Config) -> io::Result<Server> {
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
        let listener = listen::listen(addr, &config)
            .map_err(|e| context(e, &format!("cannot listen on {addr}")))?;
        Server::from_listener(listener, config)
    }

    /// A server on a socket that is already listening, such as one systemd
    /// passes on socket activation (`config.host`, `port` and `backlog` do
    /// not apply). Clients that connected before the server started wait
    /// in its backlog and are served: a restart refuses no connection.
    pub fn from_listener(listener: TcpListener, config: Config) -> io::Result<Server> {
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
        let tls = match &config.tls {
            Some(settings) => Some(
                Certs::load(settings)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
            ),
            None => None,
        };
        let protocol = protocol::build(config.protocol, &config);
        // The acceptor blocks in accept(); a passed socket may not.
        listener.set_nonblocking(false)?;
        if ACCEPTED_INHERIT_OPTIONS {
            // Accepted sockets inherit it, as from a listener of ours.
            socket2::SockRef::from(&listener).set_tcp_nodelay(true)?;
        }
        let local_addr = listener.local_addr()?;
        let agent = listen::bind_side(config.agent, "cannot listen for agent checks on")?;
        let metrics = listen::bind_side(config.metrics, "cannot serve metrics on")?;
        // A stop must wake every thread blocked in accept(). The wake-ups
        // are set now, while setting them can still fail cleanly.
        let shutdown = Shutdown::new();
        listen::acceptor_stopped_with(&listener, local_addr, &shutdown)?;
        // The side ports answer through the stop (health says 503, the
        // agent `drain`), and the watchdog goes on ending lingers: they end
        // only at its last step.
        let last_step = Shutdown::new();
        for side in agent.iter().chain(&metrics) {
            listen::stopped_with(side, &last_step)?;
        }
        let conns = Registry::new();
        let engine = Engine::new(conns.clone())?;
        Ok(Server {
            listener,
            local_addr,
            agent,
            metrics,
            config,
            protocol,
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

    /// The address the server listens on, with the real port.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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

    /// Starts serving: the pool's workers, the acceptor and the helper
    /// threads. A thread that cannot be created is an error, and whatever
    /// had started by then is stopped and joined before it is returned.
    pub fn start(self) -> io::Result<Running> {
        let Server {
            listener,
            local_addr,
            agent,
            metrics,
            config,
            protocol,
            shutdown,
            last_step,
            conns,
            engine,
            tls,
        } = self;
        let gate = Gate::new(config.max_connections);
        {
            let gate = gate.clone();
            shutdown.on_trigger(move || gate.close());
        }
        let stats = Arc::new(Stats::default());
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
            pool: Some(pool),
            threads: Threads::default(),
        };
        info!(
            "listening on {local_addr} version={} protocol={} workers={} max_connections={} overload={}",
            env!("CARGO_PKG_VERSION"),
            config.protocol,
            config.workers,
            config.max_connections,
            config.overload
        );
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
                workers: config.workers,
                protocol: config.protocol,
                shutdown: shutdown.clone(),
                tls: tls.clone(),
            });
            let (shutdown, until) = (shutdown.clone(), last_step.clone());
            threads.spawn("linepool-metrics", move || {
                metrics::serve(&listener, &registry, &shutdown, &until)
            })?;
        }
        if let Some(every) = config.stats_interval {
            let (stats, engine, shutdown) = (stats.clone(), engine.clone(), shutdown.clone());
            threads.spawn("linepool-stats", move || {
                threads::report_stats(&stats, &engine, &shutdown, every)
            })?;
        }
        let acceptor = Acceptor {
            listener,
            overload: config.overload,
            proxy_protocol: config.proxy_protocol,
            protocol,
            limits: Limits::from_config(&config),
            shutdown: shutdown.clone(),
            gate,
            engine,
            stats,
            admin_from: Arc::new(config.admin_from.clone()),
            per_address: (config.max_per_ip > 0).then(|| PerAddress::new(config.max_per_ip)),
            tls,
            admin_certs: config.admin_cert.clone().map(Arc::new),
            next_id: 0,
        };
        threads.spawn(ACCEPTOR, move || {
            // Should the acceptor ever die, the server stops rather than
            // serve on without accepting.
            let _stop = StopOnPanic(acceptor.shutdown.clone());
            acceptor.run();
        })?;
        Ok(running)
    }

    /// Starts, serves until the shutdown signal fires, then stops cleanly
    /// and returns what the server did.
    pub fn run(self) -> io::Result<Summary> {
        Ok(self.start()?.wait())
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

/// Stops the server if the thread holding it panics.
struct StopOnPanic(Shutdown);

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            error!("the acceptor panicked, stopping");
            self.0.trigger();
        }
    }
}

/// A started server. It owns every thread it started: [`Running::stop`]
/// and [`Running::wait`] run the stop sequence and return the summary, and
/// dropping it does the same without the summary.
pub struct Running {
    local_addr: SocketAddr,
    shutdown: Shutdown,
    last_step: Shutdown,
    gate: Arc<Gate>,
    conns: Arc<Connections>,
    engine: Arc<Engine>,
    stats: Arc<Stats>,
    stop_grace: std::time::Duration,
    /// `None` once joined.
    pool: Option<ThreadPool>,
    threads: Threads,
}

impl Running {
    /// The address the server listens on, with the real port.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that stops this server from any thread.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Stops the server now and returns what it did.
    pub fn stop(mut self) -> Summary {
        self.shutdown.trigger();
        self.stop_sequence()
    }

    /// Serves until the shutdown signal fires (`quit_server`, a signal in
    /// the binary, a [`Shutdown`] handle), then stops and returns what the
    /// server did.
    pub fn wait(mut self) -> Summary {
        self.shutdown.wait();
        self.stop_sequence()
    }

    /// Steps 2 to 5 of the stop (step 1, the trigger, has happened).
    fn stop_sequence(&mut self) -> Summary {
        // 2. Nothing more is accepted.
        let mut panicked = u64::from(self.threads.join(ACCEPTOR));
        let open = self.conns.len();
        info!(
            "stopping, closing {}",
            logfmt::count(open as u64, "connection")
        );
        // 3. Every connection gets a turn, as if an event had come; each
        // answers the messages it has read, sends its replies and closes.
        // Its socket is left alone: shutting its reading side down would
        // make a read return 0 while the client still sends, and the close
        // that follows would reset the client and destroy its replies.
        self.engine.wake_all();
        // 4. The grace, then the stragglers are cut off.
        if !self.gate.wait_idle(Instant::now() + self.stop_grace) {
            let stuck = shut_down_all(&self.conns, Direction::Both);
            warn!(
                "{} still busy after the stop grace, cutting them off",
                logfmt::count(stuck as u64, "connection")
            );
            if !self.gate.wait_idle(Instant::now() + self.stop_grace) {
                let left = self.gate.in_use() as u64;
                warn!("{} did not close", logfmt::count(left, "connection"));
            }
        }
        // 5. Workers, pool and helpers end; the side ports last, so that
        // they answer health checks through the whole stop.
        self.engine.finish();
        if let Some(pool) = self.pool.take() {
            pool.join();
        }
        self.last_step.trigger();
        panicked += self.threads.join_all();
        let handlers = self.engine.panics();
        if handlers > 0 {
            let handlers = logfmt::count(handlers as u64, "connection handler");
            warn!("{handlers} panicked");
        }
        if panicked > 0 {
            warn!("{} panicked", logfmt::count(panicked, "server thread"));
        }
        let summary = self.stats.summary();
        info!("stopped {summary}");
        summary
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.pool.is_some() {
            self.shutdown.trigger();
            self.stop_sequence();
        }
    }
}

/// Shuts one or both directions of every live connection down; returns
/// how many there were. The sockets are copied out first, so no lock is
/// held during the system calls. Errors (a peer already gone) are ignored:
/// the point is only that every connection wakes in the poller.
fn shut_down_all(conns: &Connections, how: Direction) -> usize {
    let streams = conns.copy_out(|served| Some(served.conn.stream().clone()));
    for stream in &streams {
        let _ = stream.shutdown(how);
    }
    streams.len()
}
