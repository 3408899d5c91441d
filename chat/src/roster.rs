//! The members of the other instances on the chat bus, as this instance
//! has heard of them: per instance id, its members' names, when it was
//! last heard, the last sequence number it sent and when it last said it
//! hears the room. Pure data; the bus's
//! subscriber feeds it and announces what changes to the local members.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// Every other instance heard of.
#[derive(Debug, Default)]
pub struct Roster {
    peers: HashMap<String, Peer>,
}

#[derive(Debug)]
struct Peer {
    names: BTreeSet<String>,
    last_heard: Instant,
    last_seq: u64,
    /// When it last said its subscription was up.
    hearing: Option<Instant>,
}

/// What a sequence number says about an envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sequence {
    /// New; `missed` envelopes of that instance never came before it.
    Fresh {
        /// How many were skipped.
        missed: u64,
    },
    /// Seen already (or older): dropped.
    Repeat,
}

impl Roster {
    /// Notes an envelope `seq` from `id`, heard `now`. The first envelope
    /// heard from an instance counts no gap: this one may have subscribed
    /// after it started.
    pub fn heard(&mut self, id: &str, seq: u64, now: Instant) -> Sequence {
        let peer = self.peers.entry(id.to_string()).or_insert_with(|| Peer {
            names: BTreeSet::new(),
            last_heard: now,
            last_seq: seq.saturating_sub(1),
            hearing: None,
        });
        if seq <= peer.last_seq {
            return Sequence::Repeat;
        }
        let missed = seq - peer.last_seq - 1;
        peer.last_seq = seq;
        peer.last_heard = now;
        Sequence::Fresh { missed }
    }

    /// `name` joined on `id`; whether it is new.
    pub fn join(&mut self, id: &str, name: &str) -> bool {
        self.peers
            .get_mut(id)
            .is_some_and(|peer| peer.names.insert(name.to_string()))
    }

    /// `name` left `id`; whether it was there.
    pub fn leave(&mut self, id: &str, name: &str) -> bool {
        self.peers
            .get_mut(id)
            .is_some_and(|peer| peer.names.remove(name))
    }

    /// `id` holds exactly `names` now: returns who joined and who left
    /// since what was known.
    pub fn replace(&mut self, id: &str, names: Vec<String>) -> (Vec<String>, Vec<String>) {
        let Some(peer) = self.peers.get_mut(id) else {
            return (Vec::new(), Vec::new());
        };
        let now: BTreeSet<String> = names.into_iter().collect();
        let joined = now.difference(&peer.names).cloned().collect();
        let left = peer.names.difference(&now).cloned().collect();
        peer.names = now;
        (joined, left)
    }

    /// `id` said at `now` that its subscription is up.
    pub fn hearing(&mut self, id: &str, now: Instant) {
        if let Some(peer) = self.peers.get_mut(id) {
            peer.hearing = Some(now);
        }
    }

    /// Whether `id` has said since `since` that its subscription is up.
    pub fn hears_since(&self, id: &str, since: Instant) -> bool {
        self.peers
            .get(id)
            .and_then(|peer| peer.hearing)
            .is_some_and(|at| at >= since)
    }

    /// The instances heard of.
    pub fn ids(&self) -> Vec<String> {
        self.peers.keys().cloned().collect()
    }

    /// `id` is gone: returns the members it had.
    pub fn forget(&mut self, id: &str) -> Vec<String> {
        self.peers
            .remove(id)
            .map(|peer| peer.names.into_iter().collect())
            .unwrap_or_default()
    }

    /// Forgets every instance not heard for `silence` by `now`; returns
    /// each one's id with the members it had.
    pub fn expire(&mut self, now: Instant, silence: Duration) -> Vec<(String, Vec<String>)> {
        let gone: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, peer)| now.saturating_duration_since(peer.last_heard) > silence)
            .map(|(id, _)| id.clone())
            .collect();
        gone.into_iter()
            .map(|id| {
                let names = self.forget(&id);
                (id, names)
            })
            .collect()
    }

    /// Whether any other instance has a member called `name`.
    pub fn holds(&self, name: &str) -> bool {
        self.peers.values().any(|peer| peer.names.contains(name))
    }

    /// The members of every other instance.
    pub fn len(&self) -> usize {
        self.peers.values().map(|peer| peer.names.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sequences_count_gaps_and_drop_repeats() {
        let mut roster = Roster::default();
        let t = Instant::now();
        assert_eq!(roster.heard("a", 7, t), Sequence::Fresh { missed: 0 });
        assert_eq!(roster.heard("a", 8, t), Sequence::Fresh { missed: 0 });
        assert_eq!(roster.heard("a", 8, t), Sequence::Repeat);
        assert_eq!(roster.heard("a", 5, t), Sequence::Repeat);
        assert_eq!(roster.heard("a", 11, t), Sequence::Fresh { missed: 2 });
        assert_eq!(roster.heard("b", 1, t), Sequence::Fresh { missed: 0 });
    }

    #[test]
    fn joins_leaves_and_beats_say_what_changed() {
        let mut roster = Roster::default();
        let t = Instant::now();
        roster.heard("a", 1, t);
        assert!(roster.join("a", "ann"));
        assert!(!roster.join("a", "ann"));
        assert!(!roster.join("unheard", "zed"));
        assert!(roster.holds("ann"));
        assert_eq!(
            roster.replace("a", names(&["bob", "cid"])),
            (names(&["bob", "cid"]), names(&["ann"]))
        );
        assert!(roster.leave("a", "bob"));
        assert!(!roster.leave("a", "bob"));
        assert_eq!(roster.len(), 1);
        assert_eq!(roster.forget("a"), names(&["cid"]));
        assert_eq!(roster.len(), 0);
    }

    #[test]
    fn an_instance_hears_from_when_it_says_so() {
        let mut roster = Roster::default();
        let t = Instant::now();
        let later = t + Duration::from_secs(1);
        roster.hearing("unheard", t);
        assert!(roster.ids().is_empty());
        roster.heard("a", 1, t);
        assert_eq!(roster.ids(), names(&["a"]));
        assert!(!roster.hears_since("a", t));
        roster.hearing("a", t);
        assert!(roster.hears_since("a", t));
        assert!(!roster.hears_since("a", later));
        roster.hearing("a", later);
        assert!(roster.hears_since("a", later));
        assert!(!roster.hears_since("b", t));
    }

    #[test]
    fn silent_instances_expire_with_their_members() {
        let mut roster = Roster::default();
        let t = Instant::now();
        roster.heard("a", 1, t);
        roster.join("a", "ann");
        roster.heard("b", 1, t + Duration::from_secs(2));
        roster.join("b", "bob");
        let later = t + Duration::from_millis(2500);
        assert_eq!(
            roster.expire(later, Duration::from_secs(1)),
            vec![("a".to_string(), names(&["ann"]))]
        );
        assert_eq!(roster.len(), 1);
        assert!(roster.holds("bob"));
    }
}
