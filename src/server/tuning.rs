//! The admin console's settings: `show config` (every setting, its value,
//! where it came from and whether `set` may change it), `set NAME VALUE`
//! (each change one audit line, `setting changed name=… from=… to=…
//! by=uid:N`) and `drain`. Values are parsed as the flags parse them
//! ([`crate::values`]) and refused in the same words.

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use log::info;

use super::console::{Console, clipped, ok, one_line};
use crate::access::{AddrList, PerAddress};
use crate::config::Overload;
use crate::logfmt;
use crate::values;

/// The longest reason a refusal gives (it may quote the value).
const REASON_MAX: usize = 256;

/// The settings `set` changes, in `show config`'s order among the rest.
const CHANGEABLE: &[&str] = &[
    "workers",
    "max-connections",
    "overload",
    "idle-timeout",
    "max-line",
    "max-per-ip",
    "stats-interval",
    "admin-from",
    "log-level",
];

impl Console {
    /// `show config`: one line per setting, `name=… value=… source=…
    /// changeable=yes|no`.
    pub(super) fn show_config(&self) -> String {
        let c = &self.config;
        let policy = self.live.policy();
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
        let settings: Vec<(&str, String)> = vec![
            ("host", c.host.clone()),
            ("port", c.port.to_string()),
            ("listen", joined(&c.listen)),
            (
                "unix",
                opt(c.unix.as_ref().map(|p| p.display().to_string())),
            ),
            ("backlog", c.backlog.to_string()),
            ("workers", self.engine.workers().to_string()),
            ("max-connections", self.gate.capacity().to_string()),
            ("overload", self.live.overload().to_string()),
            ("idle-timeout", shown(self.live.idle_timeout())),
            ("max-line", policy.limits.max_line.to_string()),
            (
                "max-per-ip",
                policy
                    .per_address
                    .as_ref()
                    .map_or(0, |t| t.max())
                    .to_string(),
            ),
            ("stats-interval", shown(self.live.stats_interval())),
            ("admin-from", policy.admin_from.to_string()),
            ("admin-uid", joined(&self.admin_uids)),
            ("admin-read-uid", joined(&c.admin_read_uids)),
            (
                "admin-cert",
                opt(c.admin_cert.as_ref().map(|n| n.join(","))),
            ),
            ("log-level", values::level_name(log::max_level())),
            ("stop-grace", shown(Some(c.stop_grace))),
            ("drain", shown(c.drain)),
            ("proxy-protocol", c.proxy_protocol.to_string()),
            ("agent", opt(c.agent.map(|a| a.to_string()))),
            ("metrics", opt(c.metrics.map(|a| a.to_string()))),
            ("unix-mode", format!("{:04o}", c.unix_mode)),
            (
                "admin-socket",
                opt(c.admin_socket.as_ref().map(|p| p.display().to_string())),
            ),
            ("admin-socket-mode", format!("{:04o}", c.admin_socket_mode)),
            ("protocol", self.protocol.name().to_string()),
        ];
        let tls = c.tls.as_ref();
        let tls_settings: [(&str, String); 6] = [
            ("tls-cert", opt(tls.map(|t| t.cert.display().to_string()))),
            ("tls-key", opt(tls.map(|t| t.key.display().to_string()))),
            (
                "tls-client-ca",
                opt(tls
                    .and_then(|t| t.client_ca.as_ref())
                    .map(|p| p.display().to_string())),
            ),
            (
                "tls-client-auth",
                opt(tls.map(|t| t.client_cert_mode().to_string())),
            ),
            (
                "tls-min-version",
                opt(tls.map(|t| t.min_version.to_string())),
            ),
            (
                "tls-handshake-timeout",
                opt(tls.map(|t| shown(Some(t.handshake_timeout)))),
            ),
        ];
        let settings = settings.into_iter().chain(tls_settings);
        let mut out = String::new();
        for (name, value) in settings {
            let changeable = if CHANGEABLE.contains(&name) {
                "yes"
            } else {
                "no"
            };
            out.push_str(&format!(
                "name={name} value={} source={} changeable={changeable}\n",
                logfmt::Quoted(&value),
                self.live.origin(name)
            ));
        }
        out
    }

    /// `set NAME VALUE`: changes a setting while the server runs, with one
    /// audit line.
    pub(super) fn set(&self, name: &str, value: &str, uid: u32) -> String {
        let changed = |from: &dyn Display, to: &dyn Display| {
            info!("setting changed name={name} from={from} to={to} by=uid:{uid}");
            self.live.mark_set(name);
            ok("")
        };
        let refused = |why: String| {
            format!(
                "ERR invalid value '{}' for {name}: {}\n",
                one_line(value),
                clipped(&why, REASON_MAX)
            )
        };
        let live = &self.live;
        match name {
            // The pool is resized while it serves: a worker too many ends
            // after its turn, handing its ready work on (docs/console.md).
            "workers" => match values::at_least_one(value) {
                Ok(_) if self.shutdown.is_triggered() => "ERR the server is stopping\n".to_string(),
                Ok(workers) => match self.engine.resize(workers) {
                    Ok(before) => changed(&before, &workers),
                    Err(e) => format!("ERR {}\n", clipped(&e.to_string(), REASON_MAX)),
                },
                Err(why) => refused(why),
            },
            // Lowered, it closes nobody: the acceptor admits no one more
            // until fewer are open.
            "max-connections" => match values::at_least_one(value) {
                Ok(limit) => changed(&self.gate.set_capacity(limit), &limit),
                Err(why) => refused(why),
            },
            "overload" => match value.parse::<Overload>() {
                Ok(overload) => {
                    let before = live.overload();
                    live.set_overload(overload);
                    // An acceptor waiting for a slot in `block` mode asks
                    // again, and in `reject` mode accepts and refuses.
                    self.gate.wake();
                    changed(&before, &overload)
                }
                Err(_) => refused("expected block or reject".to_string()),
            },
            // Every connection's, at the watchdog's next scan.
            "idle-timeout" => match values::duration(value) {
                Ok(idle) => {
                    let idle = Some(idle).filter(|d| !d.is_zero());
                    let before = live.idle_timeout();
                    live.set_idle_timeout(idle);
                    changed(&shown(before), &shown(idle))
                }
                Err(why) => refused(why),
            },
            // For connections accepted from now on.
            "max-line" => match values::max_line(value) {
                Ok(max) => {
                    let before = live.policy().limits.max_line;
                    live.change_policy(|p| p.limits.max_line = max);
                    changed(&before, &max)
                }
                Err(why) => refused(why),
            },
            "max-per-ip" => match values::count(value) {
                Ok(max) => {
                    let before = self.set_max_per_ip(max);
                    changed(&before, &max)
                }
                Err(why) => refused(why),
            },
            "stats-interval" => match values::duration(value) {
                Ok(every) => {
                    let every = Some(every).filter(|d| !d.is_zero());
                    let before = live.stats_interval();
                    if every.is_some() && !live.policy().limits.timing {
                        // Connections accepted from now on measure the
                        // service times the line reports.
                        live.change_policy(|p| p.limits.timing = true);
                    }
                    live.set_stats_interval(every);
                    changed(&shown(before), &shown(every))
                }
                Err(why) => refused(why),
            },
            // For connections accepted from now on: a connection's right to
            // stop the server is decided once, when it opens.
            "admin-from" => match value.parse::<AddrList>() {
                Ok(list) => {
                    let before = live.policy().admin_from.to_string();
                    let after = list.to_string();
                    live.change_policy(|p| p.admin_from = Arc::new(list));
                    changed(&before, &after)
                }
                Err(why) => refused(why),
            },
            "log-level" => match value.parse::<log::LevelFilter>() {
                Ok(level) => {
                    let before = log::max_level();
                    // The audit line is written at the level that shows it
                    // whichever way the change goes.
                    log::set_max_level(before.max(level));
                    let line = changed(&values::level_name(before), &values::level_name(level));
                    log::set_max_level(level);
                    line
                }
                Err(_) => refused("off, error, warn, info, debug or trace".to_string()),
            },
            _ => format!(
                "ERR no setting {}: {}\n",
                one_line(name),
                CHANGEABLE.join(", ")
            ),
        }
    }

    /// `--max-per-ip` to `max`; returns the limit before. A table that
    /// exists keeps counting every connection; one made now (from no
    /// limit) counts the connections accepted from now on, and dropping
    /// the limit stops counting new ones.
    fn set_max_per_ip(&self, max: usize) -> usize {
        let before = self.live.policy().per_address.clone();
        match (&before, max) {
            (Some(table), 1..) => table.set_max(max),
            (Some(_), 0) => self.live.change_policy(|p| p.per_address = None),
            (None, 1..) => self
                .live
                .change_policy(|p| p.per_address = Some(PerAddress::new(max))),
            (None, 0) => {}
        }
        before.map_or(0, |t| t.max())
    }

    /// `drain [DURATION]`: as SIGTERM with `--drain`: serve and accept on,
    /// saying `drain` to health checks, for that long (or `--drain`'s),
    /// then stop.
    pub(super) fn drain(&self, time: Option<&str>, uid: u32) -> String {
        let time = match time.map(values::duration) {
            Some(Ok(time)) => time,
            Some(Err(why)) => return format!("ERR {}\n", clipped(&why, REASON_MAX)),
            None => match self.config.drain {
                Some(time) => time,
                None => {
                    return "ERR no drain time: give one (drain 30s) or start with --drain\n"
                        .to_string();
                }
            },
        };
        // Marked before it is logged, so that whoever reads the line finds
        // the health checks saying `drain` already.
        if !self.shutdown.start_draining() {
            return "ERR already draining or stopping\n".to_string();
        }
        info!(
            "drain requested on the admin console drain_ms={} by=uid:{uid}",
            time.as_millis()
        );
        match self.shutdown.stop_after(time) {
            Ok(()) => ok(""),
            Err(e) => format!(
                "ERR cannot time the drain, stopping now: {}\n",
                one_line(&e.to_string())
            ),
        }
    }
}

/// A duration as the flags take it back: seconds, or `0` for never.
fn shown(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{}s", d.as_secs_f64()),
        None => "0".to_string(),
    }
}

/// A list, comma-separated; `-` when empty.
fn joined<T: Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "-".to_string();
    }
    items.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}
