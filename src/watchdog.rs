//! The watchdog thread: one coarse scan, instead of a timer per read, that
//! enforces the idle rule (see `crate::activity`) for every connection.
//!
//! A few times per idle period it asks each registered connection's
//! `Activity` whether it is idle; it shuts an idle connection's reading
//! side down, which wakes it in the poller, and its worker sees the mark
//! and closes it. The same scan ends the short linger of a closing
//! connection, the wait for a PROXY header and the TLS handshake deadline. Ten thousand idle
//! connections cost one pass over the registry per tick.

use std::net::Shutdown as Direction;
use std::time::{Duration, Instant};

use crate::activity;
use crate::engine::Connections;
use crate::shutdown::Shutdown;
use crate::stats::Stats;

/// Watches every registered connection until `until` fires, at the stop's
/// last step (connections that close during the stop still linger and
/// wait for PROXY headers by the clock); also says how many client
/// warnings were held back.
/// `handshake` is the time a TLS handshake may take.
pub(crate) fn run(
    registry: &Connections,
    stats: &Stats,
    until: &Shutdown,
    idle: impl Fn() -> Option<Duration>,
    handshake: Duration,
) {
    // A handshake deadline shorter than the idle timeout is looked at
    // often enough to be kept within a quarter of itself; no wait is
    // longer than `activity::MAX_TICK`.
    let tick = |idle| activity::tick(idle).min(activity::tick(Some(handshake)));
    let mut wait = tick(idle());
    loop {
        if until.wait_timeout(wait) {
            return;
        }
        // Asked after each wait: the admin console may have changed it,
        // and the change holds from this scan on.
        let idle = idle();
        wait = tick(idle);
        stats.flush_client_warnings();
        let now = Instant::now();
        // Marked under the registry's lock (atomics only); woken after it.
        let found = registry.copy_out(|served| {
            let conn = &served.conn;
            conn.activity
                .check_with(now, idle, handshake)
                .map(|_| conn.stream().clone())
        });
        for stream in found {
            // Reading side only: a worker may still tell the client why.
            let _ = stream.shutdown(Direction::Read);
        }
    }
}
