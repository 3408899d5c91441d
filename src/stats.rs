//! Server-wide counters, shared by the acceptor and every worker, and the
//! one-line summary logged when the server stops.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters. Workers add to them in batches, not once per line, so that
/// the hot path does not fight over one cache line.
#[derive(Default, Debug)]
pub struct Stats {
    connections: AtomicU64,
    lines: AtomicU64,
    rejected: AtomicU64,
}

impl Stats {
    /// Counts one connection handed to the pool.
    pub fn connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `n` lines answered.
    pub fn lines(&self, n: u64) {
        if n > 0 {
            self.lines.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counts one connection turned away with `ERR server busy`.
    pub fn rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as they are now.
    pub fn summary(&self) -> Summary {
        Summary {
            connections: self.connections.load(Ordering::Relaxed),
            lines: self.lines.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }
}

/// What a server did over its life, returned by [`Server::run`](crate::Server::run).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Connections accepted and handed to a worker.
    pub connections: u64,
    /// Lines answered.
    pub lines: u64,
    /// Connections turned away with `ERR server busy`.
    pub rejected: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connections={} lines={} rejected={}",
            self.connections, self.lines, self.rejected
        )
    }
}
