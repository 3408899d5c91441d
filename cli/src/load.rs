//! `linepool load`: the load tool's flags, its progress bar, Ctrl-C, the
//! files it writes (`--hgrm`, `--html`), and the exit status its report
//! earns: 0 when every reply matched and at least one request was
//! answered, 1 on any wrong reply, 2 when nothing was answered (or a file
//! could not be written), 130 when interrupted. `linepool load compare`
//! is `cli/compare.rs`.

use std::io::IsTerminal;
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};

use super::output::{EXIT_BAD_FILE, Output};
use super::{EXIT_INTERRUPTED, at_least_one, compare, duration};
use linepool_tools::load::chat::{self, ChatLoad};
use linepool_tools::load::report::{Report, Verdict};
use linepool_tools::load::{Limit, LoadConfig, LoadProtocol, Progress};
use linepool_tools::load::{hist, page};

/// Requests per connection when a run names neither -n nor -d.
const DEFAULT_REQUESTS_PER_CONNECTION: u64 = 1000;

/// Open-loop arrivals in flight at once by default: room for a server
/// that is slow under load, and under the 1,024 open files a shell
/// usually allows.
const DEFAULT_MAX_IN_FLIGHT: usize = 1000;

/// Exit status when nothing was answered.
const EXIT_NOTHING_ANSWERED: u8 = 2;

/// What the server under load speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProtocolArg {
    /// Lines answered with `ACK: <line>`.
    Ack,
    /// Length-prefixed messages echoed back.
    Framed,
    /// A chat room: each connection is a member that says lines (`-R` in
    /// all, 1 a second each by default) and checks what the others said.
    Chat,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("limit").args(["requests", "duration"])))]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<LoadCommand>,
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
    /// With --connect-per-request: this many new connections per second
    /// (arrivals), each with one request.
    #[arg(short = 'R', long, value_name = "PER_SEC", value_parser = positive_rate)]
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
    /// Arrivals (-R with --connect-per-request): the most connections in
    /// flight at once; an arrival past it is counted as dropped, not
    /// delayed. -c is not used.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_IN_FLIGHT,
          value_parser = at_least_one, requires_all = ["rate", "connect_per_request"])]
    max_in_flight: usize,
    /// Also hold this many idle connections open for the whole run.
    #[arg(long, value_name = "N", default_value_t = 0)]
    idle: usize,
    /// How long a connect or a reply may take before it counts as a
    /// timeout (`5`, `500ms`); for arrivals, the whole connection: connect,
    /// request and reply, from when it was due.
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
    /// Also write the latency percentile spectrum to FILE, in the `.hgrm`
    /// text format (microseconds), as wrk2's --latency and HdrHistogram
    /// print it.
    #[arg(long, value_name = "FILE")]
    hgrm: Option<PathBuf>,
    /// Also write the run as one self-contained HTML page with charts to
    /// FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// `chat`: spread the members over these addresses in turn
    /// (`127.0.0.1:8001,127.0.0.1:8002`: the instances of one room) instead
    /// of --host and --port.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    spread: Vec<std::net::SocketAddr>,
    #[command(flatten)]
    tls: super::TlsClientArgs,
}

/// What `linepool load` does besides a run.
#[derive(clap::Subcommand)]
enum LoadCommand {
    /// Set load reports (`--json` output) side by side: rates and
    /// percentiles with their ratios to the first.
    Compare(compare::Args),
}

/// Creates the files `args` asks for: (`--hgrm`, `--html`).
fn outputs(args: &Args) -> Result<(Option<Output>, Option<Output>), String> {
    let hgrm = args.hgrm.as_deref().map(Output::create).transpose()?;
    let html = args.html.as_deref().map(Output::create).transpose()?;
    Ok((hgrm, html))
}

/// Writes the files asked for from `report`.
fn write_outputs(
    report: &Report,
    hgrm: Option<Output>,
    html: Option<Output>,
) -> Result<(), String> {
    if let Some(out) = hgrm {
        out.write(&hist::hgrm(&report.histogram))?;
    }
    if let Some(out) = html {
        out.write(&page::run_page(report))?;
    }
    Ok(())
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
    if let Some(LoadCommand::Compare(compare)) = &args.command {
        return compare::run(compare);
    }
    if args.protocol == ProtocolArg::Chat {
        return run_chat(args);
    }
    let (config, (hgrm, html)) = match config(args).and_then(|c| Ok((c, outputs(args)?))) {
        Ok(ready) => ready,
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
        let report = linepool_tools::load::run(&config, &progress, &STOP);
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
    if let Err(e) = write_outputs(&report, hgrm, html) {
        eprintln!("linepool: {e}");
        return ExitCode::from(EXIT_BAD_FILE);
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
            // Chat runs apart (`run_chat`) and never comes here.
            ProtocolArg::Chat => LoadProtocol::Ack,
        },
        rate: args.rate,
        tls: args.tls.connector(&args.host)?,
        // Words that are not UTF-8 are shown with replacement characters:
        // the report is text.
        command: std::env::args_os()
            .map(|word| word.to_string_lossy().into_owned())
            .collect(),
        max_in_flight: args.max_in_flight,
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

/// Runs `linepool load --protocol chat`: 0 when every line reached every
/// other member exactly once and in order, 1 otherwise, 2 when the room
/// could not be set up, 130 when interrupted.
fn run_chat(args: &Args) -> ExitCode {
    let targets = if args.spread.is_empty() {
        match (args.host.as_str(), args.port).to_socket_addrs() {
            Ok(mut addrs) => addrs.next().into_iter().collect(),
            Err(e) => {
                eprintln!("linepool: cannot resolve {}: {e}", args.host);
                return ExitCode::from(EXIT_NOTHING_ANSWERED);
            }
        }
    } else {
        args.spread.clone()
    };
    let members = args.connections;
    let load = ChatLoad {
        targets,
        members,
        rate: args.rate.map_or(1.0, |total| total / members as f64),
        duration: args.duration.unwrap_or(Duration::from_secs(10)),
        payload: args.payload,
        timeout: args.timeout,
        threads: args.threads,
    };
    let _ = ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst));
    match chat::run(&load, &STOP) {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json());
            } else {
                println!("{report}");
            }
            if STOP.load(Ordering::SeqCst) {
                ExitCode::from(EXIT_INTERRUPTED)
            } else if report.clean() {
                ExitCode::SUCCESS
            } else {
                eprintln!("linepool: some lines were lost, repeated, reordered or echoed");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("linepool: chat load failed: {e}");
            ExitCode::from(EXIT_NOTHING_ANSWERED)
        }
    }
}
