//! The chat bus: one chat room across every instance that shares a Redis
//! server and a room name (`--chat-bus`, `--chat-room`).
//!
//! Two threads of the bus's own talk to Redis, with the `redis` crate's
//! synchronous API; no worker ever waits on Redis, and neither thread ever
//! waits on a client's socket: what they deliver goes into members'
//! outboxes, as every chat delivery does.
//!
//! - The **publisher** (`publish.rs`, thread `linepool-chat-pub`) takes
//!   envelopes from a bounded queue ([`Outgoing`]) and publishes them on the
//!   room's channel, in order, with this instance's sequence numbers; it
//!   decides newcomers' names (claimed in Redis, `SET`-if-free with a
//!   time to live), sends the heartbeat, refreshes the claims and frees
//!   the names of an instance the subscriber gave up for dead. A line
//!   counts as published once Redis has answered its `PUBLISH`; until
//!   then it is held, and what is held past [`HOLD`] while Redis is away
//!   is dropped and counted, as is what finds the queue full: memory
//!   stays flat during an outage of any length.
//! - The **subscriber** (`subscribe.rs`, thread `linepool-chat-sub`) reads
//!   the channel, drops its own envelopes, repeats and garbage (counted),
//!   and delivers the rest to the local members; it keeps the roster of
//!   the other instances' members, forgets an instance silent for five
//!   heartbeats (announcing its members as left, their names freed), and
//!   reconnects a subscription that has not brought its own heartbeat
//!   back for three.
//!
//! Both reconnect forever, with capped, jittered back-off: a short cap
//! (a quarter of a second by default), so that an instance is back on
//! Redis a moment after Redis is.

mod publish;
mod subscribe;

use std::collections::VecDeque;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use redis::IntoConnectionInfo;

use super::envelope::Body;
use super::settings::{ChatBus, redacted};
use super::{Admission, Room};
use linepool::protocol::Task;
use linepool::shutdown::Shutdown;
use linepool::{Error, Setting};
use prometheus_client::metrics::histogram::Histogram;

/// How long connecting to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// The first wait after a failed attempt to reach Redis.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// The hold window: while Redis is away, what members say for the other
/// instances is kept this long from when it was said, and on top of it for
/// as long as Redis could be back unnoticed, so that an outage shorter
/// than this loses nothing.
pub(crate) const HOLD: Duration = Duration::from_secs(10);

/// The bus of one instance: its settings, its room and its queue.
pub(crate) struct Bus {
    room: Arc<Room>,
    out: Arc<Outgoing>,
    client: redis::Client,
    /// The URL without its password, for logs.
    url: String,
    room_name: String,
    /// The room's channel.
    channel: String,
    /// Prefix of the room's name claims.
    names: String,
    /// The room's guest counter.
    guests: String,
    /// This process's random id: a restart is a new instance.
    instance: String,
    heartbeat: Duration,
    backoff_max: Duration,
    /// Set by the subscriber when it has (re)subscribed: the publisher
    /// sends a `hello` and claims its names again.
    hello: AtomicBool,
    /// Set when another instance said `hello`: a beat goes out at once.
    beat_soon: AtomicBool,
    /// The highest sequence number of this instance's own that came back
    /// on the subscription.
    own_seen: AtomicU64,
    /// When a payload of this instance's own last came back on the
    /// subscription: the proof that it hears the room now.
    own_heard: Mutex<Option<Instant>>,
    /// The oldest heartbeat published that has not come back yet: its
    /// sequence number and when it went out.
    beat_out: Mutex<Option<(u64, Instant)>>,
}

impl Bus {
    /// The bus `settings` describe, for `room`, fed by `out`. Nothing is
    /// connected yet; a URL that cannot be read is an error.
    pub(super) fn new(
        settings: &ChatBus,
        room: Arc<Room>,
        out: Arc<Outgoing>,
    ) -> Result<Arc<Bus>, Error> {
        let url = redacted(&settings.url);
        let invalid = |reason: String| Error::Setting {
            setting: Setting::Protocol,
            reason,
        };
        if !settings.url.starts_with("redis://") {
            return Err(invalid(format!(
                "chat bus {url}: expected redis://HOST:PORT[/DB]"
            )));
        }
        // Envelopes are small and go out as soon as they are queued: no
        // Nagle delay on the publisher's connection.
        let client = settings
            .url
            .as_str()
            .into_connection_info()
            .map(|info| {
                info.set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true))
            })
            .and_then(redis::Client::open)
            .map_err(|e| invalid(format!("chat bus {url}: {e}")))?;
        if settings.room.is_empty() || settings.room.chars().any(char::is_whitespace) {
            return Err(invalid(
                "chat room: a name without spaces is needed".to_string(),
            ));
        }
        if settings.heartbeat.is_zero() || settings.backoff_max.is_zero() || settings.queue == 0 {
            return Err(invalid(
                "chat bus: heartbeat, back-off and queue must be above zero".to_string(),
            ));
        }
        let base = format!("linepool:chat:{}", settings.room);
        Ok(Arc::new(Bus {
            room,
            out,
            client,
            url,
            room_name: settings.room.clone(),
            channel: base.clone(),
            names: format!("{base}:name:"),
            guests: format!("{base}:guests"),
            instance: format!("{:016x}", random_u64()),
            heartbeat: settings.heartbeat,
            backoff_max: settings.backoff_max,
            hello: AtomicBool::new(false),
            beat_soon: AtomicBool::new(false),
            own_seen: AtomicU64::new(0),
            own_heard: Mutex::new(None),
            beat_out: Mutex::new(None),
        }))
    }

    /// The bus's two threads, by name, to run until `until` fires (the
    /// stop's last step, once every session has ended and queued its
    /// `left`): the publisher then sends what waits and a `bye`.
    pub(crate) fn threads(self: &Arc<Self>, until: &Shutdown) -> Vec<Task> {
        {
            let out = self.out.clone();
            until.on_trigger(move || out.close());
        }
        let (publisher, subscriber) = (self.clone(), self.clone());
        let (until_pub, until_sub) = (until.clone(), until.clone());
        vec![
            Task::new("linepool-chat-pub", move || {
                publisher.publish_loop(&until_pub)
            }),
            Task::new("linepool-chat-sub", move || {
                subscriber.subscribe_loop(&until_sub)
            }),
        ]
    }

    /// The bus's figures now.
    pub(crate) fn figures(&self) -> Figures {
        let f = &self.out.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Figures {
            up: f.subscribed.load(Ordering::Relaxed) && f.publishing.load(Ordering::Relaxed),
            published: load(&f.published),
            received: load(&f.received),
            dropped: Loss::ALL.map(|d| (d.name(), load(&f.dropped[d as usize]))),
            missed: load(&f.missed),
            reconnects: load(&f.reconnects),
            members: self.room.members.lock().online() as u64,
            latency: f.latency.clone(),
        }
    }

    /// The room's name, for logs.
    pub(crate) fn room_name(&self) -> &str {
        &self.room_name
    }

    /// An instance silent this long is gone: five heartbeats, and never
    /// less than a second, so that a busy machine is not taken for a dead
    /// one.
    fn peer_silence(&self) -> Duration {
        (self.heartbeat * 5).max(Duration::from_secs(1))
    }

    /// A subscription that has not brought back a heartbeat of this
    /// instance's own this long after it was published is reconnected:
    /// three heartbeats, and never less than a second.
    fn own_silence(&self) -> Duration {
        (self.heartbeat * 3).max(Duration::from_secs(1))
    }

    /// How long a name claim lives without a refresh.
    fn claim_ttl(&self) -> Duration {
        self.heartbeat * 10
    }
}

/// Why an envelope was dropped, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Loss {
    /// The publish queue was full.
    QueueFull,
    /// Redis could not be reached to publish it.
    RedisDown,
    /// A payload on the channel that is not an envelope.
    Garbage,
    /// An envelope of another version.
    Version,
    /// An envelope seen already.
    Repeat,
}

impl Loss {
    /// Every reason, in the order of the counters.
    const ALL: [Loss; 5] = [
        Loss::QueueFull,
        Loss::RedisDown,
        Loss::Garbage,
        Loss::Version,
        Loss::Repeat,
    ];

    /// The reason's name in metrics.
    fn name(self) -> &'static str {
        match self {
            Loss::QueueFull => "queue_full",
            Loss::RedisDown => "redis_down",
            Loss::Garbage => "garbage",
            Loss::Version => "version",
            Loss::Repeat => "repeat",
        }
    }
}

/// The bus's live counters.
#[derive(Default)]
struct Counters {
    subscribed: AtomicBool,
    publishing: AtomicBool,
    published: AtomicU64,
    received: AtomicU64,
    dropped: [AtomicU64; 5],
    missed: AtomicU64,
    reconnects: AtomicU64,
    latency: Latency,
}

/// Upper bounds of the delivery-time buckets, seconds: the server's own
/// service-time buckets (`linepool_service_seconds`), so that the two
/// histograms read alike side by side.
const LATENCY_BOUNDS: [f64; 15] = [
    10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3,
    250e-3, 1.0,
];

/// Delivery times, from a line's arrival on its instance to its delivery
/// here: prometheus-client's own histogram, with fixed buckets. Recorded
/// by the subscriber thread alone, once per line, so its short lock is
/// never contended but by a scrape.
#[derive(Clone, Debug)]
pub(crate) struct Latency(Histogram);

impl Default for Latency {
    fn default() -> Self {
        Latency(Histogram::new(LATENCY_BOUNDS))
    }
}

impl Latency {
    /// Counts one delivery that took `time`.
    pub(crate) fn record(&self, time: Duration) {
        self.0.observe(time.as_secs_f64());
    }

    /// The histogram, to encode.
    pub(crate) fn histogram(&self) -> &Histogram {
        &self.0
    }
}

impl Counters {
    fn dropped(&self, why: Loss) {
        self.dropped[why as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// What the bus did, for metrics, the stats line and the stop summary.
#[derive(Clone, Debug)]
pub(crate) struct Figures {
    /// Subscribed and able to publish.
    pub up: bool,
    /// Envelopes published.
    pub published: u64,
    /// Envelopes of other instances received.
    pub received: u64,
    /// Envelopes dropped, by reason.
    pub dropped: [(&'static str, u64); 5],
    /// Envelopes of other instances that never came (sequence gaps).
    pub missed: u64,
    /// Subscriptions made again after one was lost.
    pub reconnects: u64,
    /// Members in the room, as this instance sees it.
    pub members: u64,
    /// Time from a line's arrival on its instance to its delivery here.
    pub latency: Latency,
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dropped: u64 = self.dropped.iter().map(|(_, n)| n).sum();
        write!(
            f,
            "bus_up={} bus_published={} bus_received={} bus_dropped={dropped} bus_missed={} bus_reconnects={} room_members={}",
            u8::from(self.up),
            self.published,
            self.received,
            self.missed,
            self.reconnects,
            self.members
        )
    }
}

/// What the publisher has to do.
enum Job {
    /// Publish `body`, taken at `at` (microseconds since the epoch).
    Send(Body, u64),
    /// Decide a newcomer's name.
    Admit(Arc<Admission>),
    /// Free the names that an instance given up for dead (its id) may
    /// still hold in Redis.
    Free(String, Vec<String>),
}

/// The publisher's queue, bounded: sessions and the subscriber put
/// envelopes in without waiting; when it is full they are dropped.
pub(crate) struct Outgoing {
    queue: Mutex<Queue>,
    ready: Condvar,
    cap: usize,
    counters: Counters,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

impl Outgoing {
    /// A queue of at most `cap` envelopes.
    pub(super) fn new(cap: usize) -> Arc<Outgoing> {
        Arc::new(Outgoing {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            cap,
            counters: Counters::default(),
        })
    }

    /// Queues `body` for publishing; drops it when the queue is full.
    /// Heartbeats are never dropped (at most one is queued at a time, by
    /// the publisher itself), so an instance under load is not taken for
    /// dead.
    pub(super) fn send(&self, body: Body, at: u64) {
        let vital = matches!(body, Body::Beat { .. } | Body::Hello { .. } | Body::Bye);
        let mut queue = self.queue.lock();
        if queue.jobs.len() >= self.cap && !vital {
            drop(queue);
            self.counters.dropped(Loss::QueueFull);
            return;
        }
        queue.jobs.push_back(Job::Send(body, at));
        drop(queue);
        self.ready.notify_one();
    }

    /// Queues a newcomer's admission. Never dropped: there is at most one
    /// per connection, and the newcomer waits for it.
    pub(super) fn admit(&self, admission: Arc<Admission>) {
        self.queue.lock().jobs.push_back(Job::Admit(admission));
        self.ready.notify_one();
    }

    /// Queues the freeing of `names`, which the instance `id`, given up
    /// for dead, may still hold. Never dropped: there is one per instance
    /// that dies, and a name not freed stays taken for its time to live.
    pub(super) fn free(&self, id: String, names: Vec<String>) {
        self.queue.lock().jobs.push_back(Job::Free(id, names));
        self.ready.notify_one();
    }

    /// The next job, waiting until `deadline` at most; `None` at the
    /// deadline, when woken without one (the publisher's flags may have
    /// changed), or at once when the queue is closed and empty.
    fn next(&self, deadline: Instant) -> Option<Job> {
        let mut queue = self.queue.lock();
        if let Some(job) = queue.jobs.pop_front() {
            return Some(job);
        }
        if !queue.closed {
            self.ready.wait_until(&mut queue, deadline);
        }
        queue.jobs.pop_front()
    }

    /// Moves the envelopes at the front of the queue into `batch`, up to
    /// `max` in all, without waiting; stops at an admission.
    fn more_sends(&self, batch: &mut Vec<(Body, u64)>, max: usize) {
        let mut queue = self.queue.lock();
        while batch.len() < max {
            match queue.jobs.pop_front() {
                Some(Job::Send(body, at)) => batch.push((body, at)),
                Some(other) => {
                    queue.jobs.push_front(other);
                    return;
                }
                None => return,
            }
        }
    }

    /// Wakes the publisher to look at its flags.
    fn wake(&self) {
        self.ready.notify_one();
    }

    /// Ends the waits: the publisher drains what is left and stops.
    fn close(&self) {
        self.queue.lock().closed = true;
        self.ready.notify_all();
    }
}

/// A random 64-bit number from the standard library's per-process keys
/// and the clock: enough to tell instances apart and to jitter back-off.
fn random_u64() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    RandomState::new().hash_one((nanos, std::process::id()))
}

/// Capped, jittered exponential back-off: each wait is between half and
/// all of a step that doubles from [`FIRST_BACKOFF`] up to the cap.
struct Backoff {
    step: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Backoff {
        Backoff {
            step: FIRST_BACKOFF.min(max),
            max,
        }
    }

    /// The wait before the next attempt.
    fn next(&mut self) -> Duration {
        let step = self.step;
        self.step = (step * 2).min(self.max);
        let half = step / 2;
        let jitter = random_u64() % (u64::try_from(half.as_micros()).unwrap_or(1).max(1));
        half + Duration::from_micros(jitter)
    }

    /// After a success: the next failure starts from the first step.
    fn reset(&mut self) {
        self.step = FIRST_BACKOFF.min(self.max);
    }
}

#[cfg(test)]
mod tests;
