//! The `linepool` command: parses flags, installs the logger and the signal
//! handlers, and runs the library's server.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::{Args, Parser, Subcommand};
use log::{LevelFilter, error, info};
use nix::sys::signal::{SigSet, Signal};
use simplelog::{ColorChoice, ConfigBuilder, TermLogger, TerminalMode};

use linepool::config::{
    DEFAULT_BACKLOG, DEFAULT_IDLE_SECS, DEFAULT_MAX_LINE, DEFAULT_QUEUE, DEFAULT_WORKERS,
};
use linepool::{Config, Overload, Server};

/// Exit status when a second interrupt cuts a stop short, as shells report
/// a death by SIGINT.
const EXIT_INTERRUPTED: u8 = 130;

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
}

#[derive(Args)]
struct ServeArgs {
    /// Host name or address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 takes any free port.
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Connections served at once.
    #[arg(long, default_value_t = DEFAULT_WORKERS,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    workers: usize,
    /// Accepted connections that may wait for a free worker.
    #[arg(long, default_value_t = DEFAULT_QUEUE)]
    queue: usize,
    /// When workers and queue are full: `block` leaves new clients in the
    /// kernel backlog, `reject` answers `ERR server busy` and closes.
    #[arg(long, default_value_t = Overload::Block)]
    overload: Overload,
    /// Close a client that sends no complete line, or reads no reply, for
    /// this many seconds; 0 never does.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_IDLE_SECS)]
    idle_timeout: u64,
    /// Longest accepted line in bytes, not counting the line ending.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_LINE,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    max_line: usize,
    /// Listen backlog (the kernel caps it at net.core.somaxconn).
    #[arg(long, default_value_t = DEFAULT_BACKLOG,
          value_parser = clap::value_parser!(u32).range(1..=i32::MAX as i64))]
    backlog: u32,
    /// Log level: off, error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL", default_value_t = LevelFilter::Info)]
    log_level: LevelFilter,
}

impl ServeArgs {
    fn config(&self) -> Config {
        Config {
            host: self.host.clone(),
            port: self.port,
            workers: self.workers,
            queue: self.queue,
            overload: self.overload,
            idle_timeout: (self.idle_timeout > 0).then(|| Duration::from_secs(self.idle_timeout)),
            max_line: self.max_line,
            backlog: self.backlog,
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve(args) => serve(&args),
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    init_logging(args.log_level);
    let server = match Server::bind(args.config()) {
        Ok(server) => server,
        Err(e) => {
            error!("{e}");
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
