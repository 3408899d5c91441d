//! Man pages and shell completions, made from the command line's own
//! definition ([`Cli`]), so they list exactly the flags the binary takes.
//! `linepool completions SHELL` prints one completion script; the hidden
//! `linepool generate-dist DIR` writes every file the package ships
//! (scripts/gen-dist.sh keeps the copies under `dist/` current, and a test
//! fails when they drift).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
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
/// another), and the shipped shells' completions.
pub fn files() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = man_pages();
    for (shell, file) in SHIPPED_SHELLS {
        files.push((Path::new("completions").join(file), completion(shell)));
    }
    files
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
        let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist");
        let generated = files();
        for (path, contents) in &generated {
            let on_disk = std::fs::read(dist.join(path)).unwrap_or_default();
            assert!(
                on_disk == *contents,
                "dist/{} is not what the command line generates: run scripts/gen-dist.sh",
                path.display()
            );
        }
        for folder in ["man", "completions"] {
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
