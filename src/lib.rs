//! linepool: a bounded worker-pool TCP line server.
//!
//! Each line a client sends is answered with `ACK: <line>`; `shutdown` closes
//! that client and `quit_server` stops the server. An acceptor thread hands
//! accepted sockets to an event-driven engine run by a fixed-size thread
//! pool: a connection with nothing to do waits in the poller and holds no
//! worker, so idle or slow clients cannot exhaust the pool.
//!
//! # Layout
//! - [`config`]: the operator's settings and their defaults.
//! - [`access`]: who may stop the server, and connections per address.
//! - [`agent`]: the HAProxy agent port (`ready` / `drain`).
//! - [`server`]: the acceptor loop and the staged stop sequence.
//! - [`gate`]: the connection limit, as permits released on drop.
//! - [`engine`]: the poller and ready queue the pool's workers share.
//! - [`sched`]: one connection's scheduling state (parked, scheduled,
//!   running, notified).
//! - [`registry`]: live connections, so events, the watchdog and a stop
//!   can find every one.
//! - [`shutdown`]: the server-wide stop signal and its wake-ups.
//! - [`handler`]: one connection's protocol driver, in non-blocking turns.
//! - [`conn`]: a connection's socket and outbox, shared between threads.
//! - [`protocol`]: the protocol seam and the protocols: `ack` (the default),
//!   `chat`, `framed` (length-prefixed echo) and `sum` (number exchange).
//! - [`proxy`]: the PROXY protocol header (`--proxy-protocol`).
//! - [`framing`]: pure message framing (lines, length-prefixed) with a
//!   size limit.
//! - [`stats`]: counters, the periodic stats line and the stop summary.
//! - `metrics`: the Prometheus endpoint and `/healthz` (`--metrics`).
//! - [`logfmt`]: how values appear in log lines (quoting, escaping,
//!   plurals).
//! - [`watchdog`]: the idle rule, as one coarse scan.
//!
//! The library installs no logger and no signal handler; the `linepool`
//! binary does.

#![warn(missing_docs)]

pub mod access;
pub mod agent;
pub mod config;
pub mod conn;
pub(crate) mod engine;
pub mod framing;
pub mod gate;
pub mod handler;
pub mod logfmt;
pub(crate) mod metrics;
pub mod protocol;
pub mod proxy;
pub mod registry;
pub mod sched;
pub mod server;
pub mod shutdown;
pub mod stats;
pub mod watchdog;

use std::io;

pub use config::{Config, Overload};
pub use handler::{ClientHandler, Limits};
pub use server::Server;
pub use shutdown::{Health, Shutdown};
pub use stats::Summary;

/// Binds `host:port` with the default settings, serves until a client sends
/// `quit_server`, then stops cleanly.
pub fn start_server(host: &str, port: u16) -> io::Result<()> {
    Server::bind(Config::new(host, port))?.run().map(|_| ())
}
