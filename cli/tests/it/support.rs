//! Shared helpers: a server started through the library or as the built
//! binary, and a line client with deadlines on every read.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use linepool::protocol::{self, Protocol};
use linepool::{Config, Server, Summary};
use linepool_chat::ChatBus;

/// The longest any single expected event may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// What a test server is started with: its settings (which the setup
/// derefs to, so `c.workers = 2` reads as on a `Config`) and its protocol.
pub struct Setup {
    pub config: Config,
    pub protocol: Arc<dyn Protocol>,
}

impl Deref for Setup {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.config
    }
}

impl DerefMut for Setup {
    fn deref_mut(&mut self) -> &mut Config {
        &mut self.config
    }
}

/// The chat room, alone, with the default longest line.
pub fn chat() -> Arc<dyn Protocol> {
    chat_on(None)
}

/// The chat room, shared on `bus` when given.
pub fn chat_on(bus: Option<ChatBus>) -> Arc<dyn Protocol> {
    linepool_chat::chat(Config::default().max_line, bus).expect("chat")
}

/// A server run through the library on `127.0.0.1:0`; stopped on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The metrics endpoint, when `configure` set `config.metrics`.
    metrics: Option<SocketAddr>,
    pub shutdown: linepool::Shutdown,
    done: Receiver<Result<Summary, linepool::Error>>,
}

impl TestServer {
    /// Starts a server with the defaults changed by `configure`.
    pub fn start(configure: impl FnOnce(&mut Setup)) -> TestServer {
        let mut setup = Setup {
            config: Config::new("127.0.0.1", 0),
            protocol: protocol::ack(),
        };
        configure(&mut setup);
        let server = Server::bind(setup.config, setup.protocol).expect("bind");
        let addr = server.local_addr();
        let metrics = server.metrics_addr();
        let shutdown = server.shutdown_handle();
        let (tx, done) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(server.run());
        });
        TestServer {
            addr,
            metrics,
            shutdown,
            done,
        }
    }

    /// Starts a server with a metrics endpoint on a free port, and the
    /// defaults changed by `configure`.
    pub fn with_metrics(configure: impl FnOnce(&mut Setup)) -> TestServer {
        TestServer::start(|c| {
            c.metrics = Some("127.0.0.1:0".parse().expect("address"));
            configure(c);
        })
    }

    /// The metrics endpoint's address; the server must have one.
    pub fn metrics(&self) -> SocketAddr {
        self.metrics.expect("a server started with_metrics")
    }

    /// Starts a server with the default settings.
    pub fn default() -> TestServer {
        TestServer::start(|_| {})
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Waits for `run` to return (after a stop from any source).
    pub fn wait_stopped(&self, within: Duration) -> Summary {
        match self.done.recv_timeout(within) {
            Ok(result) => result.expect("run failed"),
            Err(RecvTimeoutError::Timeout) => panic!("server did not stop within {within:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("server thread died"),
        }
    }

    /// Stops the server and returns its summary.
    pub fn stop(&self) -> Summary {
        self.shutdown.trigger();
        self.wait_stopped(DEADLINE)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.trigger();
        let _ = self.done.recv_timeout(DEADLINE);
    }
}

/// A plain line client. Every read fails the test after [`DEADLINE`].
pub struct Client {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).expect("connect"))
    }

    /// A client on a socket connected by hand.
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Client { stream, reader }
    }

    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).expect("send");
    }

    /// Sends `line` and a newline.
    pub fn send_line(&mut self, line: &str) {
        self.send(format!("{line}\n"));
    }

    /// Ends our sending side, as `nc -N` does.
    pub fn half_close(&mut self) {
        self.stream.shutdown(Shutdown::Write).expect("half close");
    }

    /// Waits until the server's kernel has acknowledged every byte sent so
    /// far (the socket's send queue, `SIOCOUTQ`, is empty): nothing is in
    /// flight any more. Fails after [`DEADLINE`].
    pub fn wait_acknowledged(&self) {
        use std::os::fd::AsRawFd;
        let until = Instant::now() + DEADLINE;
        loop {
            let mut unsent: libc::c_int = 0;
            // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int through the pointer.
            let rc = unsafe { libc::ioctl(self.stream.as_raw_fd(), libc::TIOCOUTQ, &mut unsent) };
            assert_eq!(rc, 0, "ioctl: {}", io::Error::last_os_error());
            if unsent == 0 {
                return;
            }
            assert!(
                Instant::now() < until,
                "{unsent} bytes still unacknowledged"
            );
            thread::yield_now();
        }
    }

    /// The next line, with its `\n`. Fails on end of input or timeout.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => panic!("connection closed, expected a line"),
            Ok(_) => line,
            Err(e) => panic!("expected a line: {e}"),
        }
    }

    /// The next `n` bytes, whatever they are.
    pub fn read_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut got = vec![0u8; n];
        if let Err(e) = self.reader.read_exact(&mut got) {
            panic!("expected {n} bytes: {e}");
        }
        got
    }

    /// Asserts that the next bytes are exactly `expected`.
    pub fn expect(&mut self, expected: &str) {
        let mut got = vec![0u8; expected.len()];
        if let Err(e) = self.reader.read_exact(&mut got) {
            panic!("expected {expected:?}: {e}");
        }
        assert_eq!(String::from_utf8_lossy(&got), expected);
    }

    /// Everything until the server closes the connection. A reset after
    /// the server's last bytes counts as the end too.
    pub fn rest(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        let start = Instant::now();
        loop {
            match self.reader.read(&mut chunk) {
                Ok(0) => return all,
                Ok(n) => all.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return all,
                // A socket read with a timeout is not restarted after a
                // signal or a stop and continue (signal(7)): it says
                // EINTR, and the read is simply made again.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!(
                    "waiting for the server to close ({:?} after {:?}, {} bytes so far, local {:?}): {e}",
                    e.kind(),
                    start.elapsed(),
                    all.len(),
                    self.stream.local_addr()
                ),
            }
        }
    }

    /// Asserts that the server closes the connection with nothing more said.
    pub fn expect_closed(&mut self) {
        let rest = self.rest();
        assert!(
            rest.is_empty(),
            "expected close, got {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    /// Asserts that nothing arrives for `wait`: the only place a test waits
    /// out a fixed time, because it checks for an absence.
    pub fn expect_silence(&mut self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut byte = [0u8; 1];
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.stream.set_read_timeout(Some(left)).expect("timeout");
            match self.reader.read(&mut byte) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                // Not restarted after a signal (see `rest`): read again.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => panic!("expected silence, got {other:?}"),
            }
        }
        self.stream
            .set_read_timeout(Some(DEADLINE))
            .expect("timeout");
    }
}

/// A client whose socket is bound to `from`, one of the loopback
/// addresses (all of 127.0.0.0/8 is this machine), before it connects to
/// `to`.
pub fn connect_from(from: &str, to: SocketAddr) -> Client {
    let from: std::net::IpAddr = from.parse().expect("address");
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::new(from, 0).into())
        .expect("bind to a loopback address");
    socket.connect(&to.into()).expect("connect");
    Client::from_stream(socket.into())
}

/// The `linepool` binary, started with `serve --port 0`. Killed on drop.
pub struct BinServer {
    pub addr: SocketAddr,
    pub pid: u32,
    log: Receiver<String>,
    exit: Receiver<ExitStatus>,
    exited: bool,
    /// Every log line seen so far.
    pub seen: Vec<String>,
}

impl BinServer {
    /// Runs `linepool serve --port 0 --log-level debug` plus `args`.
    pub fn start(args: &[&str]) -> BinServer {
        let mut command = Command::new(env!("CARGO_BIN_EXE_linepool"));
        command
            .args(["serve", "--port", "0", "--log-level", "debug"])
            .args(args);
        BinServer::spawn(command)
    }

    /// Runs `command`, which must start a server, and waits until it listens.
    pub fn spawn(mut command: Command) -> BinServer {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn linepool");
        let pid = child.id();
        let (log_tx, log) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if log_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (exit_tx, exit) = mpsc::channel();
        thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = exit_tx.send(status);
            }
        });
        let mut server = BinServer {
            addr: "0.0.0.0:0".parse().expect("addr"),
            pid,
            log,
            exit,
            exited: false,
            seen: Vec::new(),
        };
        let listening = server.wait_log("listening on ");
        let addr = listening
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("address in log line");
        server.addr = addr.parse().expect("socket address");
        server
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Waits for a log line containing `needle` and returns it.
    pub fn wait_log(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let until = Instant::now() + DEADLINE;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no log line with {needle:?}; saw {:#?}", self.seen),
            }
        }
    }

    /// Reads log lines until `done` holds for all seen so far; fails after
    /// [`DEADLINE`].
    pub fn wait_until(&mut self, done: impl Fn(&[String]) -> bool) {
        let until = Instant::now() + DEADLINE;
        while !done(&self.seen) {
            let left = until.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("log never got there; saw {:#?}", self.seen),
            }
        }
    }

    /// The metrics endpoint's address, from its log line; the server must
    /// have been started with `--metrics`.
    pub fn metrics(&mut self) -> SocketAddr {
        let line = self.wait_log("metrics on http://");
        line.split("metrics on http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .expect("metrics address")
            .parse()
            .expect("socket address")
    }

    /// The `--agent` port's address, from the log.
    pub fn agent(&mut self) -> SocketAddr {
        let line = self.wait_log("agent listening on ");
        line.split("agent listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("agent address")
            .parse()
            .expect("socket address")
    }

    /// Waits for the process to exit and reads its log to the end, so that
    /// `seen` holds every line it wrote. Returns the exit status.
    pub fn wait_exit_and_log(&mut self, within: Duration) -> ExitStatus {
        let status = self.wait_exit(within);
        let until = Instant::now() + DEADLINE;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => return status,
                Err(RecvTimeoutError::Timeout) => panic!("the log never ended"),
            }
        }
    }

    /// How many log lines seen so far contain `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        self.seen.iter().filter(|l| l.contains(needle)).count()
    }

    /// Sends a signal by name (`TERM`, `INT`, `HUP`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {name} failed");
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let status = self
            .exit
            .recv_timeout(within)
            .unwrap_or_else(|_| panic!("linepool did not exit within {within:?}"));
        self.exited = true;
        status
    }
}

impl Drop for BinServer {
    fn drop(&mut self) {
        if !self.exited && self.exit.try_recv().is_err() {
            // The process may have exited a moment ago, its status not yet
            // passed on: kill's "No such process" would be noise in the
            // test run's output, so its words go nowhere.
            let _ = Command::new("kill")
                .args(["-s", "KILL", &self.pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// One HTTP/1.1 GET with `headers` (each ending in `\r\n`) added: the
/// status line, the rest of the head, and the body.
pub fn http_get(addr: SocketAddr, path: &str, headers: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    let (status, rest) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), rest.to_string(), body.to_string())
}

/// One GET: the status line and the body.
pub fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let (status, _, body) = http_get(addr, path, "");
    (status, body)
}

/// Every sample (`name{labels}` → value), checking the shape on the way:
/// each family has its HELP and TYPE before its samples, names carry the
/// `linepool_` prefix, counters end in `_total`.
pub fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let mut samples = HashMap::new();
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut helped = Vec::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.push(rest.split(' ').next().expect("name").to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("name and type");
            assert!(helped.iter().any(|h| h == name), "no HELP for {name}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter {name} without _total");
            }
            typed.insert(name.to_string(), kind.to_string());
        } else {
            assert!(!line.starts_with('#'), "stray comment {line:?}");
            let (key, value) = line.rsplit_once(' ').expect("sample");
            let name = key.split('{').next().expect("name");
            assert!(name.starts_with("linepool_"), "{name}");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains_key(*f)))
                .unwrap_or(name);
            assert!(typed.contains_key(family), "no TYPE for {name}");
            samples.insert(key.to_string(), value.parse::<f64>().expect("value"));
        }
    }
    samples
}

/// Scrapes until `settled` holds or [`DEADLINE`] passes, and returns the
/// last scrape: a reply reaches its client a moment before its worker adds
/// it to the counters, so a test waits for the figures it expects and then
/// asserts them exactly.
pub fn scrape_until(
    addr: SocketAddr,
    settled: impl Fn(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    let until = Instant::now() + DEADLINE;
    loop {
        let samples = scrape(addr);
        if settled(&samples) || Instant::now() >= until {
            return samples;
        }
        thread::yield_now();
    }
}

/// Runs the binary to completion with `args`; returns status and stderr.
pub fn run_bin(args: &[&str]) -> (ExitStatus, String) {
    run_bin_env(args, &[])
}

/// Runs the binary to completion with `args` and the environment variables
/// `vars` set; returns status and stderr (then stdout).
pub fn run_bin_env(args: &[&str], vars: &[(&str, &str)]) -> (ExitStatus, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_linepool"))
        .args(args)
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run linepool");
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    (output.status, text)
}

/// Runs the binary with `args` and `vars` like [`run_bin_env`], with
/// `input` on its standard input (closed after it), but kills it and fails
/// the test if it has not exited within [`DEADLINE`]: for commands that
/// would run for ever if what they should meet were missing.
pub fn run_bin_within(args: &[&str], vars: &[(&str, &str)], input: &[u8]) -> (ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_linepool"))
        .args(args)
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run linepool");
    let mut stdin = child.stdin.take().expect("stdin");
    // A command that exits without reading its input makes this fail: the
    // test looks at its status and words, not at this.
    let _ = stdin.write_all(input);
    drop(stdin);
    let pid = child.id();
    let (done_tx, done) = mpsc::channel();
    thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    let output = match done.recv_timeout(DEADLINE) {
        Ok(output) => output.expect("wait for linepool"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-s", "KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
            panic!("linepool {args:?} was still running after {DEADLINE:?}");
        }
    };
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    (output.status, text)
}

/// Raises this process's limit on open files towards `wanted` (as far as
/// the hard limit allows) and returns the limit now in force, so tests that
/// hold thousands of sockets can size themselves.
pub fn allow_descriptors(wanted: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        let target = (wanted as libc::rlim_t).min(limit.rlim_max);
        if target > limit.rlim_cur {
            limit.rlim_cur = target;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
            }
        }
    }
    limit.rlim_cur as usize
}

/// What an `--agent` port says, whole: one line, then the close.
pub fn agent_says(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the agent");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut said = String::new();
    stream.read_to_string(&mut said).expect("agent line");
    said
}
