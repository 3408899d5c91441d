//! How values appear in log lines: `key=value`, the value quoted when it
//! holds a space, a quote, a backslash, an `=` or a control character, and
//! control characters escaped. Client-supplied text goes through
//! [`Quoted`], so no client can forge a log line or send terminal escapes
//! to an operator's screen.

use std::fmt;

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
    fn counts_agree_with_their_nouns() {
        assert_eq!(count(0u64, "connection"), "0 connections");
        assert_eq!(count(1u64, "connection"), "1 connection");
        assert_eq!(count(2u32, "handler"), "2 handlers");
    }
}
