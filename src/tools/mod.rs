//! The client-facing tools behind `linepool load` and `linepool client`:
//! they speak to a server over sockets and share only the pure framing with
//! it.

pub mod client;
pub mod load;
