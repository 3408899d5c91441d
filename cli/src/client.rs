//! `linepool client`: standard input to a server, what it sends to
//! standard output.

use std::io::BufReader;
use std::net::TcpStream;
use std::process::ExitCode;

use super::{EXIT_USAGE, Protocol};
use linepool_tools::client::Mode;

#[derive(clap::Args)]
pub struct Args {
    /// Server host name or address.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// The server's protocol.
    #[arg(long, value_enum, default_value_t = Protocol::Ack)]
    protocol: Protocol,
    /// `--protocol sum` only: the client name sent with each number
    /// [default: Client of linepool].
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    tls: super::TlsClientArgs,
}

/// The name `sum` sends when none is given.
const DEFAULT_NAME: &str = "Client of linepool";

/// Runs `linepool client`.
pub fn run(args: &Args) -> ExitCode {
    if args.name.is_some() && args.protocol != Protocol::Sum {
        eprintln!("linepool: --name is used only with --protocol sum");
        return ExitCode::from(EXIT_USAGE);
    }
    let name = args.name.as_deref().unwrap_or(DEFAULT_NAME);
    let mode = match args.protocol {
        Protocol::Framed => Mode::Framed,
        Protocol::Sum => Mode::Sum,
        Protocol::Ack | Protocol::Chat => Mode::Lines,
    };
    let tls = match args.tls.connector(&args.host) {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("linepool: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
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
    let output = std::io::stdout();
    let session = match &tls {
        Some(tls) => linepool_tools::client::run_tls(stream, tls, mode, name, input, output),
        None => linepool_tools::client::run(stream, mode, name, input, output),
    };
    match session {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("linepool: {e}");
            ExitCode::FAILURE
        }
    }
}
