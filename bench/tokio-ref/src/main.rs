//! The reference the benchmarks hold linepool to: the same ACK protocol,
//! written the idiomatic tokio way. One task per connection, a buffered
//! reader and writer, and a flush only when no more input is buffered.
//!
//! Usage: tokio-ref [PORT]   (0, the default, takes any free port)

use std::env;
use std::io;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> io::Result<()> {
    let port: u16 = env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    loop {
        let (socket, _) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        tokio::spawn(async move {
            let _ = serve(socket).await;
        });
    }
}

async fn serve(socket: TcpStream) -> io::Result<()> {
    let (read, write) = socket.into_split();
    let mut reader = BufReader::new(read);
    let mut writer = BufWriter::new(write);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
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
        writer.write_all(b"ACK: ").await?;
        writer.write_all(&line).await?;
        writer.write_all(b"\n").await?;
        if reader.buffer().is_empty() {
            writer.flush().await?;
        }
    }
    writer.flush().await?;
    writer.shutdown().await
}
