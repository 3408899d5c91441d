//! The open file limit at the start: raised toward `--max-connections` +
//! 32 as far as the hard limit allows, and one warning when it stays short.

use std::process::Command;

use crate::support::BinServer;

/// `linepool serve` under a soft and hard open file limit, with `args`.
fn serve_under(soft: u64, hard: u64, args: &str) -> BinServer {
    let mut command = Command::new("bash");
    command.args([
        "-c",
        &format!(r#"ulimit -Sn {soft} && ulimit -Hn {hard} && exec "$0" serve --port 0 {args}"#),
        env!("CARGO_BIN_EXE_linepool"),
    ]);
    BinServer::spawn(command)
}

/// The soft and hard limits on open files of process `pid`.
fn limits_of(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("an open files line");
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// Under a hard limit of 64, the default 10,000 connections cannot be had:
/// one warning names the connections, both limits and the need.
#[test]
fn a_hard_limit_too_low_is_warned_of_once() {
    let server = serve_under(64, 64, "");
    let warnings: Vec<&String> = server
        .seen
        .iter()
        .filter(|l| l.contains("open file limit"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].ends_with(
            "[WARN] open file limit too low for max_connections=10000 soft=64 hard=64 need=10032"
        ),
        "{}",
        warnings[0]
    );
    assert_eq!(limits_of(server.pid), (64, 64));
}

/// Under soft 64 and hard 4096, 100 connections need 132: the soft limit
/// is raised to that, said at info, and nothing is warned.
#[test]
fn the_soft_limit_is_raised_to_what_is_needed() {
    let mut server = serve_under(64, 4096, "--max-connections 100");
    let line = server.wait_log("open file limit");
    assert!(
        line.ends_with("[INFO] open file limit raised from=64 to=132 max_connections=100"),
        "{line}"
    );
    assert_eq!(server.count_log("open file limit"), 1);
    assert_eq!(limits_of(server.pid), (132, 4096));
}

/// Under soft 64 and hard 4096, the default 10,000 connections get the
/// hard limit, and the warning says what is still short.
#[test]
fn the_soft_limit_is_raised_to_the_hard_one_when_that_is_short() {
    let mut server = serve_under(64, 4096, "");
    server.wait_log("open file limit raised from=64 to=4096 max_connections=10000");
    let line = server.wait_log("open file limit too low");
    assert!(
        line.ends_with("max_connections=10000 soft=4096 hard=4096 need=10032"),
        "{line}"
    );
    assert_eq!(limits_of(server.pid), (4096, 4096));
}
