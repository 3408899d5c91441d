//! A started server: what it owns, and the stop sequence's steps 2 to 5
//! (the numbering of `server`'s own documentation).

use std::net::{Shutdown as Direction, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use log::{info, warn};
use threadpool::ThreadPool;

use super::threads::{Threads, figures};
use crate::engine::{Connections, Engine};
use crate::gate::Gate;
use crate::logfmt;
use crate::protocol::Protocol;
use crate::shutdown::Shutdown;
use crate::stats::{Stats, Summary};

/// A started server. It owns every thread it started: [`Running::stop`]
/// and [`Running::wait`] run the stop sequence and return the summary, and
/// dropping it does the same without the summary.
pub struct Running {
    pub(super) local_addr: SocketAddr,
    pub(super) shutdown: Shutdown,
    pub(super) last_step: Shutdown,
    pub(super) gate: Arc<Gate>,
    pub(super) conns: Arc<Connections>,
    pub(super) engine: Arc<Engine>,
    pub(super) stats: Arc<Stats>,
    pub(super) stop_grace: std::time::Duration,
    /// The acceptor thread, joined first at the stop.
    pub(super) acceptor: Threads,
    /// For its figures in the summary line.
    pub(super) protocol: Arc<dyn Protocol>,
    /// `None` once joined.
    pub(super) pool: Option<ThreadPool>,
    pub(super) threads: Threads,
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
        // 2. The acceptor, woken by the trigger, has accepted nothing since;
        // once it is joined its listeners are closed, and clients still in
        // the backlogs are refused.
        let mut panicked = self.acceptor.join_all();
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
        // 4. The grace, then the registry's sockets are shut down: the
        // stragglers are cut off.
        if !self.gate.wait_idle(Instant::now() + self.stop_grace) {
            let stuck = shut_down_all(&self.conns, Direction::Both);
            warn!(
                "{} still busy after the stop grace, cutting {} off",
                logfmt::count(stuck as u64, "connection"),
                if stuck == 1 { "it" } else { "them" }
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
        info!("stopped {summary}{}", figures(&*self.protocol));
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
