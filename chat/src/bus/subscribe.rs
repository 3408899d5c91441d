//! The bus's subscriber thread: reads the room's channel and delivers what
//! the other instances said to the local members, keeps the roster of
//! their members, and watches that the subscription still carries this
//! instance's own heartbeat.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::{Backoff, Bus, CONNECT_TIMEOUT, Loss};
use crate::envelope::{Body, Envelope, Unreadable};
use crate::roster::Sequence;
use crate::{MAX_NAME, Members, unix_micros};
use linepool::logfmt::Quoted;
use linepool::shutdown::Shutdown;

/// The longest wait for a message before the subscriber looks at the
/// clock (silent peers, its own heartbeat, the stop).
const MAX_TICK: Duration = Duration::from_millis(250);

impl Bus {
    /// Subscribes, and subscribes again whenever the subscription is lost,
    /// until `until` fires. One warning per outage.
    pub(super) fn subscribe_loop(&self, until: &Shutdown) {
        let mut backoff = Backoff::new(self.backoff_max);
        let mut warned = false;
        let mut ever = false;
        while !until.is_triggered() {
            let outcome = match self.client.get_connection_with_timeout(CONNECT_TIMEOUT) {
                Ok(mut conn) => self.listen(&mut conn, until, &mut backoff, &mut ever, &mut warned),
                Err(e) => Err(e.to_string()),
            };
            self.out.counters.subscribed.store(false, Ordering::Release);
            let Err(why) = outcome else {
                return;
            };
            if until.is_triggered() {
                return;
            }
            if warned {
                debug!("chat bus still away error={}", Quoted(&why));
            } else {
                warn!(
                    "chat bus cannot reach redis, serving the local room until it can url={} error={}",
                    self.url,
                    Quoted(&why)
                );
                warned = true;
            }
            if self.wait_expiring(until, backoff.next()) {
                return;
            }
        }
    }

    /// Waits `wait` (or until the stop: then `true`), forgetting silent
    /// instances meanwhile: while this one cannot hear them, the others'
    /// members are announced as left when they would have been had they
    /// stopped.
    fn wait_expiring(&self, until: &Shutdown, wait: Duration) -> bool {
        let end = Instant::now() + wait;
        loop {
            let now = Instant::now();
            // Not hearing the room, this instance cannot tell a dead
            // instance from a live one: their names are left to expire.
            self.expire_peers(now, false);
            let left = end.saturating_duration_since(now);
            if left.is_zero() {
                return false;
            }
            if until.wait_timeout(left.min(self.tick())) {
                return true;
            }
        }
    }

    /// The longest wait for a message before looking at the clock.
    fn tick(&self) -> Duration {
        (self.heartbeat / 4).clamp(Duration::from_millis(5), MAX_TICK)
    }

    /// Serves one subscription until it is lost (`Err`, why) or the stop.
    fn listen(
        &self,
        conn: &mut redis::Connection,
        until: &Shutdown,
        backoff: &mut Backoff,
        ever: &mut bool,
        warned: &mut bool,
    ) -> Result<(), String> {
        let tick = self.tick();
        let mut pubsub = conn.as_pubsub();
        pubsub.subscribe(&self.channel).map_err(|e| e.to_string())?;
        pubsub
            .set_read_timeout(Some(tick))
            .map_err(|e| e.to_string())?;
        let counters = &self.out.counters;
        counters.subscribed.store(true, Ordering::Release);
        backoff.reset();
        *warned = false;
        if *ever {
            counters.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        *ever = true;
        info!(
            "chat bus subscribed url={} room={} instance={}",
            self.url, self.room_name, self.instance
        );
        // Announce presence, and ask the others for theirs.
        self.hello.store(true, Ordering::Release);
        self.out.wake();
        let subscribed = Instant::now();
        *self.beat_out.lock() = None;
        loop {
            match pubsub.get_message() {
                Ok(msg) => self.receive(msg.get_payload_bytes()),
                Err(e) if e.is_timeout() => {}
                Err(e) => return Err(e.to_string()),
            }
            if until.is_triggered() {
                return Ok(());
            }
            let now = Instant::now();
            // Only a subscription that hears this instance's own payloads
            // come back knows that the silent ones are gone from the room.
            // One on a Redis that stalls (stopped, paused) hears nothing,
            // and must not free the names of instances that are alive.
            let hears = self
                .own_heard
                .lock()
                .is_some_and(|at| now.saturating_duration_since(at) < self.own_silence());
            self.expire_peers(now, hears);
            if self.own_beat_lost(subscribed, now) {
                return Err(format!(
                    "own heartbeat did not come back within {} ms",
                    self.own_silence().as_millis()
                ));
            }
        }
    }

    /// Whether a heartbeat published since `subscribed` has not come back
    /// for too long: the subscription is up but silent.
    fn own_beat_lost(&self, subscribed: Instant, now: Instant) -> bool {
        let Some((seq, at)) = *self.beat_out.lock() else {
            return false;
        };
        at >= subscribed
            && seq > self.own_seen.load(Ordering::Acquire)
            && now.saturating_duration_since(at) > self.own_silence()
    }

    /// Forgets the instances silent too long, announcing their members as
    /// left. With `free` (this instance has heard its own payloads come
    /// back lately, so it hears the room and they are gone from it, dead
    /// or cut off), the publisher frees their names first:
    /// once the room hears that a member left, its name is free, not for
    /// the rest of the claim's time to live only. A name that the instance
    /// holds again when it comes back is claimed again by its heartbeat.
    fn expire_peers(&self, now: Instant, free: bool) {
        let mut members = self.room.members.lock();
        for (id, names) in members.remote.expire(now, self.peer_silence()) {
            // Queued before the announcement, under the room's lock: a
            // newcomer who heard it is admitted after the names are free.
            if free && !names.is_empty() {
                self.out.free(id, names.clone());
            }
            for name in names {
                members.announce(None, format!("* {name} left\n").as_bytes());
            }
        }
    }

    /// Handles one payload from the channel.
    fn receive(&self, payload: &[u8]) {
        let counters = &self.out.counters;
        let envelope = match Envelope::decode(payload) {
            Ok(envelope) if sane(&envelope.body) => envelope,
            Err(Unreadable::Version) => {
                counters.dropped(Loss::Version);
                return;
            }
            Ok(_) | Err(Unreadable::Garbage) => {
                counters.dropped(Loss::Garbage);
                debug!(
                    "chat bus dropped a payload that is no envelope bytes={}",
                    payload.len()
                );
                return;
            }
        };
        if envelope.id == self.instance {
            self.own_seen.fetch_max(envelope.seq, Ordering::AcqRel);
            *self.own_heard.lock() = Some(Instant::now());
            return;
        }
        counters.received.fetch_add(1, Ordering::Relaxed);
        let mut members = self.room.members.lock();
        match members
            .remote
            .heard(&envelope.id, envelope.seq, Instant::now())
        {
            Sequence::Repeat => {
                counters.dropped(Loss::Repeat);
                return;
            }
            Sequence::Fresh { missed } if missed > 0 => {
                counters.missed.fetch_add(missed, Ordering::Relaxed);
            }
            Sequence::Fresh { .. } => {}
        }
        let id = envelope.id;
        // A `hello` asks for everyone's heartbeat at once.
        let asks = matches!(envelope.body, Body::Hello { .. });
        match envelope.body {
            Body::Said { name, line } => {
                drop(members);
                let waited = unix_micros().saturating_sub(envelope.at);
                counters.latency.record(Duration::from_micros(waited));
                self.room
                    .broadcast(None, format!("{name}: {line}\n").as_bytes());
            }
            Body::Joined { name } => {
                if members.remote.join(&id, &name) {
                    members.announce(None, format!("* {name} joined\n").as_bytes());
                }
            }
            Body::Left { name } => {
                if members.remote.leave(&id, &name) {
                    members.announce(None, format!("* {name} left\n").as_bytes());
                }
            }
            Body::Beat {
                members: names,
                hears,
            }
            | Body::Hello {
                members: names,
                hears,
            } => {
                let (joined, left) = members.remote.replace(&id, names);
                announce_changes(&members, joined, left);
                if hears {
                    members.remote.hearing(&id, Instant::now());
                }
                if asks {
                    self.beat_soon.store(true, Ordering::Release);
                }
                // A publisher catching up may be waiting for this.
                if hears || asks {
                    self.out.wake();
                }
            }
            Body::Bye => {
                for name in members.remote.forget(&id) {
                    members.announce(None, format!("* {name} left\n").as_bytes());
                }
            }
        }
    }
}

/// Tells the local members who joined and who left another instance.
fn announce_changes(members: &Members, joined: Vec<String>, left: Vec<String>) {
    for name in joined {
        members.announce(None, format!("* {name} joined\n").as_bytes());
    }
    for name in left {
        members.announce(None, format!("* {name} left\n").as_bytes());
    }
}

/// Whether what an envelope says could have come from a member: names a
/// member could have, lines without line endings. Anything else would
/// let a stranger on the channel write lines of its own to our members.
fn sane(body: &Body) -> bool {
    let name_ok = |name: &str| !name.is_empty() && name.len() <= MAX_NAME && !has_ending(name);
    match body {
        // A line may hold a `\r` (the framing strips only a trailing
        // one, and local members hear it as it is); never a `\n`.
        Body::Said { name, line } => name_ok(name) && !line.contains('\n'),
        Body::Joined { name } | Body::Left { name } => name_ok(name),
        Body::Beat { members, .. } | Body::Hello { members, .. } => {
            members.iter().all(|n| name_ok(n))
        }
        Body::Bye => true,
    }
}

fn has_ending(text: &str) -> bool {
    text.contains(['\n', '\r'])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line may hold a `\r`, never a `\n`; a name may hold neither.
    #[test]
    fn a_said_line_may_hold_a_carriage_return() {
        let said = |name: &str, line: &str| Body::Said {
            name: name.to_string(),
            line: line.to_string(),
        };
        assert!(sane(&said("ann", "a\rb")));
        assert!(!sane(&said("ann", "a\nmallory: b")));
        assert!(!sane(&said("x\ry", "a")));
    }
}
