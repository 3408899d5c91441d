//! The values of `linepool serve`'s flags that clap cannot parse alone:
//! durations above zero, file modes, the room for the shared commands,
//! the chat bus's URL and room name. Each refusal is one line.

use std::time::Duration;

use super::duration;

/// Parses `--chat-bus`: a Redis URL the client library can read.
pub(super) fn chat_bus_url(text: &str) -> Result<String, String> {
    if !text.starts_with("redis://") {
        return Err("expected redis://HOST:PORT[/DB]".to_string());
    }
    match redis::Client::open(text) {
        Ok(_) => Ok(text.to_string()),
        Err(e) => Err(format!("not a Redis URL ({e})")),
    }
}

/// Parses `--chat-room`: a name without spaces.
pub(super) fn room_name(text: &str) -> Result<String, String> {
    if text.is_empty() || text.chars().any(char::is_whitespace) {
        return Err("a room name is needed, without spaces".to_string());
    }
    Ok(text.to_string())
}

/// Parses a duration that must be above zero.
pub(super) fn positive_duration(text: &str) -> Result<Duration, String> {
    match duration(text)? {
        d if d.is_zero() => Err("must be above zero".to_string()),
        d => Ok(d),
    }
}

/// Parses `--unix-mode`: an octal file mode (`0660`, `660`, `0o600`).
pub(super) fn file_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!("'{text}' is not an octal file mode such as 0660")),
    }
}

/// The longest line `--max-line` allows: 1 GiB. A client may make the
/// server hold one line of it, which must be memory it can have.
const MAX_MAX_LINE: usize = 1 << 30;

/// Parses `--max-line`: every line limit must leave room for the longest
/// command, or `quit_server` itself would be too long to be obeyed, and be
/// at most [`MAX_MAX_LINE`].
pub(super) fn room_for_commands(text: &str) -> Result<usize, String> {
    let longest = b"quit_server".len();
    match text.parse::<usize>() {
        Ok(n) if n > MAX_MAX_LINE => Err(format!("must be at most {MAX_MAX_LINE} (1 GiB)")),
        Ok(n) if n >= longest => Ok(n),
        Ok(_) => Err(format!(
            "must be at least {longest}, the length of quit_server"
        )),
        Err(_) => Err(format!("'{text}' is not a whole number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_limit_holds_quit_server_and_at_most_a_gibibyte() {
        assert_eq!(room_for_commands("11"), Ok(11));
        assert_eq!(room_for_commands("1073741824"), Ok(1 << 30));
        assert!(room_for_commands("10").is_err());
        assert!(room_for_commands("1073741825").is_err());
        assert!(room_for_commands("ten").is_err());
    }
}
