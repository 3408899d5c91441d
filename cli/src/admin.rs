//! `linepool admin`: one command to a running server's admin console
//! (`serve --admin-socket`), its answer to standard output. Exit status 0
//! on `OK`, 1 on `ERR …` (the reason on standard error), 2 when the
//! console cannot be reached.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::EXIT_USAGE;

/// Where the packaged service puts its console.
pub const DEFAULT_SOCKET: &str = "/run/linepool/admin.sock";

/// How long the console may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args)]
pub struct Args {
    /// The server's admin console socket (`serve --admin-socket`).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// The command: `show info|conns|config`, `set SETTING VALUE`
    /// (`workers`, `max-connections`, `overload`, `idle-timeout`,
    /// `max-line`, `max-per-ip`, `stats-interval`, `admin-from`,
    /// `log-level`), `kill ID`, `pause`, `resume`, `drain [DURATION]`,
    /// `reload`, `stop`, `help`.
    #[arg(required = true, num_args = 1.., value_name = "COMMAND")]
    command: Vec<String>,
}

/// Runs `linepool admin`.
pub fn run(args: &Args) -> ExitCode {
    let shown = args.socket.display();
    let stream = match UnixStream::connect(&args.socket) {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!("linepool: cannot reach the admin console at {shown}: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let line = args.command.join(" ");
    let sent = stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .and_then(|()| (&stream).write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = sent {
        eprintln!("linepool: cannot send to the admin console at {shown}: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let mut out = std::io::stdout().lock();
    for answer in BufReader::new(&stream).lines() {
        match answer {
            Ok(answer) if answer == "OK" => return ExitCode::SUCCESS,
            Ok(answer) => {
                if let Some(reason) = answer.strip_prefix("ERR ") {
                    eprintln!("linepool: {reason}");
                    return ExitCode::FAILURE;
                }
                let _ = writeln!(out, "{answer}");
            }
            Err(e) => {
                eprintln!("linepool: the admin console at {shown} did not answer: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    eprintln!("linepool: the admin console at {shown} closed without an answer");
    ExitCode::from(EXIT_USAGE)
}
