//! How the publisher decides newcomers' names and keeps them.
//!
//! A name is claimed with a small script that sets the room's key for it
//! to this instance's id, with a time to live of ten heartbeats, if the
//! key is free or already this instance's; every heartbeat refreshes the
//! claims of the instance's members, a `left` releases one (only if still
//! ours), and the names of an instance given up for dead are freed (only
//! those still its own). Guest numbers come from one counter per room (`INCR`). Without
//! Redis the instance decides alone, from what it knows of the room.

use std::sync::Arc;

use super::Publisher;
use crate::{Admission, Room, refusal};

/// Sets `KEYS[1]` to `ARGV[1]` for `ARGV[2]` ms if it is free or holds
/// `ARGV[1]` already; 1 if it is ours now.
const CLAIM: &str = "local v = redis.call('GET', KEYS[1]) \
    if v == false or v == ARGV[1] then \
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end return 0";

/// Deletes `KEYS[1]` if it holds `ARGV[1]`: compare and delete in one
/// step, so that a name another instance took since is left alone.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('DEL', KEYS[1]) end return 0";

/// Guest numbers tried in Redis before the instance picks one alone.
const GUEST_TRIES: usize = 8;

impl Publisher<'_> {
    /// Decides a newcomer's name and admits it.
    pub(super) fn admit(&mut self, admission: &Arc<Admission>) {
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
    pub(super) fn claim_all(&mut self, names: &[String]) {
        let ttl = self.bus.claim_ttl().as_millis().to_string();
        let instance = self.bus.instance.clone();
        self.each_name(CLAIM, names, &[&instance, &ttl]);
    }

    /// Gives `name` back, if this instance still holds it.
    pub(super) fn release(&mut self, name: &str) {
        let instance = self.bus.instance.clone();
        self.free(&instance, &[name.to_string()]);
    }

    /// Deletes the claims of `names` that still hold the instance `id`, in
    /// one round trip; a name claimed since by another instance stays
    /// its. Without Redis, the claims expire by their time to live.
    pub(super) fn free(&mut self, id: &str, names: &[String]) {
        self.each_name(RELEASE, names, &[id]);
    }

    /// Runs `script` on the claim of each of `names`, with `args`, in one
    /// round trip; nothing without Redis.
    fn each_name(&mut self, script: &str, names: &[String], args: &[&str]) {
        let Some(conn) = self.conn.as_mut().filter(|_| !names.is_empty()) else {
            return;
        };
        let mut pipe = redis::pipe();
        for name in names {
            pipe.cmd("EVAL")
                .arg(script)
                .arg(1)
                .arg(format!("{}{name}", self.bus.names))
                .arg(args)
                .ignore();
        }
        if let Err(e) = pipe.exec(conn) {
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
}
