//! `linepool load compare A.json B.json [C.json ...]`: reads load reports,
//! prints the comparison table, and writes the comparison page
//! (`--html`) and the spectra alone as an SVG file (`--svg`). A file that
//! is not a load report, or one of another format version, is refused
//! with one line and exit status 2, before anything is written.

use std::path::PathBuf;
use std::process::ExitCode;

use super::output::{EXIT_BAD_FILE, Output};
use linepool_tools::load::{chart, compare, page};

#[derive(clap::Args)]
pub struct Args {
    /// Load reports, as `linepool load --json` prints them; ratios are to
    /// the first.
    #[arg(required = true, num_args = 2.., value_name = "REPORT.json")]
    files: Vec<PathBuf>,
    /// Also write a page overlaying the runs' spectra and rates to FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Also write the runs' percentile spectra, overlaid, as one SVG file.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// The title of the page and the SVG chart.
    #[arg(long, value_name = "TEXT")]
    title: Option<String>,
}

/// Runs `linepool load compare`.
pub fn run(args: &Args) -> ExitCode {
    match compare_files(args) {
        Ok(table) => {
            println!("{table}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("linepool: {e}");
            ExitCode::from(EXIT_BAD_FILE)
        }
    }
}

fn compare_files(args: &Args) -> Result<String, String> {
    let runs = args
        .files
        .iter()
        .map(|path| compare::load(path))
        .collect::<Result<Vec<_>, _>>()?;
    let html = args.html.as_deref().map(Output::create).transpose()?;
    let svg = args.svg.as_deref().map(Output::create).transpose()?;
    let title = args.title.as_deref();
    if let Some(out) = html {
        out.write(&page::compare_page(&runs, title))?;
    }
    if let Some(out) = svg {
        let mut spectra = page::spectra(&runs);
        if let Some(title) = title {
            spectra.title = format!("Latency by percentile: {title}");
        }
        out.write(&chart::standalone(&spectra))?;
    }
    Ok(compare::table(&runs))
}
