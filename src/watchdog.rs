//! The watchdog thread: one coarse scan, instead of a timer per read, that
//! enforces the idle rule (see `crate::activity`) for every connection.
//!
//! A few times per idle period it asks each registered connection's
//! `Activity` whether it is idle; it shuts an idle connection's reading
//! side down, which wakes it in the poller, and its worker sees the mark
//! and closes it. The same scan ends the short linger of a closing
//! connection and the wait for a PROXY header. Ten thousand idle
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
pub(crate) fn run(registry: &Connections, stats: &Stats, until: &Shutdown, idle: Option<Duration>) {
    let tick = activity::tick(idle);
    while !until.wait_timeout(tick) {
        stats.flush_client_warnings();
        let now = Instant::now();
        // Marked under the registry's lock (atomics only); woken after it.
        let found = registry.copy_out(|served| {
            let conn = &served.conn;
            conn.activity
                .check(now, idle)
                .map(|_| conn.stream().clone())
        });
        for stream in found {
            // Reading side only: a worker may still tell the client why.
            let _ = stream.shutdown(Direction::Read);
        }
    }
}
