//! The chat bus's metric families (`linepool_chat_*`), read from the bus
//! on every scrape: the protocol's collector, which the server adds to
//! `/metrics`.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::bus::{Bus, Figures};
/// Reads the bus at scrape time.
pub(super) struct BusMetrics(pub(super) Arc<Bus>);

impl fmt::Debug for BusMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BusMetrics")
    }
}

impl Collector for BusMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        encode(&mut encoder, &self.0.figures())
    }
}

/// The bus's figures, as metric families.
fn encode(encoder: &mut DescriptorEncoder, f: &Figures) -> fmt::Result {
    family(
        encoder,
        "linepool_chat_bus_up",
        "1 while the chat bus is subscribed and can publish, else 0.",
        &ConstGauge::new(i64::from(f.up)),
    )?;
    family(
        encoder,
        "linepool_chat_bus_published",
        "Envelopes published on the chat bus.",
        &ConstCounter::new(f.published),
    )?;
    family(
        encoder,
        "linepool_chat_bus_received",
        "Envelopes of other instances received from the chat bus.",
        &ConstCounter::new(f.received),
    )?;
    {
        let mut family = encoder.encode_descriptor(
            "linepool_chat_bus_dropped",
            "Envelopes dropped, by reason.",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in f.dropped {
            ConstCounter::new(n).encode(family.encode_family(&[("reason", reason)])?)?;
        }
    }
    family(
        encoder,
        "linepool_chat_bus_missed",
        "Envelopes of other instances that never came (gaps in their sequence).",
        &ConstCounter::new(f.missed),
    )?;
    family(
        encoder,
        "linepool_chat_bus_reconnects",
        "Subscriptions to the chat bus made again after one was lost.",
        &ConstCounter::new(f.reconnects),
    )?;
    family(
        encoder,
        "linepool_chat_room_members",
        "Members of the chat room, on every instance, as this one sees it.",
        // Saturating: a count never near `i64::MAX`.
        &ConstGauge::new(i64::try_from(f.members).unwrap_or(i64::MAX)),
    )?;
    family(
        encoder,
        "linepool_chat_bus_delivery_seconds",
        "Time from a line's arrival on another instance to its delivery here.",
        f.latency.histogram(),
    )
}

/// A family of one unlabelled metric.
fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> fmt::Result {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}
