//! The server's log: how much it logs (`--log-level`) and the logger the
//! binary installs, which lets every level through so that the global
//! maximum decides (the admin console's `set log-level` changes it).

use std::io::IsTerminal;

use clap::ValueEnum;
use log::LevelFilter;
use simplelog::{ColorChoice, ConfigBuilder, TermLogger, TerminalMode};

/// How much the server logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub(super) fn filter(self) -> LevelFilter {
        match self {
            LogLevel::Off => LevelFilter::Off,
            LogLevel::Error => LevelFilter::Error,
            LogLevel::Warn => LevelFilter::Warn,
            LogLevel::Info => LevelFilter::Info,
            LogLevel::Debug => LevelFilter::Debug,
            LogLevel::Trace => LevelFilter::Trace,
        }
    }
}

/// Logs to stderr, keeping stdout free for program output, with RFC 3339
/// timestamps in local time with their offset.
pub(super) fn init_logging(level: LevelFilter) {
    let mut config = ConfigBuilder::new();
    config
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .set_time_format_rfc3339();
    // Read once, before any thread starts (the only time it can be read
    // safely); where it cannot be had, times stay in UTC, marked `Z`.
    let _ = config.set_time_offset_to_local();
    // Colour codes only help a person at a terminal; a file or pipe gets text.
    let color = if std::io::stderr().is_terminal() {
        ColorChoice::Auto
    } else {
        ColorChoice::Never
    };
    // Only fails if a logger is already installed, which cannot happen here.
    // The logger itself lets every level through: the global maximum
    // decides, so that the admin console's `set log-level` can change it.
    let _ = TermLogger::init(
        LevelFilter::Trace,
        config.build(),
        TerminalMode::Stderr,
        color,
    );
    log::set_max_level(level);
}
