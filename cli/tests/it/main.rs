//! Integration tests: the real server on an ephemeral port, checked by plain
//! socket clients that compare the exact bytes on the wire.

mod acceptor;
mod access;
mod chat_bus;
mod chat_contract;
mod check;
mod cli;
mod client;
mod console;
mod console_levels;
mod console_settings;
mod drain;
mod engine;
mod environment;
mod lines;
mod listeners;
mod load;
mod load_arrivals;
mod load_files;
mod metrics;
mod monitoring;
mod open_files;
mod overload;
mod pki;
mod protocols;
mod proxy;
mod redis_server;
mod stop;
mod support;
mod systemd;
mod timeouts;
mod tls;
mod tls_certs;
mod workers;
mod wrong_transport;
