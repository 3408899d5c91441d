//! Socket activation: the listening sockets systemd (or `systemd-socket-
//! activate`, or a test) passes through `LISTEN_FDS`, `LISTEN_PID` and
//! `LISTEN_FDNAMES`, as the server's listeners, TCP or Unix, in the order
//! passed.

use std::env;
use std::io;

use linepool::Listener;

/// The passed sockets as listeners, or `None` when none were passed.
///
/// Each takes its name from `LISTEN_FDNAMES` (systemd's
/// `FileDescriptorName=`) when that name is given and no other socket has
/// it; otherwise logs and metrics name it by its address. Must run before
/// any thread starts: it clears the variables.
pub fn passed_listeners() -> io::Result<Option<Vec<Listener>>> {
    // Read first: listenfd clears LISTEN_FDS and LISTEN_PID, not this one.
    let names = env::var("LISTEN_FDNAMES").unwrap_or_default();
    let names: Vec<&str> = names.split(':').collect();
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    let mut listeners = Vec::with_capacity(fds.len());
    for i in 0..fds.len() {
        // A socket of the wrong kind is left in place, so the second look
        // still finds it.
        let listener = match fds.take_tcp_listener(i) {
            Ok(Some(tcp)) => Listener::tcp(tcp)?,
            _ => match fds.take_unix_listener(i)? {
                Some(unix) => Listener::unix(unix)?,
                None => continue,
            },
        };
        let name = names.get(i).copied().unwrap_or("");
        let unique = names.iter().filter(|n| **n == name).count() == 1;
        listeners.push(if !name.is_empty() && unique {
            listener.named(name)
        } else {
            listener
        });
    }
    Ok(Some(listeners))
}
