//! A key-value store served by linepool's pool: an example of a protocol
//! of one's own (`store.rs`) plugged into the server through the public
//! seam alone.
//!
//! ```sh
//! cargo run --example kv -- 127.0.0.1:7000
//! printf 'set a 1\nget a\n' | nc 127.0.0.1 7000   # STORED, VALUE 1
//! ```
//!
//! It serves with the library's defaults (a worker per CPU, 10,000
//! connections, the idle timeout) until a client on this machine sends
//! `quit_server`.

mod store;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use linepool::{Config, Server};

fn main() -> ExitCode {
    let given = std::env::args().nth(1);
    let addr: SocketAddr = match given.as_deref().unwrap_or("127.0.0.1:7000").parse() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("kv: usage: kv [ADDRESS:PORT]: {e}");
            return ExitCode::from(2);
        }
    };
    let mut config = Config::default();
    config.listen = vec![addr];
    let server = match Server::bind(config, Arc::new(store::Kv::default())) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("kv: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("kv: serving on {}", server.local_addr());
    match server.run() {
        Ok(summary) => {
            eprintln!("kv: stopped, {} connections served", summary.connections);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kv: {e}");
            ExitCode::FAILURE
        }
    }
}
