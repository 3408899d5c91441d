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

/// Parses `--max-line`: every line limit must leave room for the longest
/// command, or `quit_server` itself would be too long to be obeyed.
pub(super) use linepool::values::max_line as room_for_commands;
