//! The admin console's settings: `show config`, `set` for each setting it
//! may change while the server serves, and `drain`.

use std::time::Duration;

use crate::console::{QUIET, ask, serve_with_console, serve_with_console_env};
use crate::support::DEADLINE;

/// `show config` gives every setting's value, where it came from (flag,
/// variable, default, or `set` once changed) and whether `set` may change
/// it.
#[test]
fn show_config_says_value_source_and_changeable() {
    let (mut server, path) = serve_with_console_env(
        "config",
        "info",
        &["--max-connections", "7"],
        &[("LINEPOOL_BACKLOG", "64")],
    );
    let config = ask(&path, "show config");
    for line in [
        "name=max-connections value=7 source=flag changeable=yes",
        "name=backlog value=64 source=env:LINEPOOL_BACKLOG changeable=no",
        "name=overload value=block source=default changeable=yes",
        "name=idle-timeout value=300s source=default changeable=yes",
        "name=admin-from value=127.0.0.0/8,::1/128 source=default changeable=yes",
        "name=protocol value=ack source=default changeable=no",
        "name=tls-cert value=- source=default changeable=no",
        "name=unix-mode value=0660 source=default changeable=no",
    ] {
        assert!(
            config.contains(&line.to_string()),
            "no {line} in {config:?}"
        );
    }
    assert_eq!(config.last().map(String::as_str), Some("OK"));
    assert_eq!(ask(&path, "set max-connections 8"), ["OK"]);
    server.wait_log("setting changed name=max-connections from=7 to=8 by=uid:");
    let config = ask(&path, "show config");
    let line = "name=max-connections value=8 source=set changeable=yes";
    assert!(config.contains(&line.to_string()), "{config:?}");
}

/// `set overload reject` on a full server that blocks: the client waiting
/// in the backlog is accepted and refused; `block` again holds the next.
#[test]
fn set_overload_switches_a_full_server() {
    let (mut server, path) = serve_with_console("overload", &["--max-connections", "1"]);
    let mut holder = server.connect();
    holder.send_line("in");
    holder.expect("ACK: in\n");
    let mut waiting = server.connect();
    waiting.send_line("let me in");
    waiting.expect_silence(QUIET);
    assert_eq!(ask(&path, "set overload reject"), ["OK"]);
    server.wait_log("setting changed name=overload from=block to=reject by=uid:");
    assert_eq!(waiting.rest(), b"ERR server busy\n");
    assert_eq!(ask(&path, "set overload block"), ["OK"]);
    let mut held = server.connect();
    held.send_line("later");
    held.expect_silence(QUIET);
    holder.send_line("shutdown");
    held.expect("ACK: later\n");
    assert_eq!(
        ask(&path, "set overload maybe"),
        ["ERR invalid value 'maybe' for overload: expected block or reject"]
    );
}

/// `set idle-timeout` applies to the connections already open, at once;
/// `0` turns the rule off.
#[test]
fn set_idle_timeout_applies_to_open_connections() {
    let (mut server, path) = serve_with_console("idle", &[]);
    let mut silent = server.connect();
    silent.send_line("hello");
    silent.expect("ACK: hello\n");
    assert_eq!(ask(&path, "set idle-timeout 300ms"), ["OK"]);
    server.wait_log("setting changed name=idle-timeout from=300s to=0.3s by=uid:");
    assert_eq!(silent.rest(), b"ERR idle timeout\n");
    assert_eq!(ask(&path, "set idle-timeout 0"), ["OK"]);
    let mut patient = server.connect();
    patient.expect_silence(Duration::from_millis(900));
    patient.send_line("still here");
    patient.expect("ACK: still here\n");
    assert_eq!(
        ask(&path, "set idle-timeout ten"),
        [
            "ERR invalid value 'ten' for idle-timeout: 'ten' is not a duration (expected number at 0); use a number of seconds, or e.g. 10s, 500ms, 5m"
        ]
    );
}

/// `set max-line` is for connections accepted from now on: one open
/// before keeps its limit.
#[test]
fn set_max_line_applies_to_new_connections() {
    let (mut server, path) = serve_with_console("maxline", &[]);
    let mut before = server.connect();
    before.send_line("hi");
    before.expect("ACK: hi\n");
    assert_eq!(ask(&path, "set max-line 16"), ["OK"]);
    server.wait_log("setting changed name=max-line from=65536 to=16 by=uid:");
    let long = "0123456789abcdefghij";
    before.send_line(long);
    before.expect(&format!("ACK: {long}\n"));
    let mut after = server.connect();
    after.send_line(long);
    assert_eq!(after.rest(), b"ERR line too long (max 16 bytes)\n");
    assert_eq!(
        ask(&path, "set max-line 10"),
        ["ERR invalid value '10' for max-line: must be at least 11, the length of quit_server"]
    );
}

/// `set max-per-ip` from no limit counts the connections accepted from
/// then on; `0` lifts it again.
#[test]
fn set_max_per_ip_limits_new_connections() {
    let (mut server, path) = serve_with_console("perip", &[]);
    let mut old = server.connect();
    old.send_line("old");
    old.expect("ACK: old\n");
    assert_eq!(ask(&path, "set max-per-ip 1"), ["OK"]);
    server.wait_log("setting changed name=max-per-ip from=0 to=1 by=uid:");
    let mut first = server.connect();
    first.send_line("first");
    first.expect("ACK: first\n");
    let mut second = server.connect();
    assert_eq!(
        second.rest(),
        b"ERR too many connections from your address\n"
    );
    assert_eq!(ask(&path, "set max-per-ip 0"), ["OK"]);
    let mut third = server.connect();
    third.send_line("third");
    third.expect("ACK: third\n");
}

/// `set stats-interval` turns the stats line on while the server runs.
#[test]
fn set_stats_interval_turns_the_stats_line_on() {
    let (mut server, path) = serve_with_console("stats", &[]);
    assert_eq!(ask(&path, "set stats-interval 200ms"), ["OK"]);
    server.wait_log("setting changed name=stats-interval from=0 to=0.2s by=uid:");
    server.wait_log("stats lines=");
}

/// `set admin-from` decides who may stop the server for the connections
/// accepted from then on.
#[test]
fn set_admin_from_applies_to_new_connections() {
    let (mut server, path) = serve_with_console("adminfrom", &[]);
    assert_eq!(ask(&path, "set admin-from 10.0.0.0/8"), ["OK"]);
    server
        .wait_log("setting changed name=admin-from from=127.0.0.0/8,::1/128 to=10.0.0.0/8 by=uid:");
    let mut refused = server.connect();
    refused.send_line("quit_server");
    refused.expect("ERR quit_server not allowed\n");
    assert_eq!(ask(&path, "set admin-from 127.0.0.1/32"), ["OK"]);
    let mut admin = server.connect();
    admin.send_line("quit_server");
    admin.expect_closed();
    assert!(server.wait_exit(DEADLINE).success());
}

/// `drain` does what SIGTERM with `--drain` does: serve on, then stop.
#[test]
fn drain_serves_on_then_stops() {
    let (mut server, path) = serve_with_console("drain", &[]);
    assert_eq!(
        ask(&path, "drain"),
        ["ERR no drain time: give one (drain 30s) or start with --drain"]
    );
    let mut client = server.connect();
    assert_eq!(ask(&path, "drain 500ms"), ["OK"]);
    server.wait_log("drain requested on the admin console drain_ms=500 by=uid:");
    assert_eq!(ask(&path, "drain 1s"), ["ERR already draining or stopping"]);
    client.send_line("during");
    client.expect("ACK: during\n");
    server.wait_log("drain over, stopping");
    assert!(server.wait_exit(DEADLINE).success());
}

/// A shorter stats interval holds at once, not after the old one has run
/// out.
#[test]
fn a_shorter_stats_interval_holds_at_once() {
    let (mut server, path) = serve_with_console("stats-short", &["--stats-interval", "1h"]);
    assert_eq!(ask(&path, "set stats-interval 200ms"), ["OK"]);
    server.wait_log("setting changed name=stats-interval from=3600s to=0.2s by=uid:");
    server.wait_log("stats lines=");
}

/// `show info` gives the protocol's own figures too, as the stats line
/// does: a chat room's bus.
#[test]
fn show_info_gives_the_protocols_figures() {
    let redis = crate::redis_server::Redis::start();
    let url = redis.url();
    let (_server, path) =
        serve_with_console("chat-info", &["--protocol", "chat", "--chat-bus", &url]);
    let answer = crate::console::ask_until(&path, "show info", "bus_up=1");
    assert!(
        answer.iter().any(|l| l.starts_with("room_members=")),
        "{answer:?}"
    );
}
