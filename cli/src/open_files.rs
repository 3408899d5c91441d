//! The open file limit `serve` needs: one descriptor per connection
//! (`--max-connections`) plus a margin for the server's own. At the start,
//! before anything is bound, the soft `RLIMIT_NOFILE` is raised toward that
//! as far as the hard limit allows, as Redis does with `maxclients`; when
//! the hard limit is short, one warning names the numbers. Without this a
//! server under a low default (`ulimit -n 1024`, or 64) started silently
//! and only later backed off on `Too many open files`.

use linepool::logfmt;
use log::{info, warn};
use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Descriptors the server holds besides its connections: listeners, the
/// agent and metrics ports, the poller and its wake-ups, the log, a Redis
/// connection or two, the certificate files while they are read.
pub const MARGIN: u64 = 32;

/// What to do about the soft limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// The soft limit already covers the need.
    Enough,
    /// Raise the soft limit to this; it covers the need.
    Raise(u64),
    /// The hard limit is below the need: raise the soft limit to it, if
    /// it is not there already (`None`), and warn.
    Short(Option<u64>),
}

/// The plan for needing `need` descriptors under `soft` and `hard`.
fn plan(need: u64, soft: u64, hard: u64) -> Plan {
    if soft >= need {
        Plan::Enough
    } else if hard >= need {
        Plan::Raise(need)
    } else {
        Plan::Short(Some(hard).filter(|&hard| hard > soft))
    }
}

/// Raises the soft open file limit toward what `max_connections` needs
/// (`max_connections` + [`MARGIN`]), up to the hard limit: logged at info
/// when raised, and one warning naming both limits when they stay short.
/// Never fails the start: a server under a low limit still serves as many
/// as it can, as before.
pub fn raise_for(max_connections: usize) {
    let need = u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_add(MARGIN);
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            warn!(
                "cannot read the open file limit error={}",
                logfmt::error(&e)
            );
            return;
        }
    };
    let target = match plan(need, soft, hard) {
        Plan::Enough => return,
        Plan::Raise(target) | Plan::Short(Some(target)) => Some(target),
        Plan::Short(None) => None,
    };
    let mut now = soft;
    if let Some(target) = target {
        match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
            Ok(()) => {
                info!(
                    "open file limit raised from={soft} to={target} max_connections={max_connections}"
                );
                now = target;
            }
            Err(e) => warn!(
                "cannot raise the open file limit to={target} error={}",
                logfmt::error(&e)
            ),
        }
    }
    if now < need {
        warn!(
            "open file limit too low for max_connections={max_connections} soft={now} hard={hard} need={need}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_only_as_far_as_needed_and_allowed() {
        assert_eq!(plan(10_032, 20_000, 20_000), Plan::Enough);
        assert_eq!(plan(132, 132, 4096), Plan::Enough);
        assert_eq!(plan(132, 64, 4096), Plan::Raise(132));
        assert_eq!(plan(10_032, 64, 4096), Plan::Short(Some(4096)));
        assert_eq!(plan(10_032, 64, 64), Plan::Short(None));
    }
}
