//! The settings an operator may change while the server runs (the admin
//! console's `set`): what new connections are given (the policy, swapped
//! whole), and the dials the acceptor, the watchdog and the stats line
//! read each time they act. The connection limit is the gate's, the log
//! level the logger's and the pool's size the engine's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::config::{Config, Overload};
use crate::handler::Policy;

/// A duration dial's value for "never".
const NEVER: u64 = u64::MAX;

/// The live settings.
pub(super) struct Live {
    /// What each new connection is given; a change swaps it, and
    /// connections keep the one they were given.
    policy: RwLock<Arc<Policy>>,
    /// `--overload reject`.
    reject: AtomicBool,
    /// `--idle-timeout`, in milliseconds; [`NEVER`] for none. Applies to
    /// every connection, at the watchdog's next scan.
    idle_ms: AtomicU64,
    /// `--stats-interval`, in milliseconds; [`NEVER`] for none.
    stats_ms: AtomicU64,
    /// Where each setting's value came from, by name, for `show config`:
    /// the binary's word for those it was given, `set` once changed.
    origins: Mutex<BTreeMap<String, String>>,
}

impl Live {
    /// The settings `config` starts with, new connections given `policy`.
    pub(super) fn new(policy: Arc<Policy>, config: &Config) -> Arc<Live> {
        Arc::new(Live {
            policy: RwLock::new(policy),
            reject: AtomicBool::new(config.overload == Overload::Reject),
            idle_ms: AtomicU64::new(millis(config.idle_timeout)),
            stats_ms: AtomicU64::new(millis(config.stats_interval)),
            origins: Mutex::new(config.origins.clone().into_iter().collect()),
        })
    }

    /// The policy for a connection accepted now.
    pub(super) fn policy(&self) -> Arc<Policy> {
        self.policy.read().clone()
    }

    /// Replaces the policy for connections accepted from now on with
    /// `change` applied to a copy of it.
    pub(super) fn change_policy(&self, change: impl FnOnce(&mut Policy)) {
        let mut policy = self.policy.write();
        let mut next = Policy::clone(&policy);
        change(&mut next);
        *policy = Arc::new(next);
    }

    /// What a full server does with new clients now.
    pub(super) fn overload(&self) -> Overload {
        if self.reject.load(Ordering::Relaxed) {
            Overload::Reject
        } else {
            Overload::Block
        }
    }

    /// Changes it; the acceptor reads it before each accept.
    pub(super) fn set_overload(&self, overload: Overload) {
        self.reject
            .store(overload == Overload::Reject, Ordering::Relaxed);
    }

    /// The idle timeout now; `None` for none.
    pub(super) fn idle_timeout(&self) -> Option<Duration> {
        duration(self.idle_ms.load(Ordering::Relaxed))
    }

    /// Changes it; the watchdog reads it after each wait.
    pub(super) fn set_idle_timeout(&self, idle: Option<Duration>) {
        self.idle_ms.store(millis(idle), Ordering::Relaxed);
    }

    /// How often the stats line is logged now; `None` for never.
    pub(super) fn stats_interval(&self) -> Option<Duration> {
        duration(self.stats_ms.load(Ordering::Relaxed))
    }

    /// Changes it; the stats thread reads it at least twice a second.
    pub(super) fn set_stats_interval(&self, every: Option<Duration>) {
        self.stats_ms.store(millis(every), Ordering::Relaxed);
    }

    /// Where `name`'s value came from: `flag`, `env:VAR`, `set`, or
    /// `default` when nobody said.
    pub(super) fn origin(&self, name: &str) -> String {
        self.origins
            .lock()
            .get(name)
            .cloned()
            .unwrap_or_else(|| "default".to_string())
    }

    /// Marks `name` as changed on the console.
    pub(super) fn mark_set(&self, name: &str) {
        self.origins
            .lock()
            .insert(name.to_string(), "set".to_string());
    }
}

/// A duration as a dial holds it; none is [`NEVER`], zero is none too
/// (the flags' "0 never does").
fn millis(d: Option<Duration>) -> u64 {
    match d {
        Some(d) if !d.is_zero() => u64::try_from(d.as_millis()).unwrap_or(NEVER - 1).max(1),
        _ => NEVER,
    }
}

fn duration(ms: u64) -> Option<Duration> {
    (ms != NEVER).then(|| Duration::from_millis(ms))
}
