//! A real `redis-server` of the tests' own, on a free loopback port,
//! without persistence, stopped on drop; and the few raw commands the
//! tests send it. A test that needs one fails when `redis-server` cannot
//! be started (scripts/check.sh installs it): it never skips.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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

/// A TCP proxy in front of a Redis that can make the subscriptions open
/// now go silent: they stay connected, but nothing Redis sends them gets
/// through. Connections made later pass as usual.
pub struct Silencer {
    pub port: u16,
    state: Arc<Mutex<Conns>>,
}

#[derive(Default)]
struct Conns {
    /// Per connection: whether it subscribed, whether it is silenced.
    flags: Vec<(Arc<AtomicBool>, Arc<AtomicBool>)>,
}

impl Silencer {
    /// A proxy on a free port to Redis on `port`.
    pub fn to(port: u16) -> Silencer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let state = Arc::new(Mutex::new(Conns::default()));
        let proxy = Silencer {
            port: listener.local_addr().expect("address").port(),
            state: state.clone(),
        };
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                    continue;
                };
                let subscribed = Arc::new(AtomicBool::new(false));
                let silenced = Arc::new(AtomicBool::new(false));
                state
                    .lock()
                    .expect("lock")
                    .flags
                    .push((subscribed.clone(), silenced.clone()));
                let (c2, s2) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                thread::spawn(move || {
                    pump(client, server, |bytes| {
                        if bytes
                            .windows(9)
                            .any(|w| w.eq_ignore_ascii_case(b"SUBSCRIBE"))
                        {
                            subscribed.store(true, Ordering::SeqCst);
                        }
                        true
                    })
                });
                thread::spawn(move || pump(s2, c2, |_| !silenced.load(Ordering::SeqCst)));
            }
        });
        proxy
    }

    /// `redis://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Silences every subscription open now; returns how many.
    pub fn silence_subscriptions(&self) -> usize {
        let conns = self.state.lock().expect("lock");
        let mut n = 0;
        for (subscribed, silenced) in &conns.flags {
            if subscribed.load(Ordering::SeqCst) {
                silenced.store(true, Ordering::SeqCst);
                n += 1;
            }
        }
        n
    }
}

/// Copies `from` to `to` until either ends; `pass` sees each chunk and
/// says whether it goes through (or is swallowed).
fn pump(mut from: TcpStream, mut to: TcpStream, pass: impl Fn(&[u8]) -> bool) {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match from.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if pass(&chunk[..n]) && to.write_all(&chunk[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}
