//! The chat bus when things go wrong: Redis away at the start, restarted,
//! subscriptions killed, garbage on the channel, an instance killed or
//! stopped, another room on the same Redis.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::chat_contract::{Room, ann_and_bob, instance};
use crate::redis_server::{Redis, Silencer, free_port};
use crate::support::{BinServer, Client, TestServer, get, run_bin, scrape_until};

/// Joins `name` on `server`'s instance, checking the prompt.
fn join(client: Client, name: &str) -> Client {
    let mut client = client;
    client.expect("Enter your name:\n");
    client.send_line(name);
    client
}

/// The binary as a chat instance on the bus at `url`, with the tests'
/// short timings and metrics.
fn chat_binary(url: &str) -> BinServer {
    chat_binary_beating(url, "0.1")
}

/// The binary as a chat instance on the bus at `url`, with a heartbeat
/// every `heartbeat` seconds, the tests' short back-off and metrics.
fn chat_binary_beating(url: &str, heartbeat: &str) -> BinServer {
    BinServer::start(&[
        "--protocol",
        "chat",
        "--chat-bus",
        url,
        "--chat-heartbeat",
        heartbeat,
        "--chat-backoff-max",
        "0.2",
        "--metrics",
        "127.0.0.1:0",
        "--stats-interval",
        "0.2",
    ])
}

/// An instance on the bus at `url` that sends a heartbeat only every
/// 10 s (its name claims live 100 s), once subscribed: what it does at
/// once is not the heartbeat's doing.
fn slow_instance(url: &str) -> TestServer {
    let server = TestServer::with_metrics(|c| {
        c.protocol = crate::support::chat_on(Some(linepool_chat::ChatBus {
            heartbeat: Duration::from_secs(10),
            ..crate::chat_contract::test_bus(url, "lobby")
        }));
    });
    scrape_until(server.metrics(), |m| {
        m.get("linepool_chat_bus_up") == Some(&1.0)
    });
    server
}

/// ann joins on `a`, then bob on `b`, each told of the other.
fn ann_on_a_bob_on_b(a: &TestServer, b: &TestServer) -> (Client, Client) {
    let mut ann = join(a.connect(), "ann");
    ann.expect("Welcome ann! 1 online.\n");
    members(b.metrics(), 1.0);
    let mut bob = join(b.connect(), "bob");
    bob.expect("Welcome bob! 2 online.\n");
    ann.expect("* bob joined\n");
    (ann, bob)
}

/// Asserts that `started` was less than `limit` ago.
fn within(started: Instant, limit: Duration) {
    let took = started.elapsed();
    assert!(took < limit, "took {took:?}, more than {limit:?}");
}

/// Waits until the instance whose metrics are at `metrics` sees `n`
/// members in the room.
fn members(metrics: SocketAddr, n: f64) {
    let samples = scrape_until(metrics, |m| m.get("linepool_chat_room_members") == Some(&n));
    assert_eq!(samples["linepool_chat_room_members"], n);
}

/// Redis away at the start: each instance serves its own room, `/healthz`
/// says 200, heartbeats for the others are dropped and counted; once
/// Redis is there the instances make one room (and a line said shortly
/// before may come late).
#[test]
fn redis_absent_at_start_then_present() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let a = instance(&url, "lobby");
    let b = instance(&url, "lobby");
    let mut ann = join(a.connect(), "ann");
    ann.expect("Welcome ann! 1 online.\n");
    let mut cid = join(a.connect(), "cid");
    cid.expect("Welcome cid! 2 online.\n");
    ann.expect("* cid joined\n");
    let mut bob = join(b.connect(), "bob");
    bob.expect("Welcome bob! 1 online.\n");
    ann.send_line("alone?");
    cid.expect("ann: alone?\n");
    assert_eq!(
        get(a.metrics(), "/healthz"),
        ("HTTP/1.1 200 OK".into(), "ok\n".into())
    );
    let samples = scrape_until(a.metrics(), |m| {
        m.get("linepool_chat_bus_dropped_total{reason=\"redis_down\"}") >= Some(&3.0)
    });
    assert_eq!(samples["linepool_chat_bus_up"], 0.0);

    let started = Instant::now();
    let _redis = Redis::on(port);
    bob.expect("* ann joined\n");
    bob.expect("* cid joined\n");
    ann.expect("* bob joined\n");
    cid.expect("* bob joined\n");
    ann.send_line("together");
    // Said before Redis was there, perhaps after it could have been.
    expect_perhaps_after(&mut bob, "ann: alone?\n", "ann: together\n");
    cid.expect("ann: together\n");
    within(started, Duration::from_secs(5));
}

/// Redis away at the start is one warning, however long it stays away;
/// the stats line and the stop summary say the bus is down.
#[test]
fn redis_absent_at_start_warns_once() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let mut server = chat_binary(&url);
    server.wait_log("chat bus cannot reach redis, serving the local room until it can");
    server.wait_until(|seen| {
        seen.iter()
            .filter(|l| l.contains("chat bus still away"))
            .count()
            >= 5
    });
    assert_eq!(server.count_log("[WARN]"), 1, "{:#?}", server.seen);
    let mut ann = join(server.connect(), "ann");
    ann.expect("Welcome ann! 1 online.\n");
    ann.send_line("anyone?");
    let stats = server.wait_log("] stats lines=");
    assert!(stats.contains(" bus_up=0 bus_published=0 "), "{stats}");
    server.wait_until(|seen| {
        seen.iter()
            .any(|l| l.contains("] stats lines=2 ") && l.contains(" room_members=1"))
    });
    server.signal("TERM");
    let stopped = server.wait_log("] stopped connections=");
    assert!(
        stopped.contains(" bus_up=0 bus_published=0 bus_received=0 bus_dropped="),
        "{stopped}"
    );
    assert!(
        stopped.ends_with(" bus_missed=0 bus_reconnects=0 room_members=0"),
        "{stopped}"
    );
}

/// Redis restarted mid-run: local chat goes on; the other instance's
/// members are announced as left while it cannot be heard, and as joined
/// again once Redis is back, and lines cross again within 5 s. A line
/// said shortly before Redis came back may come late, after the joins.
#[test]
fn redis_restarted() {
    let mut room = Room::bus(2);
    let (mut ann, mut bob) = ann_and_bob(&room);
    let mut cid = room.join(0, "cid");
    cid.expect("Welcome cid! 3 online.\n");
    bob.expect("* cid joined\n");
    ann.expect("* cid joined\n");

    let redis = room.redis.as_mut().expect("redis");
    redis.down();
    bob.expect("* ann left\n");
    bob.expect("* cid left\n");
    ann.expect("* bob left\n");
    cid.expect("* bob left\n");
    ann.send_line("still here");
    cid.expect("ann: still here\n");

    let started = Instant::now();
    redis.up();
    bob.expect("* ann joined\n");
    bob.expect("* cid joined\n");
    ann.expect("* bob joined\n");
    cid.expect("* bob joined\n");
    ann.send_line("back");
    expect_perhaps_after(&mut bob, "ann: still here\n", "ann: back\n");
    cid.expect("ann: back\n");
    within(started, Duration::from_secs(5));
    room.wait_metric(0, "linepool_chat_bus_reconnects_total", 1.0);
}

/// A line said the moment Redis is back reaches the other instance,
/// however the two instances' back-offs fall: it is held until every
/// instance that was in the room hears it again.
#[test]
fn a_line_said_as_soon_as_redis_is_back_is_delivered() {
    let mut redis = Redis::start();
    // A long back-off: Redis is back well before either instance knows.
    let patient = |url: &str| {
        TestServer::with_metrics(|c| {
            c.protocol = crate::support::chat_on(Some(linepool_chat::ChatBus {
                backoff_max: Duration::from_secs(2),
                ..crate::chat_contract::test_bus(url, "lobby")
            }));
        })
    };
    let (a, b) = (patient(&redis.url()), patient(&redis.url()));
    for server in [&a, &b] {
        scrape_until(server.metrics(), |m| {
            m.get("linepool_chat_bus_up") == Some(&1.0)
        });
    }
    let (mut ann, mut bob) = ann_on_a_bob_on_b(&a, &b);
    redis.down();
    bob.expect("* ann left\n");
    ann.expect("* bob left\n");
    // Three seconds of heartbeats lost: the back-off is at its cap.
    for server in [&a, &b] {
        scrape_until(server.metrics(), |m| {
            m.get("linepool_chat_bus_dropped_total{reason=\"redis_down\"}") >= Some(&30.0)
        });
    }
    redis.up();
    ann.send_line("first words after");
    expect_through_rejoin(&mut bob, "ann", "ann: first words after\n");
    bob.send_line("heard you");
    expect_through_rejoin(&mut ann, "bob", "bob: heard you\n");
}

/// A Redis outage of about 1, 3 and 5 s, each shorter than the 10 s hold
/// window, loses nothing: what is said at its start, in its middle and at
/// its end, on either instance, reaches the other once, in order, once
/// Redis is back; both are back on Redis within moments of it (with the
/// default heartbeat and back-off).
#[test]
fn a_short_redis_outage_loses_no_line() {
    let mut redis = Redis::start();
    let on_defaults = || {
        TestServer::with_metrics(|c| {
            c.protocol = crate::support::chat_on(Some(linepool_chat::ChatBus::new(redis.url())));
        })
    };
    let (a, b) = (on_defaults(), on_defaults());
    for server in [&a, &b] {
        scrape_until(server.metrics(), |m| {
            m.get("linepool_chat_bus_up") == Some(&1.0)
        });
    }
    let (mut ann, mut bob) = ann_on_a_bob_on_b(&a, &b);
    for outage in [1000, 3000, 5000] {
        let half = Duration::from_millis(outage / 2);
        let said: Vec<String> = ["start", "middle", "end", "back"]
            .iter()
            .map(|moment| format!("{moment} of a {outage} ms outage"))
            .collect();
        let both = |ann: &mut Client, bob: &mut Client, line: &str| {
            ann.send_line(line);
            bob.send_line(line);
        };
        redis.down();
        both(&mut ann, &mut bob, &said[0]);
        std::thread::sleep(half);
        both(&mut ann, &mut bob, &said[1]);
        std::thread::sleep(half);
        both(&mut ann, &mut bob, &said[2]);
        redis.up();
        let back = Instant::now();
        both(&mut ann, &mut bob, &said[3]);
        // Both are back on Redis a moment after it is: the back-off's cap
        // is a quarter of a second.
        for server in [&a, &b] {
            let samples = scrape_until(server.metrics(), |m| {
                m.get("linepool_chat_bus_up") == Some(&1.0)
            });
            assert_eq!(samples["linepool_chat_bus_up"], 1.0);
        }
        within(back, Duration::from_millis(1500));
        for line in &said {
            expect_through_rejoin(&mut bob, "ann", &format!("ann: {line}\n"));
            expect_through_rejoin(&mut ann, "bob", &format!("bob: {line}\n"));
        }
    }
    // Nothing comes twice after the last outage's lines either.
    ann.send_line("last");
    bob.send_line("last");
    expect_through_rejoin(&mut bob, "ann", "ann: last\n");
    expect_through_rejoin(&mut ann, "bob", "bob: last\n");
}

/// `CLIENT KILL TYPE pubsub` ends every subscription: each instance
/// subscribes again, and lines cross again.
#[test]
fn killed_subscriptions_come_back() {
    let room = Room::bus(2);
    let (mut ann, mut bob) = ann_and_bob(&room);
    let redis = room.redis.as_ref().expect("redis");
    let killed = redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_eq!(killed, ":2");
    room.wait_metric(0, "linepool_chat_bus_reconnects_total", 1.0);
    room.wait_metric(1, "linepool_chat_bus_reconnects_total", 1.0);
    room.wait_metric(0, "linepool_chat_bus_up", 1.0);
    room.wait_metric(1, "linepool_chat_bus_up", 1.0);
    ann.send_line("after the kill");
    // Had the gap outlasted the peers' patience, ann would have been
    // announced as left and joined again first.
    expect_through_rejoin(&mut bob, "ann", "ann: after the kill\n");
}

/// Reads `expected` from `member`, perhaps after `late`: a line said
/// shortly before Redis was back, held and delivered once it was.
fn expect_perhaps_after(member: &mut Client, late: &str, expected: &str) {
    let mut line = member.line();
    if line == late {
        line = member.line();
    }
    assert_eq!(line, expected);
}

/// Reads `member`'s lines until `expected`; before it, only `who` leaving
/// and joining again may come.
fn expect_through_rejoin(member: &mut Client, who: &str, expected: &str) {
    loop {
        let line = member.line();
        if line == expected {
            return;
        }
        let (left, joined) = (format!("* {who} left\n"), format!("* {who} joined\n"));
        assert!(line == left || line == joined, "{line:?}");
    }
}

/// Payloads on the room's channel that are not envelopes of this version,
/// or that would write lines of their own, are dropped and counted.
#[test]
fn garbage_on_the_channel_is_dropped_and_counted() {
    let room = Room::bus(2);
    let (mut ann, mut bob) = ann_and_bob(&room);
    let redis = room.redis.as_ref().expect("redis");
    let channel = "linepool:chat:lobby";
    for payload in [
        "not an envelope",
        "{\"v\":1}",
        "{\"v\":1,\"id\":\"x\",\"seq\":1,\"at\":0,\"kind\":\"said\",\"name\":\"eve\",\"line\":\"a\\nmallory: b\"}",
        "\u{1}\u{2}",
    ] {
        assert_eq!(redis.command(&["PUBLISH", channel, payload]), ":2");
    }
    assert_eq!(
        redis.command(&[
            "PUBLISH",
            channel,
            "{\"v\":9,\"id\":\"x\",\"seq\":1,\"at\":0,\"kind\":\"bye\"}"
        ]),
        ":2"
    );
    ann.send_line("still fine");
    bob.expect("ann: still fine\n");
    for i in 0..2 {
        // The wrong version came last: once it is counted, so is the rest.
        // (ann's instance is not waited for by bob's line.)
        let samples = scrape_until(room.servers[i].metrics(), |m| {
            m.get("linepool_chat_bus_dropped_total{reason=\"version\"}") == Some(&1.0)
        });
        assert_eq!(
            samples["linepool_chat_bus_dropped_total{reason=\"garbage\"}"],
            4.0
        );
        assert_eq!(
            samples["linepool_chat_bus_dropped_total{reason=\"version\"}"],
            1.0
        );
    }
}

/// Two binaries on the bus at `url`, with a heartbeat every `heartbeat`
/// seconds, each subscribed: one to be killed, with `names` joined on it
/// (and known to the other), and one to watch.
fn doomed_and_other(
    url: &str,
    heartbeat: &str,
    names: &[&str],
) -> (BinServer, BinServer, Vec<Client>) {
    let mut doomed = chat_binary_beating(url, heartbeat);
    let mut other = chat_binary_beating(url, heartbeat);
    doomed.wait_log("chat bus subscribed");
    other.wait_log("chat bus subscribed");
    let mut joined = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let mut member = join(doomed.connect(), name);
        member.expect(&format!("Welcome {name}! {} online.\n", i + 1));
        joined.push(member);
    }
    members(other.metrics(), names.len() as f64);
    (doomed, other, joined)
}

/// An instance killed with SIGKILL: its members are announced as left on
/// the others within 15 s (here, with 0.1 s heartbeats, within 0.5 s or
/// so), and the others lose nothing.
#[test]
fn a_killed_instance_members_leave() {
    let redis = Redis::start();
    let (doomed, other, mut joined) = doomed_and_other(&redis.url(), "0.1", &["ann"]);
    let mut ann = joined.remove(0);
    let mut bob = join(other.connect(), "bob");
    bob.expect("Welcome bob! 2 online.\n");
    ann.expect("* bob joined\n");
    let mut cid = join(other.connect(), "cid");
    cid.expect("Welcome cid! 3 online.\n");
    bob.expect("* cid joined\n");
    let killed = Instant::now();
    doomed.signal("KILL");
    bob.expect("* ann left\n");
    cid.expect("* ann left\n");
    within(killed, Duration::from_secs(15));
    bob.send_line("who is left?");
    cid.expect("bob: who is left?\n");
}

/// Once the room says a killed instance's members left, their names are
/// free at once, not only when their claims expire; a name another
/// instance claimed since stays taken.
#[test]
fn a_killed_instance_names_are_free_once_it_is_given_up() {
    let redis = Redis::start();
    // Given up after 2.5 s of silence, claims that live 5 s: a name
    // freed only by its time to live would still be taken.
    let (doomed, other, _ann_and_zed) = doomed_and_other(&redis.url(), "0.5", &["ann", "zed"]);
    let mut bob = join(other.connect(), "bob");
    bob.expect("Welcome bob! 3 online.\n");
    doomed.signal("KILL");
    // Another instance took zed's name since (as one may once a claim
    // has expired): that claim is not the dead instance's to give up.
    let key = "linepool:chat:lobby:name:zed";
    assert_eq!(redis.command(&["SET", key, "0123456789abcdef"]), "+OK");
    bob.expect("* ann left\n");
    bob.expect("* zed left\n");
    let mut newcomer = join(other.connect(), "ann");
    newcomer.expect("Welcome ann! 2 online.\n");
    let mut late = join(other.connect(), "zed");
    late.expect("Name zed is taken; you are guest-1\n");
    late.expect("Welcome guest-1! 3 online.\n");
    assert_eq!(redis.command(&["EXISTS", key]), ":1");
}

/// An instance that stops announces its members as left at once, long
/// before its peers would have given it up.
#[test]
fn a_stopping_instance_members_leave_at_once() {
    let redis = Redis::start();
    let a = slow_instance(&redis.url());
    let b = slow_instance(&redis.url());
    let (_ann, mut bob) = ann_on_a_bob_on_b(&a, &b);
    let stopped = Instant::now();
    a.stop();
    bob.expect("* ann left\n");
    within(stopped, Duration::from_secs(2));
}

/// Another room on the same Redis is another room: nothing crosses.
#[test]
fn another_room_on_the_same_redis_does_not_mix() {
    let redis = Redis::start();
    let lobby = [
        instance(&redis.url(), "lobby"),
        instance(&redis.url(), "lobby"),
    ];
    let other = instance(&redis.url(), "other");
    for server in lobby.iter().chain([&other]) {
        scrape_until(server.metrics(), |m| {
            m.get("linepool_chat_bus_up") == Some(&1.0)
        });
    }
    let mut ann = join(lobby[0].connect(), "ann");
    ann.expect("Welcome ann! 1 online.\n");
    let mut zed = join(other.connect(), "ann");
    zed.expect("Welcome ann! 1 online.\n");
    members(lobby[1].metrics(), 1.0);
    let mut bob = join(lobby[1].connect(), "bob");
    bob.expect("Welcome bob! 2 online.\n");
    ann.expect("* bob joined\n");
    ann.send_line("lobby only");
    bob.expect("ann: lobby only\n");
    let mut yan = join(other.connect(), "yan");
    yan.expect("Welcome yan! 2 online.\n");
    zed.expect("* yan joined\n");
    yan.send_line("other only");
    zed.expect("yan: other only\n");
    let samples = scrape_until(other.metrics(), |_| true);
    assert_eq!(samples["linepool_chat_bus_received_total"], 0.0);
}

/// A subscription that stays connected but brings nothing (a proxy
/// swallows what Redis sends it) is found out by the instance's own
/// heartbeat not coming back, and made again.
#[test]
fn a_silent_subscription_is_made_again() {
    let redis = Redis::start();
    let proxy = Silencer::to(redis.port);
    let a = instance(&proxy.url(), "lobby");
    let b = instance(&redis.url(), "lobby");
    for server in [&a, &b] {
        scrape_until(server.metrics(), |m| {
            m.get("linepool_chat_bus_up") == Some(&1.0)
        });
    }
    let (mut ann, mut bob) = ann_on_a_bob_on_b(&a, &b);
    assert_eq!(proxy.silence_subscriptions(), 1);
    let silenced = Instant::now();
    let samples = scrape_until(a.metrics(), |m| {
        m.get("linepool_chat_bus_reconnects_total") == Some(&1.0)
            && m.get("linepool_chat_bus_up") == Some(&1.0)
    });
    assert_eq!(samples["linepool_chat_bus_reconnects_total"], 1.0);
    within(silenced, Duration::from_secs(5));
    bob.send_line("can you hear me?");
    // While ann's instance heard nothing, bob may have been given up and
    // announced as joined again.
    expect_through_rejoin(&mut ann, "bob", "bob: can you hear me?\n");
}

/// A name claimed in Redis by another instance (one that admitted it at
/// the same instant, before the room could hear of it) is taken; a name
/// is given back when its member leaves.
#[test]
fn a_name_claimed_in_redis_is_taken_and_given_back_on_leaving() {
    let redis = Redis::start();
    let server = slow_instance(&redis.url());
    let key = |name: &str| format!("linepool:chat:lobby:name:{name}");
    assert_eq!(
        redis.command(&["SET", &key("ann"), "0123456789abcdef"]),
        "+OK"
    );
    let mut ann = join(server.connect(), "ann");
    ann.expect("Name ann is taken; you are guest-1\n");
    ann.expect("Welcome guest-1! 1 online.\n");
    let mut bob = join(server.connect(), "bob");
    bob.expect("Welcome bob! 2 online.\n");
    ann.expect("* bob joined\n");
    // bob's name is this instance's, for ten heartbeats unless renewed.
    let ttl = redis.command(&["PTTL", &key("bob")]);
    let ttl: u64 = ttl.trim_start_matches(':').parse().expect("a time to live");
    assert!(ttl > 90_000 && ttl <= 100_000, "{ttl}");
    drop(bob);
    ann.expect("* bob left\n");
    let until = Instant::now() + crate::support::DEADLINE;
    while redis.command(&["EXISTS", &key("bob")]) != ":0" {
        assert!(Instant::now() < until, "bob's name was not given back");
        std::thread::yield_now();
    }
}

/// A bus for another protocol, or a URL or room that cannot be used, is
/// refused at the start with one line and status 2.
#[test]
fn bad_bus_flags_are_refused() {
    for (args, says) in [
        (
            &["--chat-bus", "redis://127.0.0.1:6379"][..],
            "--chat-bus is used only with --protocol chat",
        ),
        (
            &["--protocol", "chat", "--chat-bus", "http://127.0.0.1:6379"],
            "expected redis://HOST:PORT[/DB]",
        ),
        (
            &[
                "--protocol",
                "chat",
                "--chat-bus",
                "redis://127.0.0.1:notaport",
            ],
            "not a Redis URL",
        ),
        (
            &[
                "--protocol",
                "chat",
                "--chat-bus",
                "redis://127.0.0.1",
                "--chat-room",
                "",
            ],
            "a room name is needed",
        ),
    ] {
        let mut all = vec!["serve", "--port", "0"];
        all.extend_from_slice(args);
        let (status, text) = run_bin(&all);
        assert_eq!(status.code(), Some(2), "{args:?}: {text}");
        assert!(text.contains(says), "{args:?}: {text}");
    }
}

/// `linepool load --protocol chat` spreads its members over the instances
/// of a room and finds every line delivered once to every other member.
#[test]
fn the_load_tool_checks_a_room_across_instances() {
    let room = Room::bus(2);
    let spread = format!("{},{}", room.servers[0].addr, room.servers[1].addr);
    let (status, text) = run_bin(&[
        "load",
        "--protocol",
        "chat",
        "-c",
        "6",
        "-R",
        "60",
        "-d",
        "1",
        "--spread",
        &spread,
    ]);
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(text.contains("6 members over 2 addresses"), "{text}");
    assert!(
        text.contains(" lost 0  duplicated 0  reordered 0  echoed 0"),
        "{text}"
    );
    let sent: u64 = text
        .split("sent ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("lines sent");
    assert!(sent >= 30, "{text}");
    assert!(
        text.contains(&format!("owed {}  delivered {}", sent * 5, sent * 5)),
        "{text}"
    );
}
