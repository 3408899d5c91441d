//! `set workers N` on the admin console: the pool resized while it serves,
//! every client answered through each change, `/metrics` and `show info`
//! following, bad values refused, and the stop joining every worker.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Instant;

use crate::acceptor::thread_names;
use crate::console::{ask, serve_with_console};
use crate::support::{BinServer, DEADLINE, scrape_until};

/// Clients kept busy while the pool is resized.
const CLIENTS: usize = 6;

/// Lines each client sends at once, before it reads their replies.
const BATCH: usize = 3;

/// Exchanges all clients together must make after a change before the
/// next one.
const PROGRESS: usize = 60;

/// Waits until the server has exactly `workers` threads named
/// `linepool-worker` (the threads of retired loops end, new ones name
/// themselves as they start). Fails after [`DEADLINE`].
fn wait_worker_threads(server: &BinServer, workers: usize) {
    let until = Instant::now() + DEADLINE;
    loop {
        let names = thread_names(server.pid);
        let count = names.iter().filter(|n| *n == "linepool-worker").count();
        if count == workers {
            return;
        }
        assert!(
            Instant::now() < until,
            "{count} worker threads, not {workers}: {names:?}"
        );
        thread::yield_now();
    }
}

/// Sets the pool to `to` workers and waits for the audit line saying it
/// was `from`.
fn set_workers(server: &mut BinServer, path: &Path, from: usize, to: usize) {
    assert_eq!(ask(path, &format!("set workers {to}")), ["OK"]);
    server.wait_log(&format!(
        "setting changed name=workers from={from} to={to} by=uid:"
    ));
}

/// Clients that exchange lines until told to stop, each checking every
/// reply byte for byte, and count their exchanges.
struct Busy {
    stop: Arc<AtomicBool>,
    exchanges: Arc<AtomicUsize>,
    clients: Vec<thread::JoinHandle<()>>,
}

impl Busy {
    fn start(server: &BinServer) -> Busy {
        let stop = Arc::new(AtomicBool::new(false));
        let exchanges = Arc::new(AtomicUsize::new(0));
        let clients = (0..CLIENTS)
            .map(|c| {
                let mut client = server.connect();
                let (stop, exchanges) = (stop.clone(), exchanges.clone());
                thread::spawn(move || {
                    let mut seq = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let lines: Vec<String> =
                            (seq..seq + BATCH).map(|n| format!("c{c}-{n}")).collect();
                        let sent: String = lines.iter().map(|l| format!("{l}\n")).collect();
                        client.send(sent);
                        let acks: String = lines.iter().map(|l| format!("ACK: {l}\n")).collect();
                        client.expect(&acks);
                        seq += BATCH;
                        exchanges.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        Busy {
            stop,
            exchanges,
            clients,
        }
    }

    /// Waits until the clients together make [`PROGRESS`] more exchanges.
    fn wait_progress(&self) {
        let from = self.exchanges.load(Ordering::SeqCst);
        let until = Instant::now() + DEADLINE;
        while self.exchanges.load(Ordering::SeqCst) < from + PROGRESS {
            assert!(Instant::now() < until, "the clients made no progress");
            thread::yield_now();
        }
    }

    /// Stops the clients; fails if any missed or garbled a reply.
    fn finish(self) {
        self.stop.store(true, Ordering::SeqCst);
        for client in self.clients {
            client.join().expect("a client missed a reply");
        }
    }
}

/// `set workers` 2 → 1 → 4 → 2 while clients are served: each change is
/// audited, `show info` and `/metrics` `linepool_workers` follow, and
/// every client gets every reply, in order, through all of them.
#[test]
fn set_workers_resizes_the_pool_while_clients_are_served() {
    let (mut server, path) =
        serve_with_console("workers", &["--workers", "2", "--metrics", "127.0.0.1:0"]);
    let metrics = server.metrics();
    let busy = Busy::start(&server);
    busy.wait_progress();
    let mut from = 2;
    for to in [1, 4, 2] {
        set_workers(&mut server, &path, from, to);
        assert!(
            ask(&path, "show info").contains(&format!("workers={to}")),
            "show info does not say workers={to}"
        );
        let samples = scrape_until(metrics, |s| s.get("linepool_workers") == Some(&(to as f64)));
        assert_eq!(samples.get("linepool_workers"), Some(&(to as f64)));
        busy.wait_progress();
        from = to;
    }
    busy.finish();
}

/// `set workers` takes what `--workers` takes: `0`, a word and no value
/// are refused with `ERR`, in the flag's words, and change nothing (the
/// next change starts from the size the server started with).
#[test]
fn set_workers_refuses_bad_values_and_changes_nothing() {
    let (mut server, path) = serve_with_console("workers-bad", &["--workers", "2"]);
    assert_eq!(
        ask(&path, "set workers 0"),
        ["ERR invalid value '0' for workers: must be at least 1"]
    );
    assert_eq!(
        ask(&path, "set workers x"),
        ["ERR invalid value 'x' for workers: 'x' is not a whole number"]
    );
    assert_eq!(
        ask(&path, "set workers"),
        ["ERR a value is required for workers but none was supplied"]
    );
    assert!(ask(&path, "show info").contains(&"workers=2".to_string()));
    let mut client = server.connect();
    client.send_line("still");
    client.expect("ACK: still\n");
    set_workers(&mut server, &path, 2, 3);
    assert_eq!(server.count_log("setting changed name=workers"), 1);
}

/// Grown and shrunk, the pool has exactly as many `linepool-worker`
/// threads as it was set to; the stop after the resizes joins every
/// worker and ends with the usual summary.
#[test]
fn the_stop_after_a_resize_joins_every_worker() {
    let (mut server, path) = serve_with_console("workers-stop", &["--workers", "1"]);
    wait_worker_threads(&server, 1);
    set_workers(&mut server, &path, 1, 3);
    wait_worker_threads(&server, 3);
    set_workers(&mut server, &path, 3, 2);
    wait_worker_threads(&server, 2);
    let mut client = server.connect();
    client.send_line("hello");
    client.expect("ACK: hello\n");
    assert_eq!(ask(&path, "stop"), ["OK"]);
    client.expect_closed();
    let exit = server.wait_exit_and_log(DEADLINE);
    assert!(exit.success(), "{exit:?}");
    server.wait_log("stopped connections=1 lines=1 rejected=0");
}
