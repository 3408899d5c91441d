//! The registry of live connections: every accepted socket, parked, queued
//! or being served, by id. The poller finds a connection here by the token
//! of its event, the watchdog scans it, and a server-wide stop shuts every
//! socket in it down.
//!
//! An entry is added by the acceptor before the socket is registered with
//! the poller, and removed by the worker that closes the connection (after a
//! panic in protocol code too: the worker catches it and closes). The lock
//! guards the map only; callers copy out what they need and do their I/O
//! after releasing it.

use std::collections::HashMap;
use std::net::Shutdown;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::conn::Conn;
use crate::engine::Served;

/// All live connections, by id.
#[derive(Default)]
pub struct Registry {
    live: Mutex<HashMap<u64, Arc<Served>>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// Adds a live connection under its id.
    pub(crate) fn insert(&self, served: Arc<Served>) {
        self.live.lock().insert(served.conn.id(), served);
    }

    /// Removes a connection; returns it if it was there.
    pub(crate) fn remove(&self, id: u64) -> Option<Arc<Served>> {
        self.live.lock().remove(&id)
    }

    /// Calls `found` with each item's value for each live connection among
    /// the items' ids, under one lock.
    pub(crate) fn lookup<T>(
        &self,
        items: impl Iterator<Item = (u64, T)>,
        mut found: impl FnMut(T, &Arc<Served>),
    ) {
        let live = self.live.lock();
        for (id, value) in items {
            if let Some(served) = live.get(&id) {
                found(value, served);
            }
        }
    }

    /// Calls `visit` for every live connection, under the lock: `visit`
    /// must be quick and must do no I/O.
    pub fn for_each(&self, mut visit: impl FnMut(&Conn)) {
        for served in self.live.lock().values() {
            visit(&served.conn);
        }
    }

    /// How many connections are live.
    pub fn len(&self) -> usize {
        self.live.lock().len()
    }

    /// Whether no connection is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shuts down one or both directions of every live connection; returns
    /// how many there were. The sockets are copied out first, so no lock is
    /// held during the system calls. Errors (a peer already gone) are
    /// ignored: the point is only that every connection wakes in the poller.
    pub fn shutdown_all(&self, how: Shutdown) -> usize {
        let mut streams = Vec::new();
        self.for_each(|conn| streams.push(conn.stream().clone()));
        for stream in &streams {
            let _ = stream.shutdown(how);
        }
        streams.len()
    }
}
