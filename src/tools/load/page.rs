//! The HTML pages: one run (`--html`) and a comparison of runs
//! (`linepool load compare --html`). Each page is one self-contained,
//! well-formed file: its style inline, its charts inline SVG, no script,
//! font or image from anywhere else, so it renders with the network off.

use std::fmt::Write;

use super::chart::{self, Chart, Line, XAxis, escape, group};
use super::compare::{self, Run};
use super::counts::per_sec;
use super::hist;
use super::report::Report;
use super::series::Second;

/// Picks one figure of a second.
type Pick = fn(&Second) -> f64;

/// The page's own style, besides the charts'.
const PAGE_STYLE: &str = "\
body{background:var(--bg);color:var(--fg);font:14px/1.45 sans-serif;margin:24px auto;max-width:800px;padding:0 12px}\
h1{font-size:20px}h2{font-size:16px;margin-top:28px}\
table{border-collapse:collapse;margin:8px 0}\
th,td{border-bottom:1px solid var(--grid);padding:3px 10px;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}\
p.mode{border-left:4px solid var(--c1);padding:4px 10px}\
figure{margin:16px 0}";

/// What a closed-loop page says about its latency.
pub const CLOSED_LOOP_NOTE: &str = "Closed loop: each connection waited for its replies before \
sending more. Closed-loop latency hides coordinated omission: while the server stalls, the \
clients stop sending, so the requests that would have waited are never sent and only the one \
request caught in the stall looks slow. Run with -R for an open loop.";

/// What an open-loop page says about its latency.
pub const OPEN_LOOP_NOTE: &str = "Open loop: requests went out on a fixed schedule whatever the \
server did, and each request's latency counts from when it was due, so a stall shows as every \
request it kept waiting.";

fn head(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\
         <title>{}</title><style>{}{}</style></head><body><h1>{}</h1>",
        escape(title),
        chart::STYLE,
        PAGE_STYLE,
        escape(title)
    );
}

/// A two-column table of names and values.
fn facts(out: &mut String, rows: &[(&str, String)]) {
    out.push_str("<table>");
    for (name, value) in rows {
        let _ = write!(
            out,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(name),
            escape(value)
        );
    }
    out.push_str("</table>");
}

fn figure(out: &mut String, chart: &Chart) {
    let _ = write!(out, "<figure>{}</figure>", chart::svg(chart));
}

/// Each second's midpoint, in seconds from the start, with `pick` of it.
fn per_second(report: &Report, pick: impl Fn(&Second) -> f64) -> Vec<(f64, f64)> {
    report
        .series
        .seconds
        .iter()
        .map(|s| (s.start_secs + s.secs / 2.0, pick(s)))
        .collect()
}

/// The percentile spectrum of a report: (quantile, microseconds).
fn spectrum(report: &Report) -> Vec<(f64, f64)> {
    hist::spectrum(&report.histogram)
        .iter()
        .map(|t| (t.quantile, t.value_us))
        .collect()
}

/// The spectrum chart of `lines`.
fn spectrum_chart(lines: Vec<Line>) -> Chart {
    Chart {
        title: "Latency by percentile".to_string(),
        x_label: "percentile (number of nines)".to_string(),
        y_label: "latency (µs)".to_string(),
        x_axis: XAxis::Nines,
        y_log: true,
        lines,
    }
}

/// The replies-per-second chart of `lines`.
fn rate_chart(lines: Vec<Line>) -> Chart {
    Chart {
        title: "Replies per second".to_string(),
        x_label: "time since the start (s)".to_string(),
        y_label: "replies/s".to_string(),
        x_axis: XAxis::Linear,
        y_log: false,
        lines,
    }
}

/// The page of one run.
pub fn run_page(report: &Report) -> String {
    let s = &report.scenario;
    let mut out = String::new();
    head(&mut out, &format!("linepool load against {}", s.addr));
    let note = if report.closed_loop {
        CLOSED_LOOP_NOTE
    } else {
        OPEN_LOOP_NOTE
    };
    let _ = write!(out, "<p class=\"mode\">{}</p>", escape(note));
    let limit = match (s.requests, s.duration_secs, s.requests_per_connection) {
        (Some(n), _, _) => format!("{n} requests in all"),
        (_, Some(d), _) => format!("{d} s"),
        (_, _, Some(n)) => format!("{n} requests per connection"),
        _ => String::new(),
    };
    out.push_str("<h2>Settings</h2>");
    facts(
        &mut out,
        &[
            ("mode", compare::mode(report)),
            ("server", s.addr.clone()),
            ("protocol", s.protocol.clone()),
            ("connections", s.connections.to_string()),
            ("limit", limit),
            ("pipeline", s.pipeline.to_string()),
            ("payload", format!("{} B", s.payload)),
            ("connection per request", s.connect_per_request.to_string()),
            ("idle connections", s.idle.to_string()),
            ("load threads", s.threads.to_string()),
        ],
    );
    let l = &report.latency_us;
    out.push_str("<h2>Totals</h2>");
    facts(
        &mut out,
        &[
            ("replies", group(report.replies as f64, 0)),
            ("elapsed", format!("{:.2} s", report.elapsed_secs)),
            ("replies/s", group(report.replies_per_sec, 0)),
            (
                "latency µs",
                format!(
                    "p50 {:.1}, p90 {:.1}, p99 {:.1}, p99.9 {:.1}, max {:.1}, mean {:.1}",
                    l.p50, l.p90, l.p99, l.p999, l.max, l.mean
                ),
            ),
            (
                "connections",
                format!(
                    "{} established, {} idle held",
                    report.connections.established, report.connections.idle_held
                ),
            ),
            ("errors", report.errors.total.to_string()),
            ("interrupted", report.interrupted.to_string()),
        ],
    );
    out.push_str("<h2>Over time</h2>");
    figure(
        &mut out,
        &rate_chart(vec![Line {
            name: "replies/s".to_string(),
            points: per_second(report, |s| s.replies_per_sec),
        }]),
    );
    // The total, flat at zero in a clean run, then each kind that happened.
    let kinds: Vec<&str> = std::iter::once("total")
        .chain(
            report
                .errors
                .kinds()
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(name, _)| *name),
        )
        .collect();
    figure(
        &mut out,
        &Chart {
            title: "Errors per second, by kind".to_string(),
            x_label: "time since the start (s)".to_string(),
            y_label: "errors/s".to_string(),
            x_axis: XAxis::Linear,
            y_log: false,
            lines: kinds
                .iter()
                .map(|kind| Line {
                    name: kind.to_string(),
                    points: per_second(report, |s| {
                        let n = match *kind {
                            "total" => s.errors.total,
                            kind => s
                                .errors
                                .kinds()
                                .iter()
                                .find(|(k, _)| *k == kind)
                                .map_or(0, |k| k.1),
                        };
                        per_sec(n, s.secs)
                    }),
                })
                .collect(),
        },
    );
    let percentiles: [(&str, Pick); 4] = [
        ("p50", |s| s.latency_us.p50),
        ("p90", |s| s.latency_us.p90),
        ("p99", |s| s.latency_us.p99),
        ("max", |s| s.latency_us.max),
    ];
    figure(
        &mut out,
        &Chart {
            title: "Latency per second".to_string(),
            x_label: "time since the start (s)".to_string(),
            y_label: "latency (µs)".to_string(),
            x_axis: XAxis::Linear,
            y_log: true,
            lines: percentiles
                .iter()
                .map(|(name, pick)| Line {
                    name: name.to_string(),
                    points: per_second(report, pick),
                })
                .collect(),
        },
    );
    out.push_str("<h2>Latency distribution</h2>");
    figure(
        &mut out,
        &spectrum_chart(vec![Line {
            name: "latency".to_string(),
            points: spectrum(report),
        }]),
    );
    out.push_str("<h2>Errors by kind</h2>");
    let errors: Vec<(&str, String)> = report
        .errors
        .kinds()
        .iter()
        .map(|(kind, n)| (*kind, n.to_string()))
        .collect();
    facts(&mut out, &errors);
    out.push_str("</body></html>\n");
    out
}

/// The page comparing `runs`, under `title` if given: the table, the
/// spectra overlaid and the replies per second overlaid.
pub fn compare_page(runs: &[Run], title: Option<&str>) -> String {
    let mut out = String::new();
    head(&mut out, title.unwrap_or("linepool load: runs compared"));
    if let Some(first) = runs.first() {
        let _ = write!(
            out,
            "<p>Ratios in brackets are to the first run, {}.</p>",
            escape(&first.name)
        );
    }
    if runs.iter().any(|r| r.report.closed_loop) {
        let _ = write!(out, "<p class=\"mode\">{}</p>", escape(CLOSED_LOOP_NOTE));
    }
    out.push_str("<table><tr>");
    for name in compare::HEADER {
        let _ = write!(out, "<th>{}</th>", escape(name));
    }
    out.push_str("</tr>");
    for row in compare::rows(runs) {
        out.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let class = if i >= 2 { " class=\"n\"" } else { "" };
            let _ = write!(out, "<td{class}>{}</td>", escape(cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    figure(&mut out, &spectra(runs));
    figure(
        &mut out,
        &rate_chart(
            runs.iter()
                .map(|run| Line {
                    name: run.name.clone(),
                    points: per_second(&run.report, |s| s.replies_per_sec),
                })
                .collect(),
        ),
    );
    out.push_str("</body></html>\n");
    out
}

/// The runs' percentile spectra overlaid.
pub fn spectra(runs: &[Run]) -> Chart {
    spectrum_chart(
        runs.iter()
            .map(|run| Line {
                name: run.name.clone(),
                points: spectrum(&run.report),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::load::report::samples;

    /// The `data-points` of every polyline named `name`, chart by chart.
    fn lines_named(doc: &roxmltree::Document, name: &str) -> Vec<usize> {
        doc.descendants()
            .filter(|n| n.has_tag_name("polyline") && n.attribute("data-series") == Some(name))
            .map(|n| {
                let points = n.attribute("points").unwrap_or_default();
                let count = points.split(' ').filter(|p| !p.is_empty()).count();
                assert_eq!(n.attribute("data-points"), Some(count.to_string().as_str()));
                count
            })
            .collect()
    }

    /// Parses a page strictly, as XML; its one DTD is `<!DOCTYPE html>`.
    fn parse(page: &str) -> roxmltree::Document<'_> {
        assert!(page.starts_with("<!DOCTYPE html>\n<html"));
        let options = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..roxmltree::ParsingOptions::default()
        };
        roxmltree::Document::parse_with_options(page, options).expect("well-formed")
    }

    /// Text that may not be in a page: any reference to elsewhere.
    fn assert_self_contained(page: &str) {
        assert!(!page.contains("http"), "a page names http");
        assert!(!page.contains("//"), "a page holds a // reference");
        for tag in ["<script", "<link", "<img", "<iframe", "@import", "url("] {
            assert!(!page.contains(tag), "a page holds {tag}");
        }
    }

    /// A run's page is well-formed, refers to nothing outside itself,
    /// says it was closed-loop and what that hides, and holds the series
    /// it claims: replies per second and each percentile for every
    /// second, errors by kind, and the whole spectrum.
    #[test]
    fn a_run_page_holds_its_series() {
        let report = samples::report(3, None);
        let page = run_page(&report);
        assert_self_contained(&page);
        let doc = parse(&page);
        assert_eq!(doc.root_element().tag_name().name(), "html");
        assert!(page.contains("Closed loop"));
        assert!(page.contains("hides coordinated omission"));
        assert_eq!(lines_named(&doc, "replies/s"), [3]);
        for p in ["p50", "p90", "p99", "max"] {
            assert_eq!(lines_named(&doc, p), [3], "{p}");
        }
        assert_eq!(lines_named(&doc, "reset"), [3]);
        assert_eq!(lines_named(&doc, "total"), [3]);
        assert!(lines_named(&doc, "refused").is_empty());
        let ticks = hist::spectrum(&report.histogram).len();
        assert!(ticks > 10);
        assert_eq!(lines_named(&doc, "latency"), [ticks]);
        // The first second's rate: 202 replies in one second.
        let rate = doc
            .descendants()
            .find(|n| n.attribute("data-series") == Some("replies/s"))
            .and_then(|n| n.attribute("points"))
            .expect("rate line");
        assert_eq!(rate.split(' ').count(), 3);
        let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
        for label in [
            "replies/s",
            "latency (µs)",
            "time since the start (s)",
            "99%",
        ] {
            assert!(texts.contains(&label), "{label} missing");
        }
        assert_eq!(
            doc.descendants().filter(|n| n.has_tag_name("svg")).count(),
            4
        );
    }

    /// An open-loop page says so, and not the closed-loop warning.
    #[test]
    fn an_open_loop_page_says_so() {
        let page = run_page(&samples::report(2, Some(400.0)));
        assert!(page.contains("Open loop"));
        assert!(!page.contains("coordinated omission"));
        assert!(page.contains("open loop, 400/s"));
    }

    /// The comparison page overlays one spectrum and one rate line per
    /// run, and tabulates each run with its ratios to the first.
    #[test]
    fn a_comparison_page_overlays_the_runs() {
        let runs = vec![
            Run {
                name: "a.json".to_string(),
                report: samples::report(2, None),
            },
            Run {
                name: "b.json".to_string(),
                report: samples::report(4, None),
            },
        ];
        let page = compare_page(&runs, None);
        assert_self_contained(&page);
        let doc = parse(&page);
        assert_eq!(lines_named(&doc, "a.json").len(), 2);
        assert_eq!(lines_named(&doc, "b.json")[1], 4);
        let rows = doc.descendants().filter(|n| n.has_tag_name("tr")).count();
        assert_eq!(rows, 3);
        assert!(page.contains("(1.00×)"));
    }
}
