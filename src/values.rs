//! How setting values are written: the parsing that the command line's
//! flags and the admin console's `set` share, so that a value one takes
//! the other takes too, refused with the same words.

use std::time::Duration;

/// The longest duration a setting takes: a year. Deadlines are instants a
/// duration from now, which cannot be past the clock's range.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// The longest line `max_line` allows: 1 GiB. A client may make the server
/// hold one line of it, which must be memory it can have.
pub const MAX_MAX_LINE: usize = 1 << 30;

/// A count that must be at least 1 (workers, connections).
pub fn at_least_one(text: &str) -> Result<usize, String> {
    match count(text)? {
        0 => Err("must be at least 1".to_string()),
        n => Ok(n),
    }
}

/// A count that may be 0 (`max_per_ip`, where 0 means no limit).
pub fn count(text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .map_err(|_| format!("'{text}' is not a whole number"))
}

/// A duration: a number of seconds (`10`, `0.5`) or a number with units
/// (`10s`, `500ms`, `5m`, `1h 30m`), at most a year.
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let parsed = match text.parse::<f64>() {
        Ok(secs) => Duration::try_from_secs_f64(secs).map_err(|_| {
            format!("'{text}' is not a duration (a number of seconds, or e.g. 10s, 500ms, 5m)")
        })?,
        Err(_) => humantime::parse_duration(text).map_err(|e| {
            format!(
                "'{text}' is not a duration ({e}); use a number of seconds, or e.g. 10s, 500ms, 5m"
            )
        })?,
    };
    if parsed > MAX_DURATION {
        return Err(format!("'{text}' is longer than a year"));
    }
    Ok(parsed)
}

/// A longest line: room for `quit_server` at least, 1 GiB at most.
pub fn max_line(text: &str) -> Result<usize, String> {
    let longest = b"quit_server".len();
    match count(text)? {
        n if n > MAX_MAX_LINE => Err(format!("must be at most {MAX_MAX_LINE} (1 GiB)")),
        n if n >= longest => Ok(n),
        _ => Err(format!(
            "must be at least {longest}, the length of quit_server"
        )),
    }
}

/// A log level as `--log-level` names it (`info`, not `INFO`).
pub(crate) fn level_name(level: log::LevelFilter) -> String {
    level.to_string().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_plain_seconds_and_units() {
        assert_eq!(duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("365d"), Ok(MAX_DURATION));
        for bad in ["", "-1", "ten", "10 parsecs", "inf", "NaN", "1e19", "366d"] {
            assert!(duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn counts_must_be_at_least_one() {
        assert_eq!(at_least_one("3"), Ok(3));
        assert!(at_least_one("0").is_err());
        assert!(at_least_one("many").is_err());
        assert_eq!(count("0"), Ok(0));
        assert!(count("-1").is_err());
    }

    #[test]
    fn a_longest_line_has_room_for_the_commands() {
        assert_eq!(max_line("11"), Ok(11));
        assert_eq!(max_line("1073741824"), Ok(1 << 30));
        assert!(max_line("10").is_err());
        assert!(max_line("1073741825").is_err());
        assert!(max_line("ten").is_err());
    }
}
