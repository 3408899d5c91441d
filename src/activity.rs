//! One connection's progress, as the idle rule sees it.
//!
//! Workers never read a clock for the idle rule. Each connection has an
//! [`Activity`]: counters bumped when complete messages arrive and when the
//! client accepts reply bytes, and flags saying whether replies are
//! waiting, whether the server paused reading, whether the connection is
//! lingering in its close or still waits for its PROXY header. The
//! watchdog (`crate::watchdog`) calls [`Activity::check`] a few times per
//! idle period; it remembers when each counter last moved, and a
//! connection is idle when
//!
//! - no complete message arrived for the idle timeout (a line trickling in
//!   byte by byte counts as silence), unless the server itself stopped
//!   reading it because its replies are backed up; or
//! - replies are waiting and the client accepted none of their bytes for
//!   the idle timeout.
//!
//! The connection's worker sees the mark ([`Activity::timed_out`]) and
//! closes it.

use std::time::{Duration, Instant};

use crate::sync::{AtomicU8, AtomicU64, Mutex, Ordering};

/// How often the watchdog looks, as a fraction of the idle timeout: a client
/// is closed between 1 and 1.25 idle timeouts after it went quiet.
const CHECKS_PER_PERIOD: u32 = 4;

/// The shortest and longest pause between two looks. The longest also
/// bounds how late a closing connection's linger ends.
pub(crate) const MIN_TICK: Duration = Duration::from_millis(10);
/// See [`MIN_TICK`].
pub(crate) const MAX_TICK: Duration = Duration::from_millis(500);

/// How long a closing connection keeps reading off what a client still
/// sends (see `crate::conn`) before it is cut.
pub(crate) const LINGER: Duration = Duration::from_millis(500);

/// How long a connection has to send its PROXY protocol header.
pub(crate) const HEADER_DEADLINE: Duration = Duration::from_secs(5);

/// How long a connection has to finish its TLS handshake unless the
/// server says otherwise (`--tls-handshake-timeout`).
pub(crate) const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// Why the watchdog closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Idle {
    /// No complete message for the idle timeout.
    Read,
    /// Replies waiting, and none of their bytes accepted, for the idle
    /// timeout.
    Write,
    /// A closing connection lingered long enough.
    Linger,
    /// No complete PROXY protocol header within [`HEADER_DEADLINE`].
    Header,
    /// No finished TLS handshake within the handshake deadline.
    Handshake,
}

const WAITING_WRITE: u8 = 1;
const PAUSED: u8 = 2;
const LINGERING: u8 = 4;
const AWAITING_HEADER: u8 = 8;
const AWAITING_HANDSHAKE: u8 = 16;

/// One connection's progress, written by its worker and read by the
/// watchdog.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    read: AtomicU64,
    write: AtomicU64,
    flags: AtomicU8,
    /// 0, or 1 + the `Idle` the watchdog found.
    timed_out: AtomicU8,
    /// The watchdog's memory of this connection; only it locks this.
    watch: Mutex<Watch>,
}

impl Activity {
    /// Records that complete messages arrived.
    pub(crate) fn read_progress(&self) {
        bump(&self.read);
    }

    /// Records that the client accepted reply bytes.
    pub(crate) fn write_progress(&self) {
        bump(&self.write);
    }

    /// Whether replies are waiting for the client to read them.
    pub(crate) fn set_waiting_write(&self, waiting: bool) {
        self.set_flag(WAITING_WRITE, waiting);
    }

    /// Whether the server stopped reading this client because its replies
    /// are backed up: the read rule does not apply meanwhile.
    pub(crate) fn set_paused(&self, paused: bool) {
        self.set_flag(PAUSED, paused);
    }

    /// The connection is closing and reads off what the client still sends
    /// for at most [`LINGER`].
    pub(crate) fn set_lingering(&self) {
        self.set_flag(LINGERING, true);
    }

    /// Whether the connection still waits for its PROXY protocol header,
    /// which must come within [`HEADER_DEADLINE`].
    pub(crate) fn set_awaiting_header(&self, waiting: bool) {
        self.set_flag(AWAITING_HEADER, waiting);
    }

    /// Whether the connection is still in its TLS handshake, which must
    /// end within the handshake deadline.
    pub(crate) fn set_awaiting_handshake(&self, waiting: bool) {
        self.set_flag(AWAITING_HANDSHAKE, waiting);
    }

    fn set_flag(&self, flag: u8, on: bool) {
        // Several threads set flags: the connection's worker (paused,
        // lingering, awaiting the header) and whichever thread writes to
        // its outbox (waiting for the client), a chat delivery from another
        // connection's worker among them. Each change is therefore a
        // read-modify-write of its own bit, so no thread's bit is lost. A
        // load first skips the write, and the shared cache line, when the
        // bit is already as wanted, which is the usual case.
        if (self.flags.load(Ordering::Relaxed) & flag != 0) == on {
            return;
        }
        if on {
            self.flags.fetch_or(flag, Ordering::Relaxed);
        } else {
            self.flags.fetch_and(!flag, Ordering::Relaxed);
        }
    }

    /// The flag bits now, for tests and the model check.
    #[cfg(test)]
    fn flags(&self) -> u8 {
        self.flags.load(Ordering::Relaxed)
    }

    /// Whether, and why, the watchdog closed this connection.
    pub(crate) fn timed_out(&self) -> Option<Idle> {
        match self.timed_out.load(Ordering::Acquire) {
            1 => Some(Idle::Read),
            2 => Some(Idle::Write),
            3 => Some(Idle::Linger),
            4 => Some(Idle::Header),
            5 => Some(Idle::Handshake),
            _ => None,
        }
    }

    fn mark(&self, idle: Idle) {
        let code = match idle {
            Idle::Read => 1,
            Idle::Write => 2,
            Idle::Linger => 3,
            Idle::Header => 4,
            Idle::Handshake => 5,
        };
        self.timed_out.store(code, Ordering::Release);
    }

    /// Looks at the connection at `now`; returns why it is idle, if it is,
    /// and then marks it so. `idle` is the idle timeout (`None`: only a
    /// linger ends).
    pub(crate) fn check(&self, now: Instant, idle: Option<Duration>) -> Option<Idle> {
        self.check_with(now, idle, HANDSHAKE_DEADLINE)
    }

    /// [`check`](Activity::check), with `handshake` the time a TLS
    /// handshake may take.
    pub(crate) fn check_with(
        &self,
        now: Instant,
        idle: Option<Duration>,
        handshake: Duration,
    ) -> Option<Idle> {
        if self.timed_out().is_some() {
            return None;
        }
        let flags = self.flags.load(Ordering::Relaxed);
        let read = self.read.load(Ordering::Relaxed);
        let write = self.write.load(Ordering::Relaxed);
        let found = self
            .watch
            .lock()
            .look(now, (idle, handshake), flags, read, write);
        if let Some(why) = found {
            self.mark(why);
        }
        found
    }
}

fn bump(counter: &AtomicU64) {
    // The read counter has one writer, the connection's worker, but the
    // write counter is bumped by whichever thread writes to the outbox: an
    // add, not a load and a store, so that no bump can be lost. It costs a
    // few nanoseconds once per batch or write, beside a system call.
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What the watchdog last saw of one connection, and since when.
#[derive(Debug, Default)]
struct Watch {
    started: bool,
    read: u64,
    read_since: Option<Instant>,
    write: u64,
    write_since: Option<Instant>,
    linger_since: Option<Instant>,
    header_since: Option<Instant>,
    handshake_since: Option<Instant>,
}

impl Watch {
    fn look(
        &mut self,
        now: Instant,
        (idle, handshake): (Option<Duration>, Duration),
        flags: u8,
        read: u64,
        write: u64,
    ) -> Option<Idle> {
        if flags & LINGERING != 0 {
            let since = *self.linger_since.get_or_insert(now);
            return (now.duration_since(since) >= LINGER).then_some(Idle::Linger);
        }
        if flags & AWAITING_HEADER != 0 {
            let since = *self.header_since.get_or_insert(now);
            return (now.duration_since(since) >= HEADER_DEADLINE).then_some(Idle::Header);
        }
        if flags & AWAITING_HANDSHAKE != 0 {
            let since = *self.handshake_since.get_or_insert(now);
            return (now.duration_since(since) >= handshake).then_some(Idle::Handshake);
        }
        // The first look starts both clocks.
        if !self.started || self.read != read || flags & PAUSED != 0 {
            self.read = read;
            self.read_since = Some(now);
        }
        if !self.started || self.write != write || flags & WAITING_WRITE == 0 {
            self.write = write;
            self.write_since = Some(now);
        }
        self.started = true;
        let idle = idle?;
        let quiet = |since: Option<Instant>| since.is_some_and(|t| now.duration_since(t) >= idle);
        if quiet(self.write_since) {
            Some(Idle::Write)
        } else if quiet(self.read_since) {
            Some(Idle::Read)
        } else {
            None
        }
    }
}

/// The pause between two looks for an idle timeout of `idle`.
pub(crate) fn tick(idle: Option<Duration>) -> Duration {
    idle.map_or(MAX_TICK, |idle| {
        (idle / CHECKS_PER_PERIOD).clamp(MIN_TICK, MAX_TICK)
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(10);

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    #[test]
    fn clearing_a_flag_leaves_the_others() {
        let a = Activity::default();
        a.set_waiting_write(true);
        a.set_paused(true);
        a.set_awaiting_header(true);
        a.set_paused(false);
        assert_eq!(a.flags(), WAITING_WRITE | AWAITING_HEADER);
        a.set_waiting_write(false);
        assert_eq!(a.flags(), AWAITING_HEADER);
        a.set_lingering();
        a.set_awaiting_header(false);
        assert_eq!(a.flags(), LINGERING);
    }

    #[test]
    fn silence_for_the_idle_timeout_is_idle() {
        let a = Activity::default();
        let t = Instant::now();
        assert_eq!(a.check(t, Some(IDLE)), None);
        assert_eq!(a.check(at(t, 9), Some(IDLE)), None);
        assert_eq!(a.check(at(t, 10), Some(IDLE)), Some(Idle::Read));
        assert_eq!(a.timed_out(), Some(Idle::Read));
        // Reported once.
        assert_eq!(a.check(at(t, 20), Some(IDLE)), None);
    }

    #[test]
    fn messages_restart_the_read_clock() {
        let a = Activity::default();
        let t = Instant::now();
        a.check(t, Some(IDLE));
        a.read_progress();
        assert_eq!(a.check(at(t, 8), Some(IDLE)), None);
        assert_eq!(a.check(at(t, 17), Some(IDLE)), None);
        assert_eq!(a.check(at(t, 18), Some(IDLE)), Some(Idle::Read));
    }

    #[test]
    fn backed_up_replies_without_progress_are_idle() {
        let a = Activity::default();
        let t = Instant::now();
        a.check(t, Some(IDLE));
        // Replies are waiting and the read side is paused: only the write
        // clock runs.
        a.set_waiting_write(true);
        a.set_paused(true);
        assert_eq!(a.check(at(t, 1), Some(IDLE)), None);
        a.write_progress();
        assert_eq!(a.check(at(t, 5), Some(IDLE)), None);
        assert_eq!(a.check(at(t, 14), Some(IDLE)), None);
        assert_eq!(a.check(at(t, 15), Some(IDLE)), Some(Idle::Write));
        assert_eq!(a.timed_out(), Some(Idle::Write));
    }

    #[test]
    fn no_timeout_means_only_a_linger_ends() {
        let a = Activity::default();
        let t = Instant::now();
        assert_eq!(a.check(t, None), None);
        assert_eq!(a.check(at(t, 1_000_000), None), None);
        a.set_lingering();
        assert_eq!(a.check(at(t, 1_000_000), None), None);
        let later = at(t, 1_000_000) + LINGER;
        assert_eq!(a.check(later, None), Some(Idle::Linger));
        assert_eq!(a.timed_out(), Some(Idle::Linger));
    }

    #[test]
    fn a_missing_proxy_header_times_out_whatever_the_idle_timeout() {
        let a = Activity::default();
        a.set_awaiting_header(true);
        let t = Instant::now();
        assert_eq!(a.check(t, None), None);
        assert_eq!(a.check(t + HEADER_DEADLINE / 2, None), None);
        assert_eq!(a.check(t + HEADER_DEADLINE, None), Some(Idle::Header));
        assert_eq!(a.timed_out(), Some(Idle::Header));
    }

    #[test]
    fn a_stalled_handshake_times_out_at_its_own_deadline() {
        let a = Activity::default();
        a.set_awaiting_handshake(true);
        let t = Instant::now();
        let deadline = Duration::from_secs(3);
        assert_eq!(a.check_with(t, None, deadline), None);
        assert_eq!(a.check_with(t + deadline / 2, None, deadline), None);
        assert_eq!(
            a.check_with(t + deadline, None, deadline),
            Some(Idle::Handshake)
        );
        assert_eq!(a.timed_out(), Some(Idle::Handshake));
    }

    #[test]
    fn ticks_are_a_quarter_of_the_timeout_within_bounds() {
        assert_eq!(
            tick(Some(Duration::from_millis(400))),
            Duration::from_millis(100)
        );
        assert_eq!(tick(Some(Duration::from_millis(1))), MIN_TICK);
        assert_eq!(tick(Some(Duration::from_secs(300))), MAX_TICK);
        assert_eq!(tick(None), MAX_TICK);
    }
}

/// The model check (`scripts/loom.sh`) of the flags, which several threads
/// write.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// Flags set and cleared at once by different threads lose no bit.
    #[test]
    fn loom_activity_concurrent_flag_changes_lose_no_bit() {
        loom::model(|| {
            let a = Arc::new(Activity::default());
            a.set_awaiting_header(true);
            // A chat delivery from another connection's worker says replies
            // wait while this connection's worker pauses its read side; the
            // main thread clears the header wait meanwhile.
            let delivery = {
                let a = a.clone();
                thread::spawn(move || a.set_waiting_write(true))
            };
            let worker = {
                let a = a.clone();
                thread::spawn(move || a.set_paused(true))
            };
            a.set_awaiting_header(false);
            delivery.join().expect("delivery");
            worker.join().expect("worker");
            assert_eq!(a.flags(), WAITING_WRITE | PAUSED);
        });
    }
}
