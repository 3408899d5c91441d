//! What the server does with a protocol's own threads, figures and
//! metrics (the seam's hooks beside sessions): its threads run until the
//! stop's last step and are joined; figures or a collector that panic cost
//! their line or scrape, never the stop or the endpoint.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use linepool::protocol::{Action, Link, Protocol, Session, Task};
use linepool::{Config, Server, Shutdown};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

/// Answers `ok`; its thread notes when it ends; its figures and its
/// collector panic.
#[derive(Default)]
struct Faulty {
    thread_ended: Arc<AtomicBool>,
}

impl Protocol for Faulty {
    fn name(&self) -> &str {
        "faulty"
    }

    fn open(&self, _link: Link) -> Box<dyn Session> {
        Box::new(AnswerOk)
    }

    fn threads(&self, until: &Shutdown) -> Vec<Task> {
        let (until, ended) = (until.clone(), self.thread_ended.clone());
        vec![Task::new("faulty-side", move || {
            until.wait();
            ended.store(true, Ordering::SeqCst);
        })]
    }

    fn figures(&self) -> String {
        panic!("figures of a faulty protocol")
    }

    fn metrics(&self) -> Option<Box<dyn Collector>> {
        Some(Box::new(Panicking))
    }
}

struct AnswerOk;

impl Session for AnswerOk {
    fn message(&mut self, _msg: &[u8], out: &mut Vec<u8>) -> Action {
        out.extend_from_slice(b"ok\n");
        Action::Continue
    }
}

#[derive(Debug)]
struct Panicking;

impl Collector for Panicking {
    fn encode(&self, _encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        panic!("a faulty collector")
    }
}

/// Every line logged, kept for the test to read.
struct Kept(Mutex<Vec<String>>);

impl log::Log for Kept {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        if let Ok(mut lines) = self.0.lock() {
            lines.push(record.args().to_string());
        }
    }

    fn flush(&self) {}
}

static LOG: Kept = Kept(Mutex::new(Vec::new()));

/// Whether a line logged so far starts with `start`.
fn logged(start: &str) -> bool {
    LOG.0
        .lock()
        .map(|lines| lines.iter().any(|l| l.starts_with(start)))
        .unwrap_or(false)
}

/// Waits (10 s at most) for a line starting with `start`.
fn wait_logged(start: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    while !logged(start) {
        assert!(Instant::now() < until, "nothing logged like {start}");
        std::thread::yield_now();
    }
}

/// The status line of `GET /metrics`.
fn scrape_status(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    answer.lines().next().unwrap_or_default().to_string()
}

/// A protocol's thread runs until the stop and is joined by it; its
/// collector's panic fails each scrape with 500 and the endpoint answers
/// on; its figures' panic leaves the stats line and the stop's summary.
#[test]
fn a_faulty_protocol_costs_its_figures_not_the_server() {
    log::set_logger(&LOG).expect("the only logger");
    log::set_max_level(log::LevelFilter::Info);
    let protocol = Arc::new(Faulty::default());
    let ended = protocol.thread_ended.clone();
    let mut config = Config::new("127.0.0.1", 0);
    config.workers = 1;
    config.metrics = Some("127.0.0.1:0".parse().expect("address"));
    config.stats_interval = Some(Duration::from_millis(20));
    let server = Server::bind(config, protocol).expect("bind");
    let metrics = server.metrics_addr().expect("metrics");
    let running = server.start().expect("start");
    let mut client = TcpStream::connect(running.local_addr()).expect("connect");
    client.write_all(b"hi\n").expect("send");
    let mut reply = [0u8; 3];
    client.read_exact(&mut reply).expect("reply");
    assert_eq!(&reply, b"ok\n");
    assert_eq!(scrape_status(metrics), "HTTP/1.1 500 Internal Server Error");
    assert_eq!(scrape_status(metrics), "HTTP/1.1 500 Internal Server Error");
    assert!(
        !ended.load(Ordering::SeqCst),
        "the thread ended before the stop"
    );
    // Two stats lines: the thread lived through its first.
    wait_logged("protocol figures panicked protocol=faulty");
    let stats_lines = || {
        LOG.0
            .lock()
            .map(|l| l.iter().filter(|l| l.starts_with("stats lines=")).count())
    };
    let until = Instant::now() + Duration::from_secs(10);
    while stats_lines().unwrap_or(0) < 2 {
        assert!(Instant::now() < until, "fewer than two stats lines");
        std::thread::yield_now();
    }
    drop(client);
    let summary = running.stop();
    assert_eq!(summary.connections, 1);
    assert!(
        ended.load(Ordering::SeqCst),
        "the stop did not join the thread"
    );
    assert!(logged("stopped connections=1 "), "no summary line");
}
