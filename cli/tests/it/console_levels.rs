//! Who may do what on the admin console: `--admin-uid` every command,
//! `--admin-read-uid` only those that look (`show …`, `help`), anyone else
//! nothing. The tests cannot change user: they put their own user id in
//! one list or the other, and keep it out of `--admin-uid` with a user id
//! nobody runs them as.

use crate::check::refused_by_both;
use crate::console::{ask, id_of, serve_with_console, serve_with_console_env};
use crate::listeners::my_uid;
use crate::support::run_bin_within;

/// A user id the tests do not run as, for an `--admin-uid` without theirs.
const SOMEONE_ELSE: &str = "65534";

/// What a read-only user id is told for every command that acts.
const READ_ONLY: &str = "ERR not allowed: read-only";

/// A read-only user id (here from `LINEPOOL_ADMIN_READ_UID`, a list) may
/// show the server and ask for help, but every command that acts is
/// refused and logged, and the server is left as it was, still serving.
#[test]
fn a_read_only_uid_shows_but_changes_nothing() {
    let me = my_uid().to_string();
    let read_uids = format!("{me},4242");
    let (mut server, path) = serve_with_console_env(
        "readonly",
        "debug",
        &[
            "--admin-uid",
            SOMEONE_ELSE,
            "--max-connections",
            "10",
            "--workers",
            "2",
        ],
        &[("LINEPOOL_ADMIN_READ_UID", &read_uids)],
    );
    let mut client = server.connect();
    client.send_line("before");
    client.expect("ACK: before\n");
    let peer = client
        .stream
        .local_addr()
        .expect("local address")
        .to_string();
    let id = id_of(&path, &peer);
    let info = ask(&path, "show info");
    for line in ["max_connections=10", "workers=2", "accepting=yes", "OK"] {
        assert!(info.contains(&line.to_string()), "no {line} in {info:?}");
    }
    let config = ask(&path, "show config");
    for line in [
        format!(
            "name=admin-read-uid value={read_uids} source=env:LINEPOOL_ADMIN_READ_UID changeable=no"
        ),
        format!("name=admin-uid value={SOMEONE_ELSE} source=flag changeable=no"),
        "OK".to_string(),
    ] {
        assert!(config.contains(&line), "no {line} in {config:?}");
    }
    assert_eq!(
        ask(&path, "help"),
        [
            "show info",
            "show conns",
            "show config",
            "kill ID",
            "set SETTING VALUE (show config says which may be set)",
            "pause",
            "resume",
            "drain [DURATION]",
            "reload",
            "stop",
            "help",
            "OK",
        ]
    );
    let kill = format!("kill {id}");
    for (command, word) in [
        ("set max-connections 1", "set"),
        ("set workers 1", "set"),
        (kill.as_str(), "kill"),
        ("pause", "pause"),
        ("resume", "resume"),
        ("reload", "reload"),
        ("drain 1ms", "drain"),
        ("stop", "stop"),
    ] {
        assert_eq!(ask(&path, command), [READ_ONLY], "{command}");
        server.wait_log(&format!(
            "admin console refused command={word} uid={me} level=read-only"
        ));
    }
    // Nothing that any of them would have done was done.
    let info = ask(&path, "show info");
    for line in ["max_connections=10", "workers=2", "accepting=yes"] {
        assert!(info.contains(&line.to_string()), "no {line} in {info:?}");
    }
    client.send_line("after");
    client.expect("ACK: after\n");
    let mut late = server.connect();
    late.send_line("served");
    late.expect("ACK: served\n");
    for done in [
        "setting changed",
        "connection killed",
        "acceptor paused",
        "requested on the admin console",
    ] {
        assert_eq!(server.count_log(done), 0, "{done}");
    }
    assert_eq!(
        server.count_log(&format!("admin console refused uid={me}")),
        0
    );
}

/// A user id in both lists has full rights.
#[test]
fn a_uid_in_both_lists_may_act() {
    let me = my_uid().to_string();
    let admins = format!("{SOMEONE_ELSE},{me}");
    let (mut server, path) = serve_with_console(
        "bothlists",
        &["--admin-uid", &admins, "--admin-read-uid", &me],
    );
    assert_eq!(ask(&path, "set max-connections 5"), ["OK"]);
    server.wait_log(&format!(
        "setting changed name=max-connections from=10000 to=5 by=uid:{me}"
    ));
    assert!(ask(&path, "show info").contains(&"max_connections=5".to_string()));
}

/// A user id in neither list is refused every command, even one that only
/// looks, as without `--admin-read-uid`.
#[test]
fn a_uid_in_neither_list_is_refused() {
    let me = my_uid().to_string();
    let (mut server, path) = serve_with_console(
        "neither",
        &["--admin-uid", SOMEONE_ELSE, "--admin-read-uid", "4242"],
    );
    assert_eq!(ask(&path, "show info"), ["ERR not allowed"]);
    assert_eq!(ask(&path, "stop"), ["ERR not allowed"]);
    server.wait_log(&format!("admin console refused uid={me}"));
    assert_eq!(server.count_log("level=read-only"), 0);
    let mut client = server.connect();
    client.send_line("alive");
    client.expect("ACK: alive\n");
}

/// A list that is not user ids, on the flag or in its variable, is refused
/// at the start and by `--check` with exit status 2 and one error line
/// naming where it came from; a good list passes `--check`.
#[test]
fn bad_read_uids_are_refused_at_the_start() {
    let refusals = [
        (
            &["--admin-read-uid", "abc"][..],
            &[][..],
            "error: invalid value 'abc' for '--admin-read-uid <LIST>': invalid digit found in string",
        ),
        (
            &["--admin-read-uid", "1,-2"],
            &[],
            "error: invalid value '-2' for '--admin-read-uid <LIST>': -2 is not in 0..=4294967295",
        ),
        (
            &[],
            &[("LINEPOOL_ADMIN_READ_UID", "4294967296")],
            "error: invalid value '4294967296' in LINEPOOL_ADMIN_READ_UID for '--admin-read-uid <LIST>': 4294967296 is not in 0..=4294967295",
        ),
    ];
    for (args, vars, line) in refusals {
        for text in refused_by_both(args, vars) {
            assert_eq!(text.lines().next(), Some(line), "{args:?} {vars:?}");
            assert_eq!(
                text.lines().filter(|l| l.starts_with("error:")).count(),
                1,
                "{text}"
            );
            assert!(!text.contains("Usage:"), "{text}");
        }
    }
    let (status, text) = run_bin_within(
        &["serve", "--port", "0", "--check", "--admin-read-uid", "1,2"],
        &[],
        b"",
    );
    assert_eq!(status.code(), Some(0), "{text}");
}
