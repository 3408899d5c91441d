//! The client behind `linepool client`, for people at a terminal and for
//! scripts: lines from its input go to the server, whatever the server sends
//! is printed as it arrives, and it ends when the server closes the
//! connection.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;

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
        return sum(stream, name, input, output);
    }
    // Input goes out on its own thread, so that what the server sends (chat
    // messages from others, say) is printed while the user types.
    let sender = stream.try_clone()?;
    thread::spawn(move || send_input(sender, mode, input));
    match mode {
        Mode::Framed => print_frames(stream, &mut output),
        _ => print_bytes(stream, &mut output),
    }
}

/// Sends each input line; at the end of input, ends our side of the
/// connection so the server answers what it has and closes.
fn send_input(mut stream: TcpStream, mode: Mode, input: impl BufRead) {
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
        if stream.write_all(&message).is_err() {
            return;
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
}

fn print_bytes(mut stream: TcpStream, output: &mut impl Write) -> io::Result<()> {
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

fn print_frames(mut stream: TcpStream, output: &mut impl Write) -> io::Result<()> {
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
fn sum(
    stream: TcpStream,
    name: &str,
    input: impl BufRead,
    mut output: impl Write,
) -> io::Result<()> {
    let mut replies = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut lines = input.lines();
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
        writer.write_all(format!("{name};{n}\n").as_bytes())?;
        let mut reply = String::new();
        if replies.read_line(&mut reply)? == 0 {
            writeln!(output, "the server closed the connection")?;
            return Ok(());
        }
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
