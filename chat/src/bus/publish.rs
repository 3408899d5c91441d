//! The bus's publisher thread: publishes the queued envelopes in order
//! with this instance's sequence numbers, decides newcomers' names
//! (`names.rs`), sends the heartbeat and keeps the name claims alive.
//!
//! A line (or a change of membership) is published when Redis has
//! answered its `PUBLISH`, not when it was written: a connection Redis has
//! closed takes writes without a word, and only the missing answer says
//! that they went nowhere. What a failed round trip carried is held again,
//! in order, ahead of what came after it, and re-sent once Redis is back;
//! a heartbeat in it is not (the next one says more).
//!
//! While Redis is away, lines and changes of membership are held, in order,
//! for the hold window ([`HOLD`], 10 s) from when each was said, and on top
//! of it for as long as Redis could have been back without this instance
//! knowing yet (the back-off's cap and a connection's time): every line
//! said in the last 10 s before Redis was back is published, so an outage
//! shorter than that loses nothing. Older ones are dropped and counted, so
//! memory stays flat whatever the outage lasts. Back on Redis, the
//! publisher says `hello` and goes on holding until every instance that was
//! in the room has said it hears it again (or, for one that does not come
//! back, until it could have): a line said once Redis is back is published
//! only when every instance can hear it, so none is lost however the
//! instances' back-offs fall. Heartbeats go out meanwhile, naming the
//! members as the others know them, so that nobody is taken for gone and
//! nobody hears of a change before the lines said before it.

use std::collections::VecDeque;
use std::mem;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use log::{debug, info};

use super::{Backoff, Bus, COMMAND_TIMEOUT, CONNECT_TIMEOUT, HOLD, Job, Loss};
use crate::envelope::{Body, Envelope, VERSION};
use crate::{Room, unix_micros};
use linepool::logfmt;
use linepool::shutdown::Shutdown;

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

    /// The oldest time (microseconds since the epoch) a line held while
    /// Redis is away may have been said: Redis may be back now, unnoticed
    /// for a while yet, and every line said in the hold window before it
    /// came back is still owed.
    fn held_since(&self) -> u64 {
        let kept = u64::try_from((HOLD + self.unnoticed()).as_micros()).unwrap_or(u64::MAX);
        unix_micros().saturating_sub(kept)
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
                // What is held is trimmed to the window only as lines come:
                // after a quiet spell it may hold older ones, which go now.
                self.drop_held_before(self.bus.held_since());
                if !self.held.is_empty() || !self.expected.is_empty() {
                    let now = Instant::now();
                    let unnoticed = self.bus.unnoticed();
                    self.catch_up = Some(CatchUp {
                        since: now,
                        // Another instance may be one back-off wait and a
                        // connection behind this one, and a heartbeat more
                        // before it says so.
                        until: now + unnoticed + self.bus.heartbeat,
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
    /// again, or could have: publishes what is held, in order.
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
        self.catch_up = None;
        self.expected.clear();
        while self.conn.is_some() && !self.held.is_empty() {
            let n = self.held.len().min(BATCH);
            let batch: Vec<(Body, u64)> = self.held.drain(..n).collect();
            self.send(batch);
        }
    }

    /// Holds `body`, taken at `at`, until it can go out; makes room by
    /// dropping (and counting) the oldest, and while Redis is away, what
    /// is past the hold window. Back on Redis, the catch-up keeps all.
    fn hold(&mut self, body: Body, at: u64) {
        if self.conn.is_none() {
            self.drop_held_before(self.bus.held_since());
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
            Job::Free(id, names) => self.free(&id, &names),
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
            if held_when_unanswered(&body) {
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

    /// Publishes envelopes in one round trip, in order. Without an answer
    /// from Redis, none counts as published: the lines and changes of
    /// membership are held again, ahead of what is held already (taken
    /// after them), and the rest is dropped and counted.
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
            // A re-sent envelope takes a new number: whatever went out
            // since (a heartbeat during the catch-up) has a higher one,
            // and the others drop what comes with a lower one as seen. So
            // one that Redis carried out without answering is heard twice:
            // rarer, and less harm, than a line lost.
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
                self.lost(&e);
                for envelope in sent.into_iter().rev() {
                    if held_when_unanswered(&envelope.body) {
                        self.held.push_front((envelope.body, envelope.at));
                    } else {
                        counters.dropped(Loss::RedisDown);
                    }
                }
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

/// Whether `body` is held while it cannot be published: lines and changes
/// of membership, which nothing later repeats. A heartbeat, a `hello` or a
/// `bye` is not: the next one says more.
fn held_when_unanswered(body: &Body) -> bool {
    matches!(
        body,
        Body::Said { .. } | Body::Joined { .. } | Body::Left { .. }
    )
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
