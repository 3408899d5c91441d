//! linepool: a bounded worker-pool TCP line server.
//!
//! Each line a client sends is answered with `ACK: <line>`; `shutdown` closes
//! that client and `quit_server` stops the server. An acceptor thread pushes
//! accepted sockets into a fixed-size thread pool, whose workers run each
//! connection's protocol in an event-driven engine: a connection with
//! nothing to do waits in the poller and holds no worker, so idle or slow
//! clients cannot exhaust the pool. A registry of live connections lets a
//! stop close them all, and the pool is joined at exit.
//!
//! # Using it
//! [`Server::bind`] takes a [`Config`] and a protocol value (one of
//! [`protocol`]'s three, the chat room of the `linepool-chat` crate, or a
//! [`protocol::Protocol`] of one's own: see `examples/kv`) and does everything that can fail (the listeners, the
//! side ports) before any thread starts, or says which setting it could
//! not use ([`Error`]); [`Server::start`] starts the threads and returns a
//! [`Running`] server, whose [`Running::stop`] (or [`Running::wait`], until
//! a client or a [`Shutdown`] handle stops it) runs the stop sequence and
//! returns the [`Summary`]. [`start_server`] does all of that with the
//! defaults and the ACK protocol. [`ClientHandler::run`] serves one socket
//! accepted by hand with any protocol.
//!
//! ```no_run
//! let config = linepool::Config::new("0.0.0.0", 8000);
//! let server = linepool::Server::bind(config, linepool::protocol::ack())?;
//! let summary = server.run()?; // until a client sends `quit_server`
//! println!("served {} connections", summary.connections);
//! # Ok::<(), linepool::Error>(())
//! ```
//!
//! # Layout
//! Layers only point down: each module uses only those listed before it.
//!
//! - Leaves, which know nothing of connections:
//!   `sync` (the primitives the model checker swaps, see
//!   `scripts/loom.sh`), `sched` (one connection's scheduling state),
//!   `activity` (one connection's progress for the idle rule), [`framing`]
//!   (pure message framing with a size limit), `proxy` (the PROXY protocol
//!   header), [`access`] (who may stop the server, connections per
//!   address), `gate` (the connection limit, as permits), [`shutdown`] (the
//!   stop signal and its wake-ups), [`config`], [`values`] (how setting
//!   values are written, for flags and the console alike), `error` (what setting up a
//!   server can refuse, and which setting), [`logfmt`] (how values
//!   appear in logs), [`tls`] (certificates, their reload, one
//!   connection's TLS session, why a handshake failed), `stats` (counters,
//!   the stats line, the summary), `socket` (a TCP or Unix client socket,
//!   and its [`Peer`](protocol::Peer)).
//! - `conn`: a connection's socket and outbox, shared between threads.
//! - [`protocol`]: the seam and the protocols (`ack`, `framed`, `sum`);
//!   sessions reach connections through its own small port.
//! - `handler`: one connection's protocol driver, in non-blocking turns.
//! - `registry` (live entries by id, of any type) and `engine` (the poller,
//!   the ready queue, the workers' rendezvous and the pool's resizing).
//! - `watchdog` (the idle scan), `agent` (the HAProxy agent port), `metrics`
//!   (Prometheus and `/healthz`).
//! - [`server`]: binding, the acceptor thread, the admin console, the
//!   running server and its stop sequence.
//!
//! The library installs no logger and no signal handler; the `linepool`
//! binary does. The repository is a workspace: this library (`src/`), the
//! chat protocol and its Redis bus in `linepool-chat` (`chat/`, written
//! against the public [`protocol`] seam alone), the load generator and the
//! client in `linepool-tools` (`tools/`), and the binary in `linepool-cli`
//! (`cli/`); each one's dependencies stay its own.

#![warn(missing_docs)]
// One function needs `unsafe`: the acceptor's scheduling policy
// (`server::threads::run_as_batch`), a system call that neither std nor
// nix wraps. Everything else is safe code.
#![deny(unsafe_code)]

pub mod access;
mod activity;
mod agent;
pub mod config;
mod conn;
mod engine;
mod error;
pub mod framing;
mod gate;
mod handler;
pub mod logfmt;
mod metrics;
pub mod protocol;
mod proxy;
mod registry;
mod sched;
pub mod server;
pub mod shutdown;
mod socket;
mod stats;
mod sync;
pub mod tls;
pub mod values;
mod watchdog;

pub use config::{Config, Overload};
pub use error::{Error, Setting};
pub use handler::{ClientHandler, Limits};
pub use server::{Listener, Running, Server};
pub use shutdown::{Health, Shutdown};
pub use stats::Summary;

/// Binds `host:port` with the default settings, serves until a client sends
/// `quit_server`, then stops cleanly.
pub fn start_server(host: &str, port: u16) -> Result<(), Error> {
    Server::bind(Config::new(host, port), protocol::ack())?
        .run()
        .map(|_| ())
}
