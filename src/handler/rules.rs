//! What the core does with each message and with a session's answer. The
//! core alone answers the commands every protocol shares (`shutdown`,
//! `quit_server`), so it alone tells `quit_server` from a protocol's own
//! stop rule; it refuses a stop from an address `--admin-from` does not
//! allow, and turns the framing's refusals into last words.

use std::sync::Arc;

use log::{info, warn};

use super::end::End;
use super::{Client, Policy};
use crate::framing::{FrameError, Framing};
use crate::protocol::{self, Action, Session};
use crate::socket::Peer;

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

/// The open phase's rules: what the core needs to act on a message and on
/// a session's answer. Built once, when the session opens.
pub(super) struct Rules {
    policy: Arc<Policy>,
    /// Whether the client may stop the server.
    admin: Admin,
    /// The framing refusals are written in.
    framing: Framing,
    peer: Peer,
    /// The name of the client's certificate, on TLS with one.
    cert: Option<Arc<str>>,
}

/// Who asked to stop the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// The `quit_server` command.
    Command,
    /// A protocol's own rule, which the protocol logs itself.
    Session,
}

impl Rules {
    /// The rules for a client whose session opens under `policy`, in
    /// `framing`; `admin` says whether it may stop the server.
    pub(super) fn new(
        policy: Arc<Policy>,
        admin: Admin,
        framing: Framing,
        client: &Client,
    ) -> Self {
        Rules {
            policy,
            admin,
            framing,
            peer: client.peer,
            cert: client.cert.clone(),
        }
    }

    /// The policy the connection is served under.
    pub(super) fn policy(&self) -> &Policy {
        &self.policy
    }

    /// One message through the core's commands or the session, or the
    /// framing's refusal of it.
    pub(super) fn handle(
        &self,
        session: &mut dyn Session,
        message: Result<&[u8], FrameError>,
        answered: &mut u64,
        out: &mut Vec<u8>,
    ) -> Result<(), End> {
        match message {
            Ok(msg) => match protocol::command(msg) {
                Some(command) => self.act_as(command, Stop::Command, answered, out),
                None => self.act_as(session.message(msg, out), Stop::Session, answered, out),
            },
            Err(e) => Err(self.refuse(e, out)),
        }
    }

    /// What the core does for a session's action (its greeting's, say).
    pub(super) fn act(
        &self,
        action: Action,
        answered: &mut u64,
        out: &mut Vec<u8>,
    ) -> Result<(), End> {
        self.act_as(action, Stop::Session, answered, out)
    }

    /// Messages that keep the connection going count as answered; commands
    /// do not. A stop from an address outside `--admin-from`, or without a
    /// certificate `--admin-cert` names, is refused, and the connection
    /// goes on. An allowed stop is logged before it starts, so the log
    /// names its cause before the stop's first line.
    fn act_as(
        &self,
        action: Action,
        by: Stop,
        answered: &mut u64,
        out: &mut Vec<u8>,
    ) -> Result<(), End> {
        match action {
            Action::Continue => {
                *answered += 1;
                Ok(())
            }
            Action::Close => Err(End::Closed),
            Action::StopServer if self.admin.allowed => {
                let peer = self.peer;
                self.policy.shutdown.trigger_by(|| {
                    if by == Stop::Command {
                        match &self.cert {
                            Some(cert) => info!("quit_server received peer={peer} cert={cert}"),
                            None => info!("quit_server received peer={peer}"),
                        }
                    }
                });
                Err(End::StopServer)
            }
            Action::StopServer => {
                let peer = self.peer;
                let what = self.admin.refused_for;
                self.policy.stats.warn_about_client(|| match &self.cert {
                    None => {
                        warn!("quit_server refused, {what} may not stop the server peer={peer}")
                    }
                    Some(cert) => warn!(
                        "quit_server refused, {what} may not stop the server peer={peer} cert={cert}"
                    ),
                });
                self.framing.say(b"ERR quit_server not allowed", out);
                Ok(())
            }
        }
    }

    /// The last words for a message the framing refused, and why the
    /// connection ends.
    fn refuse(&self, error: FrameError, out: &mut Vec<u8>) -> End {
        match error {
            FrameError::TooLong => {
                // A line client gets an error line; a length-prefixed one
                // is closed without a word, as its framing has no place
                // for text.
                if self.framing == Framing::Lines {
                    let max_line = self.policy.limits.max_line;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::write_frame;
    use crate::shutdown::Shutdown;

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
        let mut policy = Policy::standalone(shutdown.clone());
        policy.limits.max_line = 100;
        let admin = Admin {
            allowed: admin,
            refused_for: "address",
        };
        let client = Client {
            peer: Peer::ip("127.0.0.1:9".parse().unwrap()),
            cert: None,
            listener: None,
        };
        let rules = Rules::new(Arc::new(policy), admin, framing, &client);
        let mut probe = Probe::default();
        let mut out = Vec::new();
        let mut answered = 0;
        let result = rules.handle(&mut probe, Ok(msg), &mut answered, &mut out);
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
