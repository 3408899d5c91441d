//! The admin console's commands, read from a line's words with no I/O, and
//! what each needs: every command either only looks (`show …`, `help`),
//! which a user id `--admin-read-uid` allows may run, or acts, which needs
//! `--admin-uid`. The console (`console.rs`) runs them.

/// One console command, as its words give it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Command<'a> {
    Help,
    ShowInfo,
    ShowConns,
    ShowConfig,
    /// `kill ID`, the id as given.
    Kill(&'a str),
    /// `set NAME VALUE`; `set NAME` alone is refused for its missing value.
    Set {
        name: &'a str,
        value: Option<&'a str>,
    },
    Pause,
    Resume,
    Reload,
    /// `drain [DURATION]`.
    Drain(Option<&'a str>),
    Stop,
}

/// A line that is no command: the console's answer says which way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NotACommand<'a> {
    /// Nothing but spaces.
    Empty,
    /// A first word no command has, or a command with the wrong number of
    /// words; the first word.
    Unknown(&'a str),
}

impl<'a> Command<'a> {
    /// The command `words` make.
    pub(super) fn parse(words: &[&'a str]) -> Result<Command<'a>, NotACommand<'a>> {
        Ok(match *words {
            [] => return Err(NotACommand::Empty),
            ["help"] => Command::Help,
            ["show", "info"] => Command::ShowInfo,
            ["show", "conns"] => Command::ShowConns,
            ["show", "config"] => Command::ShowConfig,
            ["kill", id] => Command::Kill(id),
            ["set", name, value] => Command::Set {
                name,
                value: Some(value),
            },
            ["set", name] => Command::Set { name, value: None },
            ["pause"] => Command::Pause,
            ["resume"] => Command::Resume,
            ["reload"] => Command::Reload,
            ["drain"] => Command::Drain(None),
            ["drain", time] => Command::Drain(Some(time)),
            ["stop"] => Command::Stop,
            [word, ..] => return Err(NotACommand::Unknown(word)),
        })
    }

    /// Whether the command only looks, changing nothing: all a read-only
    /// user id may run. Every command is named here, with no catch-all, so
    /// that a new one cannot reach the read-only level unless it is put
    /// there on purpose.
    pub(super) fn only_looks(&self) -> bool {
        match self {
            Command::Help | Command::ShowInfo | Command::ShowConns | Command::ShowConfig => true,
            Command::Kill(_)
            | Command::Set { .. }
            | Command::Pause
            | Command::Resume
            | Command::Reload
            | Command::Drain(_)
            | Command::Stop => false,
        }
    }

    /// The command's first word, as logs name it.
    pub(super) fn word(&self) -> &'static str {
        match self {
            Command::Help => "help",
            Command::ShowInfo | Command::ShowConns | Command::ShowConfig => "show",
            Command::Kill(_) => "kill",
            Command::Set { .. } => "set",
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Reload => "reload",
            Command::Drain(_) => "drain",
            Command::Stop => "stop",
        }
    }
}

/// How much a console client may do, by its user id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Level {
    /// Every command (`--admin-uid`).
    Admin,
    /// The commands that only look (`--admin-read-uid`).
    ReadOnly,
}

impl Level {
    /// The level of `uid`: `admin` first, so that a user id in both lists
    /// has full rights; `None` for a user id in neither.
    pub(super) fn of(uid: u32, admin: &[u32], read_only: &[u32]) -> Option<Level> {
        if admin.contains(&uid) {
            Some(Level::Admin)
        } else if read_only.contains(&uid) {
            Some(Level::ReadOnly)
        } else {
            None
        }
    }

    /// Whether this level may run `command`.
    pub(super) fn may_run(self, command: &Command<'_>) -> bool {
        match self {
            Level::Admin => true,
            Level::ReadOnly => command.only_looks(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &str) -> Result<Command<'_>, NotACommand<'_>> {
        let words: Vec<&str> = line.split_whitespace().collect();
        Command::parse(&words)
    }

    #[test]
    fn each_command_is_read_from_its_words() {
        assert_eq!(parsed("show info"), Ok(Command::ShowInfo));
        assert_eq!(parsed(" kill  7 "), Ok(Command::Kill("7")));
        assert_eq!(
            parsed("set workers 4"),
            Ok(Command::Set {
                name: "workers",
                value: Some("4")
            })
        );
        assert_eq!(
            parsed("set workers"),
            Ok(Command::Set {
                name: "workers",
                value: None
            })
        );
        assert_eq!(parsed("drain 1s"), Ok(Command::Drain(Some("1s"))));
        assert_eq!(parsed(""), Err(NotACommand::Empty));
        assert_eq!(parsed("show"), Err(NotACommand::Unknown("show")));
        assert_eq!(parsed("kill 1 2"), Err(NotACommand::Unknown("kill")));
        assert_eq!(parsed("bogus"), Err(NotACommand::Unknown("bogus")));
    }

    #[test]
    fn read_only_runs_what_only_looks() {
        let looks = ["help", "show info", "show conns", "show config"];
        let acts = [
            "kill 1",
            "set workers 2",
            "set workers",
            "pause",
            "resume",
            "reload",
            "drain",
            "drain 1s",
            "stop",
        ];
        for line in looks {
            let command = parsed(line).expect(line);
            assert!(Level::ReadOnly.may_run(&command), "{line}");
            assert!(Level::Admin.may_run(&command), "{line}");
        }
        for line in acts {
            let command = parsed(line).expect(line);
            assert!(!Level::ReadOnly.may_run(&command), "{line}");
            assert!(Level::Admin.may_run(&command), "{line}");
            assert_eq!(Some(command.word()), line.split(' ').next());
        }
    }

    #[test]
    fn a_uid_in_both_lists_is_an_admin() {
        assert_eq!(Level::of(5, &[0, 5], &[5]), Some(Level::Admin));
        assert_eq!(Level::of(5, &[0], &[5]), Some(Level::ReadOnly));
        assert_eq!(Level::of(5, &[0], &[6]), None);
        assert_eq!(Level::of(5, &[0], &[]), None);
    }
}
