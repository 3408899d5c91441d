//! `sum`: the number exchange. The client sends `<client name>;<n>`; the
//! server replies `<server name>;<m>` and logs the sum. By the original
//! service's rule, an `n` outside 1..=100 stops the whole server, when the
//! client's address may stop it (`--admin-from`); anyone else gets an
//! error and goes on.

use std::sync::Arc;

use log::{info, warn};

use super::{Action, Link, Protocol, Session, text};
use crate::logfmt::Quoted;

pub(super) fn build(name: String, number: i64) -> Arc<dyn Protocol> {
    Arc::new(Sum {
        shared: Arc::new(Shared { name, number }),
    })
}

struct Shared {
    name: String,
    number: i64,
}

struct Sum {
    shared: Arc<Shared>,
}

struct SumSession {
    shared: Arc<Shared>,
    link: Link,
}

impl Protocol for Sum {
    fn name(&self) -> &str {
        "sum"
    }

    fn open(&self, link: Link) -> Box<dyn Session> {
        Box::new(SumSession {
            shared: self.shared.clone(),
            link,
        })
    }
}

/// What one request line says.
#[derive(Debug, PartialEq, Eq)]
enum Request<'a> {
    /// A name and a number in 1..=100.
    Exchange(&'a str, i64),
    /// A name and an integer outside 1..=100 (perhaps too large to hold).
    OutOfRange(&'a str, &'a str),
    Malformed,
}

fn parse(line: &str) -> Request<'_> {
    let Some((name, number)) = line.split_once(';') else {
        return Request::Malformed;
    };
    let (name, number) = (name.trim(), number.trim());
    let digits = number.strip_prefix(['-', '+']).unwrap_or(number);
    if name.is_empty() || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Request::Malformed;
    }
    match number.parse::<i64>() {
        Ok(n) if (1..=100).contains(&n) => Request::Exchange(name, n),
        _ => Request::OutOfRange(name, number),
    }
}

impl Session for SumSession {
    fn message(&mut self, line: &[u8], out: &mut Vec<u8>) -> Action {
        let line = text(line);
        match parse(line) {
            Request::Exchange(name, n) => {
                let m = self.shared.number;
                info!(
                    "sum client={} n={n} m={m} total={} peer={}",
                    Quoted(name),
                    i128::from(n) + i128::from(m),
                    self.link.peer()
                );
                out.extend_from_slice(format!("{};{m}\n", self.shared.name).as_bytes());
                Action::Continue
            }
            Request::OutOfRange(name, n) if self.link.may_stop_server() => {
                warn!(
                    "sum number outside 1..=100, stopping the server client={} n={} peer={}",
                    Quoted(name),
                    Quoted(n),
                    self.link.peer()
                );
                Action::StopServer
            }
            Request::OutOfRange(name, n) => {
                warn!(
                    "sum number outside 1..=100 from an address that may not stop the server client={} n={} peer={}",
                    Quoted(name),
                    Quoted(n),
                    self.link.peer()
                );
                out.extend_from_slice(b"ERR number out of range (1..=100)\n");
                Action::Continue
            }
            Request::Malformed => {
                out.extend_from_slice(b"ERR expected <name>;<integer>\n");
                Action::Continue
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        assert_eq!(parse("Alice;7"), Request::Exchange("Alice", 7));
        assert_eq!(
            parse("  Bob the 2nd ;  100 "),
            Request::Exchange("Bob the 2nd", 100)
        );
        assert_eq!(parse("x;+1"), Request::Exchange("x", 1));
        assert_eq!(parse("x;0"), Request::OutOfRange("x", "0"));
        assert_eq!(parse("x;-5"), Request::OutOfRange("x", "-5"));
        assert_eq!(
            parse("x;99999999999999999999999"),
            Request::OutOfRange("x", "99999999999999999999999")
        );
        for bad in ["", "x", "x;", ";5", "x;five", "x;5.0", "x;5;6", "x;--5"] {
            assert_eq!(parse(bad), Request::Malformed, "{bad:?}");
        }
    }
}
