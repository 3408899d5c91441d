//! The `linepool` command. It only dispatches: each command's flags and
//! glue live in `cli/` (`serve` runs the server, `load` drives load against
//! one, `client` talks to one, `completions` prints a shell's
//! completions). The load generator and the client
//! themselves live in `tools/`; the library is only the server.

mod cli;
mod tools;

use std::process::ExitCode;

use cli::Command;

fn main() -> ExitCode {
    let (parsed, matches) = match cli::parse() {
        Ok(parsed) => parsed,
        Err(status) => return status,
    };
    match parsed.command {
        Command::Serve(args) => cli::serve::run(&args, &cli::serve_settings(&matches)),
        Command::Load(args) => cli::load::run(&args),
        Command::Client(args) => cli::client::run(&args),
        Command::Admin(args) => cli::admin::run(&args),
        Command::Completions(args) => cli::dist::completions(&args),
        Command::GenerateDist(args) => cli::dist::generate(&args),
    }
}
