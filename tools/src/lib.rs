//! linepool-tools: the client-facing tools behind `linepool load` and
//! `linepool client`, a library of their own so that the server library
//! carries none of their dependencies (histograms, reports, the system's
//! TLS roots). They speak to a server over sockets, plain or TLS, and
//! share only the pure framing and the log formats with it.
//!
//! - [`load`]: the load generator, its report and its charts.
//! - [`client`]: standard input and output to one server.
//! - [`tls`]: the client side of TLS both use.
//!
//! The `linepool` command (package `linepool-cli`) gives them their flags.

#![warn(missing_docs)]

pub mod client;
pub mod load;
pub mod tls;
