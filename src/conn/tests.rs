//! The connection's unit tests: replies the socket refuses wait in order,
//! a client too far behind is kicked, and the linger drain, over a real
//! socket pair.

use super::*;
use std::time::{Duration, Instant};

use rustls::{ClientConnection, StreamOwned};

fn pair() -> (TcpStream, Conn) {
    test_pair()
}

/// Fills the socket's buffers so that nothing more goes out now.
fn fill(conn: &Conn) {
    let mut chunk = vec![b'x'; 64 * 1024];
    while conn.send(&mut chunk).expect("send") == 0 {
        chunk.resize(64 * 1024, b'x');
    }
}

/// A turn's wait counts from the moment its connection was queued, not
/// from the moment it was made.
#[test]
fn a_turn_waits_from_the_moment_it_was_queued() {
    let (_client, conn) = pair();
    // The connection's age and then its wait, as the clock shows them.
    std::thread::sleep(Duration::from_millis(60));
    conn.queued(Instant::now());
    std::thread::sleep(Duration::from_millis(5));
    conn.taken();
    let waited = conn.stats.interval().queue_mean;
    assert!(
        waited >= Duration::from_millis(5) && waited < Duration::from_millis(60),
        "{waited:?}"
    );
}

#[test]
fn what_the_socket_refuses_waits_and_goes_out_in_order() {
    let (mut client, conn) = pair();
    fill(&conn);
    let waiting = conn.pending();
    assert!(waiting > 0);
    let mut more = b"tail\n".to_vec();
    assert_eq!(conn.send(&mut more).expect("send"), waiting + 5);
    assert!(more.is_empty());
    // The client reads; the outbox drains as the socket takes it.
    client.set_nonblocking(false).expect("blocking");
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        client.read_to_end(&mut all).expect("read");
        all
    });
    while conn.flush().expect("flush") > 0 {
        std::thread::yield_now();
    }
    conn.shutdown_write().expect("shutdown");
    let all = reader.join().expect("reader");
    assert!(all.ends_with(b"xxtail\n"));
    assert_eq!(conn.pending(), 0);
    // A drained outbox gives its memory back: an idle connection
    // holds no buffer.
    assert_eq!(conn.outbox.lock().pending.capacity(), 0);
}

#[test]
fn a_client_too_far_behind_is_kicked() {
    let (mut client, conn) = pair();
    fill(&conn);
    let limit = conn.pending() + 100;
    assert_eq!(conn.deliver(b"a line\n", limit), Delivery::Queued);
    assert!(matches!(
        conn.deliver(&[b'y'; 200], limit),
        Delivery::Dropped(_)
    ));
    assert_eq!(conn.deliver(b"more\n", usize::MAX), Delivery::Gone);
    // The client sees the connection end after what was in flight.
    let mut all = Vec::new();
    let _ = client.read_to_end(&mut all);
    assert!(!all.windows(4).any(|w| w == b"more"));
}

#[test]
fn drain_reads_what_is_waiting_and_stops_at_its_limit() {
    let (mut client, conn) = pair();
    let server = conn.stream().clone();
    assert_eq!(drain_pending(&server, 1000), Drained::Bytes(0));
    client.write_all(&[b'x'; 3000]).expect("write");
    wait_waiting(&server, 3000);
    assert_eq!(drain_pending(&server, 1000), Drained::Bytes(1000));
    assert_eq!(drain_pending(&server, 5000), Drained::Bytes(2000));
    // A limit beyond one scratch buffer is kept to the byte.
    client.write_all(&[b'x'; 9000]).expect("write");
    wait_waiting(&server, 9000);
    assert_eq!(drain_pending(&server, 5000), Drained::Bytes(5000));
    assert_eq!(drain_pending(&server, 5000), Drained::Bytes(4000));
}

#[test]
fn drain_reports_the_end_of_stream() {
    let (client, conn) = pair();
    client.shutdown(Shutdown::Write).expect("shutdown");
    let server = conn.stream().clone();
    server.set_nonblocking(false).expect("blocking");
    // A blocking peek returns 0 once the end of stream has arrived.
    let Stream::Tcp(tcp) = &server else {
        panic!("a TCP pair")
    };
    assert_eq!(tcp.peek(&mut [0u8; 1]).expect("peek"), 0);
    assert_eq!(drain_pending(&server, LINGER_BYTES), Drained::Closed);
}

/// A TLS client past its handshake, and the server's side of it as a
/// fresh connection.
fn tls_pair() -> (StreamOwned<ClientConnection, TcpStream>, Conn) {
    let (server_config, client_config) = tls::testing::configs();
    let (socket, conn) = test_pair();
    let conn = conn.with_tls(tls::Session::new(server_config).expect("session"));
    let client = std::thread::spawn(move || tls::testing::handshaken_client(client_config, socket));
    while !conn.handshake().expect("server handshake") {
        tls::testing::readable(conn.stream());
    }
    (client.join().expect("client"), conn)
}

/// Sends replies until the socket and the TLS session hold all they take.
fn fill_tls(conn: &Conn) {
    // Each chunk goes whole into the session, which writes what it can.
    let mut chunk = vec![b'x'; 1000];
    while conn.send(&mut chunk).expect("send") == 0 {
        chunk.resize(1000, b'x');
    }
    assert_eq!(conn.outbox.lock().queued(), 0);
}

/// Flushes with `step` until it says nothing waits, at most ten seconds.
fn until_written(step: impl Fn() -> usize) {
    let until = Instant::now() + Duration::from_secs(10);
    while step() > 0 {
        assert!(Instant::now() < until, "still waiting after 10 s");
        std::thread::yield_now();
    }
}

/// A client that reads everything to the end in a thread of its own: what
/// it read, and whether the end was an orderly close_notify.
fn read_to_close(
    mut client: StreamOwned<ClientConnection, TcpStream>,
) -> std::thread::JoinHandle<(Vec<u8>, io::Result<usize>)> {
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let end = client.read_to_end(&mut all);
        (all, end)
    })
}

/// Once close_notify is on its way, a delivery from another connection
/// finds the client gone: it would never be written, and the close would
/// wait on it for ever.
#[test]
fn a_delivery_after_close_notify_finds_the_client_gone() {
    let (client, conn) = tls_pair();
    fill_tls(&conn);
    assert!(conn.close_notify().expect("close_notify") > 0);
    assert_eq!(conn.deliver(b"late\n", usize::MAX), Delivery::Gone);
    let reader = read_to_close(client);
    until_written(|| conn.flush().expect("flush"));
    conn.shutdown_write().expect("shutdown");
    let (all, end) = reader.join().expect("reader");
    assert!(end.is_ok(), "no close_notify: {end:?}");
    assert!(all.iter().all(|&b| b == b'x'), "only the replies");
}

/// A delivery still queued when the close begins goes out first, and then
/// close_notify: it is not skipped because the outbox was busy.
#[test]
fn close_notify_follows_a_delivery_queued_before_it() {
    let (client, conn) = tls_pair();
    fill_tls(&conn);
    assert_eq!(conn.deliver(b"late\n", usize::MAX), Delivery::Queued);
    assert!(conn.outbox.lock().queued() > 0);
    let reader = read_to_close(client);
    until_written(|| conn.close_notify().expect("close_notify"));
    conn.shutdown_write().expect("shutdown");
    let (all, end) = reader.join().expect("reader");
    assert!(end.is_ok(), "no close_notify: {end:?}");
    assert!(all.ends_with(b"xlate\n"));
}
