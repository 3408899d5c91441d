//! The idle watchdog: one thread that closes connections whose clients have
//! sent no complete message for the idle timeout.
//!
//! Workers read with no socket timeout: on virtual machines arming a kernel
//! timer for every blocking read costs more than the read itself. Instead
//! each served connection has an [`Activity`] that its worker bumps once per
//! batch of messages (one relaxed store), and the watchdog looks at every
//! connection a few times per idle period. A connection with no progress
//! for the idle timeout is marked and its reading side shut down; the worker
//! wakes to end of input, sees the mark, says `ERR idle timeout` and closes.

use std::collections::HashMap;
use std::net::Shutdown as Direction;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::registry::Registry;
use crate::shutdown::Shutdown;

/// How often the watchdog looks, as a fraction of the idle timeout: a client
/// is closed between 1 and 1.25 idle timeouts after its last message.
const CHECKS_PER_PERIOD: u32 = 4;

/// The shortest and longest pause between two looks.
const MIN_TICK: Duration = Duration::from_millis(10);
const MAX_TICK: Duration = Duration::from_secs(5);

/// One connection's progress, shared by its worker and the watchdog.
#[derive(Default, Debug)]
pub struct Activity {
    /// Bumped by the worker whenever complete messages arrived; 0 while the
    /// connection still waits for a worker (the watchdog leaves it alone).
    progress: AtomicU64,
    timed_out: AtomicBool,
}

impl Activity {
    /// Marks the connection as served, and as active now.
    pub fn start(&self) {
        self.progress.store(1, Ordering::Relaxed);
    }

    /// Records that complete messages arrived.
    pub fn touch(&self) {
        // Only the worker writes, so a load and a store do: no atomic
        // read-modify-write on the hot path.
        let now = self.progress.load(Ordering::Relaxed);
        self.progress
            .store(now.wrapping_add(1).max(1), Ordering::Relaxed);
    }

    /// Whether the watchdog closed this connection as idle.
    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Acquire)
    }
}

/// Watches every registered connection until the server stops.
pub fn run(registry: &Registry, shutdown: &Shutdown, idle: Duration) {
    let tick = (idle / CHECKS_PER_PERIOD).clamp(MIN_TICK, MAX_TICK);
    // Last progress seen per connection, and when it was first seen.
    let mut seen: HashMap<u64, (u64, Instant)> = HashMap::new();
    while !shutdown.wait_timeout(tick) {
        let now = Instant::now();
        let live = registry.watch_list();
        seen.retain(|id, _| live.iter().any(|(live_id, _, _)| live_id == id));
        for (id, stream, activity) in live {
            let progress = activity.progress.load(Ordering::Relaxed);
            if progress == 0 || activity.timed_out() {
                continue;
            }
            let entry = seen.entry(id).or_insert((progress, now));
            if entry.0 != progress {
                *entry = (progress, now);
            } else if now.duration_since(entry.1) >= idle {
                activity.timed_out.store(true, Ordering::Release);
                let _ = stream.shutdown(Direction::Read);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_from_the_start_and_never_returns_to_zero() {
        let activity = Activity::default();
        assert_eq!(activity.progress.load(Ordering::Relaxed), 0);
        activity.start();
        activity.touch();
        assert_eq!(activity.progress.load(Ordering::Relaxed), 2);
        activity.progress.store(u64::MAX, Ordering::Relaxed);
        activity.touch();
        assert_eq!(activity.progress.load(Ordering::Relaxed), 1);
    }
}
