//! The registry of live connections: every accepted connection, parked,
//! queued or being served, by id. The poller finds a connection here by the
//! token of its event, the watchdog scans it, and a server-wide stop shuts
//! every socket in it down.
//!
//! An entry is added by the acceptor thread before the socket is registered
//! with the poller, and removed by the worker that closes the connection (after a
//! panic in protocol code too: the worker catches it and closes). The lock
//! guards the map only; callers copy out what they need and do their I/O
//! after releasing it.
//!
//! The registry does not know what a connection is: it holds any entry type
//! (the engine's is `engine::Served`), so it is tested alone.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// All live entries, by id.
pub(crate) struct Registry<T> {
    live: Mutex<HashMap<u64, Arc<T>>>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry {
            live: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> Registry<T> {
    /// An empty registry.
    pub(crate) fn new() -> Arc<Registry<T>> {
        Arc::new(Registry::default())
    }

    /// Adds a live entry under its id.
    pub(crate) fn insert(&self, id: u64, entry: Arc<T>) {
        self.live.lock().insert(id, entry);
    }

    /// The entry under `id`, if it is live.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<T>> {
        self.live.lock().get(&id).cloned()
    }

    /// Removes an entry; returns it if it was there.
    pub(crate) fn remove(&self, id: u64) -> Option<Arc<T>> {
        self.live.lock().remove(&id)
    }

    /// Calls `found` with each item's value for each live entry among the
    /// items' ids, under one lock: `found` must be quick and do no I/O.
    pub(crate) fn lookup<V>(
        &self,
        items: impl Iterator<Item = (u64, V)>,
        mut found: impl FnMut(V, &Arc<T>),
    ) {
        let live = self.live.lock();
        for (id, value) in items {
            if let Some(entry) = live.get(&id) {
                found(value, entry);
            }
        }
    }

    /// What `pick` takes from each live entry, copied out under the lock,
    /// so that the caller does its I/O after releasing it. `pick` must be
    /// quick and do no I/O.
    pub(crate) fn copy_out<V>(&self, pick: impl FnMut(&Arc<T>) -> Option<V>) -> Vec<V> {
        self.live.lock().values().filter_map(pick).collect()
    }

    /// How many entries are live.
    pub(crate) fn len(&self) -> usize {
        self.live.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_and_go_by_id() {
        let registry = Registry::new();
        registry.insert(1, Arc::new("one"));
        registry.insert(2, Arc::new("two"));
        assert_eq!(registry.len(), 2);
        assert_eq!(registry.remove(1).as_deref(), Some(&"one"));
        assert_eq!(registry.remove(1), None);
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn lookup_finds_only_live_ids_and_keeps_each_value() {
        let registry = Registry::new();
        registry.insert(7, Arc::new(70));
        registry.insert(8, Arc::new(80));
        registry.remove(8);
        let mut found = Vec::new();
        registry.lookup([(7, 'a'), (8, 'b'), (9, 'c')].into_iter(), |v, e| {
            found.push((v, **e))
        });
        assert_eq!(found, [('a', 70)]);
    }

    #[test]
    fn copy_out_takes_what_is_picked_from_every_entry() {
        let registry = Registry::new();
        for id in 0..5 {
            registry.insert(id, Arc::new(id * 10));
        }
        let mut even = registry.copy_out(|v| (**v % 20 == 0).then_some(**v));
        even.sort();
        assert_eq!(even, [0, 20, 40]);
    }
}
