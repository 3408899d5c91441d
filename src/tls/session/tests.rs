//! The session's unit tests over a real socket pair and a real `rustls`
//! client: a short read means the socket had nothing more.

use super::*;
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;

use crate::tls::testing::{configs, handshaken_client, read_closed, readable};

/// A client whose socket has sent its bytes, the server's end of it
/// non-blocking, and the server's session past the handshake. The client
/// thread writes each chunk it is sent (an empty one ends its stream with
/// a bare FIN), and says when it is written.
fn handshaken() -> (Stream, Session, mpsc::Sender<Vec<u8>>, mpsc::Receiver<()>) {
    let (server_config, client_config) = configs();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let socket = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (accepted, _) = listener.accept().expect("accept");
    accepted.set_nonblocking(true).expect("nonblocking");
    let stream = Stream::Tcp(Arc::new(accepted));
    let (chunks, to_send) = mpsc::channel::<Vec<u8>>();
    let (said, written) = mpsc::channel();
    thread::spawn(move || {
        let mut client = handshaken_client(client_config, socket);
        said.send(()).expect("handshake done");
        for chunk in to_send {
            // An empty chunk: a bare FIN, without close_notify.
            if chunk.is_empty() {
                client
                    .sock
                    .shutdown(std::net::Shutdown::Write)
                    .expect("shutdown");
            }
            client.write_all(&chunk).expect("write");
            client.flush().expect("flush");
            said.send(()).expect("written");
        }
    });
    let mut session = Session::new(server_config).expect("session");
    while !session.handshake(&stream).expect("handshake") {
        readable(&stream);
    }
    written.recv().expect("client handshake");
    (stream, session, chunks, written)
}

/// Plaintext left over from one read, behind a socket read that came up
/// short, does not make a later read stop short of what arrived since.
#[test]
fn a_short_read_means_the_socket_had_nothing_more() {
    let (stream, mut session, chunks, written) = handshaken();
    chunks.send(vec![b'a'; 1000]).expect("first chunk");
    written.recv().expect("first written");
    readable(&stream);
    // The socket read is short (it holds one record); the caller's buffer
    // takes only part of the plaintext.
    let mut small = [0; 100];
    assert_eq!(session.read(&stream, &mut small).expect("read"), 100);
    // More arrives while the rest of the plaintext waits in the session.
    chunks.send(vec![b'b'; 1000]).expect("second chunk");
    written.recv().expect("second written");
    readable(&stream);
    let mut big = vec![0; 64 * 1024];
    let n = session.read(&stream, &mut big).expect("read");
    let mut expected = vec![b'a'; 900];
    expected.extend_from_slice(&[b'b'; 1000]);
    assert_eq!(n, expected.len(), "a short read left bytes in the socket");
    assert!(big[..n] == expected[..]);
}

/// A bare FIN right behind a read that filled rustls' socket read (4096
/// bytes at a time) ends the stream in order: the plaintext first, then
/// an end, never an error (which would cost the client its replies).
#[test]
fn a_bare_fin_behind_a_full_socket_read_is_an_orderly_end() {
    let (stream, mut session, chunks, written) = handshaken();
    // One TLS 1.3 record of 4096 bytes: 5 of header, 1 of content type
    // and 16 of tag around the plaintext.
    let line = [b'c'; 4096 - 22];
    chunks.send(line.to_vec()).expect("record");
    written.recv().expect("record written");
    chunks.send(Vec::new()).expect("fin");
    written.recv().expect("fin sent");
    read_closed(&stream);
    let mut buf = vec![0; 64 * 1024];
    assert_eq!(session.read(&stream, &mut buf).expect("read"), line.len());
    assert!(session.ended(), "the end is seen behind the plaintext");
    assert_eq!(session.read(&stream, &mut buf).expect("the end"), 0);
}
