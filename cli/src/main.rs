//! The `linepool` command (package `linepool-cli`): the commands' flags
//! and glue, one module each, and the value parsers they share. The server
//! is the `linepool` library; the load generator and the client are the
//! `linepool-tools` library. `main` only dispatches.
//!
//! - [`serve`]: installs the logger and the signal handlers and runs the
//!   library's server.
//! - [`load`]: runs the load tool, draws its progress, prints its report,
//!   writes its files and turns the outcome into an exit status;
//!   [`compare`] sets reports side by side (`linepool load compare`);
//!   [`output`] creates the files they write.
//! - [`client`]: connects standard input and output to a server.
//! - [`admin`]: sends one command to a running server's admin console.
//! - `activation`: the listening sockets systemd passes to `serve`.
//! - `open_files`: raises the open file limit `serve` needs for
//!   `--max-connections`.
//! - [`settings`]: where `serve`'s settings came from (flag or
//!   `LINEPOOL_*` variable), and refusals that name the variable.
//! - [`dist`]: man pages and completions made from this definition
//!   (`completions` prints a shell's).

mod activation;
pub mod admin;
pub mod client;
pub mod compare;
pub mod dist;
pub mod load;
mod logging;
mod open_files;
pub mod output;
pub mod serve;
pub mod settings;
mod signals;
mod values;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use linepool::ProtocolName;

fn main() -> ExitCode {
    let (parsed, matches) = match parse() {
        Ok(parsed) => parsed,
        Err(status) => return status,
    };
    match parsed.command {
        Command::Serve(args) => serve::run(&args, &serve_settings(&matches)),
        Command::Load(args) => load::run(&args),
        Command::Client(args) => client::run(&args),
        Command::Admin(args) => admin::run(&args),
        Command::Completions(args) => dist::completions(&args),
        Command::GenerateDist(args) => dist::generate(&args),
    }
}

/// Exit status after an interrupt, as shells report a death by SIGINT.
pub const EXIT_INTERRUPTED: u8 = 130;

#[derive(Parser)]
#[command(
    name = "linepool",
    version,
    about = "A bounded worker-pool TCP line server"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per run: the size of the serve variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Command {
    /// Serve the line protocol: every line gets `ACK: <line>` back.
    #[command(after_long_help = SERVE_ENVIRONMENT)]
    Serve(Box<serve::Args>),
    /// Drive load against a running server, checking every reply.
    Load(load::Args),
    /// Talk to a server: input lines go out, what it sends is printed.
    Client(client::Args),
    /// Send one command to a running server's admin console
    /// (`serve --admin-socket`): `show info`, `show conns`, `kill ID`,
    /// `pause`, `resume`, `reload`, `stop`.
    Admin(admin::Args),
    /// Print a shell's completion script (`linepool completions bash`).
    Completions(dist::CompletionsArgs),
    /// Write the man pages and completions into a folder (for packaging).
    #[command(hide = true)]
    GenerateDist(dist::GenerateArgs),
}

/// What `linepool serve --help` (and its man page) says after the flags.
const SERVE_ENVIRONMENT: &str = "\
Every flag but --check can also be given by its environment variable, named \
after it: --max-connections by LINEPOOL_MAX_CONNECTIONS, --proxy-protocol by \
LINEPOOL_PROXY_PROTOCOL=true. A flag on the command line wins over its \
variable. The packaged systemd unit reads them from /etc/default/linepool. \
--check has no variable on purpose: set in such a file it would keep the \
server from ever starting.";

/// Parses the command line (and, for `serve`, the `LINEPOOL_*`
/// variables). A refusal is printed as clap prints it, naming the variable
/// when the refused value came from one, and ends the process with clap's
/// status (2 for a usage error, 0 for `--help` and `--version`).
pub fn parse() -> Result<(Cli, ArgMatches), ExitCode> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // Built, so that its flags can be shown as clap shows them in errors.
    let mut command = Cli::command();
    command.build();
    let refused = |error: clap::Error| {
        match settings::naming_variable(&error, &command, &argv) {
            Some(text) => eprint!("{text}"),
            // clap's own message, styled as clap styles it.
            None => {
                let _ = error.print();
            }
        }
        // clap's own statuses; they always fit a byte.
        ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(EXIT_USAGE))
    };
    let matches = command
        .clone()
        .try_get_matches_from(&argv)
        .map_err(refused)?;
    let cli = Cli::from_arg_matches(&matches).map_err(refused)?;
    Ok((cli, matches))
}

/// The settings `linepool serve` was given by flag or variable.
pub fn serve_settings(matches: &ArgMatches) -> Vec<settings::Given> {
    let command = Cli::command();
    match (
        command.find_subcommand("serve"),
        matches.subcommand_matches("serve"),
    ) {
        (Some(serve), Some(given)) => settings::given(serve, given),
        _ => Vec::new(),
    }
}

/// Exit status for a usage error, as clap's own.
pub const EXIT_USAGE: u8 = 2;

/// The protocols a server speaks, by the names `--protocol` takes: the
/// library's [`ProtocolName`], whose names and help the binary gives here
/// so that the library carries no command-line parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// Every line gets `ACK: <line>` back.
    Ack,
    /// A chat room.
    Chat,
    /// Length-prefixed echo.
    Framed,
    /// The number exchange.
    Sum,
}

impl From<Protocol> for ProtocolName {
    fn from(protocol: Protocol) -> Self {
        match protocol {
            Protocol::Ack => ProtocolName::Ack,
            Protocol::Chat => ProtocolName::Chat,
            Protocol::Framed => ProtocolName::Framed,
            Protocol::Sum => ProtocolName::Sum,
        }
    }
}

/// The TLS flags `client` and `load` share.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TlsClientArgs {
    /// Speak TLS, verifying the server's certificate (against --tls-ca,
    /// or the system's roots).
    #[arg(long)]
    tls: bool,
    /// CA certificates (PEM) the server's certificate must chain to.
    #[arg(long, value_name = "FILE", requires = "tls")]
    tls_ca: Option<PathBuf>,
    /// A client certificate chain to present (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires_all = ["tls", "tls_key"])]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["tls", "tls_cert"])]
    tls_key: Option<PathBuf>,
    /// The name the server's certificate must carry [default: --host].
    #[arg(long, value_name = "NAME", requires = "tls")]
    tls_server_name: Option<String>,
}

impl TlsClientArgs {
    /// The connector for a server at `host`, with --tls; the error is one
    /// line.
    pub fn connector(&self, host: &str) -> Result<Option<linepool_tools::tls::Connector>, String> {
        if !self.tls {
            return Ok(None);
        }
        let files = linepool_tools::tls::ClientFiles {
            ca: self.tls_ca.clone(),
            identity: self.tls_cert.clone().zip(self.tls_key.clone()),
        };
        let name = self.tls_server_name.as_deref().unwrap_or(host);
        linepool_tools::tls::Connector::new(&files, name).map(Some)
    }
}

/// Parses a count that must be at least 1.
pub fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("must be at least 1".to_string()),
        Err(_) => Err(format!("'{text}' is not a whole number")),
    }
}

/// The longest duration any flag takes: a year. Deadlines are instants a
/// duration from now, which cannot be past the clock's range.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses a duration: a number of seconds (`10`, `0.5`) or a number with
/// units (`10s`, `500ms`, `5m`, `1h 30m`), at most a year.
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let parsed = match text.parse::<f64>() {
        Ok(secs) => Duration::try_from_secs_f64(secs).map_err(|_| {
            format!("'{text}' is not a duration (a number of seconds, or e.g. 10s, 500ms, 5m)")
        })?,
        Err(_) => humantime::parse_duration(text).map_err(|e| {
            format!(
                "'{text}' is not a duration ({e}); use a number of seconds, or e.g. 10s, 500ms, 5m"
            )
        })?,
    };
    if parsed > MAX_DURATION {
        return Err(format!("'{text}' is longer than a year"));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_plain_seconds_and_units() {
        assert_eq!(duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("365d"), Ok(MAX_DURATION));
        for bad in ["", "-1", "ten", "10 parsecs", "inf", "NaN", "1e19", "366d"] {
            assert!(duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn counts_must_be_at_least_one() {
        assert_eq!(at_least_one("3"), Ok(3));
        assert!(at_least_one("0").is_err());
        assert!(at_least_one("many").is_err());
    }
}
