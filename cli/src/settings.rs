//! Where `serve`'s settings come from: each flag may also be given by a
//! `LINEPOOL_<FLAG>` variable (clap reads it; a flag on the command line
//! wins). This module owns the two things clap leaves to us: naming the
//! variable when a value it held is refused, and telling the log which
//! settings were given and by which route.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

/// How a setting that is not its default was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// On the command line.
    Flag,
    /// In this environment variable.
    Env(String),
}

/// A setting given on the command line or in the environment: its name as
/// the log writes it (`max_line`) and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Given {
    pub name: String,
    pub origin: Origin,
}

/// The settings of `command` that `matches` did not take from their
/// defaults, in the order `--help` lists them.
pub fn given(command: &Command, matches: &ArgMatches) -> Vec<Given> {
    command
        .get_arguments()
        .filter_map(|arg| {
            let id = arg.get_id().as_str();
            let origin = match matches.value_source(id)? {
                ValueSource::CommandLine => Origin::Flag,
                ValueSource::EnvVariable => {
                    Origin::Env(arg.get_env()?.to_string_lossy().into_owned())
                }
                _ => return None,
            };
            Some(Given {
                name: id.to_string(),
                origin,
            })
        })
        .collect()
}

/// The debug line that says where each given setting came from:
/// `settings given port=flag max_line=env:LINEPOOL_MAX_LINE`, or
/// `settings given none` when every setting is its default.
pub fn log_line(given: &[Given]) -> String {
    if given.is_empty() {
        return "settings given none".to_string();
    }
    let mut line = "settings given".to_string();
    for setting in given {
        line.push(' ');
        line.push_str(&setting.name);
        match &setting.origin {
            Origin::Flag => line.push_str("=flag"),
            Origin::Env(name) => {
                line.push_str("=env:");
                line.push_str(name);
            }
        }
    }
    line
}

/// A refusal's text naming the variable, when the refused value came from
/// the environment; `None` when clap's own message says it right. clap's
/// message names only the flag (`invalid value '0' for '--workers
/// <WORKERS>'`), which sends an operator looking for a flag that is on no
/// command line; this one says `invalid value '0' in LINEPOOL_WORKERS for
/// '--workers <WORKERS>'`.
///
/// `command` is the whole (built) command line's definition and `argv` the
/// arguments it was given: a value counts as the environment's when the
/// flag's variable holds exactly that value and the flag itself is not on
/// the command line (where it would have won).
pub fn naming_variable(
    error: &clap::Error,
    command: &Command,
    argv: &[OsString],
) -> Option<String> {
    if !matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let (Some(ContextValue::String(flag)), Some(ContextValue::String(value))) = (
        error.get(ContextKind::InvalidArg),
        error.get(ContextKind::InvalidValue),
    ) else {
        return None;
    };
    let variable = variable_behind(command, flag, value, argv)?;
    Some(error.render().to_string().replacen(
        &format!(" for '{flag}'"),
        &format!(" in {variable} for '{flag}'"),
        1,
    ))
}

/// The variable that supplied `value` for the flag clap shows as `flag`
/// (`--workers <WORKERS>`), if it did.
fn variable_behind(
    command: &Command,
    flag: &str,
    value: &str,
    argv: &[OsString],
) -> Option<String> {
    let arg = std::iter::once(command)
        .chain(command.get_subcommands())
        .flat_map(Command::get_arguments)
        .find(|arg| arg.to_string() == flag)?;
    let variable = arg.get_env()?;
    let long = format!("--{}", arg.get_long()?);
    let on_command_line = argv.iter().any(|given| {
        let given = given.to_string_lossy();
        given == long || given.starts_with(&format!("{long}="))
    });
    let holds_it = std::env::var_os(variable).is_some_and(|held| held.to_string_lossy() == value);
    (holds_it && !on_command_line).then(|| variable.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_line_names_each_route() {
        assert_eq!(log_line(&[]), "settings given none");
        let given = [
            Given {
                name: "port".to_string(),
                origin: Origin::Flag,
            },
            Given {
                name: "max_line".to_string(),
                origin: Origin::Env("LINEPOOL_MAX_LINE".to_string()),
            },
        ];
        assert_eq!(
            log_line(&given),
            "settings given port=flag max_line=env:LINEPOOL_MAX_LINE"
        );
    }
}
