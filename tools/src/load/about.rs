//! What ran, where and when: the facts a report carries besides its
//! figures, so that a page or a JSON file found later still says which
//! run it was (the date, the linepool, the command line and the host).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The run's date, program, command line and host.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct About {
    /// When the run started, in UTC, ISO 8601 to the second:
    /// `2026-12-07T11:20:00Z`.
    pub started_at: String,
    /// The version of the linepool that ran the load.
    pub linepool_version: String,
    /// The command line as given, one word per entry, program first.
    pub command: Vec<String>,
    /// The name of the host the load ran from.
    pub host: String,
}

impl About {
    /// This run: started at `start`, by `command`, on this host.
    pub fn new(start: SystemTime, command: Vec<String>) -> About {
        About {
            started_at: humantime::format_rfc3339_seconds(start).to_string(),
            linepool_version: env!("CARGO_PKG_VERSION").to_string(),
            command,
            host: host_name(),
        }
    }

    /// The command line as one line a shell would read back: words with
    /// anything but plain characters in single quotes.
    pub fn command_line(&self) -> String {
        self.command
            .iter()
            .map(|word| shell_word(word))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `word` as a shell reads it back: as it is when it holds only characters
/// no shell treats specially, otherwise in single quotes (a quote inside
/// written `'\''`).
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The host's name as the kernel gives it (Linux's `/proc`, which is what
/// `hostname` prints), else `$HOSTNAME`, else `unknown`: a report is still
/// worth having without it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The date is UTC to the second, the version is this build's, and the
    /// command line quotes only what a shell would mangle.
    #[test]
    fn a_run_says_when_what_and_where() {
        let start = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_796_642_400);
        let about = About::new(
            start,
            [
                "linepool",
                "load",
                "-R",
                "200",
                "--html",
                "my run.html",
                "it's",
            ]
            .map(String::from)
            .to_vec(),
        );
        assert_eq!(about.started_at, "2026-12-07T11:20:00Z");
        assert_eq!(about.linepool_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(
            about.command_line(),
            "linepool load -R 200 --html 'my run.html' 'it'\\''s'"
        );
        assert!(!about.host.is_empty());
        assert_eq!(shell_word(""), "''");
    }
}
