//! The `linepool` command: parses flags for `serve`, `load` and `client`;
//! for `serve` it installs the logger and the signal handlers and runs the
//! library's server, for `load` it draws the progress bar and prints the
//! report, for `client` it connects stdin and stdout to the server.

use std::io::{BufReader, IsTerminal};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use log::{LevelFilter, info};
use nix::sys::signal::{SigSet, Signal};
use simplelog::{ColorChoice, ConfigBuilder, TermLogger, TerminalMode};

use linepool::client::Mode;
use linepool::config::{
    DEFAULT_BACKLOG, DEFAULT_IDLE_SECS, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_LINE,
    DEFAULT_PROTOCOL, DEFAULT_SERVER_NAME, DEFAULT_SERVER_NUMBER, default_workers,
};
use linepool::load::{Limit, LoadConfig, LoadProtocol};
use linepool::{Config, Overload, Server};

/// Exit status when a second interrupt cuts a stop short, as shells report
/// a death by SIGINT.
const EXIT_INTERRUPTED: u8 = 130;

/// Requests per connection when a load run names neither -n nor -d.
const DEFAULT_LOAD_REQUESTS: u64 = 1000;

#[derive(Parser)]
#[command(
    name = "linepool",
    version,
    about = "A bounded worker-pool TCP line server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the line protocol: every line gets `ACK: <line>` back.
    Serve(ServeArgs),
    /// Drive load against a running server, checking every reply.
    Load(LoadArgs),
    /// Talk to a server: input lines go out, what it sends is printed.
    Client(ClientArgs),
}

#[derive(Args)]
struct ClientArgs {
    /// Server host name or address.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// The server's protocol: ack, chat, framed or sum.
    #[arg(long, default_value = "ack", value_parser = ["ack", "chat", "framed", "sum"])]
    protocol: String,
    /// `sum`: the client name sent with each number.
    #[arg(long, default_value = "Client of linepool")]
    name: String,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("limit").args(["requests", "duration"])))]
struct LoadArgs {
    /// Server host name or address.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Connections sending requests at once.
    #[arg(short = 'c', long, default_value_t = 1,
          value_parser = at_least_one)]
    connections: usize,
    /// Requests on each connection [default: 1000 unless --duration is given].
    #[arg(short = 'n', long, value_parser = clap::value_parser!(u64).range(1..))]
    requests: Option<u64>,
    /// Run for this many seconds instead of a number of requests.
    #[arg(short = 'd', long, value_name = "SECS", value_parser = seconds)]
    duration: Option<f64>,
    /// Requests in flight on each connection.
    #[arg(long, value_name = "DEPTH", default_value_t = 1,
          value_parser = at_least_one)]
    pipeline: usize,
    /// Length of each request line in bytes, newline not counted.
    #[arg(long, value_name = "BYTES", default_value_t = 32)]
    payload: usize,
    /// Open a fresh connection for every request: connect, one line, read
    /// the ACK, `shutdown`, close.
    #[arg(long)]
    connect_per_request: bool,
    /// Also hold this many idle connections open for the whole run.
    #[arg(long, value_name = "N", default_value_t = 0)]
    idle: usize,
    /// Seconds a connect or a reply may take before it counts as a timeout.
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = seconds)]
    timeout: f64,
    /// Event-loop threads driving the connections.
    #[arg(long, default_value_t = 1,
          value_parser = at_least_one)]
    threads: usize,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// The server's protocol: ack (lines) or framed (length-prefixed echo).
    #[arg(long, default_value = "ack", value_parser = ["ack", "framed"])]
    protocol: String,
}

#[derive(Args)]
struct ServeArgs {
    /// Host name or address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 takes any free port.
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Threads that run protocol code [default: the number of CPUs].
    #[arg(long, value_parser = at_least_one)]
    workers: Option<usize>,
    /// Connections open at once, served or idle.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = at_least_one)]
    max_connections: usize,
    /// When --max-connections are open: `block` leaves new clients in the
    /// kernel backlog, `reject` answers `ERR server busy` and closes.
    #[arg(long, default_value_t = Overload::Block)]
    overload: Overload,
    /// Close a client that sends no complete line, or reads no reply, for
    /// this many seconds; 0 never does.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_IDLE_SECS)]
    idle_timeout: u64,
    /// Longest accepted line in bytes, not counting the line ending.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_LINE,
          value_parser = at_least_one)]
    max_line: usize,
    /// Listen backlog (the kernel caps it at net.core.somaxconn).
    #[arg(long, default_value_t = DEFAULT_BACKLOG,
          value_parser = clap::value_parser!(u32).range(1..=i32::MAX as i64))]
    backlog: u32,
    /// Log a stats line every SECS seconds (lines answered, service time,
    /// open and ready connections, rejected and total connections); 0 never
    /// does.
    #[arg(long, value_name = "SECS", default_value_t = 0.0, value_parser = seconds)]
    stats_interval: f64,
    /// Protocol: ack (ACK every line), chat, framed (length-prefixed echo)
    /// or sum (number exchange).
    #[arg(long, default_value = DEFAULT_PROTOCOL, value_parser = linepool::protocol::check_name)]
    protocol: String,
    /// `sum`: the server name given in replies.
    #[arg(long, default_value = DEFAULT_SERVER_NAME)]
    server_name: String,
    /// `sum`: the number the server answers with.
    #[arg(long, default_value_t = DEFAULT_SERVER_NUMBER, allow_negative_numbers = true)]
    server_number: i64,
    /// Log level: off, error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL", default_value_t = LevelFilter::Info)]
    log_level: LevelFilter,
}

impl ServeArgs {
    fn config(&self) -> Config {
        Config {
            host: self.host.clone(),
            port: self.port,
            workers: self.workers.unwrap_or_else(default_workers),
            max_connections: self.max_connections,
            overload: self.overload,
            idle_timeout: (self.idle_timeout > 0).then(|| Duration::from_secs(self.idle_timeout)),
            max_line: self.max_line,
            backlog: self.backlog,
            stats_interval: Duration::try_from_secs_f64(self.stats_interval)
                .ok()
                .filter(|d| !d.is_zero()),
            protocol: self.protocol.clone(),
            server_name: self.server_name.clone(),
            server_number: self.server_number,
        }
    }
}

/// Parses a count that must be at least 1.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("must be at least 1".to_string()),
        Err(_) => Err(format!("'{text}' is not a whole number")),
    }
}

/// Parses a number of seconds: finite and not negative.
fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Ok(secs),
        _ => Err(format!("'{text}' is not a number of seconds")),
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve(args) => serve(&args),
        Command::Load(args) => load(&args),
        Command::Client(args) => client(&args),
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    init_logging(args.log_level);
    let server = match Server::bind(args.config()) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("linepool: {e}");
            return ExitCode::FAILURE;
        }
    };
    // SIGINT, SIGTERM and SIGHUP (ctrlc's `termination` feature) all start
    // the same stop as `quit_server`. A second one while stopping exits now.
    let shutdown = server.shutdown_handle();
    let signals = AtomicUsize::new(0);
    let installed = ctrlc::set_handler(move || {
        if signals.fetch_add(1, Ordering::SeqCst) == 0 {
            info!("signal received, stopping (send again to exit at once)");
            shutdown.trigger();
        } else {
            eprintln!("linepool: interrupted again, exiting now");
            std::process::exit(EXIT_INTERRUPTED.into());
        }
    });
    if let Err(e) = installed {
        eprintln!("linepool: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    // The handler's own thread now exists and still takes signals. Every
    // thread started from here on (the acceptor is this one, the workers
    // inherit its mask) ignores them, so a signal never interrupts a
    // worker's read or write halfway.
    if let Err(e) = stop_signals().thread_block() {
        eprintln!("linepool: cannot mask signals: {e}");
        return ExitCode::FAILURE;
    }
    match server.run() {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("linepool: {e}");
            ExitCode::FAILURE
        }
    }
}

fn client(args: &ClientArgs) -> ExitCode {
    let mode = match args.protocol.as_str() {
        "framed" => Mode::Framed,
        "sum" => Mode::Sum,
        _ => Mode::Lines,
    };
    let stream = match TcpStream::connect((args.host.as_str(), args.port)) {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!(
                "linepool: cannot connect to {}:{}: {e}",
                args.host, args.port
            );
            return ExitCode::FAILURE;
        }
    };
    let input = BufReader::new(std::io::stdin());
    match linepool::client::run(stream, mode, &args.name, input, std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("linepool: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(args: &LoadArgs) -> ExitCode {
    let config = match load_config(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("linepool: {e}");
            return ExitCode::FAILURE;
        }
    };
    let progress = AtomicU64::new(0);
    let report = std::thread::scope(|scope| {
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let bar = scope.spawn(|| show_progress(&config, &progress, finished));
        let report = linepool::load::run(&config, &progress);
        drop(done);
        let _ = bar.join();
        report
    });
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            eprintln!("linepool: load failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{report}");
    }
    // A wrong reply means the server is broken, whatever else happened.
    if report.has_mismatch() {
        eprintln!(
            "linepool: {} replies did not match their requests",
            report.errors.mismatch
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn load_config(args: &LoadArgs) -> Result<LoadConfig, String> {
    let addr = (args.host.as_str(), args.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", args.host))?
        .next()
        .ok_or_else(|| format!("no address found for {}", args.host))?;
    let seconds = |name: &str, secs: f64| {
        Duration::try_from_secs_f64(secs)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("--{name} must be a positive number of seconds"))
    };
    let limit = match (args.requests, args.duration) {
        (_, Some(secs)) => Limit::Duration(seconds("duration", secs)?),
        (Some(n), None) => Limit::Requests(n),
        (None, None) => Limit::Requests(DEFAULT_LOAD_REQUESTS),
    };
    Ok(LoadConfig {
        addr,
        connections: args.connections,
        limit,
        pipeline: args.pipeline,
        payload: args.payload,
        connect_per_request: args.connect_per_request,
        idle: args.idle,
        timeout: seconds("timeout", args.timeout)?,
        threads: args.threads,
        protocol: if args.protocol == "framed" {
            LoadProtocol::Framed
        } else {
            LoadProtocol::Ack
        },
    })
}

/// Draws a progress bar on a terminal until `finished` disconnects; draws
/// nothing when stderr is not a terminal.
fn show_progress(config: &LoadConfig, replies: &AtomicU64, finished: Receiver<()>) {
    let (length, timed) = match config.limit {
        Limit::Requests(n) => (n.saturating_mul(config.connections as u64), false),
        Limit::Duration(d) => (d.as_millis() as u64, true),
    };
    let bar = ProgressBar::new(length);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {percent:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let start = std::time::Instant::now();
    while let Err(RecvTimeoutError::Timeout) = finished.recv_timeout(Duration::from_millis(100)) {
        let done = replies.load(Ordering::Relaxed);
        let position = if timed {
            start.elapsed().as_millis() as u64
        } else {
            done
        };
        bar.set_position(position.min(length));
        bar.set_message(format!("{done} replies"));
    }
    bar.finish_and_clear();
}

/// The signals that stop the server (ctrlc's `termination` feature).
fn stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    set
}

/// Logs to stderr, keeping stdout free for program output.
fn init_logging(level: LevelFilter) {
    let config = ConfigBuilder::new()
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .build();
    // Colour codes only help a person at a terminal; a file or pipe gets text.
    let color = if std::io::stderr().is_terminal() {
        ColorChoice::Auto
    } else {
        ColorChoice::Never
    };
    // Only fails if a logger is already installed, which cannot happen here.
    let _ = TermLogger::init(level, config, TerminalMode::Stderr, color);
}
