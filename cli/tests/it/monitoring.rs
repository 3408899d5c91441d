//! The monitoring files in `dist/monitoring/`: every metric that the
//! alerting and recording rules, their tests and the Grafana dashboard
//! name is one a live server exports, and every alert has its summary,
//! description, runbook section and rule test. (That the rules load and
//! their tests pass is `promtool`'s part: scripts/monitoring-check.sh.)

use std::collections::BTreeSet;
use std::fs;

use crate::chat_contract::test_bus;
use crate::pki::{Pki, tls_server};
use crate::redis_server::Redis;
use crate::support::{scrape, scrape_until};

/// The folder of the monitoring files, in the repository's dist/.
const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../dist/monitoring");

/// The rule files and their tests.
const RULE_FILES: [&str; 3] = [
    "linepool-rules.yml",
    "linepool-alerts.yml",
    "tests/linepool-alerts-test.yml",
];

fn read(path: &str) -> String {
    let path = format!("{DIR}/{path}");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The `linepool_…` metric names in `text`. A name inside a recording
/// rule's `level:name:operation` is that rule's, not a metric the server
/// exports, so a name with a colon either side is left out.
fn metric_names(text: &str) -> BTreeSet<String> {
    let is_name = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("linepool_") {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| is_name(c) || c == ':') {
            continue;
        }
        let rest = &text[at..];
        let end = rest.find(|c: char| !is_name(c)).unwrap_or(rest.len());
        if rest[end..].starts_with(':') {
            continue;
        }
        names.insert(rest[..end].to_string());
    }
    names
}

/// The lines of a YAML file that are not comments.
fn without_comments(yaml: &str) -> String {
    yaml.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every query of the dashboard: its panels' `expr` fields and its
/// template variables' queries.
fn dashboard_queries() -> Vec<String> {
    fn walk(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                            out.push(s.clone())
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("linepool-dashboard.json")).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    walk(&dashboard, &mut queries);
    queries
}

/// The sample names a scrape holds, labels left out: what a rule can
/// select (`linepool_messages_total`, `linepool_service_seconds_bucket`).
fn exported(samples: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    samples
        .into_iter()
        .map(|key| key.split('{').next().unwrap_or_default().to_string())
        .collect()
}

/// Every metric the rules, their tests and the dashboard use is one that a
/// server with TLS, the chat protocol and a chat bus exports, under that
/// exact sample name.
#[test]
fn the_rules_and_the_dashboard_use_only_exported_metrics() {
    let redis = Redis::start();
    let pki = Pki::new("monitoring");
    let server = tls_server(&pki, |c| {
        c.protocol = crate::support::chat_on(Some(test_bus(&redis.url(), "monitoring")));
    });
    scrape_until(server.metrics(), |m| {
        m.get("linepool_chat_bus_up") == Some(&1.0)
    });
    let served = exported(scrape(server.metrics()).into_keys());

    let mut used = BTreeSet::new();
    for file in RULE_FILES {
        let names = metric_names(&without_comments(&read(file)));
        assert!(!names.is_empty(), "{file} names no metric");
        used.extend(names.into_iter().map(|n| (n, file)));
    }
    let queries = dashboard_queries();
    assert!(
        queries.len() > 10,
        "{} queries in the dashboard",
        queries.len()
    );
    for query in &queries {
        used.extend(
            metric_names(query)
                .into_iter()
                .map(|n| (n, "linepool-dashboard.json")),
        );
    }
    let unknown: Vec<_> = used
        .iter()
        .filter(|(name, _)| !served.contains(name))
        .collect();
    assert!(
        unknown.is_empty(),
        "not exported by the server: {unknown:?}\nexported: {served:?}"
    );
    // The families the issue asks the alerts and the dashboard to watch.
    let names: BTreeSet<&str> = used.iter().map(|(n, _)| n.as_str()).collect();
    for family in [
        "linepool_connections_open",
        "linepool_max_connections",
        "linepool_connections_rejected_total",
        "linepool_queue_delay_seconds_bucket",
        "linepool_service_seconds_bucket",
        "linepool_workers_busy",
        "linepool_client_errors_total",
        "linepool_tls_certificate_expiry_timestamp_seconds",
        "linepool_chat_bus_up",
    ] {
        assert!(names.contains(family), "nothing watches {family}");
    }
}

/// Every alert has a summary, a description, a rule test, and a
/// `runbook_url` pointing at its own section of docs/runbook.md.
#[test]
fn every_alert_has_its_annotations_its_test_and_a_runbook_section() {
    let alerts = read("linepool-alerts.yml");
    let tests = read("tests/linepool-alerts-test.yml");
    let runbook = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/runbook.md"))
        .expect("docs/runbook.md");
    let blocks: Vec<&str> = alerts.split("- alert: ").skip(1).collect();
    assert!(blocks.len() >= 7, "{} alerts", blocks.len());
    for block in blocks {
        let name = block.lines().next().unwrap_or_default().trim();
        for field in ["summary:", "description:"] {
            assert!(block.contains(field), "{name} has no {field}");
        }
        let anchor = format!("runbook_url: docs/runbook.md#{}", name.to_lowercase());
        assert!(block.contains(&anchor), "{name}: no `{anchor}`");
        assert!(
            runbook.lines().any(|l| l == format!("## {name}")),
            "docs/runbook.md has no section `## {name}`"
        );
        assert!(
            tests.contains(&format!("alertname: {name}\n")),
            "no rule test for {name}"
        );
    }
}

/// The names are found where rules put them, and recording rules' own
/// names are not taken for metrics.
#[test]
fn metric_names_are_read_out_of_expressions() {
    let names = metric_names(
        "sum by (le) (rate(linepool_service_seconds_bucket{job=\"linepool\"}[5m])) \
         / instance:linepool_messages:rate5m > linepool_max_connections \
         or linepool_queue_delay:p99 or instance:linepool_busy",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "linepool_max_connections",
            "linepool_service_seconds_bucket"
        ]
    );
}
