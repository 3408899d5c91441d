//! A real `redis-server` of the tests' own, on a free loopback port,
//! without persistence, stopped on drop; and the few raw commands the
//! tests send it. A test that needs one fails when `redis-server` cannot
//! be started (scripts/check.sh installs it): it never skips.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::DEADLINE;

/// A running `redis-server`; killed on drop.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

impl Redis {
    /// Starts one on a free port and waits until it answers.
    pub fn start() -> Redis {
        Redis::on(free_port())
    }

    /// Starts one on `port` and waits until it answers.
    pub fn on(port: u16) -> Redis {
        let mut redis = Redis { port, child: None };
        redis.up();
        redis
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again), on the same port.
    pub fn up(&mut self) {
        assert!(self.child.is_none(), "redis-server runs already");
        let spawned = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) => panic!(
                "cannot start redis-server ({e}); install it (apt-get install -y redis-server): \
                 the chat bus tests need a real one"
            ),
        };
        self.child = Some(child);
        let until = Instant::now() + DEADLINE;
        while self.try_command(&["PING"]).as_deref() != Some("+PONG") {
            assert!(Instant::now() < until, "redis-server did not answer");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the server; its port is closed when this returns.
    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends one command; returns the first line of the reply.
    pub fn command(&self, args: &[&str]) -> String {
        self.try_command(args)
            .unwrap_or_else(|| panic!("redis command {args:?} failed"))
    }

    fn try_command(&self, args: &[&str]) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(DEADLINE)).ok()?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).ok()?;
        Some(line.trim_end().to_string())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.down();
    }
}
