//! `linepool load compare`: reads load reports back and sets them side by
//! side, each run's rate and percentiles with its ratio to the first run's.
//! The cells are shared by the text table and the comparison page.

use std::path::Path;

use super::chart::group;
use super::report::Report;

/// One report to compare, and the name it goes by (its file).
pub struct Run {
    /// The file it came from, as given.
    pub name: String,
    /// The report.
    pub report: Report,
}

/// Reads the report in `path`; the error is one sentence naming the file.
pub fn load(path: &Path) -> Result<Run, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    let report = Report::from_json(&text).map_err(|why| format!("{name}: {why}"))?;
    Ok(Run { name, report })
}

/// The header of the comparison table.
pub const HEADER: [&str; 10] = [
    "run",
    "mode",
    "connections",
    "replies/s",
    "p50 µs",
    "p90 µs",
    "p99 µs",
    "p99.9 µs",
    "max µs",
    "errors",
];

/// How a run was driven, in two words.
pub fn mode(report: &Report) -> String {
    match report.scenario.target_rate_per_sec {
        Some(rate) if report.scenario.max_in_flight.is_some() => {
            format!("arrivals, {rate:.0}/s")
        }
        Some(rate) if !report.closed_loop => format!("open loop, {rate:.0}/s"),
        _ => "closed loop".to_string(),
    }
}

/// `value` with its ratio to `first`, unless it is the first.
fn with_ratio(value: f64, first: f64, is_first: bool, decimals: usize) -> String {
    let shown = group(value, decimals);
    if is_first {
        shown
    } else if first > 0.0 {
        format!("{shown} ({:.2}×)", value / first)
    } else {
        format!("{shown} (–)")
    }
}

/// One row of cells per run, in [`HEADER`]'s order.
pub fn rows(runs: &[Run]) -> Vec<Vec<String>> {
    let Some(first) = runs.first().map(|r| &r.report) else {
        return Vec::new();
    };
    runs.iter()
        .enumerate()
        .map(|(i, run)| {
            let r = &run.report;
            let (l, f) = (&r.latency_us, &first.latency_us);
            let first_row = i == 0;
            vec![
                run.name.clone(),
                mode(r),
                r.scenario.connections.to_string(),
                with_ratio(r.replies_per_sec, first.replies_per_sec, first_row, 0),
                with_ratio(l.p50, f.p50, first_row, 1),
                with_ratio(l.p90, f.p90, first_row, 1),
                with_ratio(l.p99, f.p99, first_row, 1),
                with_ratio(l.p999, f.p999, first_row, 1),
                with_ratio(l.max, f.max, first_row, 1),
                r.errors.total.to_string(),
            ]
        })
        .collect()
}

/// The comparison as a text table, columns aligned, with a last line
/// saying what the ratios are to.
pub fn table(runs: &[Run]) -> String {
    let rows = rows(runs);
    let header: Vec<String> = HEADER.iter().map(|h| h.to_string()).collect();
    let all: Vec<&Vec<String>> = std::iter::once(&header).chain(rows.iter()).collect();
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|c| all.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in all {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell}{}", " ".repeat(w - cell.chars().count())))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if let Some(first) = runs.first() {
        out.push_str(&format!(
            "ratios in brackets are to the first run, {}",
            first.name
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ratios are to the first run, which shows none.
    #[test]
    fn cells_carry_ratios_to_the_first() {
        assert_eq!(with_ratio(200.0, 100.0, false, 0), "200 (2.00×)");
        assert_eq!(with_ratio(100.0, 100.0, true, 0), "100");
        assert_eq!(with_ratio(5.0, 0.0, false, 1), "5.0 (–)");
    }
}
