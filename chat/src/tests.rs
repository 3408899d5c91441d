//! The room without sockets: sessions on fake links.

use super::*;
use crate::fake::{self, Inbox};

/// A member who has joined under `name`, with what it was sent so far
/// taken.
fn member(chat: &Chat, name: &str) -> (Arc<Inbox>, Box<dyn Session>) {
    let (inbox, link) = fake::link("127.0.0.1:5000", false);
    let mut session = chat.open(link);
    let mut out = Vec::new();
    assert_eq!(session.start(&mut out), Action::Continue);
    assert_eq!(out, b"Enter your name:\n");
    assert_eq!(session.message(name.as_bytes(), &mut out), Action::Continue);
    (inbox, session)
}

fn room() -> Chat {
    Chat {
        room: Room::new(None, MAX_BACKLOG),
        bus: None,
    }
}

#[test]
fn a_line_reaches_every_other_member_and_not_the_sender() {
    let chat = room();
    let (ann, mut ann_session) = member(&chat, "ann");
    assert_eq!(ann.take(), "Welcome ann! 1 online.\n");
    let (bob, _bob_session) = member(&chat, "bob");
    assert_eq!(bob.take(), "Welcome bob! 2 online.\n");
    assert_eq!(ann.take(), "* bob joined\n");
    let mut out = Vec::new();
    ann_session.message(b"hello all", &mut out);
    assert!(out.is_empty());
    assert_eq!(bob.take(), "ann: hello all\n");
    assert_eq!(ann.take(), "");
}

#[test]
fn a_taken_empty_long_or_control_name_gets_a_guest_name() {
    let chat = room();
    let (_ann, _a) = member(&chat, "ann");
    let (second, _b) = member(&chat, "ann");
    assert_eq!(
        second.take(),
        "Name ann is taken; you are guest-1\nWelcome guest-1! 2 online.\n"
    );
    let (empty, _c) = member(&chat, "  ");
    assert_eq!(
        empty.take(),
        "Empty name; you are guest-2\nWelcome guest-2! 3 online.\n"
    );
    let (long, _d) = member(&chat, &"x".repeat(MAX_NAME + 1));
    assert!(
        long.take()
            .starts_with("Name longer than 32 bytes; you are guest-3\n")
    );
    let (control, _e) = member(&chat, "x\ry");
    assert!(
        control
            .take()
            .starts_with("Name with control characters; you are guest-4\n")
    );
}

#[test]
fn a_member_that_ends_is_announced_as_left_once() {
    let chat = room();
    let (ann, _a) = member(&chat, "ann");
    let (_bob, mut bob_session) = member(&chat, "bob");
    ann.take();
    bob_session.end();
    bob_session.end();
    assert_eq!(ann.take(), "* bob left\n");
    let (cid, _c) = member(&chat, "cid");
    assert_eq!(cid.take(), "Welcome cid! 2 online.\n");
}
