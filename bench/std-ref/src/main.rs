//! The naive baseline: the ACK protocol as a plain std server, one spawned
//! thread per connection, a buffered reader and writer, a flush only when no
//! more input is buffered. No bound, no timeouts, no stop sequence.
//!
//! Usage: std-ref [PORT]   (0, the default, takes any free port)

use std::env;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

fn main() -> io::Result<()> {
    let port: u16 = env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    eprintln!("listening on {}", listener.local_addr()?);
    for socket in listener.incoming() {
        let Ok(socket) = socket else { continue };
        let _ = socket.set_nodelay(true);
        thread::spawn(move || serve(socket));
    }
    Ok(())
}

fn serve(socket: TcpStream) -> io::Result<()> {
    let mut reader = BufReader::new(socket.try_clone()?);
    let mut writer = BufWriter::new(socket);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        match line.as_slice() {
            b"shutdown" => break,
            b"quit_server" => std::process::exit(0),
            _ => {}
        }
        writer.write_all(b"ACK: ")?;
        writer.write_all(&line)?;
        writer.write_all(b"\n")?;
        if reader.buffer().is_empty() {
            writer.flush()?;
        }
    }
    writer.flush()
}
