//! Starting a bound server, in steps that read top to bottom: what every
//! connection shares, the pool, the startup line, the helper threads and
//! the protocol's, and last the acceptor. From the moment the pool runs,
//! a [`Running`] owns everything started, so a step that fails stops and
//! joins what the steps before it started.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use log::info;
use threadpool::ThreadPool;

use super::acceptor::{Acceptor, Control, Listening};
use super::admission::Admission;
use super::console::{Console, ConsoleSocket};
use super::listen::Listener;
use super::live::Live;
use super::running::Running;
use super::threads::{self, Threads};
use super::{Core, Server};
use crate::access::{self, PerAddress};
use crate::agent;
use crate::config::Config;
use crate::error::Error;
use crate::gate::Gate;
use crate::handler::{Limits, Policy};
use crate::metrics;
use crate::protocol::Protocol;
use crate::stats::{ListenerCount, Stats, Summary};
use crate::tls;
use crate::watchdog;

/// Stack size of each worker thread. A worker's deepest path is a turn of
/// protocol code plus logging, far below this.
const WORKER_STACK: usize = 256 * 1024;

impl Server {
    /// Starts serving: the pool's workers, the helper threads and the
    /// protocol's, then the acceptor thread. A thread that cannot be
    /// created is an error, and whatever had started by then is stopped
    /// and joined before it is returned.
    pub fn start(self) -> Result<Running, Error> {
        let shared = Shared::new(&self);
        let pool = start_pool(self.core.config.workers)?;
        self.core.engine.start(&pool, self.core.config.workers);
        log_listening(
            &self.listening,
            &self.core.config,
            self.core.protocol.name(),
        );
        let about = About::new(&self.listening, &*self.core.protocol);
        let control = self.listening.control();
        let live = Live::new(shared.policy(&self), &self.core.config);
        let admission = Admission {
            proxy_protocol: self.core.config.proxy_protocol,
            live: live.clone(),
            shutdown: self.core.shutdown.clone(),
            gate: shared.gate.clone(),
            engine: self.core.engine.clone(),
            tls: self.core.tls.clone(),
            counts: shared.counts.clone(),
        };
        let acceptor = Acceptor::new(self.listening, admission);
        // From here on, dropping `running` stops and joins what started.
        let mut running = Running {
            local_addr: self.local_addr,
            shutdown: self.core.shutdown.clone(),
            last_step: self.core.last_step.clone(),
            gate: shared.gate.clone(),
            conns: self.core.conns.clone(),
            engine: self.core.engine.clone(),
            stats: shared.stats.clone(),
            stop_grace: self.core.config.stop_grace,
            acceptor: Threads::default(),
            protocol: self.core.protocol.clone(),
            pool: Some(pool),
            threads: Threads::default(),
        };
        let helpers = Helpers {
            shared,
            live,
            core: self.core,
        };
        let threads = &mut running.threads;
        helpers.watchdog(threads)?;
        if let Some(listener) = self.agent {
            helpers.agent(threads, listener)?;
        }
        if let Some(listener) = self.metrics {
            helpers.metrics(threads, listener, control.clone())?;
        }
        if let Some(socket) = self.console {
            helpers.console(threads, socket, control, about)?;
        }
        helpers.stats_line(threads)?;
        helpers.protocol_threads(threads)?;
        // Last, once everything it hands connections to runs. Clients
        // already in a backlog make their listener ready at once.
        running
            .acceptor
            .spawn("linepool-acceptor", move || acceptor.run())?;
        Ok(running)
    }

    /// Starts, serves until the shutdown signal fires, then stops cleanly
    /// and returns what the server did.
    pub fn run(self) -> Result<Summary, Error> {
        Ok(self.start()?.wait())
    }
}

/// What every connection and helper of a started server shares.
struct Shared {
    /// The connection limit; a stop closes it, which wakes the acceptor if
    /// it waits for a slot.
    gate: Arc<Gate>,
    stats: Arc<Stats>,
    /// Connections accepted, per listener.
    counts: Vec<Arc<ListenerCount>>,
    /// Who may stop the server from the Unix socket, and use the console.
    admin_uids: Arc<[u32]>,
}

impl Shared {
    fn new(server: &Server) -> Shared {
        let gate = Gate::new(server.core.config.max_connections);
        {
            let gate = gate.clone();
            server.core.shutdown.on_trigger(move || gate.close());
        }
        let counts = server
            .listening
            .listeners()
            .iter()
            .map(|l| ListenerCount::new(l.shared_name()))
            .collect();
        let admin_uids = match &server.core.config.admin_uids {
            Some(uids) => uids.as_slice().into(),
            None => access::default_admin_uids().into(),
        };
        Shared {
            gate,
            stats: Arc::new(Stats::default()),
            counts,
            admin_uids,
        }
    }

    /// What every connection shares, built once: each driver gets a
    /// reference, until a live change swaps it for later connections.
    fn policy(&self, server: &Server) -> Arc<Policy> {
        let config = &server.core.config;
        Arc::new(Policy {
            protocol: server.core.protocol.clone(),
            limits: Limits::from_config(config),
            shutdown: server.core.shutdown.clone(),
            stats: self.stats.clone(),
            admin_from: Arc::new(config.admin_from.clone()),
            admin_uids: self.admin_uids.clone(),
            per_address: (config.max_per_ip > 0).then(|| PerAddress::new(config.max_per_ip)),
            admin_certs: config.admin_cert.clone(),
        })
    }
}

/// What the helper threads are started with.
struct Helpers {
    shared: Shared,
    live: Arc<Live>,
    core: Core,
}

impl Helpers {
    /// The idle scan, which also ends lingering closes and handshakes that
    /// take too long.
    fn watchdog(&self, threads: &mut Threads) -> io::Result<()> {
        let (conns, stats, until) = (
            self.core.conns.clone(),
            self.shared.stats.clone(),
            self.core.last_step.clone(),
        );
        let live = self.live.clone();
        let handshake = self
            .core
            .config
            .tls
            .as_ref()
            .map_or(tls::DEFAULT_HANDSHAKE_TIMEOUT, |t| t.handshake_timeout);
        threads.spawn("linepool-watchdog", move || {
            watchdog::run(&conns, &stats, &until, || live.idle_timeout(), handshake)
        })
    }

    /// The HAProxy agent port (`--agent`).
    fn agent(&self, threads: &mut Threads, listener: std::net::TcpListener) -> io::Result<()> {
        info!("agent listening on {}", listener.local_addr()?);
        let (shutdown, until) = (self.core.shutdown.clone(), self.core.last_step.clone());
        threads.spawn("linepool-agent", move || {
            agent::serve(&listener, &shutdown, &until)
        })
    }

    /// `/metrics` and `/healthz` (`--metrics`), the protocol's own families
    /// after the server's.
    fn metrics(
        &self,
        threads: &mut Threads,
        listener: std::net::TcpListener,
        control: Arc<Control>,
    ) -> io::Result<()> {
        info!(
            "metrics on http://{}/metrics and /healthz",
            listener.local_addr()?
        );
        let sources = metrics::Sources {
            stats: self.shared.stats.clone(),
            engine: self.core.engine.clone(),
            gate: self.shared.gate.clone(),
            protocol: self.core.protocol.name().to_string(),
            shutdown: self.core.shutdown.clone(),
            listeners: self.shared.counts.clone(),
            tls: self.core.tls.clone(),
            accepting: Box::new(move || !control.is_paused()),
        };
        let registry = metrics::registry(sources, self.core.protocol.metrics());
        let (shutdown, until) = (self.core.shutdown.clone(), self.core.last_step.clone());
        threads.spawn("linepool-metrics", move || {
            metrics::serve(&listener, &registry, &shutdown, &until)
        })
    }

    /// The admin console (`--admin-socket`).
    fn console(
        &self,
        threads: &mut Threads,
        socket: ConsoleSocket,
        acceptor: Arc<Control>,
        about: About,
    ) -> io::Result<()> {
        info!("admin console on {}", socket.addr());
        let console = Console {
            shutdown: self.core.shutdown.clone(),
            stats: self.shared.stats.clone(),
            conns: self.core.conns.clone(),
            engine: self.core.engine.clone(),
            protocol: self.core.protocol.clone(),
            acceptor,
            gate: self.shared.gate.clone(),
            tls: self.core.tls.clone(),
            admin_uids: self.shared.admin_uids.clone(),
            about: about.0,
            config: self.core.config.clone(),
            live: self.live.clone(),
            started: Instant::now(),
        };
        let until = self.core.last_step.clone();
        threads.spawn("linepool-console", move || console.run(socket, &until))
    }

    /// The stats line (`--stats-interval`), which the console may turn on
    /// at any time.
    fn stats_line(&self, threads: &mut Threads) -> io::Result<()> {
        let live = self.live.clone();
        let (stats, engine, shutdown) = (
            self.shared.stats.clone(),
            self.core.engine.clone(),
            self.core.shutdown.clone(),
        );
        let protocol = self.core.protocol.clone();
        threads.spawn("linepool-stats", move || {
            let every = || live.stats_interval();
            threads::report_stats(&stats, &engine, &*protocol, &shutdown, every)
        })
    }

    /// The protocol's own threads, which end at the last step, after every
    /// session has ended.
    fn protocol_threads(&self, threads: &mut Threads) -> io::Result<()> {
        for task in self.core.protocol.threads(&self.core.last_step) {
            let (name, run) = task.into_parts();
            threads.spawn(name, run)?;
        }
        Ok(())
    }
}

/// What the console's `show info` says of the server besides its figures.
struct About(Vec<(&'static str, String)>);

impl About {
    fn new(listening: &Listening, protocol: &dyn Protocol) -> About {
        let names: Vec<&str> = listening.listeners().iter().map(Listener::name).collect();
        About(vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("protocol", protocol.name().to_string()),
            ("listeners", names.join(",")),
        ])
    }
}

/// Logs what the server listens on, and how it serves.
fn log_listening(listening: &Listening, config: &Config, protocol: &str) {
    let shown: Vec<String> = listening.listeners().iter().map(shown).collect();
    info!(
        "listening on {} version={} protocol={protocol} workers={} max_connections={} overload={}{}",
        shown[0],
        env!("CARGO_PKG_VERSION"),
        config.workers,
        config.max_connections,
        config.overload,
        tls::ListeningFields(config.tls.as_ref())
    );
    for also in &shown[1..] {
        info!("also listening on {also}");
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
