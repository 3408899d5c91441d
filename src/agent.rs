//! The HAProxy agent port (`--agent`): each connection gets one line,
//! `ready` while the server serves or `drain` while it drains or stops
//! (HAProxy's `agent-check` protocol), and is closed. It runs on its own
//! small thread, and answers through the whole stop, when a balancer most
//! needs to hear `drain`, until the stop's last step ends it.

use std::io::Write;
use std::net::TcpListener;
use std::time::Duration;

use log::warn;

use crate::logfmt;
use crate::shutdown::{Health, Shutdown};

/// How long the agent waits for a checker that does not take its line.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// The line for a health state.
pub(crate) fn word(health: Health) -> &'static [u8] {
    match health {
        Health::Serving => b"ready\n",
        Health::Draining | Health::Stopping => b"drain\n",
    }
}

/// Answers agent checks on `listener` with the health `shutdown` reports
/// until `until` fires (which shuts the listener down, ending the wait in
/// `accept`).
pub(crate) fn serve(listener: &TcpListener, shutdown: &Shutdown, until: &Shutdown) {
    for stream in listener.incoming() {
        if until.is_triggered() {
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
                if until.wait_timeout(Duration::from_millis(100)) {
                    return;
                }
            }
        }
    }
}
