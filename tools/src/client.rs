//! The client behind `linepool client`, for people at a terminal and for
//! scripts: lines from its input go to the server, whatever the server sends
//! is printed as it arrives, and it ends when the server closes the
//! connection. Over TLS ([`run_tls`]) the same, with one thread owning the
//! TLS session: input lines reach it through a channel.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::thread;
use std::time::Duration;

use rustls::{ClientConnection, StreamOwned};

use super::tls::Connector;

use linepool::framing::{FrameError, Framing, Reader, write_frame};

/// The protocols the client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Lines out, text in: `ack` and `chat`.
    Lines,
    /// Each input line becomes one length-prefixed message; each message
    /// received is printed as one line.
    Framed,
    /// The number exchange: prompts for an integer, prints the sum.
    Sum,
}

/// The `sum` prompt, exactly as printed.
pub const SUM_PROMPT: &str = "Enter an integer between 1 and 100: ";

/// The error when a plaintext client was closed without a byte in answer
/// to what it sent: what a TLS port does with input that is not TLS.
pub const NO_REPLY: &str = "the server closed without a reply: is it a TLS port? try --tls";

/// The error when the TLS handshake met an end of stream, a reset or bytes
/// that are not TLS: what a plaintext port does with a ClientHello.
pub const NO_HANDSHAKE: &str =
    "the server did not answer the TLS handshake: a plaintext port, or a full one?";

/// Runs a session on `stream`: `input` to the server, the server to
/// `output`. Returns when the server closes the connection, or when input
/// ends and the server has answered everything.
pub fn run(
    stream: TcpStream,
    mode: Mode,
    name: &str,
    input: impl BufRead + Send + 'static,
    mut output: impl Write,
) -> io::Result<()> {
    if mode == Mode::Sum {
        return sum(&stream, name, input, output, true);
    }
    // Input goes out on its own thread, so that what the server sends (chat
    // messages from others, say) is printed while the user types.
    let sender = stream.try_clone()?;
    let said = Arc::new(AtomicBool::new(false));
    {
        let said = said.clone();
        thread::spawn(move || send_input(sender, mode, input, &said));
    }
    let mut heard = Heard { stream, any: false };
    let printed = match mode {
        Mode::Framed => print_frames(&mut heard, &mut output),
        _ => print_bytes(&mut heard, &mut output),
    };
    // Every protocol answers what it is sent; a close with not one byte
    // after we said something is what a TLS port does with plaintext. With
    // nothing said (empty input) a silent close is ordinary.
    if printed.is_ok() && !heard.any && said.load(Ordering::SeqCst) {
        return Err(io::Error::other(NO_REPLY));
    }
    printed
}

/// A plaintext stream that remembers whether anything came.
struct Heard {
    stream: TcpStream,
    any: bool,
}

impl Read for Heard {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.any |= n > 0;
        Ok(n)
    }
}

/// Runs a session over TLS on `socket`, as [`run`] does in the clear. At
/// the end of input the client sends `close_notify`, so the server answers
/// what it has and closes.
pub fn run_tls(
    socket: TcpStream,
    connector: &Connector,
    mode: Mode,
    name: &str,
    input: impl BufRead + Send + 'static,
    mut output: impl Write,
) -> io::Result<()> {
    let mut stream = StreamOwned::new(connector.session()?, socket);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(not_tls_meant)?;
    }
    if mode == Mode::Sum {
        return sum(stream, name, input, output, false);
    }
    // Reads wait a moment at a time, so that input lines go out between
    // them from this one thread.
    stream.sock.set_read_timeout(Some(PUMP_TICK))?;
    let (lines, pending) = mpsc::channel();
    thread::spawn(move || {
        for_each_message(mode, input, |message| lines.send(message.to_vec()).is_ok());
    });
    let pump = Pump {
        stream,
        pending,
        input_done: false,
    };
    match mode {
        Mode::Framed => print_frames(pump, &mut output),
        _ => print_bytes(pump, &mut output),
    }
}

/// A handshake error, as [`NO_HANDSHAKE`] when the server answered the
/// ClientHello with an end of stream, a reset or bytes that are no TLS
/// record. A certificate refused, or an alert, keeps its own words.
fn not_tls_meant(e: io::Error) -> io::Error {
    let not_tls = match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => true,
        _ => e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .is_some_and(|inner| matches!(inner, rustls::Error::InvalidMessage(_))),
    };
    if not_tls {
        io::Error::other(NO_HANDSHAKE)
    } else {
        e
    }
}

/// How long a TLS read waits before input is looked at again.
const PUMP_TICK: Duration = Duration::from_millis(20);

/// A TLS stream whose reads also send what input has come meanwhile.
struct Pump {
    stream: StreamOwned<ClientConnection, TcpStream>,
    pending: Receiver<Vec<u8>>,
    input_done: bool,
}

impl Read for Pump {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            while !self.input_done {
                match self.pending.try_recv() {
                    Ok(message) => self.stream.write_all(&message)?,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.input_done = true;
                        self.stream.conn.send_close_notify();
                        self.stream.flush()?;
                    }
                }
            }
            match self.stream.read(buf) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                // The server's end of stream without close_notify is still
                // its end.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                other => return other,
            }
        }
    }
}

/// Each input line as one message of `mode`, to `send`, until input ends
/// or `send` says stop.
fn for_each_message(mode: Mode, input: impl BufRead, mut send: impl FnMut(&[u8]) -> bool) {
    let mut message = Vec::new();
    for line in input.lines() {
        let Ok(line) = line else { break };
        message.clear();
        if mode == Mode::Framed {
            write_frame(&mut message, line.as_bytes());
        } else {
            message.extend_from_slice(line.as_bytes());
            message.push(b'\n');
        }
        if !send(&message) {
            return;
        }
    }
}

/// Sends each input line; at the end of input, ends our side of the
/// connection so the server answers what it has and closes. `said` is set
/// before the first write, so that the reader cannot see the server's
/// close before it.
fn send_input(mut stream: TcpStream, mode: Mode, input: impl BufRead, said: &AtomicBool) {
    let mut sent = true;
    for_each_message(mode, input, |message| {
        said.store(true, Ordering::SeqCst);
        sent = stream.write_all(message).is_ok();
        sent
    });
    if sent {
        let _ = stream.shutdown(Shutdown::Write);
    }
}

fn print_bytes(mut stream: impl Read, output: &mut impl Write) -> io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                output.write_all(&buf[..n])?;
                output.flush()?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // The server closing with a reset is still the server closing.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

fn print_frames(mut stream: impl Read, output: &mut impl Write) -> io::Result<()> {
    let mut reader = Reader::new(Framing::LengthPrefixed, usize::MAX / 2);
    loop {
        while let Some(message) = reader.next_message() {
            match message {
                Ok(payload) => {
                    output.write_all(payload)?;
                    output.write_all(b"\n")?;
                }
                Err(e) => return Err(io::Error::other(format!("bad frame from server: {e:?}"))),
            }
        }
        output.flush()?;
        match reader.fill(&mut stream) {
            Ok(0) => {
                return match reader.take_rest() {
                    Some(Err(FrameError::Truncated)) => {
                        Err(io::Error::other("server closed inside a message"))
                    }
                    _ => Ok(()),
                };
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// The number exchange, one integer at a time, the way the original client
/// did it: prompt, check the number here, send `<name>;<n>`, print the sum.
/// On `plaintext`, a close before the first reply is [`NO_REPLY`].
fn sum(
    stream: impl Read + Write,
    name: &str,
    input: impl BufRead,
    mut output: impl Write,
    plaintext: bool,
) -> io::Result<()> {
    let mut replies = BufReader::new(stream);
    let mut lines = input.lines();
    let mut answered = false;
    loop {
        output.write_all(SUM_PROMPT.as_bytes())?;
        output.flush()?;
        let Some(line) = lines.next() else {
            writeln!(output)?;
            return Ok(());
        };
        let line = line?;
        let n = match line.trim().parse::<i64>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                writeln!(
                    output,
                    "'{}' is not an integer between 1 and 100, try again",
                    line.trim()
                )?;
                continue;
            }
        };
        replies
            .get_mut()
            .write_all(format!("{name};{n}\n").as_bytes())?;
        let mut reply = String::new();
        if replies.read_line(&mut reply)? == 0 {
            if plaintext && !answered {
                writeln!(output)?;
                return Err(io::Error::other(NO_REPLY));
            }
            writeln!(output, "the server closed the connection")?;
            return Ok(());
        }
        answered = true;
        let reply = reply.trim_end_matches(['\r', '\n']);
        match reply
            .rsplit_once(';')
            .map(|(s, m)| (s, m.trim().parse::<i64>()))
        {
            Some((server, Ok(m))) => {
                writeln!(output, "{name}: {n}, {server}: {m}")?;
                writeln!(output, "{n} + {m} = {}", i128::from(n) + i128::from(m))?;
            }
            _ => writeln!(output, "{reply}")?,
        }
    }
}
