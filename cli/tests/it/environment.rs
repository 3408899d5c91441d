//! `serve`'s settings from `LINEPOOL_*` variables: a flag wins over its
//! variable, a variable over the default, and a bad value is refused
//! naming the variable it came from.

use std::process::Command;

use crate::support::{BinServer, run_bin_env};

/// A line of 20 bytes: too long for a 16-byte limit, fine for 32.
const TWENTY_BYTES: &str = "twenty bytes of text";

/// `linepool serve --port 0` with `args` and the variables `vars`.
fn serve_with(args: &[&str], vars: &[(&str, &str)]) -> BinServer {
    let mut command = Command::new(env!("CARGO_BIN_EXE_linepool"));
    command
        .args(["serve", "--port", "0"])
        .args(args)
        .envs(vars.iter().copied());
    BinServer::spawn(command)
}

/// A variable stands in for a flag that is not given, and the debug log
/// says which settings came from where.
#[test]
fn a_variable_wins_over_the_default() {
    let mut server = serve_with(&["--log-level", "debug"], &[("LINEPOOL_MAX_LINE", "16")]);
    let mut client = server.connect();
    client.send_line(TWENTY_BYTES);
    client.expect("ERR line too long (max 16 bytes)\n");
    let line = server.wait_log("settings given ");
    assert!(
        line.ends_with("settings given port=flag max_line=env:LINEPOOL_MAX_LINE log_level=flag"),
        "{line}"
    );
}

/// The command line wins over the environment, flag by flag.
#[test]
fn a_flag_wins_over_its_variable() {
    // The variables alone would listen on port 1 (or fail to start, where
    // the test may not bind it) and cut the line short.
    let mut server = serve_with(
        &["--max-line", "32", "--log-level", "debug"],
        &[("LINEPOOL_MAX_LINE", "16"), ("LINEPOOL_PORT", "1")],
    );
    assert_ne!(server.addr.port(), 1);
    let mut client = server.connect();
    client.send_line(TWENTY_BYTES);
    client.expect(&format!("ACK: {TWENTY_BYTES}\n"));
    let line = server.wait_log("settings given ");
    assert!(
        line.ends_with("settings given port=flag max_line=flag log_level=flag"),
        "{line}"
    );
}

/// Where settings came from is told at debug level only.
#[test]
fn the_settings_line_is_debug_only() {
    let server = serve_with(&[], &[("LINEPOOL_MAX_LINE", "16")]);
    assert!(
        !server.seen.iter().any(|l| l.contains("settings given")),
        "{:?}",
        server.seen
    );
}

/// A bad value in a variable is refused with exit status 2 and a message
/// that names the variable; the same bad value on the command line is the
/// flag's, and the message says so.
#[test]
fn a_bad_variable_is_refused_by_name() {
    for (name, value, shown) in [
        (
            "LINEPOOL_WORKERS",
            "0",
            "'--workers <WORKERS>': must be at least 1",
        ),
        ("LINEPOOL_OVERLOAD", "drop", "'--overload <OVERLOAD>'"),
        (
            "LINEPOOL_IDLE_TIMEOUT",
            "soon",
            "'--idle-timeout <DURATION>'",
        ),
        ("LINEPOOL_PROXY_PROTOCOL", "yes", "'--proxy-protocol'"),
    ] {
        let (status, text) = run_bin_env(&["serve"], &[(name, value)]);
        assert_eq!(status.code(), Some(2), "{name}: {text}");
        let expected = format!("error: invalid value '{value}' in {name} for {shown}");
        assert!(text.starts_with(&expected), "{name}: {text}");
        assert!(!text.contains("panicked"), "{name}: {text}");
    }
    let (status, text) = run_bin_env(&["serve", "--workers", "0"], &[("LINEPOOL_WORKERS", "0")]);
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(
        text.starts_with("error: invalid value '0' for '--workers <WORKERS>'"),
        "{text}"
    );
}

/// `--help` names each flag's variable.
#[test]
fn help_names_the_variables() {
    let (status, text) = run_bin_env(&["serve", "--help"], &[]);
    assert_eq!(status.code(), Some(0), "{text}");
    for name in [
        "LINEPOOL_HOST",
        "LINEPOOL_MAX_CONNECTIONS",
        "LINEPOOL_LOG_LEVEL",
    ] {
        assert!(text.contains(&format!("[env: {name}=")), "{name}: {text}");
    }
}
