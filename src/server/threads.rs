//! The server's threads besides the pool's workers (the watchdog, the
//! side ports, the stats line): each named, its creation an
//! error rather than a panic, and each joined at the stop, a panic logged
//! and counted instead of swallowed; and the protocol's figures as the
//! stats line and the stop's summary end with them.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use log::{info, warn};

use super::listen::context;
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

/// How often the stats thread asks again how often to log: a change on
/// the admin console holds within this.
const STATS_RECHECK: Duration = Duration::from_millis(500);

/// Logs one stats line every `every()` until the server stops. The
/// interval is asked again at least every [`STATS_RECHECK`]: the admin
/// console may change it (a line then comes when the new interval has
/// passed since the last), turn it off, or on (the figures then start
/// afresh).
pub(super) fn report_stats(
    stats: &Stats,
    engine: &Engine,
    protocol: &dyn Protocol,
    shutdown: &Shutdown,
    every: impl Fn() -> Option<Duration>,
) {
    let mut last_lines = stats.summary().lines;
    let mut last_time = Instant::now();
    let mut on = true;
    loop {
        let wait = match every() {
            None => {
                on = false;
                STATS_RECHECK
            }
            Some(every) => {
                if !on {
                    // Turned on: the first line covers from now.
                    on = true;
                    stats.interval();
                    last_lines = stats.summary().lines;
                    last_time = Instant::now();
                }
                let due = last_time + every;
                let now = Instant::now();
                if now >= due {
                    last_lines = log_stats(stats, engine, protocol, last_lines, last_time);
                    last_time = now;
                    continue;
                }
                (due - now).min(STATS_RECHECK)
            }
        };
        if shutdown.wait_timeout(wait) {
            return;
        }
    }
}

/// Logs one stats line, for the interval since `last_time` (when `lines`
/// had been answered); returns the lines answered now.
fn log_stats(
    stats: &Stats,
    engine: &Engine,
    protocol: &dyn Protocol,
    last_lines: u64,
    last_time: Instant,
) -> u64 {
    let s = stats.interval();
    let per_sec = (s.summary.lines - last_lines) as f64 / last_time.elapsed().as_secs_f64();
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
        figures(protocol),
    );
    s.summary.lines
}

/// A protocol's figures as a log line's tail: after a space, if any. A
/// protocol whose figures panic loses them, not the line.
pub(super) fn figures(protocol: &dyn Protocol) -> String {
    match panic::catch_unwind(AssertUnwindSafe(|| protocol.figures())) {
        Ok(figures) if figures.is_empty() => figures,
        Ok(figures) => format!(" {figures}"),
        Err(_) => {
            warn!("protocol figures panicked protocol={}", protocol.name());
            String::new()
        }
    }
}
