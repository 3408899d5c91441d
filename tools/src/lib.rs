//! The client-facing tools behind `linepool load` and `linepool client`:
//! they speak to a server over sockets, plain or TLS (`tls`), and share
//! only the pure framing with it.

#![warn(missing_docs)]

pub mod client;
pub mod load;
pub mod tls;
