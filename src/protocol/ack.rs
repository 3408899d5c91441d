//! `ack`: every line gets `ACK: <line>` back; `shutdown` closes the client,
//! `quit_server` stops the server.

use super::{Action, Link, Protocol, Session};

/// The ACK line protocol. It keeps no state, so one value serves every
/// connection.
pub struct Ack;

impl Protocol for Ack {
    fn name(&self) -> &str {
        "ack"
    }

    fn open(&self, _link: Link) -> Box<dyn Session> {
        Box::new(Ack)
    }
}

impl Session for Ack {
    fn message(&mut self, line: &[u8], out: &mut Vec<u8>) -> Action {
        out.extend_from_slice(b"ACK: ");
        out.extend_from_slice(line);
        out.push(b'\n');
        Action::Continue
    }
}
