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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus_client::registry::Registry;

    use super::*;
    use crate::bus::Latency;

    /// Given figures, written as a scrape writes them.
    #[derive(Debug)]
    struct Fixed(Figures);

    impl Collector for Fixed {
        fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
            encode(&mut encoder, &self.0)
        }
    }

    /// The bus's families as `/metrics` shows them: names, types, the
    /// drop reasons as labels, and the delivery times in the server's
    /// service-time buckets.
    #[test]
    fn the_bus_figures_are_written_as_the_documented_families() {
        let latency = Latency::default();
        latency.record(Duration::from_millis(3));
        latency.record(Duration::from_secs(2));
        let figures = Figures {
            up: true,
            published: 7,
            received: 5,
            dropped: [
                ("queue_full", 1),
                ("redis_down", 2),
                ("garbage", 3),
                ("version", 4),
                ("repeat", 0),
            ],
            missed: 6,
            reconnects: 8,
            members: 9,
            latency,
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed(figures)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        let expected = [
            "# HELP linepool_chat_bus_up 1 while the chat bus is subscribed and can publish, else 0.",
            "# TYPE linepool_chat_bus_up gauge",
            "linepool_chat_bus_up 1",
            "# HELP linepool_chat_bus_published Envelopes published on the chat bus.",
            "# TYPE linepool_chat_bus_published counter",
            "linepool_chat_bus_published_total 7",
            "# HELP linepool_chat_bus_received Envelopes of other instances received from the chat bus.",
            "# TYPE linepool_chat_bus_received counter",
            "linepool_chat_bus_received_total 5",
            "# HELP linepool_chat_bus_dropped Envelopes dropped, by reason.",
            "# TYPE linepool_chat_bus_dropped counter",
            "linepool_chat_bus_dropped_total{reason=\"queue_full\"} 1",
            "linepool_chat_bus_dropped_total{reason=\"redis_down\"} 2",
            "linepool_chat_bus_dropped_total{reason=\"garbage\"} 3",
            "linepool_chat_bus_dropped_total{reason=\"version\"} 4",
            "linepool_chat_bus_dropped_total{reason=\"repeat\"} 0",
            "# HELP linepool_chat_bus_missed Envelopes of other instances that never came (gaps in their sequence).",
            "# TYPE linepool_chat_bus_missed counter",
            "linepool_chat_bus_missed_total 6",
            "# HELP linepool_chat_bus_reconnects Subscriptions to the chat bus made again after one was lost.",
            "# TYPE linepool_chat_bus_reconnects counter",
            "linepool_chat_bus_reconnects_total 8",
            "# HELP linepool_chat_room_members Members of the chat room, on every instance, as this one sees it.",
            "# TYPE linepool_chat_room_members gauge",
            "linepool_chat_room_members 9",
            "# HELP linepool_chat_bus_delivery_seconds Time from a line's arrival on another instance to its delivery here.",
            "# TYPE linepool_chat_bus_delivery_seconds histogram",
            "linepool_chat_bus_delivery_seconds_sum 2.003",
            "linepool_chat_bus_delivery_seconds_count 2",
            "linepool_chat_bus_delivery_seconds_bucket{le=\"0.00001\"} 0",
            "linepool_chat_bus_delivery_seconds_bucket{le=\"0.000025\"} 0",
            "linepool_chat_bus_delivery_seconds_bucket{le=\"0.00005\"} 0",
            "linepool_chat_bus_delivery_seconds_bucket{le=\"0.0001\"} 0",
            "linepool_chat_bus_delivery_seconds_bucket{le=\"0.00025\"} 0",
            "linepool_chat_bus_delivery_seconds_bucket{le=\"0.0005\"} 0",
            "linepool_chat_bus_delivery_seconds_bucket{le=\"0.001\"} 0",
            "linepool_chat_bus_delivery_seconds_bucket{le=\"0.0025\"} 0",
            "linepool_chat_bus_delivery_seconds_bucket{le=\"0.005\"} 1",
            "linepool_chat_bus_delivery_seconds_bucket{le=\"0.01\"} 1",
            "linepool_chat_bus_delivery_seconds_bucket{le=\"0.025\"} 1",
            "linepool_chat_bus_delivery_seconds_bucket{le=\"0.05\"} 1",
            "linepool_chat_bus_delivery_seconds_bucket{le=\"0.1\"} 1",
            "linepool_chat_bus_delivery_seconds_bucket{le=\"0.25\"} 1",
            "linepool_chat_bus_delivery_seconds_bucket{le=\"1.0\"} 1",
            "linepool_chat_bus_delivery_seconds_bucket{le=\"+Inf\"} 2",
            "# EOF",
        ];
        assert_eq!(text, expected.map(|line| format!("{line}\n")).concat());
    }
}
