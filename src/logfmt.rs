//! How values appear in log lines: `key=value`, the value quoted when it
//! holds a space, a quote, a backslash, an `=` or a control character, and
//! control characters escaped. Client-supplied text goes through
//! [`Quoted`], so no client can forge a log line or send terminal escapes
//! to an operator's screen. And how often: warnings about clients go
//! through a `RateLimit`, so a flood of bad clients cannot flood the log.

use std::fmt;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Client warnings logged per second at most; the rest are counted, and
/// one line says how many.
pub(crate) const CLIENT_WARNINGS_PER_SEC: u32 = 10;

/// A budget of log lines per second.
#[derive(Debug)]
pub(crate) struct RateLimit {
    per_sec: u32,
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::new(CLIENT_WARNINGS_PER_SEC)
    }
}

impl RateLimit {
    /// At most `per_sec` lines a second.
    pub fn new(per_sec: u32) -> Self {
        RateLimit {
            per_sec,
            window: Mutex::new(Window::default()),
        }
    }

    /// Whether a line may be logged at `now`; if not, it is counted.
    pub fn allow(&self, now: Instant) -> bool {
        let mut window = self.window.lock();
        let start = *window.start.get_or_insert(now);
        if now.duration_since(start) >= Duration::from_secs(1) && window.suppressed == 0 {
            *window = Window {
                start: Some(now),
                ..Window::default()
            };
        }
        if window.logged < self.per_sec {
            window.logged += 1;
            true
        } else {
            window.suppressed += 1;
            false
        }
    }

    /// Once the second in which lines were held back is over: how many,
    /// to be said in one line; a new second starts.
    pub fn take_suppressed(&self, now: Instant) -> Option<u64> {
        let mut window = self.window.lock();
        let start = window.start?;
        if window.suppressed == 0 || now.duration_since(start) < Duration::from_secs(1) {
            return None;
        }
        let suppressed = window.suppressed;
        *window = Window {
            start: Some(now),
            ..Window::default()
        };
        Some(suppressed)
    }
}

/// A log value: bare when that is unambiguous, otherwise quoted and escaped
/// (`"two words"`, `"evil\u{1b}[31m"`, `"line\nbreak"`).
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bare = !self.0.is_empty()
            && !self
                .0
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\\' | '='));
        if bare {
            f.write_str(self.0)
        } else {
            // Debug quotes and escapes quotes, backslashes and every control
            // character (`\n`, `\u{1b}`), and nothing else.
            write!(f, "{:?}", self.0)
        }
    }
}

/// An optional `name=value` field of a log line, with the space before
/// it: nothing when the value is absent.
pub(crate) struct Field<'a>(pub &'static str, pub Option<&'a str>);

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(value) => write!(f, " {}={value}", self.0),
            None => Ok(()),
        }
    }
}

/// An error as a log value.
pub fn error(e: &dyn fmt::Display) -> String {
    Quoted(&e.to_string()).to_string()
}

/// `n` and the noun, in the singular or plural: `1 connection`,
/// `2 connections`.
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_stay_bare() {
        assert_eq!(Quoted("alice").to_string(), "alice");
        assert_eq!(Quoted("127.0.0.1:80").to_string(), "127.0.0.1:80");
        assert_eq!(Quoted("café").to_string(), "café");
    }

    #[test]
    fn spaces_quotes_and_controls_are_quoted_and_escaped() {
        assert_eq!(Quoted("").to_string(), r#""""#);
        assert_eq!(Quoted("two words").to_string(), r#""two words""#);
        assert_eq!(Quoted(r#"say "hi""#).to_string(), r#""say \"hi\"""#);
        assert_eq!(Quoted("a=b").to_string(), r#""a=b""#);
        assert_eq!(
            Quoted("evil\u{1b}[31m\nINFO forged").to_string(),
            r#""evil\u{1b}[31m\nINFO forged""#
        );
        assert!(
            !Quoted("x\u{7}\r\t")
                .to_string()
                .chars()
                .any(char::is_control)
        );
    }

    #[test]
    fn a_flood_is_cut_to_the_budget_and_counted() {
        let limit = RateLimit::new(3);
        let t = Instant::now();
        let allowed = (0..10).filter(|_| limit.allow(t)).count();
        assert_eq!(allowed, 3);
        assert_eq!(limit.take_suppressed(t), None, "the second is not over");
        let later = t + Duration::from_millis(1500);
        assert_eq!(limit.take_suppressed(later), Some(7));
        assert_eq!(limit.take_suppressed(later), None);
        assert!(limit.allow(later), "a new second has a new budget");
    }

    #[test]
    fn a_quiet_second_starts_afresh() {
        let limit = RateLimit::new(1);
        let t = Instant::now();
        assert!(limit.allow(t));
        assert!(limit.allow(t + Duration::from_secs(2)));
        assert!(!limit.allow(t + Duration::from_secs(2)));
    }

    #[test]
    fn counts_agree_with_their_nouns() {
        assert_eq!(count(0u64, "connection"), "0 connections");
        assert_eq!(count(1u64, "connection"), "1 connection");
        assert_eq!(count(2u32, "handler"), "2 handlers");
    }
}
