//! Integration tests: the real server on an ephemeral port, checked by plain
//! socket clients that compare the exact bytes on the wire.

mod access;
mod cli;
mod client;
mod drain;
mod engine;
mod environment;
mod lines;
mod load;
mod metrics;
mod overload;
mod pki;
mod protocols;
mod proxy;
mod stop;
mod support;
mod systemd;
mod timeouts;
mod tls;
mod tls_certs;
