//! `serve --check` against the start: every refusal the start makes after
//! parsing, `--check` makes too, with the same status and the same line.

use crate::support::run_bin_within;

/// Runs `serve` with `args` (and `vars`) twice, with `--check` and without,
/// asserts both exit 2, and returns what each said.
pub(crate) fn refused_by_both(args: &[&str], vars: &[(&str, &str)]) -> [String; 2] {
    [&["--check"][..], &[]].map(|mode| {
        let mut all = vec!["serve", "--port", "0", "--log-level", "off"];
        all.extend_from_slice(mode);
        all.extend_from_slice(args);
        let (status, text) = run_bin_within(&all, vars, b"");
        assert_eq!(status.code(), Some(2), "{all:?}: {text}");
        text
    })
}

/// Runs `serve` with `args` (and `vars`) twice, with `--check` and without,
/// and asserts both exit 2 with exactly `line` and nothing else.
fn refused_alike(args: &[&str], vars: &[(&str, &str)], line: &str) {
    for text in refused_by_both(args, vars) {
        assert_eq!(text, format!("{line}\n"), "{args:?} {vars:?}");
    }
}

/// A chat bus with the default protocol is refused by `--check` as by the
/// start.
#[test]
fn a_bus_without_chat_is_refused_by_both() {
    refused_alike(
        &["--chat-bus", "redis://127.0.0.1:6399"],
        &[],
        "linepool: --chat-bus is used only with --protocol chat",
    );
}

/// A chat bus with another protocol named (`framed`) is refused by both.
#[test]
fn a_bus_with_another_protocol_is_refused_by_both() {
    refused_alike(
        &[
            "--protocol",
            "framed",
            "--chat-bus",
            "redis://127.0.0.1:6399",
        ],
        &[],
        "linepool: --chat-bus is used only with --protocol chat",
    );
}

/// A room name without a bus is refused by both, even under `--protocol
/// chat`, where the room has no name to give.
#[test]
fn a_room_without_a_bus_is_refused_by_both() {
    for protocol in ["ack", "chat"] {
        refused_alike(
            &["--protocol", protocol, "--chat-room", "r"],
            &[],
            "linepool: --chat-room is used only with --chat-bus",
        );
    }
}

/// A room name given by its variable without a bus is refused by both,
/// naming the variable.
#[test]
fn a_room_variable_without_a_bus_is_refused_by_both() {
    refused_alike(
        &["--protocol", "chat"],
        &[("LINEPOOL_CHAT_ROOM", "r")],
        "linepool: LINEPOOL_CHAT_ROOM is used only with --chat-bus",
    );
}

/// A missing certificate file is refused by both, naming the file.
#[test]
fn a_missing_certificate_is_refused_by_both() {
    refused_alike(
        &[
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ],
        &[],
        "linepool: cannot read --tls-cert /nonexistent/cert.pem: No such file or directory (os error 2)",
    );
}
