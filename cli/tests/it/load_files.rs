//! What `linepool load` leaves for people and other tools: the per-second
//! series and the V2 histogram in `--json`, the `.hgrm` and `--html`
//! files, and `linepool load compare` on real runs and on files that are
//! not load reports.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use serde_json::Value;

use crate::support::TestServer;

/// A folder of its own for one test's files, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("linepool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch folder");
        Scratch(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn linepool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_linepool"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run linepool")
}

fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `linepool load --json` against `server` with `args`; the report
/// is also kept in `file`.
fn run(server: &TestServer, file: &Path, args: &[&str]) -> Value {
    let port = server.addr.port().to_string();
    let mut all = vec!["load", "--json", "--port", &port];
    all.extend_from_slice(args);
    let output = linepool(&all);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    std::fs::write(file, &output.stdout).expect("keep the report");
    serde_json::from_slice(&output.stdout).expect("a JSON report")
}

/// The JSON report carries its format version, one entry per second
/// whose replies add up to the run's, and the whole run's histogram in
/// HdrHistogram's V2 compressed base64, which HdrHistogram's own decoder
/// reads back to the same count and percentiles.
#[test]
fn json_carries_the_series_and_a_v2_histogram() {
    let server = TestServer::default();
    let scratch = Scratch::new("json-series");
    let report = run(&server, &scratch.path("a.json"), &["-c", "3", "-d", "1.5s"]);
    assert_eq!(report["format_version"], 2);
    // What ran, where and when, as the page's header gives it.
    assert_eq!(report["run"]["linepool_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(report["run"]["command"][1], "load");
    assert!(!report["run"]["host"].as_str().expect("host").is_empty());
    assert!(
        report["run"]["started_at"]
            .as_str()
            .expect("date")
            .ends_with('Z')
    );
    assert_eq!(report["series"]["interval_secs"], 1.0);
    let seconds = report["series"]["seconds"].as_array().expect("seconds");
    assert_eq!(seconds.len(), 2, "{seconds:?}");
    let replies: u64 = seconds
        .iter()
        .map(|s| s["replies"].as_u64().expect("replies"))
        .sum();
    assert_eq!(replies, report["replies"].as_u64().expect("replies"));
    assert_eq!(seconds[1]["start_secs"], 1.0);
    for second in seconds {
        assert!(second["latency_us"]["p99"].as_f64().expect("p99") > 0.0);
        assert_eq!(second["errors"]["total"], 0);
    }
    let encoded = &report["latency_histogram"];
    assert_eq!(encoded["unit"], "ns");
    assert_eq!(encoded["encoding"], "hdrhistogram-v2-compressed-base64");
    let bytes = STANDARD
        .decode(encoded["data"].as_str().expect("data"))
        .expect("base64");
    let histogram: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .expect("HdrHistogram decodes it");
    assert_eq!(histogram.len(), replies);
    let p99_us = histogram.value_at_quantile(0.99) as f64 / 1000.0;
    assert_eq!(report["latency_us"]["p99"].as_f64(), Some(p99_us));
    server.stop();
}

/// `--hgrm` writes the percentile spectrum in microseconds, saying so;
/// `--html` writes a well-formed page that names nothing outside itself.
#[test]
fn hgrm_and_html_files_are_written() {
    let server = TestServer::default();
    let scratch = Scratch::new("hgrm-html");
    let (hgrm, html) = (scratch.path("run.hgrm"), scratch.path("run.html"));
    let report = run(
        &server,
        &scratch.path("run.json"),
        &[
            "-c",
            "2",
            "-n",
            "500",
            "--hgrm",
            hgrm.to_str().expect("path"),
            "--html",
            html.to_str().expect("path"),
        ],
    );
    let spectrum = text(&hgrm);
    let lines: Vec<&str> = spectrum.lines().collect();
    assert!(lines[0].contains("microseconds"), "{spectrum}");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    );
    let last = lines
        .iter()
        .rfind(|l| !l.starts_with('#'))
        .expect("a last value line");
    let fields: Vec<&str> = last.split_whitespace().collect();
    assert_eq!(fields[1], "1.000000000000");
    assert_eq!(fields[2], "500");
    let max_us: f64 = fields[0].parse().expect("a value");
    assert_eq!(Some(max_us), report["latency_us"]["max"].as_f64());
    assert!(spectrum.contains("#[Max     = "), "{spectrum}");

    let page = text(&html);
    assert!(!page.contains("http") && !page.contains("//"));
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(&page, options).expect("well-formed");
    let svgs = doc.descendants().filter(|n| n.has_tag_name("svg")).count();
    assert_eq!(svgs, 3, "no errors chart in a clean run");
    assert!(page.contains("hides coordinated omission"));
    assert_page_says_what_ran(&doc, &report);
    assert_eq!(server.stop().lines, 500);
}

/// `value` to one decimal, its thousands grouped: `1,310.7`.
fn grouped(value: f64) -> String {
    let text = format!("{value:.1}");
    let (whole, fraction) = text.split_at(text.len() - 2);
    let mut out = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out + fraction
}

/// The page's header gives the run's date, version, command line and
/// host as the JSON report does; the spectrum marks p99 and p99.9; the
/// latency chart has a p99.9 line; a clean run says "no errors".
fn assert_page_says_what_ran(doc: &roxmltree::Document, report: &Value) {
    let header: Vec<&str> = doc
        .descendants()
        .find(|n| n.has_tag_name("header"))
        .expect("a header")
        .descendants()
        .filter(|n| n.has_tag_name("td"))
        .filter_map(|n| n.text())
        .collect();
    let run = &report["run"];
    let command: Vec<&str> = run["command"]
        .as_array()
        .expect("command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(command[1..4], ["load", "--json", "--port"], "{command:?}");
    assert_eq!(
        header,
        [
            run["started_at"].as_str().expect("started_at"),
            env!("CARGO_PKG_VERSION"),
            command.join(" ").as_str(),
            run["host"].as_str().expect("host"),
        ]
    );
    let date = header[0];
    assert_eq!((date.len(), &date[10..11], &date[19..]), (20, "T", "Z"));
    let marks: Vec<&str> = doc
        .descendants()
        .filter_map(|n| n.attribute("data-mark"))
        .collect();
    assert_eq!(marks, ["p99", "p99.9"]);
    let p999 = report["latency_us"]["p999"].as_f64().expect("p999");
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    let label = format!("p99.9 {} µs", grouped(p999));
    assert!(texts.contains(&label.as_str()), "no {label} in {texts:?}");
    let series = doc
        .descendants()
        .filter(|n| n.attribute("data-series") == Some("p99.9"))
        .count();
    assert_eq!(series, 1, "a p99.9 line per second");
    assert!(texts.contains(&"no errors"));
}

/// A file that cannot be written is refused before any load is sent, with
/// one line and exit status 2.
#[test]
fn an_unwritable_file_is_refused_at_start() {
    let server = TestServer::default();
    let port = server.addr.port().to_string();
    let output = linepool(&[
        "load",
        "--port",
        &port,
        "--html",
        "/nonexistent/folder/run.html",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "linepool: cannot write /nonexistent/folder/run.html: No such file or directory (os error 2)\n"
    );
    assert_eq!(server.stop().connections, 0);
}

/// `compare` on two real runs: a table with a row per run and ratios to
/// the first, and a page overlaying both runs' spectra and rates.
#[test]
fn compare_sets_two_real_runs_side_by_side() {
    let server = TestServer::default();
    let scratch = Scratch::new("compare");
    let (a, b, html) = (
        scratch.path("a.json"),
        scratch.path("b.json"),
        scratch.path("cmp.html"),
    );
    run(&server, &a, &["-c", "1", "-n", "300"]);
    run(&server, &b, &["-c", "4", "-n", "400"]);
    let (a, b) = (a.to_str().expect("path"), b.to_str().expect("path"));
    let output = linepool(&[
        "load",
        "compare",
        a,
        b,
        "--html",
        html.to_str().expect("path"),
    ]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let table = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("run "), "{table}");
    assert!(
        lines[1].starts_with(a) && !lines[1].contains('×'),
        "{table}"
    );
    assert!(
        lines[2].starts_with(b) && lines[2].matches('×').count() == 6,
        "{table}"
    );
    assert_eq!(
        lines[3],
        format!("ratios in brackets are to the first run, {a}")
    );
    let page = text(&html);
    assert!(!page.contains("http") && !page.contains("//"));
    let spectra = page.matches(&format!("data-series=\"{b}\"")).count();
    assert_eq!(spectra, 2, "a spectrum and a rate line for each run");
    server.stop();
}

/// `compare` refuses, with one line naming the file and exit status 2,
/// a file that is not JSON, JSON that is not a load report, and a report
/// of the first format (before the series and the histogram); it writes
/// nothing.
#[test]
fn compare_refuses_what_is_not_a_report() {
    let server = TestServer::default();
    let scratch = Scratch::new("compare-refuses");
    let good = scratch.path("good.json");
    let report = run(&server, &good, &["-c", "1", "-n", "10"]);
    server.stop();
    let mut old = report.clone();
    let object = old.as_object_mut().expect("an object");
    for added in ["format_version", "series", "latency_histogram"] {
        object.remove(added);
    }
    let cases = [
        (
            "notes.txt",
            "just some notes\n".to_string(),
            "not a linepool load report (not JSON)",
        ),
        (
            "other.json",
            "{\"replies\": 3}".to_string(),
            "not a linepool load report",
        ),
        (
            "old.json",
            old.to_string(),
            "a load report of format 1; this linepool reads format 2 (run the load again with it)",
        ),
    ];
    let html = scratch.path("never.html");
    for (name, content, why) in cases {
        let path = scratch.path(name);
        std::fs::write(&path, content).expect("write");
        let path = path.to_str().expect("path");
        let output = linepool(&[
            "load",
            "compare",
            good.to_str().expect("path"),
            path,
            "--html",
            html.to_str().expect("path"),
        ]);
        assert_eq!(output.status.code(), Some(2), "{name}");
        assert_eq!(String::from_utf8_lossy(&output.stdout), "");
        assert_eq!(
            String::from_utf8_lossy(&output.stderr),
            format!("linepool: {path}: {why}\n")
        );
        assert!(!html.exists());
    }
}
