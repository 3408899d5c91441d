//! The HTML pages: one run (`--html`) and a comparison of runs
//! (`linepool load compare --html`). Each page is one self-contained,
//! well-formed file: its style inline, its charts inline SVG, no script,
//! font or image from anywhere else, so it renders with the network off.

use std::fmt::Write;

use super::chart::{self, Chart, Line, Mark, XAxis, escape, group};
use super::compare::{self, Run};
use super::counts::per_sec;
use super::hist;
use super::report::Report;
use super::series::Second;

/// Picks one figure of a second.
type Pick = fn(&Second) -> f64;

/// The page's own style, besides the charts'. The page fills a wide
/// window up to a width past which lines of text grow hard to follow;
/// charts sit side by side where two fit and scale with their column
/// (their `viewBox` keeps the proportions).
const PAGE_STYLE: &str = "\
body{background:var(--bg);color:var(--fg);font:14px/1.45 sans-serif;margin:24px auto;max-width:1600px;padding:0 24px}\
h1{font-size:20px}h2{font-size:16px;margin-top:28px}\
table{border-collapse:collapse;margin:8px 0}\
th,td{border-bottom:1px solid var(--grid);padding:3px 10px;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}\
header td{font-family:monospace;overflow-wrap:anywhere}\
p.mode{border-left:4px solid var(--c1);padding:4px 10px}\
div.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,620px),1fr));gap:16px}\
figure{margin:16px 0}\
figure svg{display:block;width:100%;height:auto}\
p.none{align-self:center;color:var(--muted);font-size:16px;text-align:center}";

/// What a closed-loop page says about its latency.
pub const CLOSED_LOOP_NOTE: &str = "Closed loop: each connection waited for its replies before \
sending more. Closed-loop latency hides coordinated omission: while the server stalls, the \
clients stop sending, so the requests that would have waited are never sent and only the one \
request caught in the stall looks slow. Run with -R for an open loop.";

/// What an open-loop page says about its latency.
pub const OPEN_LOOP_NOTE: &str = "Open loop: requests went out on a fixed schedule whatever the \
server did, and each request's latency counts from when it was due, so a stall shows as every \
request it kept waiting.";

/// What a page of open-loop arrivals says about its latency and drops.
pub const ARRIVALS_NOTE: &str = "Open-loop arrivals: new connections arrived on a fixed \
schedule whatever the server did, each with one request. An arrival that found the bound of \
connections in flight reached was dropped, not delayed, and each arrival's latency counts \
from when it was due, its connect included.";

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

/// The spectrum chart of `lines`, with `marks` on it.
fn spectrum_chart(lines: Vec<Line>, marks: Vec<Mark>) -> Chart {
    Chart {
        title: "Latency by percentile".to_string(),
        x_label: "percentile (number of nines)".to_string(),
        y_label: "latency (µs)".to_string(),
        x_axis: XAxis::Nines,
        y_log: true,
        lines,
        marks,
    }
}

/// A run's p99 and p99.9, to mark on its spectrum; none when nothing was
/// answered (there is no spectrum to mark).
fn tail_marks(report: &Report) -> Vec<Mark> {
    if report.replies == 0 {
        return Vec::new();
    }
    let l = &report.latency_us;
    [("p99", 0.99, l.p99), ("p99.9", 0.999, l.p999)]
        .into_iter()
        .map(|(name, quantile, us)| Mark {
            x: quantile,
            y: us,
            name: name.to_string(),
            label: format!("{name} {} µs", group(us, 1)),
        })
        .collect()
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
        marks: Vec::new(),
    }
}

/// The page of one run.
pub fn run_page(report: &Report) -> String {
    let s = &report.scenario;
    let mut out = String::new();
    head(&mut out, &format!("linepool load against {}", s.addr));
    if let Some(about) = &report.run {
        out.push_str("<header>");
        facts(
            &mut out,
            &[
                ("date (UTC)", about.started_at.clone()),
                ("linepool", about.linepool_version.clone()),
                ("command", about.command_line()),
                ("host", about.host.clone()),
            ],
        );
        out.push_str("</header>");
    }
    let note = if report.closed_loop {
        CLOSED_LOOP_NOTE
    } else if s.max_in_flight.is_some() {
        ARRIVALS_NOTE
    } else {
        OPEN_LOOP_NOTE
    };
    let _ = write!(out, "<p class=\"mode\">{}</p>", escape(note));
    let limit = match (s.requests, s.duration_secs, s.requests_per_connection) {
        (Some(n), _, _) => format!("{} in all", linepool::logfmt::count(n, "request")),
        (_, Some(d), _) => format!("{d} s"),
        (_, _, Some(n)) if s.max_in_flight.is_some() => {
            format!("{} in all", linepool::logfmt::count(n, "arrival"))
        }
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
            match s.max_in_flight {
                Some(bound) => ("arrivals in flight", format!("at most {bound}")),
                None => ("connections", s.connections.to_string()),
            },
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
            ("errors", errors_by_kind(report)),
            ("interrupted", report.interrupted.to_string()),
        ],
    );
    // The charts share one grid: two abreast in a wide window, stacked in
    // a narrow one.
    out.push_str("<h2>Charts</h2><div class=\"charts\">");
    figure(
        &mut out,
        &rate_chart(vec![Line {
            name: "replies/s".to_string(),
            points: per_second(report, |s| s.replies_per_sec),
        }]),
    );
    errors_chart(&mut out, report);
    let percentiles: [(&str, Pick); 5] = [
        ("p50", |s| s.latency_us.p50),
        ("p90", |s| s.latency_us.p90),
        ("p99", |s| s.latency_us.p99),
        ("p99.9", |s| s.latency_us.p999),
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
            marks: Vec::new(),
        },
    );
    figure(
        &mut out,
        &spectrum_chart(
            vec![Line {
                name: "latency".to_string(),
                points: spectrum(report),
            }],
            tail_marks(report),
        ),
    );
    out.push_str("</div></body></html>\n");
    out
}

/// The errors in one cell: `none`, or the total and each kind that
/// happened (`5: reset 3, timeout 2`). The kinds that did not happen are
/// left out, and the total is said once, here, not again in a table of
/// its own.
fn errors_by_kind(report: &Report) -> String {
    if report.errors.total == 0 {
        return "none".to_string();
    }
    let kinds: Vec<String> = report
        .errors
        .kinds()
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    format!("{}: {}", report.errors.total, kinds.join(", "))
}

/// Errors per second, the total and each kind that happened; in a run
/// without errors, the words "no errors" instead of a flat, empty chart.
fn errors_chart(out: &mut String, report: &Report) {
    if report.errors.total == 0 {
        out.push_str("<p class=\"none\">no errors</p>");
        return;
    }
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
        out,
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
            marks: Vec::new(),
        },
    );
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
        Vec::new(),
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
        for p in ["p50", "p90", "p99", "p99.9", "max"] {
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
        // The errors, once: the total with each kind that happened.
        assert_eq!(cell(&doc, "errors"), "4: reset 4");
        assert!(!page.contains("Errors by kind"));
    }

    /// The text of the table cell beside the header cell `name`.
    fn cell<'a>(doc: &'a roxmltree::Document, name: &str) -> &'a str {
        doc.descendants()
            .find(|n| n.has_tag_name("th") && n.text() == Some(name))
            .and_then(|th| th.next_sibling_element())
            .and_then(|td| td.text())
            .unwrap_or_else(|| panic!("no cell {name}"))
    }

    /// The page opens with what ran: the date and time (UTC, ISO 8601),
    /// the linepool version, the command line as given (quoted where a
    /// shell needs it) and the host.
    #[test]
    fn a_run_page_says_what_ran() {
        let page = run_page(&samples::report(2, None));
        let doc = parse(&page);
        let header = doc
            .descendants()
            .find(|n| n.has_tag_name("header"))
            .expect("a header");
        let rows: Vec<(&str, &str)> = header
            .descendants()
            .filter(|n| n.has_tag_name("th"))
            .map(|th| (th.text().unwrap_or(""), cell(&doc, th.text().unwrap_or(""))))
            .collect();
        assert_eq!(
            rows,
            [
                ("date (UTC)", "2026-12-07T11:20:00Z"),
                ("linepool", "9.9.9"),
                ("command", "linepool load -d 3s --html 'run <1>.html'"),
                ("host", "bench-host"),
            ]
        );
    }

    /// The spectrum marks the run's p99 and p99.9: a ring on the line at
    /// each, and its value beside it.
    #[test]
    fn the_spectrum_marks_p99_and_p999() {
        let report = samples::report(3, None);
        let page = run_page(&report);
        let doc = parse(&page);
        let spectrum = doc
            .descendants()
            .find(|n| n.attribute("aria-label") == Some("Latency by percentile"))
            .expect("the spectrum");
        let marks: Vec<&str> = spectrum
            .descendants()
            .filter(|n| n.has_tag_name("circle"))
            .filter_map(|n| n.attribute("data-mark"))
            .collect();
        assert_eq!(marks, ["p99", "p99.9"]);
        let texts: Vec<&str> = spectrum.descendants().filter_map(|n| n.text()).collect();
        let l = &report.latency_us;
        for label in [
            format!("p99 {} µs", group(l.p99, 1)),
            format!("p99.9 {} µs", group(l.p999, 1)),
        ] {
            assert!(texts.contains(&label.as_str()), "{label} not in {texts:?}");
        }
        // 5 ms stragglers: p99.9 is theirs, p99 the last second's 300 µs.
        assert_eq!(group(l.p999, 1), "5,001.2");
        assert_eq!(group(l.p99, 1), "300.0");
    }

    /// A run without errors says "no errors" where the errors chart would
    /// be, not an empty plot, and its totals say "none".
    #[test]
    fn a_clean_run_says_no_errors() {
        let report = samples::report(1, None);
        assert_eq!(report.errors.total, 0);
        let page = run_page(&report);
        let doc = parse(&page);
        let none: Vec<&str> = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("none"))
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(none, ["no errors"]);
        assert!(!page.contains("Errors per second"));
        assert!(lines_named(&doc, "total").is_empty());
        assert_eq!(
            doc.descendants().filter(|n| n.has_tag_name("svg")).count(),
            3
        );
        assert_eq!(cell(&doc, "errors"), "none");
    }

    /// The page fills a wide window: no fixed column, every chart scales
    /// with its column through its `viewBox`.
    #[test]
    fn the_page_is_fluid() {
        let page = run_page(&samples::report(3, None));
        let doc = parse(&page);
        let style = doc
            .descendants()
            .find(|n| n.has_tag_name("style"))
            .and_then(|n| n.text())
            .expect("a style");
        assert!(style.contains("figure svg{display:block;width:100%;height:auto}"));
        assert!(style.contains("body{") && !style.contains("max-width:800px"));
        for svg in doc.descendants().filter(|n| n.has_tag_name("svg")) {
            assert!(svg.attribute("viewBox").is_some());
            assert_eq!(svg.parent().map(|p| p.tag_name().name()), Some("figure"));
        }
    }

    /// An open-loop page says so, and not the closed-loop warning.
    #[test]
    fn an_open_loop_page_says_so() {
        let page = run_page(&samples::report(2, Some(400.0)));
        assert!(page.contains("Open loop"));
        assert!(!page.contains("coordinated omission"));
        assert!(page.contains("open loop, 400/s"));
    }

    /// A page of open-loop arrivals says so, with its bound of
    /// connections in flight.
    #[test]
    fn an_arrivals_page_says_so() {
        let mut report = samples::report(2, Some(400.0));
        report.scenario.connect_per_request = true;
        report.scenario.max_in_flight = Some(10);
        let page = run_page(&report);
        let doc = parse(&page);
        assert!(page.contains(&escape(ARRIVALS_NOTE)));
        assert!(!page.contains("coordinated omission"));
        assert_eq!(cell(&doc, "arrivals in flight"), "at most 10");
        assert_eq!(cell(&doc, "mode"), "arrivals, 400/s");
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
