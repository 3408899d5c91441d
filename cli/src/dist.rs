//! Man pages, shell completions and the environment file, made from the
//! command line's own definition ([`Cli`]), so they list exactly the flags
//! the binary takes. `linepool completions SHELL` prints one completion
//! script; the hidden `linepool generate-dist DIR` writes every file the
//! package ships (scripts/gen-dist.sh keeps the copies under `dist/`
//! current, and a test fails when they drift).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{ArgAction, CommandFactory};
use clap_complete::Shell;

use super::Cli;

/// The program's name, as the shells and man see it.
const NAME: &str = "linepool";

/// The shells whose completions the package ships, and where each file
/// goes under `dist/completions/` (named as each shell's loader expects).
const SHIPPED_SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "linepool.bash"),
    (Shell::Zsh, "_linepool"),
    (Shell::Fish, "linepool.fish"),
];

#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// The folder to write `man/` and `completions/` into (the checked-in
    /// copies live in `dist/`).
    dir: PathBuf,
}

/// Runs `linepool completions SHELL`: the script on standard output.
pub fn completions(args: &CompletionsArgs) -> ExitCode {
    let script = completion(args.shell);
    match std::io::stdout().write_all(&script) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("linepool: cannot write the completions: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `linepool generate-dist DIR`: writes every generated file there.
pub fn generate(args: &GenerateArgs) -> ExitCode {
    for (path, contents) in files() {
        let target = args.dir.join(&path);
        let written = target
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&target, contents));
        if let Err(e) = written {
            eprintln!("linepool: cannot write {}: {e}", target.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Every generated file, by its path under `dist/`: a man page for the
/// command and for each of its visible subcommands (the pages name one
/// another), the shipped shells' completions, and `default/linepool`, the
/// environment file the systemd unit reads.
pub fn files() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = man_pages();
    for (shell, file) in SHIPPED_SHELLS {
        files.push((Path::new("completions").join(file), completion(shell)));
    }
    files.push((Path::new("default").join(NAME), environment_file()));
    files
}

/// What `/etc/default/linepool` starts as.
const ENVIRONMENT_FILE_HEAD: &str = "\
# /etc/default/linepool: the settings of linepool.service, which reads this
# file through EnvironmentFile=. Each `linepool serve` flag has a LINEPOOL_*
# variable; each commented line below shows its default. Uncomment and
# change a line, then `systemctl restart linepool`. A variable set to
# nothing is a value too (refused where the flag would refuse it): comment
# the line out instead. Under socket activation (linepool.socket) the
# listening address is the socket unit's ListenStream=, not LINEPOOL_HOST
# and LINEPOOL_PORT.
#
# Behind HAProxy (a rolling restart that fails no request), for example:
#   LINEPOOL_DRAIN=20s
#   LINEPOOL_AGENT=127.0.0.1:9001
#   LINEPOOL_METRICS=127.0.0.1:9100
# and keep the unit's TimeoutStopSec= above the drain plus the stop grace.
#
# `man linepool-serve` says more about each setting. This list is generated
# from the command line itself, so it names every variable there is.
";

/// The environment file: every `serve` flag's variable, commented, with its
/// one-line help and its default (or, for a flag without one, the shape of
/// its value).
fn environment_file() -> Vec<u8> {
    let mut text = ENVIRONMENT_FILE_HEAD.to_string();
    // Built, so that a switch shows its default (`false`) too.
    let mut command = Cli::command();
    command.build();
    let Some(serve) = command.find_subcommand("serve") else {
        return text.into_bytes();
    };
    for arg in serve.get_arguments() {
        let Some(variable) = arg.get_env() else {
            continue;
        };
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        let choices: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|value| !value.is_hide_set())
            .map(|value| value.get_name().to_string())
            .collect();
        let mut about = help.trim_end_matches('.').to_string();
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            about.push_str(" (true or false)");
        } else if !choices.is_empty() {
            about.push_str(&format!(": {}", choices.join(", ")));
        }
        text.push('\n');
        for line in wrap(&format!("{about}."), 74) {
            text.push_str(&format!("# {line}\n"));
        }
        let value = match arg.get_default_values() {
            [] => format!(
                "<{}>",
                arg.get_value_names()
                    .and_then(|names| names.first())
                    .map_or_else(
                        || arg.get_id().to_string().to_uppercase(),
                        ToString::to_string
                    )
            ),
            defaults => defaults
                .iter()
                .map(|d| d.to_string_lossy())
                .collect::<Vec<_>>()
                .join(","),
        };
        text.push_str(&format!("#{}={value}\n", variable.to_string_lossy()));
    }
    text.into_bytes()
}

/// `text` cut into lines of at most `width` characters at spaces (a longer
/// word gets a line of its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.len() + 1 + word.len() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

/// One shell's completion script.
fn completion(shell: Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), NAME, &mut script);
    script
}

/// `linepool.1` and `linepool-SUBCOMMAND.1` for each visible subcommand.
fn man_pages() -> Vec<(PathBuf, Vec<u8>)> {
    // As clap_mangen's own generate_to does: `help` gets no page, and a
    // built command gives its subcommands their full names
    // (`linepool-serve`).
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    std::iter::once(command.clone())
        .chain(
            command
                .get_subcommands()
                .filter(|s| !s.is_hide_set())
                .cloned(),
        )
        .map(|page| {
            // Every page carries the package's version, not only the
            // top one (clap_mangen takes it from the command it is given).
            let man =
                clap_mangen::Man::new(page).source(format!("{NAME} {}", env!("CARGO_PKG_VERSION")));
            let mut roff = Vec::new();
            // Rendering writes into memory, which cannot fail.
            man.render(&mut roff).expect("render into memory");
            (Path::new("man").join(man.get_filename()), roff)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The copies under `dist/` are what this very binary generates; when
    /// a flag changes, `scripts/gen-dist.sh` brings them up to date.
    #[test]
    fn the_checked_in_pages_and_completions_are_current() {
        // The repository's dist/, beside this package's folder.
        let dist = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../dist"));
        let generated = files();
        for (path, contents) in &generated {
            let on_disk = std::fs::read(dist.join(path)).unwrap_or_default();
            assert!(
                on_disk == *contents,
                "dist/{} is not what the command line generates: run scripts/gen-dist.sh",
                path.display()
            );
        }
        for folder in ["man", "completions", "default"] {
            let entries = std::fs::read_dir(dist.join(folder)).expect("dist folder");
            for entry in entries {
                let path = Path::new(folder).join(entry.expect("dist entry").file_name());
                assert!(
                    generated.iter().any(|(generated, _)| *generated == path),
                    "dist/{} is generated by nothing: remove it or run scripts/gen-dist.sh",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn lines_wrap_at_spaces() {
        assert_eq!(wrap("a bb ccc", 4), ["a bb", "ccc"]);
        assert_eq!(wrap("a verylongword b", 4), ["a", "verylongword", "b"]);
        assert!(wrap("", 4).is_empty());
    }

    /// Every variable `serve` reads is in the environment file, commented,
    /// with its default.
    #[test]
    fn the_environment_file_names_every_variable() {
        let text = String::from_utf8(environment_file()).expect("text");
        for line in [
            "#LINEPOOL_HOST=127.0.0.1\n",
            "#LINEPOOL_WORKERS=<WORKERS>\n",
            "#LINEPOOL_OVERLOAD=block\n",
            "#LINEPOOL_ADMIN_FROM=127.0.0.0/8,::1/128\n",
            "#LINEPOOL_PROXY_PROTOCOL=false\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        let command = Cli::command();
        let serve = command.find_subcommand("serve").expect("serve");
        for arg in serve.get_arguments() {
            if let Some(variable) = arg.get_env() {
                let variable = variable.to_string_lossy();
                assert!(text.contains(&format!("\n#{variable}=")), "{variable}");
            }
        }
        assert!(
            text.lines().all(|l| l.is_empty() || l.starts_with('#')),
            "{text}"
        );
    }

    #[test]
    fn there_is_a_page_for_every_command() {
        let names: Vec<PathBuf> = files().into_iter().map(|(path, _)| path).collect();
        for page in [
            "linepool.1",
            "linepool-serve.1",
            "linepool-load.1",
            "linepool-client.1",
        ] {
            assert!(names.contains(&Path::new("man").join(page)), "{names:?}");
        }
    }
}
