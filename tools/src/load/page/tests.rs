//! The pages' unit tests: what each page holds, parsed strictly.

use super::*;
use crate::load::report::samples;

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
