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
mod checks;
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

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

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
    /// (`serve --admin-socket`): `show info|conns|config`, `set SETTING
    /// VALUE`, `kill ID`, `pause`, `resume`, `drain`, `reload`, `stop`.
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

/// The protocols a server speaks, by the name `--protocol` takes; `serve`
/// maps each to the library's protocol value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// Every line gets `ACK: <line>` back.
    #[default]
    Ack,
    /// A chat room.
    Chat,
    /// Length-prefixed echo.
    Framed,
    /// The number exchange.
    Sum,
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

/// The value parsers the admin console's `set` shares.
pub use linepool::values::{at_least_one, duration};
