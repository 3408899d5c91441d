//! The registry of live connections: every accepted socket, served or still
//! waiting for a worker, so that a server-wide stop can shut them all down.
//!
//! Each entry is removed by dropping its [`Registration`], which the
//! connection's job owns, so a panicking handler cannot leak an entry.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::watchdog::Activity;

/// All live connections, by id.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    next_id: u64,
    live: HashMap<u64, Entry>,
}

struct Entry {
    peer: SocketAddr,
    stream: Arc<TcpStream>,
    activity: Arc<Activity>,
}

/// Proof that a connection is registered; unregisters it on drop.
pub struct Registration {
    registry: Arc<Registry>,
    id: u64,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// Adds a live connection until the returned guard is dropped.
    pub fn register(
        self: &Arc<Self>,
        peer: SocketAddr,
        stream: Arc<TcpStream>,
        activity: Arc<Activity>,
    ) -> Registration {
        let mut entries = self.inner.lock();
        let id = entries.next_id;
        entries.next_id += 1;
        entries.live.insert(
            id,
            Entry {
                peer,
                stream,
                activity,
            },
        );
        Registration {
            registry: self.clone(),
            id,
        }
    }

    /// How many connections are live.
    pub fn len(&self) -> usize {
        self.inner.lock().live.len()
    }

    /// Whether no connection is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every live connection, copied out so that no lock is held while the
    /// caller does I/O on them.
    pub fn snapshot(&self) -> Vec<(SocketAddr, Arc<TcpStream>)> {
        let entries = self.inner.lock();
        entries
            .live
            .values()
            .map(|e| (e.peer, e.stream.clone()))
            .collect()
    }

    /// Every live connection with its id and activity, for the watchdog.
    pub fn watch_list(&self) -> Vec<(u64, Arc<TcpStream>, Arc<Activity>)> {
        let entries = self.inner.lock();
        entries
            .live
            .iter()
            .map(|(id, e)| (*id, e.stream.clone(), e.activity.clone()))
            .collect()
    }

    /// Shuts down one or both directions of every live connection. Errors
    /// (a peer that is already gone) are ignored: the goal is only that no
    /// worker stays blocked on a socket.
    pub fn shutdown_all(&self, how: Shutdown) -> usize {
        let streams = self.snapshot();
        for (_, stream) in &streams {
            let _ = stream.shutdown(how);
        }
        streams.len()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.inner.lock().live.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        (client, server)
    }

    #[test]
    fn a_panicking_pool_job_unregisters_its_connection() {
        let registry = Registry::new();
        let (_client, server) = pair();
        let peer = server.peer_addr().expect("peer");
        let entry = registry.register(peer, Arc::new(server), Arc::default());
        assert_eq!(registry.len(), 1);
        let pool = threadpool::ThreadPool::new(1);
        pool.execute(move || {
            let _entry = entry;
            panic!("handler failed");
        });
        pool.join();
        assert_eq!(pool.panic_count(), 1);
        assert!(registry.is_empty());
    }

    #[test]
    fn shutdown_all_wakes_a_blocked_reader() {
        let registry = Registry::new();
        let (_client, server) = pair();
        let peer = server.peer_addr().expect("peer");
        let stream = Arc::new(server);
        let _entry = registry.register(peer, stream.clone(), Arc::default());
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 16];
            (&*stream).read(&mut buf).expect("read")
        });
        assert_eq!(registry.shutdown_all(Shutdown::Read), 1);
        assert_eq!(reader.join().expect("reader panicked"), 0);
    }
}
