//! The bus's publisher thread: publishes the queued envelopes in order
//! with this instance's sequence numbers, decides newcomers' names, sends
//! the heartbeat and keeps the name claims alive.
//!
//! A name is claimed with a small script that sets the room's key for it
//! to this instance's id, with a time to live of ten heartbeats, if the
//! key is free or already this instance's; every heartbeat refreshes the
//! claims of the instance's members, a `left` releases one (only if still
//! ours). Guest numbers come from one counter per room (`INCR`). Without
//! Redis the instance decides alone, from what it knows of the room.
//! A publish that fails is never retried (it may have reached Redis, and
//! a retry could deliver it twice): it is dropped and counted.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use log::{debug, info};

use super::{Backoff, Bus, COMMAND_TIMEOUT, CONNECT_TIMEOUT, Job, Loss};
use crate::logfmt;
use crate::protocol::chat::envelope::{Body, Envelope, VERSION};
use crate::protocol::chat::{Admission, Room, refusal, unix_micros};
use crate::shutdown::Shutdown;

/// Sets `KEYS[1]` to `ARGV[1]` for `ARGV[2]` ms if it is free or holds
/// `ARGV[1]` already; 1 if it is ours now.
const CLAIM: &str = "local v = redis.call('GET', KEYS[1]) \
    if v == false or v == ARGV[1] then \
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end return 0";

/// Deletes `KEYS[1]` if it holds `ARGV[1]`.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('DEL', KEYS[1]) end return 0";

/// Guest numbers tried in Redis before the instance picks one alone.
const GUEST_TRIES: usize = 8;

/// Envelopes published in one round trip at most.
const BATCH: usize = 256;

/// How long a stop may spend publishing what is still queued.
const FINAL_FLUSH: Duration = Duration::from_secs(2);

/// The publisher's connection and sequence.
struct Publisher<'a> {
    bus: &'a Bus,
    conn: Option<redis::Connection>,
    seq: u64,
    backoff: Backoff,
    next_try: Instant,
}

impl Bus {
    /// Runs the publisher until `until` fires, then publishes what is
    /// queued and a `bye`.
    pub(super) fn publish_loop(&self, until: &Shutdown) {
        let mut publisher = Publisher {
            bus: self,
            conn: None,
            seq: 0,
            backoff: Backoff::new(self.backoff_max),
            next_try: Instant::now(),
        };
        let mut next_beat = Instant::now();
        while !until.is_triggered() {
            let now = Instant::now();
            if publisher.conn.is_none() && now >= publisher.next_try {
                publisher.connect();
            }
            let hello = self.hello.swap(false, Ordering::AcqRel);
            if hello || now >= next_beat || self.beat_soon.swap(false, Ordering::AcqRel) {
                self.queue_presence(hello);
                next_beat = now + self.heartbeat;
            }
            let deadline = match publisher.conn {
                None => next_beat.min(publisher.next_try),
                Some(_) => next_beat,
            };
            if let Some(job) = self.out.next(deadline) {
                publisher.run(job);
            }
        }
        publisher.finish();
    }

    /// Queues a heartbeat (or a `hello`) naming every local member. It is
    /// queued under the room's lock, as every change of membership is, so
    /// it comes after every change it includes and before every later one.
    fn queue_presence(&self, hello: bool) {
        let members = self.room.members.lock();
        let names = Room::local_names(&members);
        let body = if hello {
            Body::Hello { members: names }
        } else {
            Body::Beat { members: names }
        };
        self.out.send(body, unix_micros());
    }
}

impl Publisher<'_> {
    /// Tries to reach Redis; on failure, sets the time of the next try.
    fn connect(&mut self) {
        let attempt = self
            .bus
            .client
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .and_then(|conn| {
                conn.set_read_timeout(Some(COMMAND_TIMEOUT))?;
                conn.set_write_timeout(Some(COMMAND_TIMEOUT))?;
                Ok(conn)
            });
        match attempt {
            Ok(conn) => {
                self.conn = Some(conn);
                self.backoff.reset();
                self.bus
                    .out
                    .counters
                    .publishing
                    .store(true, Ordering::Release);
                info!(
                    "chat bus publishing url={} room={}",
                    self.bus.url, self.bus.room_name
                );
                // Claims may have been lost with Redis: a beat renews them.
                self.bus.beat_soon.store(true, Ordering::Release);
            }
            Err(e) => {
                debug!("chat bus cannot publish yet error={}", logfmt::error(&e));
                self.next_try = Instant::now() + self.backoff.next();
            }
        }
    }

    /// Redis went away: drop the connection and try again later.
    fn lost(&mut self, e: &redis::RedisError) {
        if self.conn.take().is_some() {
            self.bus
                .out
                .counters
                .publishing
                .store(false, Ordering::Release);
            debug!("chat bus publisher lost redis error={}", logfmt::error(e));
        }
        self.next_try = Instant::now() + self.backoff.next();
    }

    /// Does `job`; an envelope goes out with those queued behind it.
    fn run(&mut self, job: Job) {
        match job {
            Job::Send(body, at) => {
                let mut batch = vec![(body, at)];
                self.bus.out.more_sends(&mut batch, BATCH);
                self.publish(batch);
            }
            Job::Admit(admission) => self.admit(&admission),
        }
    }

    /// Publishes envelopes in one round trip, in order, or drops and
    /// counts them all.
    fn publish(&mut self, batch: Vec<(Body, u64)>) {
        let counters = &self.bus.out.counters;
        let Some(conn) = self.conn.as_mut() else {
            for _ in &batch {
                counters.dropped(Loss::RedisDown);
            }
            return;
        };
        let mut pipe = redis::pipe();
        let mut sent = Vec::with_capacity(batch.len());
        for (body, at) in batch {
            self.seq += 1;
            let envelope = Envelope {
                v: VERSION,
                id: self.bus.instance.clone(),
                seq: self.seq,
                at,
                body,
            };
            pipe.cmd("PUBLISH")
                .arg(&self.bus.channel)
                .arg(envelope.encode())
                .ignore();
            sent.push(envelope);
        }
        match pipe.exec(conn) {
            Ok(()) => {
                counters
                    .published
                    .fetch_add(sent.len() as u64, Ordering::Relaxed);
                for envelope in &sent {
                    self.published(envelope);
                }
            }
            Err(e) => {
                for _ in &sent {
                    counters.dropped(Loss::RedisDown);
                }
                self.lost(&e);
            }
        }
    }

    /// What follows a publish: a `left` gives its name back, a heartbeat
    /// renews the claims and is watched for on the subscription.
    fn published(&mut self, envelope: &Envelope) {
        match &envelope.body {
            Body::Left { name } => self.release(name),
            Body::Beat { members } | Body::Hello { members } => {
                {
                    let seen = self.bus.own_seen.load(Ordering::Acquire);
                    let mut out = self.bus.beat_out.lock();
                    if out.is_none_or(|(seq, _)| seq <= seen) {
                        *out = Some((envelope.seq, Instant::now()));
                    }
                }
                self.claim_all(members);
            }
            _ => {}
        }
    }

    /// Decides a newcomer's name and admits it.
    fn admit(&mut self, admission: &Arc<Admission>) {
        let (name, notice) = self.choose(&admission.wanted);
        if !admission.complete(&self.bus.room, name.clone(), notice) {
            self.release(&name);
        }
    }

    /// The name a newcomer who wants `wanted` gets, and what it is told
    /// first: `wanted` if nobody in the room holds it and the claim in
    /// Redis succeeds, else a guest name.
    fn choose(&mut self, wanted: &str) -> (String, Option<String>) {
        let refused = {
            let members = self.bus.room.members.lock();
            refusal(wanted, members.holds(wanted))
        };
        let why = match refused {
            Some(why) => why,
            None => match self.claim(wanted) {
                Some(true) => return (wanted.to_string(), None),
                Some(false) => format!("Name {wanted} is taken"),
                None => {
                    let mut members = self.bus.room.members.lock();
                    return Room::choose_locally(&mut members, wanted);
                }
            },
        };
        for _ in 0..GUEST_TRIES {
            let Some(number) = self.next_guest() else {
                break;
            };
            let guest = format!("guest-{number}");
            let free = !self.bus.room.members.lock().holds(&guest);
            if free && self.claim(&guest) == Some(true) {
                let notice = format!("{why}; you are {guest}\n");
                return (guest, Some(notice));
            }
        }
        let mut members = self.bus.room.members.lock();
        Room::local_guest(&mut members, &why)
    }

    /// Claims `name` for this instance: `Some(true)` if it is ours now,
    /// `Some(false)` if another instance holds it, `None` without Redis.
    fn claim(&mut self, name: &str) -> Option<bool> {
        let conn = self.conn.as_mut()?;
        let claimed = redis::cmd("EVAL")
            .arg(CLAIM)
            .arg(1)
            .arg(format!("{}{name}", self.bus.names))
            .arg(&self.bus.instance)
            .arg(self.bus.claim_ttl().as_millis() as u64)
            .query::<i64>(conn);
        match claimed {
            Ok(n) => Some(n == 1),
            Err(e) => {
                self.lost(&e);
                None
            }
        }
    }

    /// Renews the claims of `names`, in one round trip. A name another
    /// instance took while this one could not renew stays with it here
    /// too (see docs/protocols.md).
    fn claim_all(&mut self, names: &[String]) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if names.is_empty() {
            return;
        }
        let ttl = self.bus.claim_ttl().as_millis() as u64;
        let mut pipe = redis::pipe();
        for name in names {
            pipe.cmd("EVAL")
                .arg(CLAIM)
                .arg(1)
                .arg(format!("{}{name}", self.bus.names))
                .arg(&self.bus.instance)
                .arg(ttl)
                .ignore();
        }
        if let Err(e) = pipe.exec(conn) {
            self.lost(&e);
        }
    }

    /// Gives `name` back, if this instance still holds it.
    fn release(&mut self, name: &str) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let released = redis::cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(format!("{}{name}", self.bus.names))
            .arg(&self.bus.instance)
            .query::<i64>(conn);
        if let Err(e) = released {
            self.lost(&e);
        }
    }

    /// The room's next guest number, from Redis.
    fn next_guest(&mut self) -> Option<u64> {
        let conn = self.conn.as_mut()?;
        match redis::cmd("INCR").arg(&self.bus.guests).query::<u64>(conn) {
            Ok(n) => Some(n),
            Err(e) => {
                self.lost(&e);
                None
            }
        }
    }

    /// At the stop: publishes what is queued (every session's `left` is
    /// among it), for [`FINAL_FLUSH`] at most, then a `bye`, so that the
    /// other instances forget this one's members at once.
    fn finish(&mut self) {
        let until = Instant::now() + FINAL_FLUSH;
        while let Some(job) = self.bus.out.next(Instant::now()) {
            if Instant::now() < until {
                self.run(job);
            } else if let Job::Send(..) = job {
                self.bus.out.counters.dropped(Loss::RedisDown);
            }
        }
        self.publish(vec![(Body::Bye, unix_micros())]);
        self.bus
            .out
            .counters
            .publishing
            .store(false, Ordering::Release);
    }
}
