//! `framed`: length-prefixed echo. Each message is a 4-byte big-endian
//! length and that many bytes; the reply is the same message, framed the
//! same way. A payload of exactly `shutdown` or `quit_server` is that
//! command.

use std::sync::Arc;

use super::{Action, Link, Protocol, Session};
use crate::framing::{Framing, write_frame};

pub(super) fn build() -> Arc<dyn Protocol> {
    Arc::new(Framed)
}

struct Framed;

impl Protocol for Framed {
    fn name(&self) -> &str {
        "framed"
    }

    fn framing(&self) -> Framing {
        Framing::LengthPrefixed
    }

    fn open(&self, _link: Link) -> Box<dyn Session> {
        Box::new(Framed)
    }
}

impl Session for Framed {
    fn message(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Action {
        write_frame(out, payload);
        Action::Continue
    }
}
