//! The handler's unit tests over a real socket pair: a turn's budget,
//! the reading pause, closing without a reset, and the linger at a stop.

use super::*;
use std::io::{Read, Write};
use std::time::Duration;

use crate::config::Config;

/// A handler on the server side of a fresh connection, and the client.
fn pair() -> (ClientHandler, TcpStream) {
    let (client, conn) = crate::conn::test_pair();
    (
        ClientHandler::serving(Arc::new(conn), Shutdown::new()),
        client,
    )
}

/// Waits until `n` bytes sent by the client are waiting at the server.
fn arrived(handler: &ClientHandler, n: usize) {
    crate::conn::wait_waiting(handler.conn.stream(), n);
}

#[test]
fn a_turn_answers_at_most_its_budget_then_yields() {
    let (mut handler, mut client) = pair();
    let lines = 3 * TURN_MESSAGES + 10;
    client.write_all(&b"x\n".repeat(lines)).expect("send");
    arrived(&handler, 2 * lines);
    let mut out = Vec::new();
    let mut turns = Vec::new();
    loop {
        let turn = handler.turn(&mut out);
        assert!(out.is_empty(), "replies left in the scratch buffer");
        turns.push(turn);
        if turn != Turn::Yield {
            break;
        }
    }
    assert_eq!(turns, [Turn::Yield, Turn::Yield, Turn::Yield, Turn::Park]);
    let mut replies = vec![0u8; lines * b"ACK: x\n".len()];
    client.read_exact(&mut replies).expect("replies");
    assert_eq!(replies, b"ACK: x\n".repeat(lines));
}

#[test]
fn backed_up_replies_stop_the_reading() {
    let (mut handler, client) = pair();
    // Long lines whose replies back up far beyond the cap while the
    // client reads nothing.
    let line = format!("{}\n", "y".repeat(1000));
    let mut writer = client.try_clone().expect("clone");
    let sender = std::thread::spawn(move || {
        writer
            .set_write_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let mut sent = 0;
        while writer.write_all(line.as_bytes()).is_ok() {
            sent += 1;
        }
        sent
    });
    let mut out = Vec::new();
    let mut turns = 0;
    while !sender.is_finished() {
        if handler.turn(&mut out) == Turn::Park && handler.conn.pending() > MAX_PENDING {
            break;
        }
        turns += 1;
        assert!(turns < 100_000, "the handler never backed off");
    }
    let pending = handler.conn.pending();
    assert!(pending > MAX_PENDING, "pending {pending}");
    assert!(pending < MAX_PENDING + FLUSH_AT + 2048, "pending {pending}");
    // While backed up, a turn reads nothing more.
    let before = pending;
    assert_eq!(handler.turn(&mut out), Turn::Park);
    assert_eq!(handler.conn.pending(), before);
    let _ = client.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
}

/// A client that said `shutdown`, sent more and ended its input is
/// closed in the same turn, and what it sent after `shutdown` is read
/// off first, so the close is an orderly end of stream, not a reset
/// that would destroy the reply.
#[test]
fn an_ended_client_is_closed_at_once_without_a_reset() {
    let (mut handler, mut client) = pair();
    // More than one read takes, so that the kernel still holds some.
    let mut input = b"a\nshutdown\n".to_vec();
    input.extend_from_slice(&b"sent after shutdown\n".repeat(4000));
    client.write_all(&input).expect("send");
    client
        .shutdown(std::net::Shutdown::Write)
        .expect("half close");
    arrived(&handler, input.len());
    // What the poller reports with the client's end of stream.
    handler.conn.set_read_closed();
    let mut out = Vec::new();
    assert_eq!(handler.turn(&mut out), Turn::Done);
    drop(handler);
    let mut all = Vec::new();
    client
        .read_to_end(&mut all)
        .expect("an end of stream, not a reset");
    assert_eq!(all, b"ACK: a\n");
}

/// At a stop, a client that sent more than one linger turn reads off
/// is read on in the next turn, not parked on bytes no event will
/// report once it has stopped sending.
#[test]
fn a_linger_at_its_limit_reads_on_in_the_next_turn() {
    let (client, conn) = crate::conn::test_pair();
    let stop = Shutdown::new();
    let mut handler = ClientHandler::serving(Arc::new(conn), stop.clone());
    // All sent at once (kernel buffers), then nothing more.
    let input = vec![b'x'; 2 * crate::conn::LINGER_BYTES + 1000];
    client.set_nonblocking(true).expect("nonblocking");
    assert_eq!((&client).write(&input).expect("send"), input.len());
    arrived(&handler, 1000);
    stop.trigger();
    let mut out = Vec::new();
    let mut turns = Vec::new();
    loop {
        let turn = handler.turn(&mut out);
        turns.push(turn);
        if turn != Turn::Yield {
            break;
        }
    }
    assert_eq!(turns.last(), Some(&Turn::Park), "{turns:?}");
    // It parks only with nothing left unread.
    let left = crate::conn::drain_pending(handler.conn.stream(), usize::MAX);
    assert_eq!(left, crate::conn::Drained::Bytes(0), "{turns:?}");
}

#[test]
fn default_limits_are_the_default_configs() {
    let from_config = Limits::from_config(&Config::default());
    let default = Limits::default();
    assert_eq!(default.max_line, from_config.max_line);
    assert_eq!(default.idle_timeout, from_config.idle_timeout);
    assert_eq!(default.timing, from_config.timing);
}
