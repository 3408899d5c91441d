//! The admin console (`--admin-socket`): a Unix socket on which an
//! operator of the running server shows what it does and acts on it, one
//! line a command, each answered by its lines and a last `OK` or
//! `ERR <reason>` (docs/console.md). Only clients whose user id
//! `--admin-uid` allows (by `SO_PEERCRED`) may act; those of
//! `--admin-read-uid` may only look (`command.rs` says which commands do),
//! and others get `ERR not allowed` and change nothing.
//!
//! One thread, `linepool-console`, serves one session at a time (others
//! wait in the socket's backlog), with deadlines on every read and write:
//! a client that sends garbage, an endless line or never reads costs its
//! own session only. It answers through the whole stop and ends at its
//! last step, as the side ports do.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::acceptor::Control;
use super::command::{Command, Level, NotACommand};
use super::listen::Listener;
use super::live::Live;
use super::threads::figures;
use crate::config::Config;
use crate::engine::{Connections, Engine};
use crate::gate::Gate;
use crate::logfmt;
use crate::protocol::Protocol;
use crate::shutdown::Shutdown;
use crate::socket::{Peer, Stream};
use crate::stats::Stats;
use crate::tls::Certs;
use crate::values;

/// The longest command line; a longer one ends the session.
const MAX_COMMAND: usize = 1024;

/// How long a session may wait for its next command.
const SESSION_IDLE: Duration = Duration::from_secs(300);

/// How long an answer may wait for the client to read it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `show conns` waits for a connection's turn to end.
const TURN_WAIT: Duration = Duration::from_millis(20);

/// How often a session waiting for a command looks at the stop.
const TICK: Duration = Duration::from_millis(200);

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);

/// What the console reports on and acts on.
pub(super) struct Console {
    pub(super) shutdown: Shutdown,
    pub(super) stats: Arc<Stats>,
    pub(super) conns: Arc<Connections>,
    /// The pool's engine, which `set workers` resizes.
    pub(super) engine: Arc<Engine>,
    pub(super) acceptor: Arc<Control>,
    /// The connection limit, which `set max-connections` changes.
    pub(super) gate: Arc<Gate>,
    pub(super) tls: Option<Arc<Certs>>,
    /// User ids that may use the console; `config.admin_read_uids` may
    /// only look.
    pub(super) admin_uids: Arc<[u32]>,
    /// The protocol served, for its name and its figures.
    pub(super) protocol: Arc<dyn Protocol>,
    /// `show info`'s fixed lines: version, protocol, listeners.
    pub(super) about: Vec<(&'static str, String)>,
    /// The settings the server started with, for `show config`.
    pub(super) config: Config,
    /// The settings `set` changes.
    pub(super) live: Arc<Live>,
    pub(super) started: Instant,
}

/// The console's socket in a poller of its own, whose wait the stop's last
/// step ends (the waker lives in that wake-up); made before any thread
/// starts.
pub(super) struct ConsoleSocket {
    listener: Listener,
    poll: Poll,
}

impl ConsoleSocket {
    /// Watches `listener`, already non-blocking; `until` ends the watch.
    pub(super) fn new(listener: Listener, until: &Shutdown) -> io::Result<ConsoleSocket> {
        let poll = Poll::new()?;
        poll.registry().register(
            &mut SourceFd(&listener.as_raw_fd()),
            LISTENER,
            Interest::READABLE,
        )?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        until.on_trigger(move || {
            if let Err(e) = waker.wake() {
                error!("cannot wake the console error={}", logfmt::error(&e));
            }
        });
        Ok(ConsoleSocket { listener, poll })
    }

    /// Where it listens, as logs show it.
    pub(super) fn addr(&self) -> &str {
        self.listener.addr()
    }
}

impl Console {
    /// Serves sessions until `until` (the stop's last step).
    pub(super) fn run(&self, mut socket: ConsoleSocket, until: &Shutdown) {
        let mut events = Events::with_capacity(2);
        while !until.is_triggered() {
            if let Err(e) = socket.poll.poll(&mut events, None)
                && e.kind() != io::ErrorKind::Interrupted
            {
                error!("console poll failed error={}", logfmt::error(&e));
                return;
            }
            // Edge-triggered: accept until nobody waits.
            while !until.is_triggered() {
                match socket.listener.accept() {
                    Ok((stream, peer)) => self.session(stream, peer, until),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        warn!("console accept failed error={}", logfmt::error(&e));
                        break;
                    }
                }
            }
        }
    }

    /// One client's session: commands until it leaves, stays idle too
    /// long, breaks the rules or the stop ends.
    fn session(&self, stream: Stream, peer: Peer, until: &Shutdown) {
        let Stream::Unix(stream) = stream else {
            return;
        };
        let uid = match peer {
            Peer::Local { uid } => uid,
            Peer::Ip(_) => return,
        };
        let level = Level::of(uid, &self.admin_uids, &self.config.admin_read_uids);
        if level.is_none() {
            warn!("admin console refused uid={uid}");
        }
        let prepared = stream
            .set_nonblocking(false)
            .and_then(|()| stream.set_read_timeout(Some(TICK)))
            .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)));
        if prepared.is_err() {
            return;
        }
        let mut pending = Vec::new();
        let mut chunk = [0u8; 512];
        let mut idle_since = Instant::now();
        loop {
            // Every complete line waiting is a command.
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                if end > MAX_COMMAND {
                    break;
                }
                let line: Vec<u8> = pending.drain(..=end).collect();
                let Some(level) = level else {
                    // Refused, and the session ends: one the console must
                    // not serve would only hold it from those it may.
                    let _ = (&*stream).write_all(b"ERR not allowed\n");
                    return;
                };
                let answer = self.command(&line[..end], uid, level);
                if (&*stream).write_all(answer.as_bytes()).is_err() {
                    return;
                }
                idle_since = Instant::now();
            }
            if pending.len() > MAX_COMMAND {
                let _ = (&*stream).write_all(b"ERR line too long\n");
                return;
            }
            if until.is_triggered() || idle_since.elapsed() > SESSION_IDLE {
                return;
            }
            match (&*stream).read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return,
            }
        }
    }

    /// Runs one command line for a client of `level`; returns its whole
    /// answer, `OK` or `ERR …` last.
    fn command(&self, line: &[u8], uid: u32, level: Level) -> String {
        let Ok(line) = std::str::from_utf8(line) else {
            return "ERR not utf-8\n".to_string();
        };
        let words: Vec<&str> = line.trim_end_matches('\r').split_whitespace().collect();
        let command = match Command::parse(&words) {
            Ok(command) => command,
            Err(NotACommand::Empty) => return "ERR no command\n".to_string(),
            Err(NotACommand::Unknown(word)) => {
                return format!("ERR unknown command: {}\n", one_line(word));
            }
        };
        if !level.may_run(&command) {
            info!(
                "admin console refused command={} uid={uid} level=read-only",
                command.word()
            );
            return "ERR not allowed: read-only\n".to_string();
        }
        match command {
            Command::Help => ok(HELP),
            Command::ShowInfo => ok(&self.info()),
            Command::ShowConns => ok(&self.conns()),
            Command::ShowConfig => ok(&self.show_config()),
            Command::Kill(id) => self.kill(id, uid),
            Command::Set {
                name,
                value: Some(value),
            } => self.set(name, value, uid),
            Command::Set { name, value: None } => format!(
                "ERR a value is required for {} but none was supplied\n",
                one_line(name)
            ),
            Command::Pause => {
                if self.acceptor.pause() {
                    // An acceptor waiting for a slot stops waiting.
                    self.gate.wake();
                    info!("acceptor paused by=uid:{uid}");
                }
                ok("")
            }
            Command::Resume => {
                if self.acceptor.resume() {
                    info!("acceptor resumed by=uid:{uid}");
                }
                ok("")
            }
            Command::Reload => match &self.tls {
                Some(certs) => {
                    info!("reload requested on the admin console by=uid:{uid}");
                    match certs.reload() {
                        Ok(()) => ok(""),
                        Err(e) => format!("ERR reload failed: {}\n", one_line(&e)),
                    }
                }
                None => "ERR nothing to reload: the server has no TLS\n".to_string(),
            },
            Command::Drain(time) => self.drain(time, uid),
            Command::Stop => {
                self.shutdown.trigger_by(|| {
                    info!("stop requested on the admin console by=uid:{uid}");
                });
                ok("")
            }
        }
    }

    /// `show info`: one `name=value` line each.
    fn info(&self) -> String {
        let totals = self.stats.totals();
        let summary = &totals.summary;
        let micros = |d: std::time::Duration| format!("{:.1}", d.as_secs_f64() * 1e6);
        // A percentile past the last bucket's bound is `inf`.
        let bound = |d: Option<std::time::Duration>| d.map_or("inf".to_string(), micros);
        let accepting = if self.acceptor.is_paused() {
            "paused"
        } else if self.shutdown.is_triggered() {
            "stopped"
        } else {
            "yes"
        };
        let mut out = String::new();
        let mut line = |name: &str, value: &dyn std::fmt::Display| {
            out.push_str(&format!("{name}={value}\n"));
        };
        for (name, value) in &self.about {
            line(name, value);
        }
        line("overload", &self.live.overload());
        line("workers", &self.engine.workers());
        line("max_connections", &self.gate.capacity());
        line("log_level", &values::level_name(log::max_level()));
        line("uptime_secs", &self.started.elapsed().as_secs());
        line("accepting", &accepting);
        line("open", &self.stats.open());
        line("connections", &summary.connections);
        line("lines", &summary.lines);
        line("rejected", &summary.rejected);
        line("rejected_per_ip", &summary.rejected_per_ip);
        line("ready", &self.engine.ready());
        line("workers_busy", &self.engine.busy_workers());
        // Since the start: the stats line's are over its interval.
        line("service_mean_us", &micros(totals.service.mean()));
        line("service_p99_le_us", &bound(totals.service.p99_bound()));
        line("queue_mean_us", &micros(totals.queue_delay.mean()));
        line("queue_p99_le_us", &bound(totals.queue_delay.p99_bound()));
        // The protocol's own, as the stats line gives them.
        for figure in figures(&*self.protocol).split_whitespace() {
            out.push_str(figure);
            out.push('\n');
        }
        out
    }

    /// `show conns`: one line per live connection, by id.
    fn conns(&self) -> String {
        let mut live = self.conns.copy_out(|served| Some(served.clone()));
        live.sort_by_key(|served| served.conn.id());
        let mut out = String::new();
        for served in live {
            let conn = &served.conn;
            // The handler is locked while a worker runs a turn, which its
            // budget keeps short: its figures are waited for that long, and
            // left out after.
            let socket_peer = conn.peer().to_string();
            let (peer, from, rest) = match served.handler.try_lock_for(TURN_WAIT) {
                Some(handler) => {
                    let peer = handler.peer().to_string();
                    // Behind a proxy, the socket's peer is the proxy.
                    let from = if peer == socket_peer {
                        "-".to_string()
                    } else {
                        socket_peer
                    };
                    let rest = format!(
                        "listener={} protocol={} cert={} bytes_in={} messages={}",
                        handler.listener_name().unwrap_or("-"),
                        handler.protocol_name(),
                        logfmt::Quoted(handler.cert_name()),
                        handler.bytes_in(),
                        handler.messages(),
                    );
                    (peer, from, rest)
                }
                None => (
                    socket_peer,
                    "-".to_string(),
                    "listener=- protocol=- cert=- bytes_in=- messages=-".to_string(),
                ),
            };
            out.push_str(&format!(
                "id={} peer={peer} proxy={from} {rest} tls={} age_secs={:.1} idle_secs={:.1} bytes_out={} queued_bytes={}\n",
                conn.id(),
                conn.tls_version().unwrap_or("-"),
                conn.age().as_secs_f64(),
                conn.idle().as_secs_f64(),
                conn.bytes_out(),
                conn.pending(),
            ));
        }
        out
    }

    /// `kill ID`: closes that connection, its close line saying
    /// `reason=killed`.
    fn kill(&self, id: &str, uid: u32) -> String {
        let Ok(id) = id.parse::<u64>() else {
            return format!("ERR not a connection id: {}\n", one_line(id));
        };
        match self.conns.get(id) {
            Some(served) => {
                info!(
                    "connection killed id={id} peer={} by=uid:{uid}",
                    served.conn.peer()
                );
                served.conn.kill();
                ok("")
            }
            None => format!("ERR no connection {id}\n"),
        }
    }
}

/// The commands, for `help`.
const HELP: &str = "\
show info
show conns
show config
kill ID
set SETTING VALUE (show config says which may be set)
pause
resume
drain [DURATION]
reload
stop
help
";

/// An answer's lines, then `OK`.
pub(super) fn ok(lines: &str) -> String {
    format!("{lines}OK\n")
}

/// A word fit for one answer line: at most 64 characters, control
/// characters replaced.
pub(super) fn one_line(text: &str) -> String {
    clipped(text, 64)
}

/// Text fit for one answer line: at most `max` characters, control
/// characters replaced.
pub(super) fn clipped(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
