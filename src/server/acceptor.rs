//! The acceptor thread, `linepool-acceptor`: it owns every listener (TCP,
//! IPv4 or IPv6, and Unix domain sockets, bound or passed by systemd) and
//! does nothing but accept and push the accepted sockets into the pool.
//!
//! It waits for its listeners in a poller of its own, where one wait covers
//! every listener and the stop's wake-up. For each connection it takes a
//! slot from the gate (in `block` mode *before* `accept()`, waiting while
//! the gate is full: that wait is the server's backpressure), accepts the
//! socket straight into non-blocking mode, admits it (`--max-per-ip`),
//! wraps it with its handler and adds it to the engine, whose workers run
//! its first turn and every one after. No protocol code, TLS handshake or
//! client write runs here, beyond the one-line refusals.
//!
//! What each connection is given, and how it is handed over or refused,
//! is `admission`'s.
//!
//! It never ends the server over an accept error: it skips those that
//! concern one connection and backs off from the rest. At a stop it is
//! woken, returns, and closes its listeners as it goes.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::admission::{Accepted, Admission, Refusal};
use super::listen::Listener;
use super::threads::run_as_batch;
use crate::access;
use crate::config::Overload;
use crate::gate::Permit;
use crate::logfmt;
use crate::shutdown::Shutdown;

/// Connections accepted from one listener before the next listener's
/// turn, so that a flood on one cannot starve the others.
const ACCEPT_BATCH: usize = 64;

/// The first and the longest pause after an accept error such as running
/// out of file descriptors.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The token of the waker that ends the acceptor's wait at a stop; the
/// listeners' tokens are their indices.
const WAKER: Token = Token(usize::MAX);

/// The listeners in a poller of their own, made before any thread starts
/// (making them can fail).
pub(super) struct Listening {
    listeners: Vec<Listener>,
    poll: Poll,
    /// Pause and resume, and the waker that ends the acceptor's wait.
    control: Arc<Control>,
}

/// What others may ask of the running acceptor: to stop accepting for a
/// while (the admin console's `pause`) and to go on (`resume`).
pub(crate) struct Control {
    paused: AtomicBool,
    waker: Waker,
}

impl Control {
    /// Stops accepting: new clients wait in the kernel's backlogs, as with
    /// a full gate in `block` mode. Returns whether it was accepting.
    pub(crate) fn pause(&self) -> bool {
        !self.paused.swap(true, Ordering::AcqRel)
    }

    /// Accepts again, the backlogs first. Returns whether it was paused.
    pub(crate) fn resume(&self) -> bool {
        let was = self.paused.swap(false, Ordering::AcqRel);
        if let Err(e) = self.waker.wake() {
            error!("cannot wake the acceptor error={}", logfmt::error(&e));
        }
        was
    }

    /// Whether the acceptor is paused.
    pub(crate) fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }
}

impl Listening {
    /// Puts the listeners, already non-blocking, in a new poller,
    /// edge-triggered: clients already waiting in a backlog make theirs
    /// ready at once.
    pub(super) fn new(listeners: Vec<Listener>) -> io::Result<Listening> {
        let poll = Poll::new()?;
        for (i, listener) in listeners.iter().enumerate() {
            poll.registry().register(
                &mut SourceFd(&listener.as_raw_fd()),
                Token(i),
                Interest::READABLE,
            )?;
        }
        let control = Arc::new(Control {
            paused: AtomicBool::new(false),
            waker: Waker::new(poll.registry(), WAKER)?,
        });
        Ok(Listening {
            listeners,
            poll,
            control,
        })
    }

    /// Every listener, in the order the acceptor takes them.
    pub(super) fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// Pause and resume for the running acceptor.
    pub(super) fn control(&self) -> Arc<Control> {
        self.control.clone()
    }

    /// Has `shutdown` end the acceptor's wait in the poller.
    pub(super) fn woken_by(&self, shutdown: &Shutdown) {
        let control = self.control.clone();
        shutdown.on_trigger(move || {
            if let Err(e) = control.waker.wake() {
                error!("cannot wake the acceptor error={}", logfmt::error(&e));
            }
        });
    }
}

/// The acceptor: its listeners and what it remembers between waits. It
/// lives on its own thread, so nothing here is shared or locked.
pub(super) struct Acceptor {
    listening: Listening,
    admission: Admission,
    /// Per listener: whether clients may wait in its backlog (the poller
    /// said so, and no accept has said `EAGAIN` since). The poller is
    /// edge-triggered, so this is what remembers a backlog left for the
    /// next round or for after a back-off.
    waiting: Vec<bool>,
    /// The listener the next round starts with, so that the first listener
    /// is not always served first.
    first: usize,
    next_id: u64,
    /// The pause after the next accept error.
    backoff: Duration,
    /// No accept before this, after an error.
    retry_at: Option<Instant>,
    /// In `block` mode, the slot taken for the next accept, within one
    /// round: given back when the listener turns out to have nobody
    /// waiting.
    reserved: Option<Permit>,
}

/// Whether the acceptor goes on with the round after one accept.
enum Flow {
    Go,
    /// The stop began, or an error asks for a pause.
    Stop,
}

impl Acceptor {
    pub(super) fn new(listening: Listening, admission: Admission) -> Acceptor {
        Acceptor {
            waiting: vec![false; listening.listeners.len()],
            listening,
            admission,
            first: 0,
            next_id: 0,
            backoff: BACKOFF_MIN,
            retry_at: None,
            reserved: None,
        }
    }

    /// Accepts until the stop. The listeners close when this returns (a
    /// bound Unix socket's file is removed), so clients still in the
    /// backlogs are refused.
    pub(super) fn run(mut self) {
        let shutdown = self.admission.shutdown.clone();
        // Should the acceptor ever panic, the server stops rather than
        // serve on without accepting.
        let _stop = StopOnPanic(&shutdown);
        // The acceptor defers to the workers: as a batch thread, its
        // wake-up for a new client never preempts a worker in the middle of
        // a turn. Clients that come while the workers run are accepted
        // together when one pauses (or at the next scheduler tick), so a
        // busy server pays one switch to the acceptor per batch, not per
        // connection. Where the policy cannot be had the acceptor runs as
        // any thread does.
        if let Err(e) = run_as_batch() {
            debug!(
                "acceptor runs without the batch policy error={}",
                logfmt::error(&e)
            );
        }
        let mut events = Events::with_capacity(self.listening.listeners.len() + 1);
        while !shutdown.is_triggered() {
            if let Err(e) = self.listening.poll.poll(&mut events, self.wait())
                && e.kind() != io::ErrorKind::Interrupted
            {
                // Nothing in the poller's contract makes this happen; say so
                // and carry on rather than lose the server.
                error!("acceptor poll failed error={}", logfmt::error(&e));
            }
            for event in &events {
                if let Some(waiting) = self.waiting.get_mut(event.token().0) {
                    *waiting = true;
                }
            }
            // Paused, it only remembers which listeners have clients
            // waiting; `resume` wakes it to accept them.
            if !self.listening.control.is_paused() {
                self.round();
            }
        }
        let listeners = std::mem::take(&mut self.listening.listeners);
        let count = listeners.len();
        drop(listeners);
        info!(
            "stopped accepting, closed {}",
            logfmt::count(count as u64, "listener")
        );
    }

    /// How long the next wait in the poller may last: not at all while a
    /// backlog is left for the next round, until a back-off ends, or until
    /// an event.
    fn wait(&self) -> Option<Duration> {
        if self.listening.control.is_paused() {
            return None;
        }
        if let Some(at) = self.retry_at {
            return Some(at.saturating_duration_since(Instant::now()));
        }
        self.waiting.contains(&true).then_some(Duration::ZERO)
    }

    /// One round: each listener with clients waiting, starting with the
    /// next one in turn, accepts until `EAGAIN` or a batch at most. What is
    /// left waits for the next round, after a look into the poller for the
    /// other listeners and the stop.
    fn round(&mut self) {
        if let Some(at) = self.retry_at {
            if Instant::now() < at {
                return;
            }
            self.retry_at = None;
        }
        let count = self.waiting.len();
        let first = self.first;
        self.first = (first + 1) % count.max(1);
        for on in (0..count).map(|k| (first + k) % count) {
            for _ in 0..ACCEPT_BATCH {
                if !self.waiting[on] {
                    break;
                }
                if let Flow::Stop = self.accept_one(on) {
                    return;
                }
            }
        }
    }

    /// Accepts one connection from listener `on` and hands it on (or turns
    /// it away).
    fn accept_one(&mut self, on: usize) -> Flow {
        let shutdown = &self.admission.shutdown;
        if shutdown.is_triggered() {
            return Flow::Stop;
        }
        // Paused on the console: nothing more is accepted, even in the
        // middle of a round; the slot goes back.
        let control = &self.listening.control;
        if control.is_paused() {
            self.reserved = None;
            return Flow::Stop;
        }
        let live = &self.admission.live;
        if live.overload() == Overload::Block && self.reserved.is_none() {
            // The backpressure: while every slot is taken, this thread
            // waits here and accepts nothing, and new clients wait in the
            // kernel's listen backlog. A release wakes it, and so does the
            // stop (it closes the gate), a switch to `reject` on the
            // console, after which it accepts and refuses as that mode
            // does, and a pause, after which it accepts nothing.
            let wanted = || live.overload() == Overload::Block && !control.is_paused();
            match self.admission.gate.acquire_while(wanted) {
                Some(permit) => self.reserved = Some(permit),
                None if shutdown.is_triggered() || control.is_paused() => return Flow::Stop,
                None => {}
            }
            // A pause that came as the slot was taken holds this client too.
            if control.is_paused() {
                self.reserved = None;
                return Flow::Stop;
            }
        }
        let listener = &self.listening.listeners[on];
        let unix = listener.is_unix();
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.waiting[on] = false;
                // The slot goes back: held between rounds it would count a
                // connection that is not there, and would let one in past a
                // limit lowered meanwhile.
                self.reserved = None;
                return Flow::Go;
            }
            Err(_) if shutdown.is_triggered() => return Flow::Stop,
            Err(e) if is_transient(&e) => {
                debug!(
                    "accept skipped a failed connection error={} listener={}",
                    logfmt::error(&e),
                    listener.name()
                );
                return Flow::Go;
            }
            Err(e) => {
                warn!(
                    "accept failed, backing off error={} retry_in_ms={}",
                    logfmt::error(&e),
                    self.backoff.as_millis()
                );
                // The pause is the deadline of the next wait in the poller,
                // which the stop still ends at once.
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                return Flow::Stop;
            }
        };
        self.backoff = BACKOFF_MIN;
        if shutdown.is_triggered() {
            // Accepted just as the stop began: closed like the rest.
            return Flow::Stop;
        }
        let accepted = Accepted {
            stream,
            peer,
            on,
            unix,
        };
        // The policy of the moment, for this connection's life.
        let policy = self.admission.live.policy();
        let reserved = self.reserved.take();
        let Some(permit) = reserved.or_else(|| self.admission.gate.try_acquire()) else {
            self.admission.reject(&policy, accepted, Refusal::Busy);
            return Flow::Go;
        };
        // Behind a proxy the address to count is known only once the
        // header is read: the handler admits it then. A Unix client has no
        // address to count.
        let admission = &self.admission;
        let table = policy
            .per_address
            .as_ref()
            .filter(|_| !admission.proxy_protocol);
        let admitted = match accepted.peer.ip_addr() {
            Some(ip) => access::admit(table, ip),
            None => Ok(None),
        };
        match admitted {
            Ok(slot) => {
                let id = self.next_id;
                self.next_id += 1;
                admission.dispatch(policy, id, accepted, permit, slot);
            }
            Err(access::TooMany) => {
                drop(permit);
                admission.reject(&policy, accepted, Refusal::PerAddress);
            }
        }
        Flow::Go
    }
}

/// Accept errors that concern only the one connection being accepted.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || matches!(
        e.raw_os_error(),
        Some(
            libc::EPROTO
                | libc::ENETDOWN
                | libc::ENETUNREACH
                | libc::EHOSTUNREACH
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::ENOPROTOOPT
                | libc::EOPNOTSUPP
        )
    )
}

/// Stops the server if the acceptor panics.
struct StopOnPanic<'a>(&'a Shutdown);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            error!("the acceptor panicked, stopping");
            self.0.trigger();
        }
    }
}
