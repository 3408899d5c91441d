//! A small key-value store, written against linepool's public API alone:
//! the protocol an embedder plugs into the pool.
//!
//! ```text
//! set KEY VALUE   ->  STORED
//! get KEY         ->  VALUE <value>   or  NOT_FOUND
//! del KEY         ->  DELETED         or  NOT_FOUND
//! keys            ->  KEYS <count>
//! ```
//!
//! Anything else gets `ERR unknown command`. The store is shared by every
//! connection; `shutdown` and `quit_server` are the core's, as for every
//! protocol.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use linepool::protocol::{Action, Link, Protocol, Session, text};

/// The protocol: one store for every connection of the server.
#[derive(Default)]
pub struct Kv {
    store: Arc<Mutex<HashMap<String, String>>>,
}

impl Kv {
    /// How many keys are stored.
    fn keys(&self) -> usize {
        lock(&self.store).len()
    }
}

impl Protocol for Kv {
    fn name(&self) -> &str {
        "kv"
    }

    fn open(&self, _link: Link) -> Box<dyn Session> {
        Box::new(KvSession {
            store: self.store.clone(),
        })
    }

    /// The stats line and the stop's summary say how many keys there are.
    fn figures(&self) -> String {
        format!("keys={}", self.keys())
    }
}

/// One connection: it only needs the store.
struct KvSession {
    store: Arc<Mutex<HashMap<String, String>>>,
}

impl Session for KvSession {
    fn message(&mut self, line: &[u8], out: &mut Vec<u8>) -> Action {
        // The core hands line protocols whole lines of valid UTF-8, within
        // the server's `max_line`.
        let mut words = text(line).splitn(3, ' ');
        let reply = match (words.next(), words.next(), words.next()) {
            (Some("set"), Some(key), Some(value)) => {
                lock(&self.store).insert(key.to_string(), value.to_string());
                "STORED".to_string()
            }
            (Some("get"), Some(key), None) => match lock(&self.store).get(key) {
                Some(value) => format!("VALUE {value}"),
                None => "NOT_FOUND".to_string(),
            },
            (Some("del"), Some(key), None) => match lock(&self.store).remove(key) {
                Some(_) => "DELETED".to_string(),
                None => "NOT_FOUND".to_string(),
            },
            (Some("keys"), None, None) => format!("KEYS {}", lock(&self.store).len()),
            _ => "ERR unknown command".to_string(),
        };
        out.extend_from_slice(reply.as_bytes());
        out.push(b'\n');
        Action::Continue
    }
}

/// The store, even after a session panicked holding it: the core closes
/// that one connection, and the map is still whole (every change is one
/// call).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
