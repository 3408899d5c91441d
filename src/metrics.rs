//! The metrics endpoint (`--metrics ADDR:PORT`): `GET /metrics`, and
//! `GET /healthz`: `200 ok` while serving, `503 draining` while draining or
//! stopping. It runs on its own small thread and answers one request per
//! connection; no async runtime.
//!
//! `prometheus-client` encodes OpenMetrics, which a scraper that asks for
//! it (`Accept: application/openmetrics-text`, as Prometheus does) gets as
//! is. Anyone else (curl, `promtool check metrics`) gets the classic
//! Prometheus text format, in which a counter's `# HELP` and `# TYPE` name
//! carries the `_total` of its samples and there is no `# EOF`.
//!
//! The figures are read from the server's counters at scrape time, so
//! serving metrics costs the hot path nothing.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use log::warn;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::engine::Engine;
use crate::gate::Gate;
use crate::logfmt;
use crate::shutdown::{Health, Shutdown};
use crate::stats::exposition::{counter, gauge, gauge_with, histogram};
use crate::stats::{ClientError, ListenerCount, Stats};
use crate::tls::{Certs, Failure};

/// How long one scrape may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// Where the figures come from.
pub(crate) struct Sources {
    pub stats: Arc<Stats>,
    /// The ready queue and the pool, whose size the admin console may
    /// change.
    pub engine: Arc<Engine>,
    /// The connection limit, which the admin console may change.
    pub gate: Arc<Gate>,
    /// The protocol's name, the `protocol` label.
    pub protocol: String,
    pub shutdown: Shutdown,
    /// Connections accepted per listener.
    pub listeners: Vec<Arc<ListenerCount>>,
    /// The certificates, with TLS.
    pub tls: Option<Arc<Certs>>,
    /// Whether the acceptor accepts (not paused on the admin console).
    pub accepting: Box<dyn Fn() -> bool + Send + Sync>,
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sources")
            .field("workers", &self.engine.workers())
            .field("max_connections", &self.gate.capacity())
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// A registry that reads `sources`, then the protocol's own collector,
/// on every scrape.
pub(crate) fn registry(sources: Sources, protocol: Option<Box<dyn Collector>>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Figures(sources)));
    if let Some(collector) = protocol {
        registry.register_collector(collector);
    }
    registry
}

#[derive(Debug)]
struct Figures(Sources);

impl Collector for Figures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let s = &self.0;
        let t = s.stats.totals();
        let version = [("version", env!("CARGO_PKG_VERSION"))];
        gauge_with(
            &mut encoder,
            "linepool_build_info",
            "The running version.",
            &version,
            1,
        )?;
        counter(
            &mut encoder,
            "linepool_connections_accepted",
            "Connections accepted and served.",
            t.summary.connections,
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "linepool_listener_connections_accepted",
                "Connections accepted and served, by the listener they came in on.",
                None,
                MetricType::Counter,
            )?;
            for count in &s.listeners {
                let labels = [("listener", &*count.name)];
                ConstCounter::new(count.accepted()).encode(family.encode_family(&labels)?)?;
            }
        }
        gauge(
            &mut encoder,
            "linepool_connections_open",
            "Connections open now, served or idle.",
            t.open,
        )?;
        gauge(
            &mut encoder,
            "linepool_max_connections",
            "Connections the server holds open at most (the connection limit).",
            s.gate.capacity() as u64,
        )?;
        gauge(
            &mut encoder,
            "linepool_connections_ready",
            "Connections with work waiting for a worker.",
            s.engine.ready() as u64,
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "linepool_connections_rejected",
                "Connections turned away by the acceptor, by reason.",
                None,
                MetricType::Counter,
            )?;
            for (reason, n) in [
                ("busy", t.summary.rejected),
                ("per_ip", t.summary.rejected_per_ip),
            ] {
                ConstCounter::new(n).encode(family.encode_family(&[("reason", reason)])?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "linepool_messages",
                "Messages answered, by protocol.",
                None,
                MetricType::Counter,
            )?;
            let labels = [("protocol", s.protocol.as_str())];
            ConstCounter::new(t.summary.lines).encode(family.encode_family(&labels)?)?;
        }
        counter(
            &mut encoder,
            "linepool_received_bytes",
            "Bytes read from clients.",
            t.received,
        )?;
        counter(
            &mut encoder,
            "linepool_sent_bytes",
            "Bytes clients accepted.",
            t.sent,
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "linepool_idle_closes",
                "Connections closed by the idle rule, by direction.",
                None,
                MetricType::Counter,
            )?;
            for (direction, n) in [("read", t.idle_closes[0]), ("write", t.idle_closes[1])] {
                ConstCounter::new(n).encode(family.encode_family(&[("direction", direction)])?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "linepool_client_errors",
                "Connections closed for a client error, by kind.",
                None,
                MetricType::Counter,
            )?;
            for (kind, n) in ClientError::ALL.iter().zip(t.client_errors) {
                ConstCounter::new(n).encode(family.encode_family(&[("kind", kind.name())])?)?;
            }
        }
        if let Some(certs) = &s.tls {
            tls_figures(&mut encoder, certs, &t.tls_failures)?;
        }
        gauge(
            &mut encoder,
            "linepool_workers",
            "Worker threads.",
            s.engine.workers() as u64,
        )?;
        gauge(
            &mut encoder,
            "linepool_workers_busy",
            "Worker threads serving a connection now.",
            s.engine.busy_workers() as u64,
        )?;
        gauge(
            &mut encoder,
            "linepool_accepting",
            "1 while the acceptor accepts new clients, 0 while paused (admin console) or stopping.",
            u64::from((s.accepting)() && !s.shutdown.is_triggered()),
        )?;
        gauge(
            &mut encoder,
            "linepool_draining",
            "1 while the server drains or stops, else 0.",
            u64::from(s.shutdown.health() != Health::Serving),
        )?;
        histogram(
            &mut encoder,
            "linepool_queue_delay_seconds",
            "Time from the moment a connection has work ready to the moment a worker takes it.",
            &t.queue_delay,
        )?;
        histogram(
            &mut encoder,
            "linepool_service_seconds",
            "Time from the read that brought a message to the write that answered it.",
            &t.service,
        )
    }
}

/// The TLS figures: handshake failures by reason, reloads by result, and
/// when the certificate presented now expires.
fn tls_figures(
    encoder: &mut DescriptorEncoder,
    certs: &Certs,
    failures: &[u64],
) -> Result<(), fmt::Error> {
    {
        let mut family = encoder.encode_descriptor(
            "linepool_tls_handshake_failures",
            "TLS handshakes that failed, by reason.",
            None,
            MetricType::Counter,
        )?;
        for (failure, &n) in Failure::ALL.iter().zip(failures) {
            ConstCounter::new(n).encode(family.encode_family(&[("reason", failure.name())])?)?;
        }
    }
    {
        let (ok, failed) = certs.reloads();
        let mut family = encoder.encode_descriptor(
            "linepool_tls_reloads",
            "Certificate reloads (SIGHUP), by result.",
            None,
            MetricType::Counter,
        )?;
        for (result, n) in [("success", ok), ("failure", failed)] {
            ConstCounter::new(n).encode(family.encode_family(&[("result", result)])?)?;
        }
    }
    let metric = ConstGauge::new(certs.expiry());
    metric.encode(encoder.encode_descriptor(
        "linepool_tls_certificate_expiry_timestamp_seconds",
        "When the certificate presented now expires, in seconds since the epoch.",
        None,
        metric.metric_type(),
    )?)
}

/// Answers scrapes on `listener` until `until` fires (which shuts the
/// listener down, ending the wait in `accept`): through the whole stop, so
/// that `/healthz` says 503 while the server stops.
pub(crate) fn serve(
    listener: &TcpListener,
    registry: &Registry,
    shutdown: &Shutdown,
    until: &Shutdown,
) {
    for stream in listener.incoming() {
        if until.is_triggered() {
            return;
        }
        match stream {
            Ok(stream) => {
                let _ = answer(stream, registry, shutdown);
            }
            Err(e) => {
                warn!("metrics accept failed error={}", logfmt::error(&e));
                if until.wait_timeout(Duration::from_millis(100)) {
                    return;
                }
            }
        }
    }
}

/// Reads one request and answers it.
fn answer(mut stream: TcpStream, registry: &Registry, shutdown: &Shutdown) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = read_head(&mut stream)?;
    let request_line = head.lines().next().unwrap_or_default();
    let mut words = request_line.split(' ');
    let (method, target) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    let path = target.split('?').next().unwrap_or_default();
    let openmetrics = head.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("accept:") && line.contains("application/openmetrics-text")
    });
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => {
            let mut body = String::new();
            // A protocol's collector that panics fails this scrape, not
            // the endpoint.
            let encoded = panic::catch_unwind(AssertUnwindSafe(|| {
                prometheus_client::encoding::text::encode(&mut body, registry)
            }));
            match encoded {
                Ok(Ok(())) if openmetrics => ("200 OK", OPENMETRICS, body),
                Ok(Ok(())) => ("200 OK", PROMETHEUS_TEXT, to_prometheus_text(&body)),
                Ok(Err(_)) | Err(_) => {
                    ("500 Internal Server Error", TEXT, "cannot encode\n".into())
                }
            }
        }
        ("GET", "/healthz") => match shutdown.health() {
            Health::Serving => ("200 OK", TEXT, "ok\n".into()),
            Health::Draining | Health::Stopping => {
                ("503 Service Unavailable", TEXT, "draining\n".into())
            }
        },
        ("GET", _) => ("404 Not Found", TEXT, "not found\n".into()),
        _ => (
            "405 Method Not Allowed",
            TEXT,
            "method not allowed\n".into(),
        ),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

const TEXT: &str = "text/plain; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics text as the classic Prometheus text format: counter
/// families are named with their samples' `_total`, and the `# EOF` goes.
fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// The request head, up to the blank line (or [`MAX_HEAD`] bytes).
fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        match stream.read(&mut chunk)? {
            0 => break,
            n => head.extend_from_slice(&chunk[..n]),
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_take_their_total_in_the_text_format() {
        let openmetrics = "# HELP a_x Things.\n# TYPE a_x counter\na_x_total 3\n\
            # HELP a_g Level.\n# TYPE a_g gauge\na_g 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(openmetrics),
            "# HELP a_x_total Things.\n# TYPE a_x_total counter\na_x_total 3\n\
             # HELP a_g Level.\n# TYPE a_g gauge\na_g 1\n"
        );
    }
}
