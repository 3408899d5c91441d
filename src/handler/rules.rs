//! What the core does with each message and with a session's answer. The
//! core alone answers the commands every protocol shares (`shutdown`,
//! `quit_server`), so it alone tells `quit_server` from a protocol's own
//! stop rule; it refuses a stop from an address `--admin-from` does not
//! allow, and turns the framing's refusals into last words.

use log::{info, warn};

use super::end::End;
use crate::framing::{FrameError, Framing};
use crate::protocol::{self, Action, Session};
use crate::shutdown::Shutdown;
use crate::socket::Peer;
use crate::stats::Stats;

/// Whether a client may stop the server, and if not, why not.
#[derive(Clone, Copy, Debug)]
pub(super) struct Admin {
    /// `--admin-from` and `--admin-cert` both allow it.
    pub(super) allowed: bool,
    /// What refused it, for the log: `address` or `certificate`, or for a
    /// client of the Unix socket `uid`.
    pub(super) refused_for: &'static str,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            allowed: false,
            refused_for: "address",
        }
    }
}

/// What the core needs to act on a session's action.
#[derive(Clone, Copy)]
pub(super) struct Rules<'a> {
    shutdown: &'a Shutdown,
    /// Whether the client may stop the server.
    admin: Admin,
    framing: Framing,
    peer: Peer,
    /// The name of the client's certificate, on TLS with one.
    cert: Option<&'a str>,
    stats: &'a Stats,
}

/// Who asked to stop the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// The `quit_server` command.
    Command,
    /// A protocol's own rule, which the protocol logs itself.
    Session,
}

impl<'a> Rules<'a> {
    /// The rules for a connection; taken field by field, so that the
    /// session can be borrowed at the same time.
    pub(super) fn new(
        shutdown: &'a Shutdown,
        stats: &'a Stats,
        admin: Admin,
        framing: Framing,
        peer: Peer,
        cert: Option<&'a str>,
    ) -> Self {
        Rules {
            shutdown,
            admin,
            framing,
            peer,
            cert,
            stats,
        }
    }
}

/// One message through the core's commands or the session, or the
/// framing's refusal of it.
pub(super) fn handle(
    session: &mut dyn Session,
    message: Result<&[u8], FrameError>,
    rules: &Rules,
    max_line: usize,
    answered: &mut u64,
    out: &mut Vec<u8>,
) -> Result<(), End> {
    match message {
        Ok(msg) => match protocol::command(msg) {
            Some(command) => act_as(command, Stop::Command, rules, answered, out),
            None => act_as(
                session.message(msg, out),
                Stop::Session,
                rules,
                answered,
                out,
            ),
        },
        Err(e) => Err(refuse(e, rules.framing, max_line, out)),
    }
}

/// What the core does for a session's action (its greeting's, say).
pub(super) fn act(
    action: Action,
    rules: &Rules,
    answered: &mut u64,
    out: &mut Vec<u8>,
) -> Result<(), End> {
    act_as(action, Stop::Session, rules, answered, out)
}

/// Messages that keep the connection going count as answered; commands do
/// not. A stop from an address outside `--admin-from`, or without a
/// certificate `--admin-cert` names, is refused, and the connection goes
/// on. An allowed stop is logged before it starts, so the log names its
/// cause before the stop's first line.
fn act_as(
    action: Action,
    by: Stop,
    rules: &Rules,
    answered: &mut u64,
    out: &mut Vec<u8>,
) -> Result<(), End> {
    match action {
        Action::Continue => {
            *answered += 1;
            Ok(())
        }
        Action::Close => Err(End::Closed),
        Action::StopServer if rules.admin.allowed => {
            let peer = rules.peer;
            rules.shutdown.trigger_by(|| {
                if by == Stop::Command {
                    match rules.cert {
                        Some(cert) => info!("quit_server received peer={peer} cert={cert}"),
                        None => info!("quit_server received peer={peer}"),
                    }
                }
            });
            Err(End::StopServer)
        }
        Action::StopServer => {
            let peer = rules.peer;
            let what = rules.admin.refused_for;
            let cert = rules.cert.unwrap_or("-");
            rules.stats.warn_about_client(|| match rules.cert {
                None => warn!("quit_server refused, {what} may not stop the server peer={peer}"),
                Some(_) => warn!(
                    "quit_server refused, {what} may not stop the server peer={peer} cert={cert}"
                ),
            });
            rules.framing.say(b"ERR quit_server not allowed", out);
            Ok(())
        }
    }
}

/// The last words for a message the framing refused, and why the
/// connection ends.
fn refuse(error: FrameError, framing: Framing, max_line: usize, out: &mut Vec<u8>) -> End {
    match error {
        FrameError::TooLong => {
            // A line client gets an error line; a length-prefixed one is
            // closed without a word, as its framing has no place for text.
            if framing == Framing::Lines {
                out.extend_from_slice(
                    format!("ERR line too long (max {max_line} bytes)\n").as_bytes(),
                );
            }
            End::TooLong
        }
        FrameError::InvalidUtf8 => End::InvalidUtf8,
        FrameError::Truncated => End::Truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::write_frame;

    /// A session that answers `ok` to everything, or stops the server on
    /// `stop`, and counts what it saw.
    #[derive(Default)]
    struct Probe {
        seen: Vec<Vec<u8>>,
    }

    impl Session for Probe {
        fn message(&mut self, msg: &[u8], out: &mut Vec<u8>) -> Action {
            self.seen.push(msg.to_vec());
            if msg == b"stop" {
                return Action::StopServer;
            }
            out.extend_from_slice(b"ok\n");
            Action::Continue
        }
    }

    fn run(msg: &[u8], admin: bool, framing: Framing) -> (Result<(), End>, Probe, Vec<u8>, bool) {
        let shutdown = Shutdown::new();
        let stats = Stats::default();
        let admin = Admin {
            allowed: admin,
            refused_for: "address",
        };
        let rules = Rules::new(
            &shutdown,
            &stats,
            admin,
            framing,
            Peer::ip("127.0.0.1:9".parse().unwrap()),
            None,
        );
        let mut probe = Probe::default();
        let mut out = Vec::new();
        let mut answered = 0;
        let result = handle(&mut probe, Ok(msg), &rules, 100, &mut answered, &mut out);
        (result, probe, out, shutdown.is_triggered())
    }

    #[test]
    fn the_shared_commands_never_reach_the_session() {
        let (result, probe, out, stopped) = run(b"shutdown", true, Framing::Lines);
        assert!(matches!(result, Err(End::Closed)));
        assert!(probe.seen.is_empty() && out.is_empty() && !stopped);
        let (result, probe, _, stopped) = run(b"quit_server", true, Framing::Lines);
        assert!(matches!(result, Err(End::StopServer)));
        assert!(probe.seen.is_empty());
        assert!(stopped);
    }

    #[test]
    fn other_messages_go_to_the_session() {
        let (result, probe, out, _) = run(b"hello", false, Framing::Lines);
        assert!(result.is_ok());
        assert_eq!(probe.seen, [b"hello".to_vec()]);
        assert_eq!(out, b"ok\n");
    }

    #[test]
    fn a_stop_from_outside_admin_from_is_refused_in_the_framing() {
        let (result, _, out, stopped) = run(b"quit_server", false, Framing::Lines);
        assert!(result.is_ok());
        assert_eq!(out, b"ERR quit_server not allowed\n");
        assert!(!stopped);
        let (result, probe, out, stopped) = run(b"stop", false, Framing::LengthPrefixed);
        assert!(result.is_ok());
        assert_eq!(probe.seen.len(), 1);
        let mut frame = Vec::new();
        write_frame(&mut frame, b"ERR quit_server not allowed");
        assert_eq!(out, frame);
        assert!(!stopped);
    }

    #[test]
    fn a_sessions_own_stop_stops_an_admin() {
        let (result, _, _, stopped) = run(b"stop", true, Framing::Lines);
        assert!(matches!(result, Err(End::StopServer)));
        assert!(stopped);
    }
}
