//! The bus's publisher thread: publishes the queued envelopes in order
//! with this instance's sequence numbers, decides newcomers' names
//! (`names.rs`), sends the heartbeat and keeps the name claims alive.
//!
//! A publish that fails is never retried (it may have reached Redis, and
//! a retry could deliver it twice): it is dropped and counted.
//!
//! While Redis is away, lines and changes of membership are held, in
//! order, for as long as Redis could have been back without this
//! instance knowing yet (the back-off's cap and a connection's time);
//! older ones are dropped and counted, so memory stays flat whatever the
//! outage lasts. Back on Redis, the publisher says `hello` and goes on
//! holding until every instance that was in the room has said it hears
//! it again (or, for one that does not come back, until it could have):
//! a line said once Redis is back is published only when every instance
//! can hear it, so none is lost however the instances' back-offs fall.
//! Heartbeats go out meanwhile, naming the members as the others know
//! them, so that nobody is taken for gone and nobody hears of a change
//! before the lines said before it.

use std::collections::VecDeque;
use std::mem;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use log::{debug, info};

use super::{Backoff, Bus, COMMAND_TIMEOUT, CONNECT_TIMEOUT, Job, Loss};
use crate::logfmt;
use crate::protocol::chat::envelope::{Body, Envelope, VERSION};
use crate::protocol::chat::{Room, unix_micros};
use crate::shutdown::Shutdown;

mod names;

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
    /// Lines and changes of membership not published yet, in order, with
    /// when each was taken: Redis is away, or the room catching up.
    held: VecDeque<(Body, u64)>,
    /// The instances in the room when Redis was lost: those that must
    /// hear it again before what is held goes out.
    expected: Vec<String>,
    /// Back on Redis, holding until the room hears again.
    catch_up: Option<CatchUp>,
}

/// A catch-up after Redis came back.
struct CatchUp {
    /// When the publisher was back on Redis.
    since: Instant,
    /// When it stops waiting for instances that have not come back.
    until: Instant,
    /// Held envelopes taken before this (microseconds since the epoch)
    /// were taken before Redis was back: they are dropped.
    oldest: u64,
    /// Every instance expected hears the room.
    hearing: bool,
    /// A heartbeat went out since: they know this instance's members
    /// before they hear what is held.
    announced: bool,
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
            held: VecDeque::new(),
            expected: Vec::new(),
            catch_up: None,
        };
        let mut next_beat = Instant::now();
        while !until.is_triggered() {
            let now = Instant::now();
            if publisher.conn.is_none() && now >= publisher.next_try {
                publisher.connect();
            }
            publisher.try_catch_up(now);
            let hello = self.hello.swap(false, Ordering::AcqRel);
            if hello || now >= next_beat || self.beat_soon.swap(false, Ordering::AcqRel) {
                self.queue_presence(hello);
                next_beat = now + self.heartbeat;
            }
            let mut deadline = match publisher.conn {
                None => next_beat.min(publisher.next_try),
                Some(_) => next_beat,
            };
            if let Some(catch_up) = &publisher.catch_up {
                deadline = deadline.min(catch_up.until);
            }
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
        let hears = self.out.counters.subscribed.load(Ordering::Acquire);
        let body = if hello {
            Body::Hello {
                members: names,
                hears,
            }
        } else {
            Body::Beat {
                members: names,
                hears,
            }
        };
        self.out.send(body, unix_micros());
    }

    /// The longest Redis can have been back before the publisher knows:
    /// a back-off wait, then a connection.
    fn unnoticed(&self) -> Duration {
        self.backoff_max + CONNECT_TIMEOUT
    }

    /// When (microseconds since the epoch) Redis came back at the
    /// earliest, if it is back now or comes back now unnoticed: what was
    /// taken before cannot have been said once it was back.
    fn back_at_earliest(&self) -> u64 {
        let unnoticed = u64::try_from(self.unnoticed().as_micros()).unwrap_or(0);
        unix_micros().saturating_sub(unnoticed)
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
                if !self.held.is_empty() || !self.expected.is_empty() {
                    let now = Instant::now();
                    let unnoticed = self.bus.unnoticed();
                    self.catch_up = Some(CatchUp {
                        since: now,
                        // Another instance may be one back-off wait and a
                        // connection behind this one, and a heartbeat more
                        // before it says so.
                        until: now + unnoticed + self.bus.heartbeat,
                        oldest: self.bus.back_at_earliest(),
                        hearing: false,
                        announced: false,
                    });
                    // Asks every instance whether it hears the room.
                    self.bus.hello.store(true, Ordering::Release);
                }
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
            // Those who were in the room are waited for when it is back.
            let known = self.bus.room.members.lock().remote.ids();
            for id in known {
                if !self.expected.contains(&id) {
                    self.expected.push(id);
                }
            }
            self.catch_up = None;
        }
        self.next_try = Instant::now() + self.backoff.next();
    }

    /// Ends the catch-up once every instance expected hears the room
    /// again, or could have: publishes what is held, in order, but for
    /// what was taken before Redis was back (dropped and counted).
    fn try_catch_up(&mut self, now: Instant) {
        let Some(catch_up) = self.catch_up.as_mut() else {
            return;
        };
        if now < catch_up.until && !catch_up.hearing {
            let members = self.bus.room.members.lock();
            let heard = |id: &String| members.remote.hears_since(id, catch_up.since);
            if !self.expected.iter().all(heard) {
                return;
            }
            catch_up.hearing = true;
            self.bus.beat_soon.store(true, Ordering::Release);
        }
        if now < catch_up.until && !catch_up.announced {
            return;
        }
        let oldest = catch_up.oldest;
        self.catch_up = None;
        self.expected.clear();
        self.drop_held_before(oldest);
        while self.conn.is_some() && !self.held.is_empty() {
            let n = self.held.len().min(BATCH);
            let batch: Vec<(Body, u64)> = self.held.drain(..n).collect();
            self.send(batch);
        }
    }

    /// Holds `body`, taken at `at`, until it can go out; makes room by
    /// dropping (and counting) the oldest, and while Redis is away, what
    /// was taken longer ago than Redis could be back unnoticed.
    fn hold(&mut self, body: Body, at: u64) {
        if self.catch_up.is_none() {
            self.drop_held_before(self.bus.back_at_earliest());
        }
        if self.held.len() >= self.bus.out.cap {
            self.held.pop_front();
            self.bus.out.counters.dropped(Loss::RedisDown);
        }
        self.held.push_back((body, at));
    }

    /// Drops (and counts) what is held that was taken before `oldest`.
    fn drop_held_before(&mut self, oldest: u64) {
        while self.held.front().is_some_and(|(_, at)| *at < oldest) {
            self.held.pop_front();
            self.bus.out.counters.dropped(Loss::RedisDown);
        }
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

    /// Publishes envelopes in order: at once, or, while Redis is away or
    /// the room catches up, lines and changes of membership are held and
    /// heartbeats name the members as the others know them.
    fn publish(&mut self, batch: Vec<(Body, u64)>) {
        if self.conn.is_some() && self.catch_up.is_none() {
            return self.send(batch);
        }
        let mut now = Vec::new();
        for (mut body, at) in batch {
            if matches!(
                body,
                Body::Said { .. } | Body::Joined { .. } | Body::Left { .. }
            ) {
                self.hold(body, at);
                continue;
            }
            if let Body::Beat { members, .. } | Body::Hello { members, .. } = &mut body {
                self.announcing();
                *members = as_published(mem::take(members), &self.held);
            }
            now.push((body, at));
        }
        if !now.is_empty() {
            self.send(now);
        }
    }

    /// A heartbeat goes out: once the room hears again, what is held may
    /// follow it.
    fn announcing(&mut self) {
        if let Some(catch_up) = self.catch_up.as_mut()
            && catch_up.hearing
        {
            catch_up.announced = true;
        }
    }

    /// Publishes envelopes in one round trip, in order, or drops and
    /// counts them all.
    fn send(&mut self, batch: Vec<(Body, u64)>) {
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
            Body::Beat { members, .. } | Body::Hello { members, .. } => {
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

    /// At the stop: publishes what is queued (every session's `left` is
    /// among it), for [`FINAL_FLUSH`] at most, then a `bye`, so that the
    /// other instances forget this one's members at once.
    fn finish(&mut self) {
        // What is held goes out now: the stop does not wait for the room.
        if let Some(catch_up) = self.catch_up.as_mut() {
            catch_up.until = Instant::now();
        }
        self.try_catch_up(Instant::now());
        let until = Instant::now() + FINAL_FLUSH;
        while let Some(job) = self.bus.out.next(Instant::now()) {
            if Instant::now() < until {
                self.run(job);
            } else if let Job::Send(..) = job {
                self.bus.out.counters.dropped(Loss::RedisDown);
            }
        }
        // Redis never came back: what is still held is lost.
        for _ in self.held.drain(..) {
            self.bus.out.counters.dropped(Loss::RedisDown);
        }
        self.send(vec![(Body::Bye, unix_micros())]);
        self.bus
            .out
            .counters
            .publishing
            .store(false, Ordering::Release);
    }
}

/// `members`, an instance's members now, as the other instances know
/// them while `held` (changes taken before, not yet published) waits:
/// without those who joined since, with those who left since.
fn as_published(mut members: Vec<String>, held: &VecDeque<(Body, u64)>) -> Vec<String> {
    for (body, _) in held.iter().rev() {
        match body {
            Body::Joined { name } => members.retain(|member| member != name),
            Body::Left { name } if !members.contains(name) => members.push(name.clone()),
            _ => {}
        }
    }
    members
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_heartbeat_while_holding_names_the_members_as_published() {
        let held: VecDeque<(Body, u64)> = [
            Body::Left { name: "ann".into() },
            Body::Said {
                name: "bob".into(),
                line: "hi".into(),
            },
            Body::Joined { name: "cid".into() },
            Body::Left { name: "cid".into() },
            Body::Joined { name: "dan".into() },
        ]
        .into_iter()
        .map(|body| (body, 0))
        .collect();
        assert_eq!(
            as_published(names(&["bob", "dan"]), &held),
            names(&["bob", "ann"])
        );
        assert_eq!(
            as_published(names(&["bob"]), &VecDeque::new()),
            names(&["bob"])
        );
    }
}
