//! linepool: a bounded worker-pool TCP line server.
//!
//! Each line a client sends is answered with `ACK: <line>`; `shutdown` closes
//! that client and `quit_server` stops the server. An acceptor thread hands
//! accepted sockets to a fixed-size thread pool, never holding more
//! connections than the configured workers plus queue.
//!
//! # Layout
//! - [`config`]: the operator's settings and their defaults.
//! - [`server`]: the acceptor loop and the staged stop sequence.
//! - [`gate`]: the connection limit, as permits released on drop.
//! - [`registry`]: live sockets, so a stop can shut every one down.
//! - [`shutdown`]: the server-wide stop signal and its wake-ups.
//! - [`handler`]: one connection, running a protocol's session.
//! - [`protocol`]: the protocol seam and the protocols: `ack` (the default),
//!   `chat`, `framed` (length-prefixed echo) and `sum` (number exchange).
//! - [`connection`]: socket reads with the idle rule, batched writes, a
//!   close that keeps replies.
//! - [`framing`]: pure message framing (lines, length-prefixed) with a
//!   size limit.
//! - [`stats`]: counters, the periodic stats line and the stop summary.
//! - [`watchdog`]: the thread that closes idle connections.
//! - [`load`]: the load generator behind `linepool load`.
//! - [`client`]: the interactive client behind `linepool client`.
//!
//! The library installs no logger and no signal handler; the `linepool`
//! binary does.

#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod connection;
pub mod framing;
pub mod gate;
pub mod handler;
pub mod load;
pub mod protocol;
pub mod registry;
pub mod server;
pub mod shutdown;
pub mod stats;
pub mod watchdog;

use std::io;

pub use config::{Config, Overload};
pub use handler::{ClientHandler, Limits};
pub use server::Server;
pub use shutdown::Shutdown;
pub use stats::Summary;

/// Binds `host:port` with the default settings, serves until a client sends
/// `quit_server`, then stops cleanly.
pub fn start_server(host: &str, port: u16) -> io::Result<()> {
    Server::bind(Config::new(host, port))?.run().map(|_| ())
}
