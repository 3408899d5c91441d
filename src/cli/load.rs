//! `linepool load`: the load tool's flags, its progress bar, Ctrl-C, and
//! the exit status its report earns: 0 when every reply matched and at
//! least one request was answered, 1 on any wrong reply, 2 when nothing
//! was answered, 130 when interrupted.

use std::io::IsTerminal;
use std::net::ToSocketAddrs;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};

use super::{EXIT_INTERRUPTED, at_least_one, duration};
use crate::tools::load::report::Verdict;
use crate::tools::load::{Limit, LoadConfig, LoadProtocol, Progress};

/// Requests per connection when a run names neither -n nor -d.
const DEFAULT_REQUESTS_PER_CONNECTION: u64 = 1000;

/// Exit status when nothing was answered.
const EXIT_NOTHING_ANSWERED: u8 = 2;

/// What the server under load speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProtocolArg {
    /// Lines answered with `ACK: <line>`.
    Ack,
    /// Length-prefixed messages echoed back.
    Framed,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("limit").args(["requests", "duration"])))]
pub struct Args {
    /// Server host name or address.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Connections sending requests at once.
    #[arg(short = 'c', long, default_value_t = 1, value_parser = at_least_one)]
    connections: usize,
    /// Requests in all, split evenly over the connections [default: 1000
    /// per connection unless --duration is given].
    #[arg(short = 'n', long, value_parser = clap::value_parser!(u64).range(1..))]
    requests: Option<u64>,
    /// Run for this long instead (`10`, `10s`, `2m`).
    #[arg(short = 'd', long, value_name = "DURATION", value_parser = positive_duration)]
    duration: Option<Duration>,
    /// Open loop: send this many requests per second in all, spread over the
    /// connections, whatever the server does; latency counts from when each
    /// request was due. Without it, each connection waits for its replies.
    #[arg(short = 'R', long, value_name = "PER_SEC", value_parser = positive_rate,
          conflicts_with = "connect_per_request")]
    rate: Option<f64>,
    /// Requests in flight on each connection (closed loop).
    #[arg(long, value_name = "DEPTH", default_value_t = 1, value_parser = at_least_one)]
    pipeline: usize,
    /// Length of each request line in bytes, newline not counted.
    #[arg(long, value_name = "BYTES", default_value_t = 32)]
    payload: usize,
    /// Open a fresh connection for every request: connect, one line, read
    /// the ACK, close.
    #[arg(long)]
    connect_per_request: bool,
    /// Also hold this many idle connections open for the whole run.
    #[arg(long, value_name = "N", default_value_t = 0)]
    idle: usize,
    /// How long a connect or a reply may take before it counts as a
    /// timeout (`5`, `500ms`).
    #[arg(long, value_name = "DURATION", default_value = "5", value_parser = positive_duration)]
    timeout: Duration,
    /// Event-loop threads driving the connections.
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    threads: usize,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// The server's protocol.
    #[arg(long, value_enum, default_value_t = ProtocolArg::Ack)]
    protocol: ProtocolArg,
    #[command(flatten)]
    tls: super::TlsClientArgs,
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    match duration(text)? {
        d if d.is_zero() => Err("must be more than zero".to_string()),
        d => Ok(d),
    }
}

fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "'{text}' is not a positive number of requests per second"
        )),
    }
}

/// Set by the first Ctrl-C: the run ends and reports what it measured.
static STOP: AtomicBool = AtomicBool::new(false);
static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);

/// Runs `linepool load`.
pub fn run(args: &Args) -> ExitCode {
    let config = match config(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("linepool: {e}");
            return ExitCode::from(EXIT_NOTHING_ANSWERED);
        }
    };
    // The first Ctrl-C ends the run and prints what it measured, as wrk
    // does; a second one exits at once.
    let installed = ctrlc::set_handler(|| {
        if INTERRUPTS.fetch_add(1, Ordering::SeqCst) == 0 {
            STOP.store(true, Ordering::SeqCst);
        } else {
            eprintln!("linepool: interrupted again, exiting now");
            std::process::exit(EXIT_INTERRUPTED.into());
        }
    });
    if let Err(e) = installed {
        eprintln!("linepool: cannot install the interrupt handler: {e}");
        return ExitCode::FAILURE;
    }
    let progress = Progress::default();
    let report = std::thread::scope(|scope| {
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let bar = scope.spawn(|| show_progress(&config, &progress, finished));
        let report = crate::tools::load::run(&config, &progress, &STOP);
        drop(done);
        let _ = bar.join();
        report
    });
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            eprintln!("linepool: load failed: {e}");
            return ExitCode::from(EXIT_NOTHING_ANSWERED);
        }
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{report}");
    }
    if report.interrupted {
        return ExitCode::from(EXIT_INTERRUPTED);
    }
    let (status, why) = exit_status(&report.verdict());
    if let Some(why) = why {
        eprintln!("linepool: {why}");
    }
    ExitCode::from(status)
}

fn config(args: &Args) -> Result<LoadConfig, String> {
    let addr = (args.host.as_str(), args.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", args.host))?
        .next()
        .ok_or_else(|| format!("no address found for {}", args.host))?;
    let limit = match (args.requests, args.duration) {
        (_, Some(d)) => Limit::Duration(d),
        (Some(n), None) => Limit::Requests(n),
        (None, None) => Limit::PerConnection(DEFAULT_REQUESTS_PER_CONNECTION),
    };
    Ok(LoadConfig {
        addr,
        connections: args.connections,
        limit,
        pipeline: args.pipeline,
        payload: args.payload,
        connect_per_request: args.connect_per_request,
        idle: args.idle,
        timeout: args.timeout,
        threads: args.threads,
        protocol: match args.protocol {
            ProtocolArg::Ack => LoadProtocol::Ack,
            ProtocolArg::Framed => LoadProtocol::Framed,
        },
        rate: args.rate,
        tls: args.tls.connector(&args.host)?,
    })
}

/// Draws a progress bar (elapsed, replies, replies per second, errors) on a
/// terminal until `finished` disconnects; draws nothing elsewhere.
fn show_progress(config: &LoadConfig, progress: &Progress, finished: Receiver<()>) {
    if !std::io::stderr().is_terminal() {
        let _ = finished.recv();
        return;
    }
    let (length, timed) = match config.limit {
        Limit::Requests(n) => (n, false),
        Limit::PerConnection(n) => (n.saturating_mul(config.connections as u64), false),
        Limit::Duration(d) => (d.as_millis() as u64, true),
    };
    let bar = ProgressBar::new(length);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} {bar:30} {percent:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    while let Err(RecvTimeoutError::Timeout) = finished.recv_timeout(Duration::from_millis(100)) {
        let replies = progress.replies.load(Ordering::Relaxed);
        let errors = progress.errors.load(Ordering::Relaxed);
        let elapsed = start.elapsed();
        let position = if timed {
            elapsed.as_millis() as u64
        } else {
            replies
        };
        bar.set_position(position.min(length));
        bar.set_message(format!(
            "{replies} replies, {:.0}/s, {errors} errors",
            replies as f64 / elapsed.as_secs_f64().max(1e-3)
        ));
    }
    bar.finish_and_clear();
}

/// The exit status a report earns, with the one line that explains a
/// failure.
fn exit_status(verdict: &Verdict) -> (u8, Option<String>) {
    match verdict {
        Verdict::Answered => (0, None),
        Verdict::Mismatch(n) => (1, Some(format!("{n} replies did not match their requests"))),
        Verdict::NothingAnswered(why) => (
            EXIT_NOTHING_ANSWERED,
            Some(format!("no request was answered: {why}")),
        ),
    }
}
