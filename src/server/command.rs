//! The admin console's commands, read from a line's words with no I/O. The
//! console (`console.rs`) runs them.

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
}
