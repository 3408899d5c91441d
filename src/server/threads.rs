//! The server's threads besides the pool's workers (the watchdog, the
//! side ports, the stats line): each named, its creation an
//! error rather than a panic, and each joined at the stop, a panic logged
//! and counted instead of swallowed.

use std::io;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use log::{info, warn};

use super::listen::context;
use super::running::spaced;
use crate::engine::Engine;
use crate::protocol::Protocol;
use crate::shutdown::Shutdown;
use crate::stats::Stats;

/// Makes the calling thread a batch thread (Linux's `SCHED_BATCH`, its nice
/// value unchanged): the scheduler gives it its fair share of the CPU but
/// never lets its wake-up preempt a running thread. Elsewhere it does
/// nothing.
#[allow(unsafe_code)]
pub(super) fn run_as_batch() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid `sched_param` that outlives the call,
        // and pid 0 names the calling thread; the call reads nothing else.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Named threads that run until the stop.
#[derive(Default)]
pub(super) struct Threads {
    running: Vec<(String, JoinHandle<()>)>,
}

impl Threads {
    /// Starts `run` on a thread called `name`.
    pub(super) fn spawn(
        &mut self,
        name: impl Into<String>,
        run: impl FnOnce() + Send + 'static,
    ) -> io::Result<()> {
        let name = name.into();
        let handle = thread::Builder::new()
            .name(name.clone())
            .spawn(run)
            .map_err(|e| context(e, &format!("cannot start thread {name}")))?;
        self.running.push((name, handle));
        Ok(())
    }

    /// Waits for every thread; returns how many panicked.
    pub(super) fn join_all(&mut self) -> u64 {
        let panicked = self
            .running
            .drain(..)
            .map(|(name, handle)| joined(&name, handle))
            .filter(|&panicked| panicked)
            .count();
        panicked as u64
    }
}

/// Waits for one thread; a panic is logged.
fn joined(name: &str, handle: JoinHandle<()>) -> bool {
    let panicked = handle.join().is_err();
    if panicked {
        warn!("thread panicked thread={name}");
    }
    panicked
}

/// While the stats line is off, how often to ask again whether it is on.
const STATS_OFF_RECHECK: Duration = Duration::from_millis(500);

/// Logs one stats line every `every()` (asked after each line: the admin
/// console may change it, or turn it off) until the server stops.
pub(super) fn report_stats(
    stats: &Stats,
    engine: &Engine,
    protocol: &dyn Protocol,
    shutdown: &Shutdown,
    every: impl Fn() -> Option<Duration>,
) {
    let mut last_lines = stats.summary().lines;
    let mut last_time = Instant::now();
    loop {
        let Some(wait) = every() else {
            if shutdown.wait_timeout(STATS_OFF_RECHECK) {
                return;
            }
            continue;
        };
        if shutdown.wait_timeout(wait) {
            return;
        }
        let now = Instant::now();
        let s = stats.interval();
        let per_sec =
            (s.summary.lines - last_lines) as f64 / now.duration_since(last_time).as_secs_f64();
        info!(
            "stats lines={} lines_per_sec={per_sec:.0} service_mean_us={:.1} service_p99_us={:.1} queue_mean_us={:.1} queue_p99_us={:.1} open={} ready={} rejected={} connections={}{}",
            s.summary.lines,
            s.service_mean.as_secs_f64() * 1e6,
            s.service_p99.as_secs_f64() * 1e6,
            s.queue_mean.as_secs_f64() * 1e6,
            s.queue_p99.as_secs_f64() * 1e6,
            s.open,
            engine.ready(),
            s.summary.rejected,
            s.summary.connections,
            spaced(protocol.figures()),
        );
        last_lines = s.summary.lines;
        last_time = now;
    }
}
