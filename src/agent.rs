//! The HAProxy agent port (`--agent`): each connection gets one line,
//! `ready` while the server serves or `drain` while it drains or stops
//! (HAProxy's `agent-check` protocol), and is closed. It runs on its own
//! small thread until the server stops.

use std::io::Write;
use std::net::TcpListener;
use std::time::Duration;

use log::warn;

use crate::logfmt;
use crate::shutdown::{Health, Shutdown};

/// How long the agent waits for a checker that does not take its line.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// The line for a health state.
pub fn word(health: Health) -> &'static [u8] {
    match health {
        Health::Serving => b"ready\n",
        Health::Draining | Health::Stopping => b"drain\n",
    }
}

/// Answers agent checks on `listener` until the server stops (the stop
/// shuts the listener down, which ends the wait in `accept`).
pub fn serve(listener: &TcpListener, shutdown: &Shutdown) {
    for stream in listener.incoming() {
        if shutdown.is_triggered() {
            return;
        }
        match stream {
            Ok(mut stream) => {
                let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
                let _ = stream.write_all(word(shutdown.health()));
            }
            Err(e) => {
                warn!("agent accept failed error={}", logfmt::error(&e));
                // Out of descriptors, most likely: give them a moment.
                if shutdown.wait_timeout(Duration::from_millis(100)) {
                    return;
                }
            }
        }
    }
}
