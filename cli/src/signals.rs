//! The signal thread of `linepool serve`: SIGTERM and SIGINT drain or
//! stop, SIGHUP reloads the certificates (and tells systemd so), a second
//! stop signal exits at once.

use std::time::Duration;

use linepool::logfmt;
use log::{info, warn};
use nix::sys::signal::{SigSet, Signal};

use super::EXIT_INTERRUPTED;
use linepool::Shutdown;
use linepool::tls::Certs;

/// Takes the signals for the whole process. SIGHUP reloads the
/// certificates and never stops. SIGTERM with a drain time drains first;
/// SIGINT or SIGTERM otherwise, or while draining, stops at once; one while
/// stopping exits at once with status 130.
pub(super) fn watch_signals(
    signals: SigSet,
    shutdown: &Shutdown,
    drain: Duration,
    certs: Option<&Certs>,
) {
    loop {
        let Ok(signal) = signals.wait() else {
            return;
        };
        if signal == Signal::SIGHUP {
            if !shutdown.is_triggered() {
                reload(certs);
            }
            continue;
        }
        if shutdown.is_triggered() {
            eprintln!("linepool: interrupted again, exiting now");
            std::process::exit(EXIT_INTERRUPTED.into());
        }
        // Draining is marked before it is logged, so that whoever reads
        // the line finds the health checks saying `drain` already.
        if signal == Signal::SIGTERM && !drain.is_zero() && shutdown.start_draining() {
            info!(
                "signal received, draining signal=SIGTERM drain_ms={} (send again to stop at once)",
                drain.as_millis()
            );
            // Without a timer the drain would never end: it stops now, and
            // signals are still watched.
            if let Err(e) = shutdown.stop_after(drain) {
                warn!(
                    "cannot time the drain, stopping now error={}",
                    logfmt::error(&e)
                );
            }
        } else {
            info!("signal received, stopping signal={signal} (send again to exit at once)");
            shutdown.trigger();
        }
    }
}

/// SIGHUP: re-reads the certificates, telling systemd (`Type=notify-reload`)
/// that a reload runs and when it is over. A failed reload keeps the old
/// certificates and logs why (in `Certs::reload`).
fn reload(certs: Option<&Certs>) {
    let mut reloading = vec![sd_notify::NotifyState::Reloading];
    if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
        reloading.push(now);
    }
    let _ = sd_notify::notify(&reloading);
    match certs {
        Some(certs) => {
            info!("signal received, reloading signal=SIGHUP");
            let _ = certs.reload();
        }
        None => info!("signal received, nothing to reload signal=SIGHUP"),
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
}

/// The signals the signal thread takes.
pub(super) fn stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    set
}
