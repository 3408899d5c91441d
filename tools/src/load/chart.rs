//! Line charts as SVG text, drawn by hand: a linear x axis (time) or the
//! percentile spectrum's "number of nines" axis, a linear y axis from
//! zero or a logarithmic one (latencies, whose tails span decades), ticks,
//! grid lines, axis labels with their units and a legend.
//!
//! Colours are CSS classes, not values: [`STYLE`] gives them, with a light
//! and a dark palette chosen by `prefers-color-scheme`, so one chart reads
//! in both. A page carries the style once; a standalone file
//! ([`standalone`]) carries its own copy. Nothing refers outside the text.

use std::fmt::Write;

/// Series colours (`s0`…`s5`), grid, text and background, light and dark.
pub const STYLE: &str = "\
:root{color-scheme:light dark;--bg:#ffffff;--fg:#1d1f23;--muted:#5f6670;--grid:#d9dce1;\
--c0:#1f6fd1;--c1:#d1471f;--c2:#1f9e55;--c3:#8e44c4;--c4:#b8860b;--c5:#c21f6f}\
@media (prefers-color-scheme:dark){:root{--bg:#15171b;--fg:#e4e6ea;--muted:#9aa1ab;\
--grid:#343943;--c0:#6cb2ff;--c1:#ff8a66;--c2:#5fd68f;--c3:#c79bff;--c4:#f2c14e;--c5:#ff7eb6}}\
svg.chart{background:var(--bg);color:var(--fg);font:12px sans-serif}\
svg.chart text{fill:var(--fg)}\
svg.chart .muted{fill:var(--muted)}\
svg.chart .title{font-size:14px;font-weight:bold}\
svg.chart .grid{stroke:var(--grid);stroke-width:1}\
svg.chart .axis{stroke:var(--muted);stroke-width:1}\
svg.chart .line{fill:none;stroke-width:1.8;stroke-linejoin:round}\
svg.chart .mark{fill:var(--bg);stroke:var(--fg);stroke-width:2}\
svg.chart .mark-label{font-weight:bold}\
.s0{stroke:var(--c0);fill:var(--c0)}.s1{stroke:var(--c1);fill:var(--c1)}\
.s2{stroke:var(--c2);fill:var(--c2)}.s3{stroke:var(--c3);fill:var(--c3)}\
.s4{stroke:var(--c4);fill:var(--c4)}.s5{stroke:var(--c5);fill:var(--c5)}";

/// How many colours there are; further series reuse them.
const COLOURS: usize = 6;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 340.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 52.0;
const BOTTOM: f64 = 52.0;

/// What the x axis shows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum XAxis {
    /// Values as they are, from zero.
    Linear,
    /// Quantiles (0 to 1) placed by their number of nines,
    /// `-log10(1 - q)`: 90% at 1, 99% at 2, 99.9% at 3.
    Nines,
}

/// One named line of points (x, y).
#[derive(Clone, Debug)]
pub struct Line {
    /// Its name in the legend.
    pub name: String,
    /// Its points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// A point singled out on a chart: a ring at (x, y) and its label
/// beside it (the spectrum's p99 and p99.9).
#[derive(Clone, Debug)]
pub struct Mark {
    /// Where it is, in the chart's units.
    pub x: f64,
    /// Where it is, in the chart's units.
    pub y: f64,
    /// Its short name, also its `data-mark` attribute: `p99`.
    pub name: String,
    /// The text beside it: `p99 680.4 µs`.
    pub label: String,
}

/// A chart to draw.
#[derive(Clone, Debug)]
pub struct Chart {
    /// The title above it.
    pub title: String,
    /// The x axis' label, with its unit.
    pub x_label: String,
    /// The y axis' label, with its unit.
    pub y_label: String,
    /// How x values are placed.
    pub x_axis: XAxis,
    /// A logarithmic y axis, powers of ten apart; values at or below zero
    /// sit on its floor.
    pub y_log: bool,
    /// The lines.
    pub lines: Vec<Line>,
    /// Points singled out, drawn over the lines.
    pub marks: Vec<Mark>,
}

/// Escapes text for XML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The number of nines of quantile `q`; 100% (which has infinitely many)
/// is placed at `cap`.
pub fn nines(q: f64, cap: f64) -> f64 {
    if q >= 1.0 {
        cap
    } else {
        (-(1.0 - q).log10()).min(cap)
    }
}

/// The label of `n` nines: `0%`, `90%`, `99%`, `99.9%`…
fn nines_label(n: u32) -> String {
    match n {
        0 => "0%".to_string(),
        1 => "90%".to_string(),
        n => format!("99.{}%", "9".repeat(n as usize - 2)).replace("99.%", "99%"),
    }
}

/// About five round ticks from 0 to at least `max`: the step and count.
fn ticks(max: f64) -> (f64, usize) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let rough = max / 5.0;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * magnitude);
    (step, (max / step).ceil().max(1.0) as usize)
}

/// `value` with `decimals` decimals and its thousands grouped:
/// `118,792`, `1,310.8`.
pub fn group(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    let (whole, fraction) = text.split_at(text.find('.').unwrap_or(text.len()));
    let sign = usize::from(whole.starts_with('-'));
    let mut out = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > sign && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out + fraction
}

/// A tick value as a label: whole numbers grouped, small ones with the
/// decimals their step needs.
fn tick_label(value: f64, step: f64) -> String {
    if step >= 1.0 {
        group(value, 0)
    } else {
        group(value, (-step.log10().floor()) as usize + 1)
    }
}

/// Where y values go: a fraction of the plot's height, 0 at the bottom.
enum YScale {
    /// From zero to `step * count`.
    Linear { step: f64, count: usize },
    /// From `10^low` to `10^high`.
    Log { low: i32, high: i32 },
}

impl YScale {
    fn new(log: bool, values: impl Iterator<Item = f64>) -> YScale {
        let (mut min, mut max) = (f64::INFINITY, 0.0f64);
        for v in values.filter(|v| v.is_finite()) {
            max = max.max(v);
            if v > 0.0 {
                min = min.min(v);
            }
        }
        if !log {
            let (step, count) = ticks(max);
            return YScale::Linear { step, count };
        }
        if !min.is_finite() {
            return YScale::Log { low: 0, high: 1 };
        }
        let low = min.log10().floor() as i32;
        let high = (max.log10().ceil() as i32).max(low + 1);
        YScale::Log { low, high }
    }

    fn place(&self, value: f64) -> f64 {
        match *self {
            YScale::Linear { step, count } => value / (step * count as f64),
            YScale::Log { low, high } => {
                let floor = 10f64.powi(low);
                (value.max(floor).log10() - f64::from(low)) / f64::from(high - low)
            }
        }
    }

    /// The ticks: values and their labels.
    fn ticks(&self) -> Vec<(f64, String)> {
        match *self {
            YScale::Linear { step, count } => (0..=count)
                .map(|i| {
                    let value = step * i as f64;
                    (value, tick_label(value, step))
                })
                .collect(),
            YScale::Log { low, high } => (low..=high)
                .map(|k| {
                    let value = 10f64.powi(k);
                    (value, group(value, usize::try_from(-k).unwrap_or(0)))
                })
                .collect(),
        }
    }
}

/// The chart as an inline `<svg>` element (no namespace declaration: an
/// HTML page gives it one).
pub fn svg(chart: &Chart) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let all = || chart.lines.iter().flat_map(|l| l.points.iter());
    let cap = match chart.x_axis {
        XAxis::Linear => 0.0,
        // 100% sits one step past the last finite tick, so it shows.
        XAxis::Nines => all()
            .filter(|(q, _)| *q < 1.0)
            .map(|(q, _)| nines(*q, f64::INFINITY) + 1.0)
            .fold(1.0, f64::max)
            .ceil(),
    };
    let place_x = |x: f64| match chart.x_axis {
        XAxis::Linear => x,
        XAxis::Nines => nines(x, cap),
    };
    let x_max = all().map(|(x, _)| place_x(*x)).fold(0.0, f64::max);
    let (x_step, x_ticks) = match chart.x_axis {
        XAxis::Linear => ticks(x_max),
        XAxis::Nines => (1.0, cap as usize),
    };
    let x_span = x_step * x_ticks as f64;
    let px = |x: f64| LEFT + place_x(x) / x_span * plot_w;
    let y = YScale::new(chart.y_log, all().map(|(_, y)| *y));
    let py = |value: f64| TOP + plot_h - y.place(value) * plot_h;

    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        "<svg class=\"chart\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\">",
        escape(&chart.title)
    );
    let _ = write!(
        out,
        "<title>{}</title><text class=\"title\" x=\"{LEFT}\" y=\"20\">{}</text>",
        escape(&chart.title),
        escape(&chart.title)
    );
    for (value, label) in y.ticks() {
        let y = py(value);
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\"/>\
             <text class=\"muted\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            label
        );
    }
    for i in 0..=x_ticks {
        let at = x_step * i as f64;
        let x = LEFT + at / x_span * plot_w;
        let label = match chart.x_axis {
            XAxis::Linear => tick_label(at, x_step),
            XAxis::Nines if i == x_ticks => "100%".to_string(),
            XAxis::Nines => nines_label(i as u32),
        };
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{:.1}\"/>\
             <text class=\"muted\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            TOP + plot_h,
            TOP + plot_h + 16.0,
        );
    }
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{bottom:.1}\"/>\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{bottom:.1}\" x2=\"{:.1}\" y2=\"{bottom:.1}\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
         <text x=\"16\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {:.1})\">{}</text>",
        LEFT + plot_w,
        LEFT + plot_w / 2.0,
        HEIGHT - 10.0,
        escape(&chart.x_label),
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(&chart.y_label),
        bottom = TOP + plot_h,
    );
    if all().next().is_none() {
        let _ = write!(
            out,
            "<text class=\"muted\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">no data</text>",
            LEFT + plot_w / 2.0,
            TOP + plot_h / 2.0
        );
    }
    let mut legend_x = LEFT;
    for (i, line) in chart.lines.iter().enumerate() {
        let class = format!("s{}", i % COLOURS);
        let points: Vec<String> = line
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = write!(
            out,
            "<polyline class=\"line {class}\" data-series=\"{}\" data-points=\"{}\" points=\"{}\"/>",
            escape(&line.name),
            line.points.len(),
            points.join(" ")
        );
        let _ = write!(
            out,
            "<rect class=\"{class}\" x=\"{legend_x:.1}\" y=\"30\" width=\"12\" height=\"12\"/>\
             <text x=\"{:.1}\" y=\"40\">{}</text>",
            legend_x + 16.0,
            escape(&line.name)
        );
        legend_x += 28.0 + 7.0 * line.name.chars().count() as f64;
    }
    for mark in &chart.marks {
        let (x, y) = (px(mark.x), py(mark.y));
        // The label goes above and to the left of its ring: the marks sit
        // in the spectrum's steep right end, where the line climbs, so
        // the space up and left of a point is clear of it.
        let _ = write!(
            out,
            "<circle class=\"mark\" data-mark=\"{}\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"5\"/>\
             <text class=\"mark-label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            escape(&mark.name),
            x - 8.0,
            y - 8.0,
            escape(&mark.label)
        );
    }
    out.push_str("</svg>");
    out
}

/// SVG's namespace name: an identifier, never fetched.
const SVG_NAMESPACE: &str = "http://www.w3.org/2000/svg";

/// The chart as a file of its own: the SVG namespace (a name, not a
/// reference to anything) and its own copy of the style.
pub fn standalone(chart: &Chart) -> String {
    let inline = svg(chart);
    let body = inline.trim_start_matches("<svg ");
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"{SVG_NAMESPACE}\" {}",
        body.replacen('>', &format!("><style>{STYLE}</style>"), 1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(x_axis: XAxis, lines: Vec<Line>) -> Chart {
        Chart {
            title: "Latency <by> percentile".to_string(),
            x_label: "percentile".to_string(),
            y_label: "latency (µs)".to_string(),
            x_axis,
            y_log: false,
            lines,
            marks: Vec::new(),
        }
    }

    /// Ticks are round numbers that cover the data.
    #[test]
    fn ticks_are_round_and_cover_the_data() {
        assert_eq!(ticks(9.0), (2.0, 5));
        assert_eq!(ticks(118_792.0), (25_000.0, 5));
        assert_eq!(ticks(0.0), (0.2, 5));
        assert_eq!(tick_label(25_000.0, 25_000.0), "25,000");
        assert_eq!(tick_label(0.4, 0.2), "0.40");
        assert_eq!(group(118_792.4, 0), "118,792");
        assert_eq!(group(1_310.75, 1), "1,310.8");
        assert_eq!(group(-100.0, 0), "-100");
        assert_eq!(group(-1_000.0, 0), "-1,000");
    }

    /// A log axis spans whole decades around the data, its ticks powers
    /// of ten; zero sits on the floor.
    #[test]
    fn a_log_axis_spans_whole_decades() {
        let y = YScale::new(true, [0.0, 25.0, 3_500.0].into_iter());
        let labels: Vec<String> = y.ticks().into_iter().map(|(_, l)| l).collect();
        assert_eq!(labels, ["10", "100", "1,000", "10,000"]);
        assert_eq!(y.place(10.0), 0.0);
        assert_eq!(y.place(0.0), 0.0);
        assert!((y.place(100.0) - 1.0 / 3.0).abs() < 1e-9);
        let small = YScale::new(true, [0.5].into_iter());
        let labels: Vec<String> = small.ticks().into_iter().map(|(_, l)| l).collect();
        assert_eq!(labels, ["0.1", "1"]);
    }

    /// Quantiles sit at their number of nines; 100% at the cap.
    #[test]
    fn quantiles_sit_at_their_number_of_nines() {
        assert!((nines(0.9, 6.0) - 1.0).abs() < 1e-9);
        assert!((nines(0.999, 6.0) - 3.0).abs() < 1e-9);
        assert_eq!(nines(0.0, 6.0), 0.0);
        assert_eq!(nines(1.0, 6.0), 6.0);
        assert_eq!(nines_label(0), "0%");
        assert_eq!(nines_label(1), "90%");
        assert_eq!(nines_label(2), "99%");
        assert_eq!(nines_label(4), "99.99%");
    }

    /// The chart is well-formed XML, holds each line with all its points
    /// and its name escaped, labels both axes, and refers to nothing
    /// outside itself.
    #[test]
    fn a_chart_is_well_formed_and_holds_its_lines() {
        let lines = vec![
            Line {
                name: "a & b".to_string(),
                points: vec![(0.0, 1.0), (0.9, 2.0), (0.99, 5.0), (1.0, 9.0)],
            },
            Line {
                name: "c".to_string(),
                points: vec![(0.0, 2.0), (1.0, 3.0)],
            },
        ];
        let text = svg(&chart(XAxis::Nines, lines));
        assert!(!text.contains("http") && !text.contains("//"), "{text}");
        let doc = roxmltree::Document::parse(&text).expect("well-formed");
        let polylines: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .collect();
        assert_eq!(polylines.len(), 2);
        assert_eq!(polylines[0].attribute("data-series"), Some("a & b"));
        let points = polylines[0].attribute("points").expect("points");
        assert_eq!(points.split(' ').count(), 4);
        let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
        for label in ["latency (µs)", "percentile", "90%", "99%", "100%"] {
            assert!(texts.contains(&label), "{label} missing: {texts:?}");
        }
        let standalone = standalone(&chart(XAxis::Linear, Vec::new()));
        let rest = standalone.replacen(SVG_NAMESPACE, "", 1);
        assert!(!rest.contains("http") && !rest.contains("//"), "{rest}");
        let doc = roxmltree::Document::parse(&standalone).expect("well-formed");
        assert_eq!(
            doc.root_element().tag_name().namespace(),
            Some(SVG_NAMESPACE)
        );
        assert!(standalone.contains("prefers-color-scheme:dark"));
        assert!(standalone.contains("no data"));
    }
}
