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
mod tests;
