//! The acceptor and the stop sequence.
//!
//! [`Server::run`] is the acceptor thread: it takes a slot from the gate,
//! accepts a socket, registers it and hands it to the engine, whose poller
//! brings it to the pool's workers whenever it has something to do. When
//! the shutdown signal fires it stops accepting, wakes every connection so
//! that each answers what it has read and closes, ends the workers' loops,
//! joins the pool and returns a summary.

use std::cell::Cell;
use std::io::{self, Write};
use std::net::{Shutdown as Direction, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use parking_lot::Mutex;
use socket2::{Domain, Socket, Type};

use crate::access::{AddrList, AddressSlot, PerAddress, TOO_MANY_FROM_ADDRESS};
use crate::agent;
use crate::config::{Config, Overload};
use crate::conn::{Conn, LINGER_BYTES, drain_pending};
use crate::engine::{Engine, Served};
use crate::gate::{Gate, Permit};
use crate::handler::{ClientHandler, Limits};
use crate::logfmt;
use crate::metrics;
use crate::protocol::{self, Protocol};
use crate::registry::Registry;
use crate::shutdown::Shutdown;
use crate::stats::{Stats, Summary};
use crate::watchdog;

/// Stack size of each worker thread. A worker's deepest path is a turn of
/// protocol code plus logging, far below this.
const WORKER_STACK: usize = 256 * 1024;

/// The first and the longest pause after an accept error such as running
/// out of file descriptors.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A bound, not yet running line server.
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
        let listener =
            listen(addr, &config).map_err(|e| context(e, &format!("cannot listen on {addr}")))?;
        Server::from_listener(listener, config)
    }

    /// A server on a socket that is already listening, such as one systemd
    /// passes on socket activation (`config.host`, `port` and `backlog` do
    /// not apply). Clients that connected before the server started wait
    /// in its backlog and are served: a restart refuses no connection.
    pub fn from_listener(listener: TcpListener, config: Config) -> io::Result<Server> {
        let protocol = protocol::build(&config.protocol, &config)?;
        // The acceptor blocks in accept(); a passed socket may not.
        listener.set_nonblocking(false)?;
        if ACCEPTED_INHERIT_OPTIONS {
            // Accepted sockets inherit it, as from a listener of ours.
            socket2::SockRef::from(&listener).set_tcp_nodelay(true)?;
        }
        let local_addr = listener.local_addr()?;
        let agent = bind_side(config.agent, "cannot listen for agent checks on")?;
        let metrics = bind_side(config.metrics, "cannot serve metrics on")?;
        Ok(Server {
            listener,
            local_addr,
            agent,
            metrics,
            config,
            protocol,
            shutdown: Shutdown::new(),
        })
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

    /// Serves until the shutdown signal fires, then stops cleanly and returns
    /// what the server did. Blocks the calling thread, which becomes the
    /// acceptor.
    pub fn run(self) -> io::Result<Summary> {
        let Server {
            listener,
            local_addr,
            agent,
            metrics,
            config,
            protocol,
            shutdown,
        } = self;
        let gate = Gate::new(config.max_connections);
        let registry = Registry::new();
        let stats = Arc::new(Stats::default());
        let engine = Engine::new(registry.clone())?;
        let pool = threadpool::Builder::new()
            .num_threads(config.workers)
            .thread_name("linepool-worker".to_string())
            .thread_stack_size(WORKER_STACK)
            .build();
        engine.start(&pool, config.workers);

        // A stop must wake the acceptor wherever it blocks: in the gate
        // (block mode, all slots taken) or in accept().
        let waker = Socket::from(listener.try_clone()?);
        shutdown.on_trigger(move || wake_acceptor(&waker, local_addr));
        let gate_waker = gate.clone();
        shutdown.on_trigger(move || gate_waker.close());

        info!(
            "listening on {local_addr} version={} protocol={} workers={} max_connections={} overload={}",
            env!("CARGO_PKG_VERSION"),
            config.protocol,
            config.workers,
            config.max_connections,
            config.overload
        );
        // One thread enforces the idle rule and ends lingering closes.
        let watchdog = {
            let (registry, stats, shutdown) = (registry.clone(), stats.clone(), shutdown.clone());
            let idle = config.idle_timeout;
            thread::spawn(move || watchdog::run(&registry, &stats, &shutdown, idle))
        };
        let agent = match agent {
            Some(listener) => {
                let addr = stopped_with(&listener, &shutdown)?;
                info!("agent listening on {addr}");
                let shutdown = shutdown.clone();
                Some(thread::spawn(move || agent::serve(&listener, &shutdown)))
            }
            None => None,
        };
        let metrics = match metrics {
            Some(listener) => {
                let addr = stopped_with(&listener, &shutdown)?;
                info!("metrics on http://{addr}/metrics and /healthz");
                let registry = metrics::registry(metrics::Sources {
                    stats: stats.clone(),
                    engine: engine.clone(),
                    workers: config.workers,
                    protocol: config.protocol.clone(),
                    shutdown: shutdown.clone(),
                });
                let shutdown = shutdown.clone();
                Some(thread::spawn(move || {
                    metrics::serve(&listener, &registry, &shutdown)
                }))
            }
            None => None,
        };
        let reporter = config.stats_interval.map(|every| {
            let (stats, engine, shutdown) = (stats.clone(), engine.clone(), shutdown.clone());
            thread::spawn(move || report_stats(&stats, &engine, &shutdown, every))
        });
        let acceptor = Acceptor {
            listener: &listener,
            config: &config,
            protocol: &protocol,
            limits: Limits::from_config(&config),
            shutdown: &shutdown,
            gate: &gate,
            engine: &engine,
            stats: &stats,
            next_id: Cell::new(0),
            admin_from: Arc::new(config.admin_from.clone()),
            per_address: (config.max_per_ip > 0).then(|| PerAddress::new(config.max_per_ip)),
        };
        acceptor.accept_loop();
        drop(listener);

        let open = registry.len();
        info!(
            "stopping, closing {}",
            logfmt::count(open as u64, "connection")
        );
        // End of input wakes every connection in the poller; each answers
        // the messages it has read, sends its replies and closes.
        registry.shutdown_all(Direction::Read);
        if !gate.wait_idle(Instant::now() + config.stop_grace) {
            let stuck = registry.shutdown_all(Direction::Both);
            warn!(
                "{} still busy after the stop grace, cutting them off",
                logfmt::count(stuck as u64, "connection")
            );
            if !gate.wait_idle(Instant::now() + config.stop_grace) {
                let left = gate.in_use() as u64;
                warn!("{} did not close", logfmt::count(left, "connection"));
            }
        }
        engine.finish();
        pool.join();
        for helper in [reporter, agent, metrics, Some(watchdog)]
            .into_iter()
            .flatten()
        {
            let _ = helper.join();
        }
        let summary = stats.summary();
        let panics = engine.panics();
        if panics > 0 {
            let panics = logfmt::count(panics as u64, "connection handler");
            warn!("{panics} panicked");
        }
        info!("stopped {summary}");
        Ok(summary)
    }
}

/// Logs one stats line every `every` until the server stops.
fn report_stats(stats: &Stats, engine: &Engine, shutdown: &Shutdown, every: Duration) {
    let mut last_lines = stats.summary().lines;
    let mut last_time = Instant::now();
    while !shutdown.wait_timeout(every) {
        let now = Instant::now();
        let s = stats.interval();
        let per_sec =
            (s.summary.lines - last_lines) as f64 / now.duration_since(last_time).as_secs_f64();
        info!(
            "stats lines={} lines_per_sec={per_sec:.0} service_mean_us={:.1} service_p99_us={:.1} open={} ready={} rejected={} connections={}",
            s.summary.lines,
            s.service_mean.as_secs_f64() * 1e6,
            s.service_p99.as_secs_f64() * 1e6,
            s.open,
            engine.ready(),
            s.summary.rejected,
            s.summary.connections,
        );
        last_lines = s.summary.lines;
        last_time = now;
    }
}

/// The acceptor's view of the server.
struct Acceptor<'a> {
    listener: &'a TcpListener,
    config: &'a Config,
    protocol: &'a Arc<dyn Protocol>,
    limits: Limits,
    shutdown: &'a Shutdown,
    gate: &'a Arc<Gate>,
    engine: &'a Arc<Engine>,
    stats: &'a Arc<Stats>,
    next_id: Cell<u64>,
    admin_from: Arc<AddrList>,
    /// Connections per client address, with `--max-per-ip`.
    per_address: Option<Arc<PerAddress>>,
}

/// Why a connection is turned away at the door.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    /// Every slot is taken (`--overload reject`).
    Busy,
    /// Its address has `--max-per-ip` connections open.
    PerAddress,
}

impl Acceptor<'_> {
    fn accept_loop(&self) {
        let mut backoff = BACKOFF_MIN;
        while !self.shutdown.is_triggered() {
            // In block mode the slot is taken before accept(), so a full
            // server leaves new clients in the kernel's listen backlog.
            let reserved = match self.config.overload {
                Overload::Block => match self.gate.acquire() {
                    Some(permit) => Some(permit),
                    None => break,
                },
                Overload::Reject => None,
            };
            let (stream, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(_) if self.shutdown.is_triggered() => break,
                Err(e) if is_transient(&e) => {
                    debug!(
                        "accept skipped a failed connection error={}",
                        logfmt::error(&e)
                    );
                    continue;
                }
                Err(e) => {
                    warn!(
                        "accept failed, backing off error={} retry_in_ms={}",
                        logfmt::error(&e),
                        backoff.as_millis()
                    );
                    self.shutdown.wait_timeout(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            backoff = BACKOFF_MIN;
            if self.shutdown.is_triggered() {
                // Accepted just as the stop began: close it like the rest.
                break;
            }
            match reserved.or_else(|| self.gate.try_acquire()) {
                // Behind a proxy the address to count is known only once the
                // header is read: the handler counts it then.
                Some(permit) if self.config.proxy_protocol => {
                    self.dispatch(stream, peer, permit, None)
                }
                Some(permit) => match &self.per_address {
                    None => self.dispatch(stream, peer, permit, None),
                    Some(table) => match table.try_take(peer.ip()) {
                        Some(slot) => self.dispatch(stream, peer, permit, Some(slot)),
                        None => self.reject(stream, peer, Refusal::PerAddress),
                    },
                },
                None => self.reject(stream, peer, Refusal::Busy),
            }
        }
    }

    /// Hands the connection to the engine, which serves it from now on.
    fn dispatch(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        permit: Permit,
        slot: Option<AddressSlot>,
    ) {
        if let Err(e) = stream.set_nonblocking(true) {
            warn!(
                "cannot serve connection peer={peer} error={}",
                logfmt::error(&e)
            );
            return;
        }
        // Replies are written in batches; Nagle's algorithm would only delay
        // them. Failing to set it costs latency, not correctness.
        if !ACCEPTED_INHERIT_OPTIONS {
            let _ = stream.set_nodelay(true);
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        // Released when the connection is dropped, however it ends.
        let guards = Box::new((permit, slot, self.stats.connection()));
        let conn = Arc::new(Conn::new(
            id,
            Arc::new(stream),
            peer,
            self.stats.clone(),
            guards,
        ));
        let mut handler = ClientHandler::serving(conn.clone(), self.shutdown.clone())
            .with_limits(self.limits)
            .with_protocol(self.protocol.clone())
            .with_stats(self.stats.clone())
            .with_admin_from(self.admin_from.clone());
        if self.config.proxy_protocol {
            handler = handler.with_proxy_protocol(self.per_address.clone());
        }
        let served = Arc::new(Served {
            conn,
            handler: Mutex::new(handler),
        });
        if let Err(e) = self.engine.add(served) {
            warn!(
                "cannot watch connection peer={peer} error={}",
                logfmt::error(&e)
            );
        }
    }

    /// Turns a connection away: one line, then close. Runs on the acceptor,
    /// so nothing here may block.
    fn reject(&self, stream: TcpStream, peer: SocketAddr, why: Refusal) {
        let line: &[u8] = match why {
            Refusal::Busy => {
                self.stats.rejected();
                debug!("server busy, rejecting peer={peer}");
                b"ERR server busy\n"
            }
            Refusal::PerAddress => {
                self.stats.rejected_per_address();
                debug!("too many connections from one address, rejecting peer={peer}");
                TOO_MANY_FROM_ADDRESS
            }
        };
        if stream.set_nonblocking(true).is_ok() {
            // A fresh socket's send buffer is empty: the line goes out whole.
            let _ = (&stream).write_all(line);
            let _ = stream.shutdown(Direction::Write);
            // Read what the client already sent so that closing does not
            // reset the connection and destroy the line in flight; bounded,
            // so a client that keeps sending cannot hold the acceptor.
            drain_pending(&stream, LINGER_BYTES);
        }
    }
}

/// Binds a side port (the agent, the metrics), if one is configured.
fn bind_side(addr: Option<SocketAddr>, what: &str) -> io::Result<Option<TcpListener>> {
    addr.map(|addr| TcpListener::bind(addr).map_err(|e| context(e, &format!("{what} {addr}"))))
        .transpose()
}

/// Makes the stop end a side port's wait in `accept()`, as it does the
/// acceptor's; returns the port's address.
fn stopped_with(listener: &TcpListener, shutdown: &Shutdown) -> io::Result<SocketAddr> {
    let waker = Socket::from(listener.try_clone()?);
    shutdown.on_trigger(move || {
        let _ = waker.shutdown(Direction::Read);
    });
    listener.local_addr()
}

/// Accept errors that concern only the one connection being accepted.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || matches!(
        e.raw_os_error(),
        Some(
            libc::EPROTO
                | libc::ENETDOWN
                | libc::ENETUNREACH
                | libc::EHOSTUNREACH
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::ENOPROTOOPT
                | libc::EOPNOTSUPP
        )
    )
}

/// Whether accepted sockets inherit `TCP_NODELAY` from the listener, as
/// Linux's do: setting it once on the listener saves a system call per
/// connection.
const ACCEPTED_INHERIT_OPTIONS: bool = cfg!(target_os = "linux");

/// Opens a listening socket with our backlog; std's `TcpListener::bind`
/// always asks for 128.
fn listen(addr: SocketAddr, config: &Config) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    // Lets a restarted server bind while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    if ACCEPTED_INHERIT_OPTIONS {
        socket.set_tcp_nodelay(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(config.backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// Unblocks an acceptor waiting in `accept()`. On Linux shutting the
/// listening socket down makes `accept()` fail at once; elsewhere a
/// connection to ourselves does the same.
fn wake_acceptor(listener: &Socket, addr: SocketAddr) {
    if listener.shutdown(Direction::Read).is_ok() {
        return;
    }
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let _ = TcpStream::connect_timeout(&target, Duration::from_millis(100));
}

fn context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}
